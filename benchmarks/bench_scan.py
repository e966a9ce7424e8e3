"""Benchmark of the fused Triton bidirectional scan against the stock mamba-ssm composition (H100, bf16).

    python benchmarks/bench_scan.py [--out DIR] [--skip-model] [--skip-train] [--frames 16 64]

1. The VideoMamba-Ti mixer at batch 128, 16 frames (L = 3137): the Triton path's pieces (in_proj, conv + x_proj,
   scan, out_proj) and scan-kernel variants, against the floors (exp2 throughput, bytes).
2. The whole Ti model, batch 128, 224x224, inference: videos/s and peak memory per backend at 16 and 64 frames.
3. A training step (forward + backward) of the whole model at 16 frames per backend.
The PyTorch backend is timed at a small batch only (its float32 (B, L, D, N) intermediates do not fit at 128).
Prints a short table; writes the numbers as JSON to --out (default $OUT or .).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from videomamba import VideoMambaConfig, VideoMambaForVideoClassification  # noqa: E402
from videomamba.modeling_videomamba import VideoMambaMixer, is_mamba_ssm_available  # noqa: E402


def cuda_time(fn, warmup=2, reps=10):
    """Median milliseconds of fn() over reps, CUDA events, after warmup calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times), max(times)


def mixer_micro(results, batch=128, frames=16, variant_names=None):
    from videomamba import bimamba_triton as bt

    config = VideoMambaConfig.from_preset("tiny", scan_backend="triton")
    length = 1 + frames * 196
    mixer = VideoMambaMixer(config, layer_idx=0).cuda().to(torch.bfloat16).eval()
    x = torch.randn(batch, length, config.hidden_size, device="cuda", dtype=torch.bfloat16)
    tokens = batch * length
    rows = {}
    with torch.inference_mode():
        xz = mixer.in_proj(x)
        params = bt.stacked_mixer_parameters(mixer)
        tabs = bt._Tables(*params)
        xdbl = bt._xproj_forward(xz, tabs)
        out2 = bt._scan_forward(xz, xdbl, tabs)
        w2 = torch.cat([mixer.out_proj.weight, mixer.out_proj.weight], 1)
        rows["in_proj"] = cuda_time(lambda: mixer.in_proj(x))
        rows["conv+x_proj"] = cuda_time(lambda: bt._xproj_forward(xz, tabs))
        rows["scan"] = cuda_time(lambda: bt._scan_forward(xz, xdbl, tabs))
        rows["out_proj(2D)"] = cuda_time(lambda: torch.nn.functional.linear(out2.view(batch, length, -1), w2))
        rows["mixer triton"] = cuda_time(lambda: mixer.triton_forward(x))
        if is_mamba_ssm_available():
            rows["mixer mamba_ssm"] = cuda_time(lambda: mixer.mamba_ssm_forward(x), warmup=1, reps=5)

        # scan-kernel variants
        base = dict(bt.SCAN_FWD_CONFIG)
        plain = dict(PIPE=0, PREFETCH=False, UNROLL=1, maxnreg=None)
        variants = {
            "scan plain loop": plain,
            "scan plain maxnreg80": dict(plain, maxnreg=80),
            "scan plain unroll2": dict(plain, UNROLL=2),
            "scan plain BD64 w1": dict(plain, BD=64, num_warps=1),
            "scan pipe": dict(plain, PIPE=1),
            "scan pipe maxnreg128": dict(plain, PIPE=1, maxnreg=128),
            "scan pipe prefetch": dict(plain, PIPE=1, PREFETCH=True),
        }
        best = (rows["scan"][0], {})
        for name, change in variants.items():
            if variant_names is not None and name not in variant_names:
                continue
            bt.SCAN_FWD_CONFIG.update(change)
            try:
                ref = bt._scan_forward(xz, xdbl, tabs)
                ok = torch.equal(ref, out2) or (ref.float() - out2.float()).abs().max().item() < 1e-2
                timing = cuda_time(lambda: bt._scan_forward(xz, xdbl, tabs))
                rows[name + ("" if ok else " MISMATCH")] = timing
                if ok and timing[0] < best[0]:
                    best = (timing[0], change)
            except Exception as error:  # a variant that fails to compile is reported, not fatal
                rows[name + " FAILED"] = (float("nan"),) * 3
                print(name, "failed:", repr(error)[:300])
            finally:
                bt.SCAN_FWD_CONFIG.clear()
                bt.SCAN_FWD_CONFIG.update(base)
        # the model-level runs use the fastest correct variant
        bt.SCAN_FWD_CONFIG.update(best[1])
        results["scan_config_used"] = dict(bt.SCAN_FWD_CONFIG)
        print("scan config for the model runs:", bt.SCAN_FWD_CONFIG)
        rows["mixer triton (best scan)"] = cuda_time(lambda: mixer.triton_forward(x))

    # floors for the scan: 20 exp2-class ops per (token, channel, direction); bytes per token
    sm = torch.cuda.get_device_properties(0).multi_processor_count
    mufu_ms = tokens * config.intermediate_size * 2 * 20 / (16 * sm * 1.755e9) * 1e3
    scan_bytes = tokens * (2 * 768 * 2 + 2 * 48 * 4 + 2 * 768)
    results["mixer_micro"] = {k: v[0] for k, v in rows.items()}
    results["floors"] = {"scan_mufu_ms": mufu_ms, "scan_bytes_ms_at_3TBs": scan_bytes / 3.0e12 * 1e3}
    print(f"\nTi mixer, batch {batch}, {frames} frames (L={length}), bf16 -- median ms")
    for k, v in rows.items():
        print(f"  {k:28s} {v[0]:8.3f}  (min {v[1]:.3f}, max {v[2]:.3f})")
    print(f"  floor: scan exp2 throughput {mufu_ms:.3f} ms; scan bytes at 3.0 TB/s "
          f"{results['floors']['scan_bytes_ms_at_3TBs']:.3f} ms")


def make_model(frames, dtype=torch.bfloat16):
    config = VideoMambaConfig.from_preset("tiny", num_frames=frames, num_labels=400)
    torch.manual_seed(0)
    return VideoMambaForVideoClassification(config).cuda().to(dtype)


def model_inference(results, frames, batch, backends):
    model = make_model(frames).eval()
    video = torch.randn(batch, frames, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    input_bytes = video.numel() * video.element_size()
    out = {}
    for backend in backends:
        model.config.scan_backend = backend
        b = batch if backend != "torch" else 2
        v = video[:b]
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        try:
            with torch.inference_mode():
                reps = 2 if (backend != "triton" and frames >= 64) else 3
                med, lo, hi = cuda_time(lambda: model(v), warmup=1, reps=reps)
            peak = torch.cuda.max_memory_allocated() - base
            out[backend] = {"ms": med, "videos_per_s": b / med * 1e3, "batch": b,
                            "peak_gib": (peak + (input_bytes if b == batch else 0)) / 2**30}
        except torch.cuda.OutOfMemoryError:
            out[backend] = {"oom": True}
        torch.cuda.empty_cache()
    results[f"model_inference_{frames}f"] = out
    del model, video
    torch.cuda.empty_cache()
    return out


def model_training(results, frames, batch, backends):
    model = make_model(frames).train()
    video = torch.randn(batch, frames, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, 400, (batch,), device="cuda")
    out = {}
    for backend in backends:
        model.config.scan_backend = backend

        def step():
            loss = model(video, labels=labels).loss
            loss.backward()
            model.zero_grad(set_to_none=True)

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            med, lo, hi = cuda_time(step, warmup=1, reps=3)
            out[backend] = {"ms": med, "videos_per_s": batch / med * 1e3,
                            "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
        except torch.cuda.OutOfMemoryError:
            out[backend] = {"oom": True}
        torch.cuda.empty_cache()
    results[f"model_training_{frames}f_b{batch}"] = out
    del model, video
    torch.cuda.empty_cache()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--skip-micro", action="store_true")
    parser.add_argument("--variants", default=None, help="comma-separated scan variants to time (default: all)")
    # e.g. --variants "scan plain loop,scan pipe prefetch"
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    try:
        import triton

        results["triton"] = triton.__version__
    except ImportError:
        pass
    backends = ["triton"] + (["mamba_ssm"] if is_mamba_ssm_available() else [])
    t0 = time.time()
    if not args.skip_micro:
        mixer_micro(results, batch=args.batch,
                    variant_names=args.variants.split(",") if args.variants else None)
    table = []
    if not args.skip_model:
        for frames in args.frames:
            res = model_inference(results, frames, args.batch, backends)
            for backend, r in res.items():
                table.append((f"infer {frames}f b{r.get('batch', args.batch)}", backend, r))
    if not args.skip_train:
        res = model_training(results, 16, args.train_batch, backends)
        for backend, r in res.items():
            table.append((f"train 16f b{args.train_batch}", backend, r))
    print(f"\n{'VideoMamba-Ti, bf16':24s} {'backend':10s} {'ms':>9s} {'videos/s':>9s} {'peak GiB':>9s}")
    for what, backend, r in table:
        if r.get("oom"):
            print(f"{what:24s} {backend:10s} {'OOM':>9s}")
        else:
            print(f"{what:24s} {backend:10s} {r['ms']:9.1f} {r['videos_per_s']:9.1f} {r['peak_gib']:9.2f}")
    results["wall_s"] = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_scan.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"(bench wall {results['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
