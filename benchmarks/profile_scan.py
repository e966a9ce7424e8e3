#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Diagnostics of the fused Triton scan kernels on the GPU (VideoMamba-Ti mixer, bf16, 16 frames: L = 3137).

    python benchmarks/profile_scan.py --out DIR            # registers, spills, SASS, wave scaling
    ncu --set full -k regex:_scan_fwd_kernel ... python benchmarks/profile_scan.py --ncu   # one launch of each

Default mode writes to --out: `kernels.json` (registers, spills, shared memory per kernel), `<kernel>.sass`
(the disassembly, when cuobjdump is on the PATH) and prints the forward scan's time per sample at several batch
sizes (a program per 32 channels, direction and sample, one warp each: at 127 registers an H100 holds 16 such warps
per multiprocessor, so batch 88 is one full wave and batch 128 needs 1.45 waves).
`--ncu` runs each kernel (conv + x_proj, forward scan, backward scan) once, with no warm-up, for Nsight Compute.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from videomamba import VideoMambaConfig  # noqa: E402
from videomamba import bimamba_triton as bt  # noqa: E402
from videomamba.modeling_videomamba import VideoMambaMixer  # noqa: E402


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scan import cuda_time  # noqa: E402


def cuda_ms(fn, reps=10):
    """Median milliseconds of fn() (CUDA events; `bench_scan.cuda_time`)."""
    return cuda_time(fn, warmup=1, reps=reps)[0]


def setup(batch, frames=16):
    config = VideoMambaConfig.from_preset("tiny", scan_backend="triton")
    torch.manual_seed(0)
    mixer = VideoMambaMixer(config, layer_idx=0).cuda().to(torch.bfloat16).eval()
    length = 1 + frames * 196
    x = torch.randn(batch, length, config.hidden_size, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        xz = mixer.in_proj(x)
        tabs = bt._Tables(*bt.stacked_mixer_parameters(mixer))
        xdbl = bt._xproj_forward(xz, tabs)
    return config, mixer, xz, tabs, xdbl


def compiled_kernels():
    """(name, CompiledKernel) of every compiled variant of the module's kernels (Triton's per-function cache)."""
    found = []
    for name in dir(bt):
        fn = getattr(bt, name)
        cache = getattr(fn, "device_caches", None) or getattr(fn, "cache", None)
        if not isinstance(cache, dict):
            continue
        for per_device in cache.values():
            entries = per_device[0] if isinstance(per_device, tuple) else per_device
            if isinstance(entries, dict):
                for kernel in entries.values():
                    found.append((name, kernel))
    return found


def model_breakdown(out_dir, batch=128, frames=16, train=False, top=20):
    """GPU time per kernel of one VideoMamba-Ti forward (bf16, Triton backend; batch 128, 16 frames), or with
    `train` of one training step (forward + backward), from the PyTorch profiler; printed and returned as
    {kernel name: ms}."""
    from torch.profiler import ProfilerActivity, profile

    from videomamba import VideoMambaForVideoClassification

    config = VideoMambaConfig.from_preset("tiny", num_frames=frames, num_labels=400, scan_backend="triton")
    model = VideoMambaForVideoClassification(config).cuda().to(torch.bfloat16)
    model.train(train)
    video = torch.randn(batch, frames, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, 400, (batch,), device="cuda")

    def step():
        if train:
            model(video, labels=labels).loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(video)

    total = cuda_ms(step, reps=3)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    rows = {}
    for event in prof.key_averages():
        t = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if t:
            rows[event.key[:90]] = round(t / 1e3, 3)
    rows = dict(sorted(rows.items(), key=lambda kv: -kv[1])[:top])
    what = "training step" if train else "forward"
    print(f"Ti {what}, batch {batch}, {frames} frames: {total:.1f} ms ({batch / total * 1e3:.0f} videos/s); "
          "GPU time per kernel (ms, all 24 layers):")
    for name, ms in rows.items():
        print(f"  {ms:9.3f}  {name}")
    del model, video
    torch.cuda.empty_cache()
    return {"total_ms": round(total, 2), **rows}


def step_gaps(batch=32, frames=16, autocast=True, steps=3, top=15):
    """Where a training step's GPU sits idle (VideoMamba-Ti, Triton backend): the profiler's kernel intervals of
    `steps` steps, merged; the idle time between them split into the forward (up to the loss's first backward
    kernel) and the backward, and the largest gaps with the kernels on either side. `autocast`: a float32 model
    under bf16 autocast, as `benchmark.py` trains; else a bf16 model, as `model_breakdown`. Returns a dict."""
    from torch.profiler import ProfilerActivity, profile

    from videomamba import VideoMambaForVideoClassification

    config = VideoMambaConfig.from_preset("tiny", num_frames=frames, num_labels=400, scan_backend="triton")
    model = VideoMambaForVideoClassification(config).cuda()
    if not autocast:
        model = model.to(torch.bfloat16)
    model.train()
    video = torch.randn(batch, frames, 3, 224, 224, device="cuda",
                        dtype=torch.float32 if autocast else torch.bfloat16)
    labels = torch.randint(0, 400, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(video, labels=labels).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    total = cuda_ms(step, reps=3)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
            torch.cuda.synchronize()
    kernels = []
    for event in prof.events():
        device_type = str(getattr(event, "device_type", ""))
        if device_type.endswith("CUDA") and event.time_range.end > event.time_range.start:
            kernels.append((event.time_range.start, event.time_range.end, event.name))
    kernels.sort()
    # steps are separated by the host's synchronisation: gaps over 2 ms are between steps
    busy = idle_fwd = idle_bwd = 0.0
    gaps, launches, phase = [], 0, "forward"
    end_prev, name_prev = None, None
    for start, end, name in kernels:
        if end_prev is not None and start - end_prev > 2000:
            end_prev, phase = None, "forward"
        if end_prev is not None and start > end_prev:
            gap = start - end_prev
            if phase == "forward":
                idle_fwd += gap
            else:
                idle_bwd += gap
            gaps.append((gap, name_prev[:60], name[:60], phase))
        if "nll_loss" in name and "backward" in name:
            phase = "backward"
        launches += 1
        if end_prev is None or end > end_prev:  # overlapping kernels (other streams) count once
            busy += end - (start if end_prev is None else max(start, end_prev))
            end_prev, name_prev = end, name
    gaps.sort(reverse=True)
    found = {
        "step_ms": round(total, 2), "autocast": autocast, "kernels_per_step": launches // steps,
        "busy_ms_per_step": round(busy / steps / 1e3, 2),
        "idle_forward_ms_per_step": round(idle_fwd / steps / 1e3, 2),
        "idle_backward_ms_per_step": round(idle_bwd / steps / 1e3, 2),
        "gaps_over_20us_per_step": round(sum(g[0] for g in gaps if g[0] > 20) / steps / 1e3, 2),
        "largest_gaps_us": [[round(g[0], 1), g[1], g[2], g[3]] for g in gaps[:top]],
    }
    print(f"Ti training step, batch {batch}, {frames} frames, {'autocast' if autocast else 'bf16'}: {total:.1f} ms; "
          f"{found['kernels_per_step']} kernels per step, busy {found['busy_ms_per_step']} ms, idle "
          f"{found['idle_forward_ms_per_step']} (forward) + {found['idle_backward_ms_per_step']} (backward) ms")
    for g in found["largest_gaps_us"]:
        print(f"  {g[0]:9.1f} us  {g[3]:8s}  after {g[1]}  before {g[2]}")
    del model, video
    torch.cuda.empty_cache()
    return found


def run_backward_once(batch):
    """One backward of the scan at `batch` (compiles its kernels; under ncu, profiles them)."""
    config, mixer, xz, tabs, xdbl = setup(batch)
    dy = torch.randn(batch, xz.shape[1], config.intermediate_size, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True)
    torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--ncu", action="store_true", help="one launch of each kernel, no warm-up (for ncu)")
    parser.add_argument("--breakdown", action="store_true",
                        help="only the per-kernel GPU time of a forward (batch 128) and a training step (batch 32)")
    parser.add_argument("--gaps", action="store_true",
                        help="only the idle time between kernels of a training step (batch 32), with and without "
                             "autocast")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 88, 128, 176])
    args = parser.parse_args()

    if args.ncu:
        config, mixer, xz, tabs, xdbl = setup(128)
        with torch.inference_mode():
            bt._xproj_forward(xz, tabs)
            # as the model runs it at this batch: the directions summed (two launches) or per direction
            bt._scan_forward(xz, xdbl, tabs, summed=bt._sum_directions(128, tabs.d_inner, xz.device))
        del xz, xdbl
        torch.cuda.empty_cache()
        run_backward_once(32)
        return

    os.makedirs(args.out, exist_ok=True)
    if args.gaps:
        found = {"autocast": step_gaps(), "bf16": step_gaps(autocast=False)}
        with open(os.path.join(args.out, "gaps.json"), "w") as f:
            json.dump(found, f, indent=1)
        return
    if args.breakdown:
        found = {"forward_b128_16f": model_breakdown(args.out, top=25),
                 "train_b32_16f": model_breakdown(args.out, batch=32, train=True, top=30)}
        with open(os.path.join(args.out, "breakdown.json"), "w") as f:
            json.dump(found, f, indent=1)
        return
    scaling = {}
    for batch in args.batches:
        config, mixer, xz, tabs, xdbl = setup(batch)
        with torch.inference_mode():
            ms = cuda_ms(lambda: bt._scan_forward(xz, xdbl, tabs))
        programs = (config.intermediate_size // bt.SCAN_FWD_CONFIG["BD"]) * 2 * batch
        scaling[batch] = {"ms": round(ms, 3), "ms_per_sample": round(ms / batch, 4), "programs": programs}
        print(f"forward scan batch {batch:4d}: {ms:7.3f} ms, {ms / batch * 1e3:7.2f} us/sample, {programs} programs",
              flush=True)
        del xz, xdbl
        torch.cuda.empty_cache()
    # one backward so that its kernels are compiled and listed
    run_backward_once(4)

    breakdown = model_breakdown(args.out)

    kernels = {}
    cuobjdump = shutil.which("cuobjdump")
    for name, kernel in compiled_kernels():
        info = {k: getattr(kernel, k, None) for k in ("n_regs", "n_spills", "shared")}
        meta = getattr(kernel, "metadata", None)
        if meta is not None:
            info["num_warps"] = getattr(meta, "num_warps", None)
        key = name if name not in kernels else f"{name}_{len([k for k in kernels if k.startswith(name)])}"
        kernels[key] = info
        cubin = getattr(kernel, "asm", {}).get("cubin")
        if cubin and cuobjdump:
            path = os.path.join(args.out, f"{key}.cubin")
            with open(path, "wb") as f:
                f.write(cubin)
            sass = subprocess.run([cuobjdump, "--dump-sass", path], capture_output=True, text=True).stdout
            with open(os.path.join(args.out, f"{key}.sass"), "w") as f:
                f.write(sass)
            os.remove(path)
        print(f"{key}: {info}", flush=True)
    with open(os.path.join(args.out, "kernels.json"), "w") as f:
        json.dump({"kernels": kernels, "forward_scan_scaling": scaling, "model_breakdown_ms": breakdown}, f, indent=1)


if __name__ == "__main__":
    main()
