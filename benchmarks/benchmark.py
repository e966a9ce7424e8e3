"""Speed and memory of VideoMamba against transformers' attention video models, on one GPU.

Measures, in bf16 at 224x224 with random weights:
  * inference throughput (videos/s) and peak memory of VideoMamba Ti/S/M on each scan backend (`torch`, `mamba_ssm`,
    `triton`) and of VideoMAE (SDPA and eager attention) and TimeSformer at matched widths, over frame counts;
  * training step time (forward + backward, bf16 autocast, fp32 weights) and peak memory.
Batch 128 (training: 32), halved until it fits. Results go to a JSON file; `--report` turns one or more JSON files into
`benchmarks/RESULTS.md` and `benchmarks/speed_memory.png`.

    python benchmarks/benchmark.py --out results.json                 # the full grid (about 8 minutes on an H100)
    python benchmarks/benchmark.py --sizes tiny --frames 16 64 --out quick.json
    python benchmarks/benchmark.py --report results.json --results-md benchmarks/RESULTS.md
"""

import argparse
import datetime
import gc
import json
import os
import platform
import time

import torch


SIZES = {  # VideoMamba preset -> (hidden, VideoMAE/TimeSformer heads) of the matched-width attention models
    "tiny": (192, 3),
    "small": (384, 6),
    "middle": (576, 9),
}


def build_model(family, size, frames, backend=None, attn="sdpa"):
    hidden, heads = SIZES[size]
    if family == "videomamba":
        from videomamba import VideoMambaConfig, VideoMambaForVideoClassification

        config = VideoMambaConfig.from_preset(size, num_frames=frames, num_labels=400, scan_backend=backend)
        return VideoMambaForVideoClassification(config)
    if family == "videomae":
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        config = VideoMAEConfig(
            hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads, intermediate_size=4 * hidden,
            num_frames=frames, tubelet_size=1, num_labels=400,
        )
        return VideoMAEForVideoClassification._from_config(config, attn_implementation=attn)
    if family == "timesformer":
        from transformers import TimesformerConfig, TimesformerForVideoClassification

        config = TimesformerConfig(
            hidden_size=hidden, num_hidden_layers=12, num_attention_heads=heads, intermediate_size=4 * hidden,
            num_frames=frames, num_labels=400,
        )
        return TimesformerForVideoClassification(config)
    raise ValueError(family)


def cuda_time(fn, iters):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    times.sort()
    return times[len(times) // 2]


MIN_ITERS = 3  # timed iterations per case at least (the median of them is reported)


def measure(entry, frames, batch, train, iters, time_limit):
    """Largest batch <= `batch` that fits; returns a result dict (or one with an `error`)."""
    family, size, backend, attn = entry["family"], entry["size"], entry.get("backend"), entry.get("attn", "sdpa")
    while batch >= 1:
        model = x = None
        try:
            torch.cuda.empty_cache()
            model = build_model(family, size, frames, backend, attn).cuda()
            if not train:
                model = model.to(torch.bfloat16).eval()
            x = torch.randn(batch, frames, 3, 224, 224, device="cuda",
                            dtype=torch.float32 if train else torch.bfloat16)
            labels = torch.randint(0, 400, (batch,), device="cuda")
            if train:
                model.train()

                def step():
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = model(x, labels=labels).loss
                    loss.backward()
                    model.zero_grad(set_to_none=True)
            else:
                def step():
                    with torch.inference_mode():
                        model(x)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step()  # warm-up (kernel compilation, autotuning)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()  # a warm step: sets how many fit in the time limit (the first one's compilation would not)
            torch.cuda.synchronize()
            warm = time.perf_counter() - t0
            n = max(MIN_ITERS, min(iters, int(time_limit / max(warm, 1e-3))))
            seconds = cuda_time(step, n)
            peak = torch.cuda.max_memory_allocated() / 2**30
            return {"batch": batch, "seconds": seconds, "videos_per_s": batch / seconds, "peak_gib": peak, "iters": n}
        except torch.OutOfMemoryError:
            batch //= 2
        except Exception as error:  # a backend that is missing or fails is recorded, not fatal
            return {"error": f"{type(error).__name__}: {str(error)[:200]}"}
        finally:
            del model, x
            gc.collect()
            torch.cuda.empty_cache()
    return {"error": "out of memory at batch 1"}


def entries(sizes, backends, peers):
    for size in sizes:
        for backend in backends:
            yield {"family": "videomamba", "size": size, "backend": backend,
                   "name": f"VideoMamba-{size[0].upper()} {backend}"}
        if "videomae" in peers:
            for attn in ("sdpa", "eager"):
                yield {"family": "videomae", "size": size, "attn": attn, "name": f"VideoMAE-{size[0].upper()} {attn}"}
        if "timesformer" in peers:
            yield {"family": "timesformer", "size": size, "name": f"TimeSformer-{size[0].upper()}"}


def environment():
    import transformers

    info = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    for package in ("triton", "mamba_ssm", "causal_conv1d"):
        try:
            info[package] = __import__(package).__version__
        except Exception:
            info[package] = "not installed"
    return info


def apply_triton_configs(path):
    """Use the Triton launch settings that `benchmarks/bench_scan.py` picked on this GPU (its JSON output)."""
    from videomamba import bimamba_triton as bt

    with open(path) as f:
        picked = json.load(f)["configs_picked"]
    for name in ("SCAN_FWD_CONFIG", "XPROJ_CONFIG", "SCAN_BWD_CONFIG"):
        getattr(bt, name).update(picked[name])
    print("Triton launch settings from", path, {k: v for k, v in picked.items() if k != "names"})
    return picked


def run(args):
    results = {"environment": environment(), "inference": [], "training": []}
    if args.triton_configs:
        results["environment"]["triton_configs"] = apply_triton_configs(args.triton_configs)
    budget_end = time.perf_counter() + args.max_minutes * 60
    for entry in entries(args.sizes, args.backends, args.peers):
        for frames in args.frames:
            if time.perf_counter() > budget_end:
                print("time budget reached; stopping")
                break
            skip = entry["family"] == "videomamba" and entry["backend"] == "torch" and frames > args.torch_max_frames
            batch = args.torch_batch if entry.get("backend") == "torch" else args.batch
            result = {"error": "skipped (pure PyTorch path, too slow)"} if skip else measure(
                entry, frames, batch, False, args.iters, args.time_per_case)
            record = {**entry, "frames": frames, **result}
            results["inference"].append(record)
            print(json.dumps(record), flush=True)
            save(results, args.out)
        for frames in args.train_frames if entry["size"] == "tiny" else []:
            if time.perf_counter() > budget_end or (entry.get("backend") == "torch" and frames > 16):
                continue
            batch = args.torch_batch if entry.get("backend") == "torch" else args.train_batch
            record = {**entry, "frames": frames, **measure(entry, frames, batch, True, args.iters, args.time_per_case)}
            results["training"].append(record)
            print(json.dumps(record), flush=True)
            save(results, args.out)
    save(results, args.out)


def save(results, path):
    """Write the results so far (a run cut short by a time limit keeps what it measured)."""
    with open(path + ".tmp", "w") as handle:
        json.dump(results, handle, indent=1)
    os.replace(path + ".tmp", path)


# --- report --------------------------------------------------------------------------------------------------------


def fmt(record, default_batch):
    if "error" in record:
        return "OOM" if "memory" in record["error"] else "n/a"
    batch = "" if record["batch"] == default_batch else f" (b{record['batch']})"
    return f"{record['videos_per_s']:.0f}, {record['peak_gib']:.1f} GiB{batch}"


def report(args):
    runs = [json.load(open(path)) for path in args.report]
    env = runs[-1]["environment"]
    inference = [r for run_ in runs for r in run_["inference"]]
    training = [r for run_ in runs for r in run_["training"]]
    lines = [
        "# Benchmark results",
        "",
        f"GPU: {env['gpu']}; torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, triton "
        f"{env['triton']}, mamba-ssm {env['mamba_ssm']}, causal-conv1d {env['causal_conv1d']}, Python "
        f"{env['python']}; measured {env['date']} with `benchmarks/benchmark.py`.",
        "",
        "Inference, bf16, 224x224, random weights: videos/s and peak memory, batch 128 unless noted (bN).",
        "",
    ]
    for table, title, default_batch in (
        (inference, "Inference", 128), (training, "Training step (fwd + bwd, bf16 autocast), batch 32", 32)
    ):
        frames = sorted({r["frames"] for r in table})
        names = list(dict.fromkeys(r["name"] for r in table))
        lines += [f"## {title}", "", "| model | " + " | ".join(f"{f} frames" for f in frames) + " |",
                  "|---" * (len(frames) + 1) + "|"]
        for name in names:
            cells = []
            for f in frames:
                match = [r for r in table if r["name"] == name and r["frames"] == f]
                cells.append(fmt(match[-1], default_batch) if match else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines) + ("\n" + open(args.notes).read() if args.notes else "")
    with open(args.results_md, "w") as handle:
        handle.write(text)
    plot(inference, args.plot)
    print(text)


def plot(inference, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_speed, ax_memory) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in dict.fromkeys(r["name"] for r in inference):
        points = [r for r in inference if r["name"] == name and "error" not in r and r["batch"] == 128]
        if not points or not name.split()[0].endswith("-T"):
            continue
        frames = [r["frames"] for r in points]
        ax_speed.plot(frames, [r["videos_per_s"] for r in points], marker="o", label=name)
        ax_memory.plot(frames, [r["peak_gib"] for r in points], marker="o", label=name)
    for ax, label in ((ax_speed, "videos / s (batch 128)"), (ax_memory, "peak memory (GiB, batch 128)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("frames (224x224)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_speed.legend(fontsize=8)
    fig.suptitle("Tiny models (width 192), bf16 inference")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "middle"], choices=list(SIZES))
    parser.add_argument("--backends", nargs="+", default=["triton", "mamba_ssm", "torch"])
    parser.add_argument("--peers", nargs="*", default=["videomae", "timesformer"])
    parser.add_argument("--frames", nargs="+", type=int, default=[8, 16, 32, 64, 128])
    parser.add_argument("--train-frames", nargs="*", type=int, default=[16, 64])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--torch-batch", type=int, default=8, help="batch of the (slow) pure PyTorch backend")
    parser.add_argument("--torch-max-frames", type=int, default=16)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--time-per-case", type=float, default=6.0, help="seconds of timed iterations per case")
    parser.add_argument("--max-minutes", type=float, default=8.5)
    parser.add_argument("--out", default="benchmark_results.json")
    parser.add_argument("--report", nargs="*", help="JSON files to turn into RESULTS.md + plot")
    parser.add_argument("--results-md", default="benchmarks/RESULTS.md")
    parser.add_argument("--plot", default="benchmarks/speed_memory.png")
    parser.add_argument("--notes", help="markdown appended to RESULTS.md (analysis)")
    parser.add_argument("--triton-configs", help="JSON written by benchmarks/bench_scan.py: use the settings it picked")
    args = parser.parse_args()
    report(args) if args.report else run(args)


if __name__ == "__main__":
    main()
