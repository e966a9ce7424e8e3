"""The Triton fused add + RMSNorm against plain PyTorch: on CPU through Triton's interpreter, on the GPU for real."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch


CHECK = textwrap.dedent(
    """
    import sys
    import torch
    from videomamba.fused_add_norm_triton import fused_add_rms_norm

    device = sys.argv[1]
    torch.manual_seed(0)
    for n_cols, with_residual, dtype in [(32, True, torch.float32), (192, False, torch.float32),
                                         (100, True, torch.float32), (64, True, torch.bfloat16)]:
        x = torch.randn(3, 7, n_cols, device=device, dtype=dtype, requires_grad=True)
        r = torch.randn(3, 7, n_cols, device=device, requires_grad=True) if with_residual else None
        w = (torch.rand(n_cols, device=device) + 0.5).requires_grad_()
        normed, residual_out = fused_add_rms_norm(x, r, w, 1e-5, out_dtype=dtype)
        ref_residual = (x.float() + r) if with_residual else x.float()
        ref = ref_residual * torch.rsqrt(ref_residual.pow(2).mean(-1, keepdim=True) + 1e-5) * w
        assert residual_out.dtype == torch.float32 and normed.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(residual_out, ref_residual, rtol=0, atol=0)
        torch.testing.assert_close(normed.float(), ref, rtol=tol, atol=tol)
        g_normed, g_residual = torch.randn_like(ref), torch.randn_like(ref_residual)
        params = [x, w] + ([r] if with_residual else [])
        got = torch.autograd.grad((normed.float() * g_normed).sum() + (residual_out * g_residual).sum(), params)
        want = torch.autograd.grad((ref * g_normed).sum() + (ref_residual * g_residual).sum(), params)
        for g, ww in zip(got, want):
            torch.testing.assert_close(g.float(), ww.float(), rtol=tol, atol=tol * 10)
    print("fused add+norm ok")
    """
)


def run_check(device, extra_env):
    env = {**os.environ, **extra_env}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", CHECK, device], env=env, capture_output=True, text=True, timeout=600)


def test_fused_add_norm_in_triton_interpreter():
    pytest.importorskip("triton")
    result = run_check("cpu", {"TRITON_INTERPRET": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fused add+norm ok" in result.stdout


@pytest.mark.gpu
def test_fused_add_norm_on_gpu():
    result = run_check("cuda", {})
    assert result.returncode == 0, result.stderr[-3000:]
