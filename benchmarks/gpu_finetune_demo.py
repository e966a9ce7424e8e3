#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Fine-tune VideoMamba-Ti (24 x 192) on the built-in demo data at 16 frames in bf16 on one GPU, with the example
script, and print training clips/second and validation accuracy. Finishes in about 4 minutes on an H100.

    python benchmarks/gpu_finetune_demo.py                      # defaults: 16 frames, 224 px, bf16
    python benchmarks/gpu_finetune_demo.py --image_size 112 --budget_s 120

Steps: (1) write the demo videos (moving digits, 4 motion-direction classes; ~20 s, reused if present); (2) measure
the model alone on random clips (forward + backward + AdamW, bf16 autocast) to pick the largest batch size that fits
and the number of epochs that fits `--budget_s` of training; (3) run `examples/run_video_classification.py` (its
`main`) from scratch with those settings, single-view validation every epoch and 2 x 3 views at the end.

Needs: torch with CUDA, transformers, accelerate, av, scikit-learn (for the digits); no network. Prints a summary and
writes it to `<output_dir>/benchmark.json`.
"""

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import torch


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import videomamba  # noqa: E402
from videomamba import VideoMambaConfig, VideoMambaForVideoClassification  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output_dir", default="/tmp/videomamba_gpu_finetune_demo")
    parser.add_argument("--demo_dir", default="/tmp/videomamba_demo_data")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_sizes", default="32,16,8", help="Tried in order; the first that fits is used.")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--budget_s", type=float, default=150.0, help="Seconds of training to plan for.")
    parser.add_argument("--min_epochs", type=int, default=8)
    parser.add_argument("--max_epochs", type=int, default=60)
    parser.add_argument("--num_workers", type=int, default=8)
    parser.add_argument("--mixed_precision", default="bf16", choices=["bf16", "fp16", "no"])
    parser.add_argument("--cpu_smoke_test", action="store_true",
                        help="Run the same steps on the CPU (use tiny --image_size/--num_frames): checks the script only.")
    return parser.parse_args()


def model_only_throughput(batch_size, args, steps=6):
    """Training clips/s of the model alone on random clips (no data loading), or None if the batch does not fit."""
    config = VideoMambaConfig.from_preset("tiny", num_frames=args.num_frames, image_size=args.image_size, num_labels=4)
    device = "cpu" if args.cpu_smoke_test else "cuda"
    model = VideoMambaForVideoClassification(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    pixel_values = torch.randn(batch_size, args.num_frames, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 4, (batch_size,), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    backend = model.videomamba.layers[0].mixer.resolve_backend(pixel_values)
    try:
        timings = []
        for _ in range(steps):
            sync()
            start = time.perf_counter()
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                loss = model(pixel_values, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync()
            timings.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    except torch.OutOfMemoryError:
        return None, backend, None
    finally:
        del model, optimizer, pixel_values
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    step = sorted(timings[2:])[len(timings[2:]) // 2]  # median after warm-up (compilation, autotuning)
    return batch_size / step, backend, peak


def main():
    args = parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke_test:
        raise SystemExit("This benchmark needs a CUDA GPU.")
    import transformers

    device_name = "CPU (smoke test)" if args.cpu_smoke_test else torch.cuda.get_device_name()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, videomamba {videomamba.__version__}, "
          f"{device_name}")
    wall_start = time.perf_counter()

    from videomamba.demo_data import make_demo_videos

    start = time.perf_counter()
    make_demo_videos(args.demo_dir, num_train_per_class=48, num_val_per_class=16)
    data_seconds = time.perf_counter() - start
    print(f"demo data: {args.demo_dir} ({data_seconds:.1f}s)")

    chosen = None
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        clips_per_second, backend, peak = model_only_throughput(batch_size, args)
        if clips_per_second is None:
            print(f"batch {batch_size}: out of memory")
            continue
        print(f"model only: VideoMamba-Ti, {args.num_frames}x{args.image_size}px, batch {batch_size}, scan backend "
              f"'{backend}': {clips_per_second:.1f} training clips/s, peak memory {peak:.1f} GiB")
        chosen = (batch_size, clips_per_second, backend)
        break
    if chosen is None:
        raise SystemExit("No batch size fits; pass smaller --batch_sizes or --image_size.")
    batch_size, model_clips_per_second, backend = chosen
    train_videos = 4 * 48
    steps_per_epoch = math.ceil(train_videos / batch_size)
    epoch_seconds = train_videos / model_clips_per_second
    epochs = int(min(args.max_epochs, max(args.min_epochs, args.budget_s // max(epoch_seconds, 1e-6))))
    print(f"plan: {epochs} epochs x {steps_per_epoch} steps (~{epoch_seconds:.1f}s an epoch at model speed)")

    spec = importlib.util.spec_from_file_location("run_video_classification",
                                                  ROOT / "examples" / "run_video_classification.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = script.main([
        "--demo_dir", args.demo_dir,
        "--output_dir", args.output_dir,
        "--model_preset", "tiny",
        "--num_frames", str(args.num_frames),
        "--image_size", str(args.image_size),
        "--per_device_train_batch_size", str(batch_size),
        "--per_device_eval_batch_size", str(batch_size),
        "--learning_rate", str(args.learning_rate),
        "--num_train_epochs", str(epochs),
        "--mixed_precision", args.mixed_precision,
        "--num_workers", str(args.num_workers),
        "--eval_every_epochs", str(max(1, epochs // 6)),
        "--eval_num_clips", "2",
        "--eval_num_crops", "3",
        "--logging_steps", "20",
        *(["--cpu"] if args.cpu_smoke_test else []),
    ])
    summary = {
        "model": "VideoMamba-Ti (24 x 192), from scratch",
        "clip": f"{args.num_frames} frames x {args.image_size}px",
        "precision": args.mixed_precision,
        "scan_backend": backend,
        "batch_size": batch_size,
        "epochs": epochs,
        "train_clips_per_second": results["train_clips_per_second"],
        "train_clips_per_second_steady": results["train_clips_per_second_steady"],
        "model_only_train_clips_per_second": model_clips_per_second,
        "val_top1": results["eval_top1"],
        "val_top5": results["eval_top5"],
        "val_top1_2x3_views": results.get("eval_multiview_top1"),
        "chance_top1": results["chance_top1"],
        "demo_data_seconds": data_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "device": device_name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    Path(args.output_dir, "benchmark.json").write_text(json.dumps(summary, indent=1))
    print("\n===== VideoMamba-Ti fine-tuning on the demo data =====")
    for key, value in summary.items():
        print(f"{key:36s} {value:.3f}" if isinstance(value, float) else f"{key:36s} {value}")


if __name__ == "__main__":
    main()
