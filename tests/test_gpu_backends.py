"""CUDA backends against the pure PyTorch path and a float64 reference (run on the GPU machine).

Each case builds one randomised model, runs forward + backward through every backend, and compares logits and all
parameter gradients. With `VIDEOMAMBA_PARITY_LOG=path` every comparison is appended to that file as a JSON line.
"""

import json
import os

import pytest
import torch

from videomamba import VideoMambaConfig, VideoMambaForVideoClassification, is_mamba_ssm_available
from videomamba.modeling_videomamba import is_triton_scan_available


pytestmark = pytest.mark.gpu

# Relative-norm tolerances ||a - b|| / ||b|| between a CUDA backend and the PyTorch path (logits, worst gradient).
# In bf16 every projection output is rounded to 8 bits, so gradients summed over thousands of tokens differ by a few
# percent between any two implementations; there each backend must also be about as close to float64 as the other.
TOLERANCES = {"float32": (1e-4, 2e-3), "bfloat16": (5e-2, 0.25), "autocast_bf16": (5e-2, 0.25)}


def run(model, pixel_values, labels, backend, mode):
    model.config.scan_backend = backend
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "autocast_bf16"):
        out = model(pixel_values, labels=labels)
    out.loss.backward()
    grads = {name: p.grad.detach().double() for name, p in model.named_parameters()}
    return out.logits.detach().double(), grads


def relative(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def compare(got, want):
    logits, grads = got
    ref_logits, ref_grads = want
    grad_errors = {name: relative(grads[name], ref_grads[name]) for name in ref_grads if ref_grads[name].norm() > 0}
    worst = max(grad_errors, key=grad_errors.get)
    return {
        "logits_rel": relative(logits, ref_logits),
        "logits_max_abs": (logits - ref_logits).abs().max().item(),
        "grad_rel_max": grad_errors[worst],
        "grad_rel_worst_param": worst,
        "grad_max_abs": max((grads[n] - ref_grads[n]).abs().max().item() for n in ref_grads),
    }


def log(record):
    print(json.dumps(record))
    path = os.environ.get("VIDEOMAMBA_PARITY_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def build(dtype):
    torch.manual_seed(0)
    config = VideoMambaConfig(hidden_size=192, num_hidden_layers=4, num_frames=8, num_labels=10, scan_backend="torch")
    model = VideoMambaForVideoClassification(config).cuda()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embeddings" in name or name.endswith(("dt_proj.bias", "dt_proj_b.bias")):
                p.add_(torch.randn_like(p) * 0.1)
    pixel_values = torch.randn(2, 8, 3, 224, 224, device="cuda")
    labels = torch.tensor([3, 7], device="cuda")
    return model.to(dtype), pixel_values.to(dtype), labels


BACKENDS = [
    pytest.param("mamba_ssm", marks=pytest.mark.skipif(not is_mamba_ssm_available(), reason="mamba-ssm missing")),
    pytest.param("triton", marks=pytest.mark.skipif(not is_triton_scan_available(), reason="triton scan missing")),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["float32", "bfloat16", "autocast_bf16"])
def test_backend_matches_torch_path(backend, mode):
    dtype = torch.bfloat16 if mode == "bfloat16" else torch.float32
    model, pixel_values, labels = build(dtype)
    torch_result = run(model, pixel_values, labels, "torch", mode)
    backend_result = run(model, pixel_values, labels, backend, mode)
    # float64 reference of the same weights (pure PyTorch path).
    model64 = model.double()
    reference = run(model64, pixel_values.double(), labels, "torch", "float32")
    model.to(dtype)
    vs_torch = compare(backend_result, torch_result)
    record = {
        "backend": backend, "mode": mode, "vs_torch": vs_torch,
        "backend_vs_float64": compare(backend_result, reference), "torch_vs_float64": compare(torch_result, reference),
        "device": torch.cuda.get_device_name(),
    }
    log(record)
    out_tol, grad_tol = TOLERANCES[mode]
    assert vs_torch["logits_rel"] < out_tol, record
    assert vs_torch["grad_rel_max"] < grad_tol, record
    for key in ("logits_rel", "grad_rel_max"):
        slack = 1e-6 if mode == "float32" else 1e-3
        assert record["backend_vs_float64"][key] <= 2 * record["torch_vs_float64"][key] + slack, record


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_backend_picks_a_cuda_kernel(backend):
    model, pixel_values, _ = build(torch.float32)
    model.config.scan_backend = "auto"
    chosen = model.videomamba.layers[0].mixer.resolve_backend(pixel_values)
    assert chosen in ("triton", "mamba_ssm")
