#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""One hour of video through VideoMamba on one GPU, and where attention models stop.

The input is one hour of 224x224 video sampled at 1 frame per second: 3,600 frames, 3,600 * 196 + 1 = 705,601
tokens for VideoMamba (and TimeSformer). Frames are synthetic (random pixels generated on the GPU batch by batch, as
a streaming decoder would deliver them): the benchmark measures the model, not the decoder (PyAV is not needed).

Cases (each in its own subprocess, with a time limit, so an out-of-memory error or a hang costs one case only):

  videomamba-ti, videomamba-s    exact chunked inference (`videomamba.long_video.encode_long_video`), bf16 autocast,
                                 chunk size from the free memory unless --chunk-size; wall time, peak memory.
  videomamba-ti-full             the ordinary full-sequence forward on the same input (it holds every token's
                                 intermediates at once); when it fits, the chunked result is compared with it.
  videomae-ti-sdpa               transformers' VideoMAE at ViT-Ti size (12 x 192, 3 heads, tubelet 2: 352,800
  videomae-ti-eager              tokens), with SDPA (flash / memory-efficient) and with eager attention.
  timesformer-ti                 transformers' TimeSformer at ViT-Ti size, divided space-time attention (eager).

Every case prints a memory estimate first; attention cases whose estimate exceeds the GPU's memory by far are skipped
with that estimate (`--attempt-all` runs them anyway: the first oversized allocation fails at once), and a case whose
attention FLOPs would take longer than the time limit is skipped likewise. The baselines run with bf16 weights (their
least memory); VideoMamba keeps float32 weights under bf16 autocast (its scans run in float32).

Usage (H100, about 5-10 minutes in all; --cases picks a subset):

    python benchmarks/gpu_hour_long.py --json hour_long.json --markdown hour_long.md
    python benchmarks/gpu_hour_long.py --cases videomamba-ti,videomamba-s --chunk-size 131072
    python benchmarks/gpu_hour_long.py --smoke     # tiny models, 8 frames, CPU allowed: checks the script itself
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALL_CASES = ("videomamba-ti", "videomamba-s", "videomamba-ti-full", "videomae-ti-sdpa", "videomae-ti-eager",
             "timesformer-ti")
GB = 1024**3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated, from: " + ", ".join(ALL_CASES))
    parser.add_argument("--frames", type=int, default=3600, help="frames (1 fps for an hour: 3600)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--chunk-size", type=int, default=None, help="VideoMamba tokens per chunk (default: auto)")
    parser.add_argument("--backend", default="auto", help="VideoMamba scan backend: auto, torch, mamba_ssm, triton")
    parser.add_argument("--frames-per-batch", type=int, default=64, help="frames embedded per batch")
    parser.add_argument("--offload", action="store_true", help="VideoMamba: residual stream in CPU memory")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per case")
    parser.add_argument("--attempt-all", action="store_true", help="also run cases whose estimate exceeds memory")
    parser.add_argument("--assumed-tflops", type=float, default=300.0,
                        help="attention throughput assumed for the time guard (TFLOP/s)")
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--markdown", default=None, help="write the results table here")
    parser.add_argument("--smoke", action="store_true", help="tiny models and inputs (CPU allowed): test the script")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in this process
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------


def device_and_memory(smoke):
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return torch.device("cuda"), props.total_memory, props.name
    if not smoke:
        raise SystemExit("No CUDA device: this benchmark needs a GPU (use --smoke to check the script on a CPU).")
    return torch.device("cpu"), 0, "cpu"


def reset_peak(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device):
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / GB, 2)


def is_oom(error):
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class SyntheticFrames:
    """A stand-in for `StreamingVideoReader`: `frames` random normalised frames in batches, made on the device."""

    def __init__(self, frames, image_size, batch_size, device, fps=1.0):
        self.frames, self.image_size, self.batch_size, self.device, self.fps = (
            frames, image_size, batch_size, device, fps
        )

    def expected_num_samples(self):
        return self.frames

    def __iter__(self):
        import torch

        from videomamba.streaming import FrameBatch

        generator = torch.Generator(device=self.device).manual_seed(0)
        for first in range(0, self.frames, self.batch_size):
            count = min(self.batch_size, self.frames - first)
            pixels = torch.randn(count, 3, self.image_size, self.image_size, device=self.device, generator=generator)
            times = torch.arange(first, first + count, dtype=torch.float64) / self.fps
            yield FrameBatch(pixel_values=pixels, timestamps=times, frame_times=times)


def full_pixels(frames, image_size, device, dtype):
    """The whole clip as one `(1, frames, 3, H, W)` tensor, with the same pixels as `SyntheticFrames`."""
    import torch

    batches = [b.pixel_values.to(dtype) for b in SyntheticFrames(frames, image_size, 256, device)]
    return torch.cat(batches)[None]


# --------------------------------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------------------------------


def videomamba_config(size, args):
    from videomamba import VideoMambaConfig

    if args.smoke:
        return VideoMambaConfig(image_size=args.image_size, patch_size=16, num_frames=8, hidden_size=32,
                                num_hidden_layers=2, state_size=8, num_labels=400, scan_backend=args.backend)
    return VideoMambaConfig.from_preset(size, image_size=args.image_size, num_frames=8, num_labels=400,
                                        scan_backend=args.backend)


def case_videomamba_chunked(size, args, device, total_memory):
    import torch

    from videomamba import VideoMambaForVideoClassification
    from videomamba.long_video import choose_chunk_size, chunk_bytes_per_token, encode_long_video, get_direction_scan

    config = videomamba_config(size, args)
    model = VideoMambaForVideoClassification(config).to(device).eval()
    tokens = 1 + args.frames // config.tubelet_size * config.num_spatial_patches
    scan = get_direction_scan(args.backend, device)
    result = {
        "tokens": tokens, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "backend": getattr(scan, "name", "?"),
        "estimate_gb": round((2 * tokens * config.hidden_size * 4) / GB, 2),  # residual stream + block outputs
    }
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    kwargs = dict(chunk_size=args.chunk_size, backend=args.backend, offload=args.offload, progress=False)
    with autocast:  # warm-up: kernels, cuDNN, allocator
        encode_long_video(model, SyntheticFrames(16, args.image_size, 16, device), **kwargs)
    reset_peak(device)
    start = time.perf_counter()
    with autocast:
        output = encode_long_video(
            model, SyntheticFrames(args.frames, args.image_size, args.frames_per_batch, device), **kwargs
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    result.update(
        status="ok", wall_s=round(wall, 2), peak_gb=peak_gb(device), chunk_size=output.chunk_size,
        backend=output.backend, frames_per_s=round(args.frames / wall, 1),
        tokens_per_s=round(tokens / wall), frame_features=list(output.frame_features.shape),
        chunk_estimate_gb=round(chunk_bytes_per_token(config, 1, output.backend) * output.chunk_size / GB, 2),
        top1=int(output.logits.argmax()),
    )
    if args.chunk_size is None and device.type == "cuda":
        result["auto_chunk_size_now"] = choose_chunk_size(config, tokens, 1, device, output.backend)
    return result


def case_videomamba_full(args, device, total_memory):
    import torch

    from videomamba import VideoMambaForVideoClassification
    from videomamba.long_video import chunk_bytes_per_token, chunked_forward, get_direction_scan

    config = videomamba_config("tiny", args)
    model = VideoMambaForVideoClassification(config).to(device).eval()
    tokens = 1 + args.frames // config.tubelet_size * config.num_spatial_patches
    scan_name = getattr(get_direction_scan(args.backend, device), "name", "torch")
    estimate = chunk_bytes_per_token(config, 1, scan_name) * tokens + 3 * args.frames * args.image_size**2 * 2
    result = {"tokens": tokens, "backend": scan_name, "estimate_gb": round(estimate / GB, 1)}
    pixels = full_pixels(args.frames, args.image_size, device, torch.bfloat16 if device.type == "cuda" else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    reset_peak(device)
    start = time.perf_counter()
    try:
        with torch.no_grad(), autocast:
            full = model.videomamba(pixels, interpolate_pos_encoding=True).pooler_output.float()
        if device.type == "cuda":
            torch.cuda.synchronize()
    except (RuntimeError, torch.OutOfMemoryError) as error:
        if not is_oom(error):
            raise
        result.update(status="OOM", peak_gb=peak_gb(device), seconds_to_fail=round(time.perf_counter() - start, 2),
                      error=str(error).splitlines()[0][:160])
        return result
    result.update(status="ok", wall_s=round(time.perf_counter() - start, 2), peak_gb=peak_gb(device))
    with autocast:
        chunked = chunked_forward(model, pixels, chunk_size=args.chunk_size, backend=args.backend).pooler_output
    result["chunked_vs_full_max_abs_diff_bf16"] = float((chunked.float() - full).abs().max())
    result["cls_max_abs"] = float(full.abs().max())
    return result


def _vectorised_sinusoid_table(n_position, d_hid):
    """transformers' VideoMAE `get_sinusoid_encoding_table`, vectorised (its Python loop takes about a minute for
    352,800 positions; the values are the same). Only the model's construction is sped up, not its forward pass."""
    import torch

    position = torch.arange(n_position, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(d_hid) // 2).double() / d_hid
    table = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)[None]
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    return table.float().unsqueeze(0)


def attention_estimates(kind, args, heads, hidden, layers):
    """Memory of one layer's attention scores (the eager path materialises them) and total attention FLOPs."""
    grid = (args.image_size // 16) ** 2
    if kind == "videomae":
        tokens = args.frames // 2 * grid
        # eager: scores (bf16) + float32 softmax + bf16 probabilities, all `heads * L^2`
        eager_bytes = heads * tokens**2 * (2 + 4 + 2)
        flops = layers * 4 * tokens**2 * hidden
        return tokens, eager_bytes, flops
    # TimeSformer, divided space-time: temporal attention over `frames` per patch, spatial over `1 + grid` per frame.
    tokens = 1 + args.frames * grid
    temporal = grid * heads * args.frames**2 * (2 + 2 + 2)  # scores, scaled scores, softmax (bf16 weights)
    spatial = args.frames * heads * (1 + grid) ** 2 * (2 + 2 + 2)
    flops = layers * 4 * hidden * (grid * args.frames**2 + args.frames * (1 + grid) ** 2)
    return tokens, max(temporal, spatial), flops


def case_attention_baseline(kind, attention, args, device, total_memory):
    import torch

    if args.smoke:
        heads, hidden, layers, intermediate = 2, 32, 2, 64
    else:
        heads, hidden, layers, intermediate = 3, 192, 12, 768  # ViT-Ti
    tokens, eager_bytes, flops = attention_estimates(kind, args, heads, hidden, layers)
    attention_bytes = eager_bytes if attention == "eager" else 0
    result = {
        "tokens": tokens, "attention": attention,
        "estimate_attention_scores_gb": round(eager_bytes / GB, 1) if attention == "eager" else None,
        "estimate_attention_tflop": round(flops / 1e12, 1),
    }
    if device.type == "cuda" and attention_bytes > 1.5 * total_memory and not args.attempt_all:
        result.update(status="skipped: attention scores need ~%.0f GB per layer (GPU: %.0f GB)"
                      % (attention_bytes / GB, total_memory / GB))
        return result
    expected_seconds = flops / (args.assumed_tflops * 1e12)
    if device.type == "cuda" and expected_seconds > args.timeout and not args.attempt_all:
        result.update(status="skipped: ~%.0f s of attention at %.0f TFLOP/s (limit %d s)"
                      % (expected_seconds, args.assumed_tflops, args.timeout))
        return result

    start = time.perf_counter()
    if kind == "videomae":
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification
        from transformers.models.videomae import modeling_videomae

        modeling_videomae.get_sinusoid_encoding_table = _vectorised_sinusoid_table
        config = VideoMAEConfig(
            image_size=args.image_size, patch_size=16, num_frames=args.frames, tubelet_size=2, hidden_size=hidden,
            num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate, num_labels=400,
            use_mean_pooling=True,
        )
        config._attn_implementation = attention
        model = VideoMAEForVideoClassification(config)
    else:
        from transformers import TimesformerConfig, TimesformerForVideoClassification

        config = TimesformerConfig(
            image_size=args.image_size, patch_size=16, num_frames=args.frames, hidden_size=hidden,
            num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate, num_labels=400,
            attention_type="divided_space_time",
        )
        model = TimesformerForVideoClassification(config)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    result["init_s"] = round(time.perf_counter() - start, 1)
    pixels = full_pixels(args.frames, args.image_size, device, dtype)
    reset_peak(device)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            logits = model(pixel_values=pixels).logits
        if device.type == "cuda":
            torch.cuda.synchronize()
    except (RuntimeError, torch.OutOfMemoryError) as error:
        if not is_oom(error):
            result.update(status="error", error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
                          seconds_to_fail=round(time.perf_counter() - start, 2))
            return result
        result.update(status="OOM", peak_gb=peak_gb(device), seconds_to_fail=round(time.perf_counter() - start, 2),
                      error=str(error).splitlines()[0][:160])
        return result
    result.update(status="ok", wall_s=round(time.perf_counter() - start, 2), peak_gb=peak_gb(device),
                  logits_finite=bool(torch.isfinite(logits.float()).all()))
    return result


def run_case(name, args):
    device, total_memory, device_name = device_and_memory(args.smoke)
    if name == "videomamba-ti":
        result = case_videomamba_chunked("tiny", args, device, total_memory)
    elif name == "videomamba-s":
        result = case_videomamba_chunked("small", args, device, total_memory)
    elif name == "videomamba-ti-full":
        result = case_videomamba_full(args, device, total_memory)
    elif name.startswith("videomae-ti-"):
        result = case_attention_baseline("videomae", name.rsplit("-", 1)[1], args, device, total_memory)
    elif name == "timesformer-ti":
        result = case_attention_baseline("timesformer", "eager", args, device, total_memory)
    else:
        raise SystemExit(f"Unknown case {name!r}; choose from {ALL_CASES}.")
    return {"case": name, "device": device_name, "frames": args.frames, "image_size": args.image_size, **result}


# --------------------------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------------------------


def markdown_table(results):
    lines = [
        "| case | tokens | status | wall (s) | peak GPU memory (GB) | notes |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in results:
        notes = []
        for key in ("backend", "chunk_size", "attention", "estimate_gb", "estimate_attention_scores_gb",
                    "estimate_attention_tflop", "seconds_to_fail", "chunked_vs_full_max_abs_diff_bf16", "init_s",
                    "error"):
            if r.get(key) is not None:
                notes.append(f"{key}={r[key]}")
        lines.append(
            f"| {r['case']} | {r.get('tokens', '')} | {r.get('status', '')} | {r.get('wall_s', '')} | "
            f"{r.get('peak_gb', '') if r.get('peak_gb') is not None else ''} | {'; '.join(notes)} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.smoke:
        args.frames = min(args.frames, 8)
        args.image_size = 32 if args.image_size == 224 else args.image_size
    if args.chunk_size is not None and args.chunk_size <= 0:
        raise SystemExit(f"--chunk-size must be positive, got {args.chunk_size}.")
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args)), flush=True)
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in ALL_CASES]
    if unknown:
        raise SystemExit(f"Unknown cases {unknown}; choose from {ALL_CASES}.")
    forwarded = [
        "--frames", str(args.frames), "--image-size", str(args.image_size), "--backend", args.backend,
        "--frames-per-batch", str(args.frames_per_batch), "--timeout", str(args.timeout),
        "--assumed-tflops", str(args.assumed_tflops),
    ]
    if args.chunk_size is not None:
        forwarded += ["--chunk-size", str(args.chunk_size)]
    forwarded += [flag for flag, on in (("--offload", args.offload), ("--attempt-all", args.attempt_all),
                                          ("--smoke", args.smoke)) if on]
    results = []
    for case in cases:
        command = [sys.executable, __file__, "--case", case, *forwarded]
        print(f"== {case}", flush=True)
        start = time.perf_counter()
        try:
            process = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired:
            result = {"case": case, "status": f"timeout after {args.timeout} s"}
        else:
            lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
            if lines:
                result = json.loads(lines[-1][len("RESULT "):])
            else:
                tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
                status = "OOM" if "out of memory" in process.stderr.lower() else f"crashed (rc {process.returncode})"
                result = {"case": case, "status": status, "error": " | ".join(tail)[:300]}
        result["case_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(result), flush=True)
        results.append(result)
    table = markdown_table(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
