"""Latency of one forward at small batches (the `pipeline` case), eager and through CUDA graphs, on the GPU.

    python benchmarks/latency.py --out benchmarks/results/latency.json

VideoMamba-Ti on the fused Triton kernels (eager and `videomamba.CUDAGraphRunner`) and on the stock mamba-ssm
kernels, against VideoMAE-Ti (SDPA) and TimeSformer-Ti (matched widths, as in `benchmark.py`), bf16, 224x224, at
batch 1, 4 and 8 and 16 and 64 frames: median wall-clock milliseconds from the call to the synchronised result, and
the GPU-only time of the same forward replayed as a CUDA graph where the model can be captured. Prints a markdown
table.
"""

import argparse
import json
import time

import torch

from benchmark import build_model, environment


def median_ms(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1000 * times[len(times) // 2]


def main():
    from videomamba import CUDAGraphRunner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", nargs="+", type=int, default=[16, 64])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", default="latency.json")
    args = parser.parse_args()
    entries = [("VideoMamba-Ti, Triton", "videomamba", "triton", True),
               ("VideoMamba-Ti, stock kernels", "videomamba", "mamba_ssm", False),
               ("VideoMAE-Ti, SDPA", "videomae", None, False), ("TimeSformer-Ti", "timesformer", None, False)]
    results = {"environment": environment(), "latency": []}
    for frames in args.frames:
        for label, family, backend, graphs in entries:
            try:
                model = build_model(family, "tiny", frames, backend).cuda().to(torch.bfloat16).eval()
            except Exception as error:  # a missing backend is recorded, not fatal
                results["latency"].append({"model": label, "frames": frames, "error": str(error)[:200]})
                continue
            runner = CUDAGraphRunner(model, max_graphs=1) if graphs else None
            for batch in args.batches:
                x = torch.randn(batch, frames, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
                record = {"model": label, "frames": frames, "batch": batch}

                def eager():
                    with torch.inference_mode():
                        model(x)

                record["eager_ms"] = median_ms(eager, args.iters)
                if runner is not None:
                    record["graph_ms"] = median_ms(lambda: runner(x), args.iters)
                results["latency"].append(record)
                print(json.dumps(record), flush=True)
                del x
            del model, runner
            torch.cuda.empty_cache()
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=1)
    print(markdown(results["latency"]))


def markdown(records):
    rows = ["| frames | batch | " + " | ".join(
        ["VideoMamba-Ti Triton, eager", "VideoMamba-Ti Triton, CUDA graph", "VideoMamba-Ti stock kernels",
         "VideoMAE-Ti SDPA", "TimeSformer-Ti"]) + " |", "|---" * 7 + "|"]
    keys = sorted({(r["frames"], r["batch"]) for r in records if "batch" in r})
    for frames, batch in keys:
        cell = {r["model"]: r for r in records if r.get("frames") == frames and r.get("batch") == batch}

        def get(label, field="eager_ms"):
            r = cell.get(label)
            return f"{r[field]:.1f} ms" if r and field in r else "-"

        rows.append(f"| {frames} | {batch} | {get('VideoMamba-Ti, Triton')} | {get('VideoMamba-Ti, Triton', 'graph_ms')} | "
                    f"{get('VideoMamba-Ti, stock kernels')} | {get('VideoMAE-Ti, SDPA')} | {get('TimeSformer-Ti')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
