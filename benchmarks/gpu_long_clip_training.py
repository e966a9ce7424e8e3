#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Training memory of long clips (64 to 256 frames) on one GPU: gradient checkpointing + bf16 autocast.

For each model size and frame count, one full training step (forward, backward, AdamW step) on a batch of one
synthetic 224x224 clip, as `examples/run_video_classification.py --gradient_checkpointing --mixed_precision bf16`
runs it; reports the step's peak GPU memory, the memory per frame ((peak - weights and optimizer) / frames) and the
step time. Each case runs in its own subprocess (an out-of-memory error ends that case only).

    python benchmarks/gpu_long_clip_training.py --json long_clip_training.json
    python benchmarks/gpu_long_clip_training.py --sizes tiny --frames 64,128,256 --no-checkpointing
    python benchmarks/gpu_long_clip_training.py --smoke      # tiny model, CPU allowed: checks the script
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
GB = 1024**3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated presets: tiny, small, middle")
    parser.add_argument("--frames", default="64,128,256", help="comma-separated frame counts")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--backend", default="auto", help="scan backend: auto, torch, mamba_ssm, triton")
    parser.add_argument("--no-checkpointing", action="store_true", help="without gradient checkpointing")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per case")
    parser.add_argument("--json", default=None)
    parser.add_argument("--smoke", action="store_true", help="a tiny model and 4/8 frames, CPU allowed")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: "size:frames"
    return parser.parse_args(argv)


def run_case(size, frames, args):
    import torch

    from videomamba import VideoMambaConfig, VideoMambaForVideoClassification

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit("No CUDA device (use --smoke to check the script on a CPU).")
    device = torch.device("cuda" if cuda else "cpu")
    if args.smoke:
        config = VideoMambaConfig(image_size=args.image_size, num_frames=frames, hidden_size=32, num_hidden_layers=2,
                                  state_size=8, num_labels=400, scan_backend=args.backend)
    else:
        config = VideoMambaConfig.from_preset(size, num_frames=frames, image_size=args.image_size, num_labels=400,
                                              scan_backend=args.backend, drop_path_rate=0.1)
    model = VideoMambaForVideoClassification(config).to(device).train()
    if not args.no_checkpointing:
        # transformers >= 5.2x names it activation_checkpointing_enable; older 5.x gradient_checkpointing_enable.
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        assert model.videomamba.layers[0].gradient_checkpointing
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    pixels = torch.randn(args.batch_size, frames, 3, args.image_size, args.image_size, device=device,
                         generator=generator)
    labels = torch.randint(0, 400, (args.batch_size,), device=device, generator=generator)
    tokens = 1 + frames * config.num_spatial_patches

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        return float(loss)

    result = {"size": size, "frames": frames, "tokens": tokens, "batch_size": args.batch_size,
              "checkpointing": not args.no_checkpointing,
              "backend": model.videomamba.layers[0].mixer.resolve_backend(torch.empty(1, device=device, requires_grad=True))}
    try:
        step()  # warm-up; also creates the optimizer state
        if cuda:
            torch.cuda.synchronize()
            static = torch.cuda.memory_allocated() - pixels.numel() * 4
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
    except (RuntimeError, torch.OutOfMemoryError) as error:
        if "out of memory" not in str(error).lower():
            raise
        result.update(status="OOM", error=str(error).splitlines()[0][:160])
        return result
    result.update(status="ok", step_s=round(time.perf_counter() - start, 3), loss_finite=loss == loss)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        result.update(
            peak_gb=round(peak / GB, 2), weights_and_optimizer_gb=round(static / GB, 3),
            gb_per_frame=round((peak - static) / GB / (frames * args.batch_size), 4),
            mb_per_frame=round((peak - static) / 1024**2 / (frames * args.batch_size), 1),
        )
    return result


def main(argv=None):
    args = parse_args(argv)
    if args.smoke:
        args.sizes, args.frames = "tiny", "4,8"
        args.image_size = 32 if args.image_size == 224 else args.image_size
    if args.case:
        size, frames = args.case.split(":")
        print("RESULT " + json.dumps(run_case(size, int(frames), args)), flush=True)
        return 0
    forwarded = ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--backend",
                 args.backend]
    forwarded += ["--no-checkpointing"] if args.no_checkpointing else []
    forwarded += ["--smoke"] if args.smoke else []
    results = []
    for size in args.sizes.split(","):
        for frames in args.frames.split(","):
            command = [sys.executable, __file__, "--case", f"{size}:{frames}", *forwarded]
            try:
                process = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
                lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
                if lines:
                    result = json.loads(lines[-1][len("RESULT "):])
                else:
                    tail = " | ".join(process.stderr.strip().splitlines()[-3:])[:300]
                    status = "OOM" if "out of memory" in process.stderr.lower() else f"crashed ({process.returncode})"
                    result = {"size": size, "frames": int(frames), "status": status, "error": tail}
            except subprocess.TimeoutExpired:
                result = {"size": size, "frames": int(frames), "status": f"timeout after {args.timeout} s"}
            print(json.dumps(result), flush=True)
            results.append(result)
    print("| size | frames | tokens | status | peak GB | MB per frame | step (s) |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['size']} | {r['frames']} | {r.get('tokens', '')} | {r['status']} | {r.get('peak_gb', '')} | "
              f"{r.get('mb_per_frame', '')} | {r.get('step_s', '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
