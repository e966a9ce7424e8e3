"""Variants of the fused scan's backward (split sweeps, then the chunks in parallel over groups: group kernel 5 / 6,
register caps, L1 prefetches) against a reference variant (REFERENCE: the session-4 backward), on one GPU, bf16,
VideoMamba-Ti mixer sizes. (The single-kernel v4 backward and the sequential sweeps that earlier sessions compared
against were removed in sessions 4 and 5; their timings are in NOTES_triton.md.)

    python benchmarks/bench_scan_bwd.py [--out DIR] [--skip-train] [--variants "pf,pf spf4"] [--aux]
        [--reference "s6 default"] [--rounds 3] [--xdbl-ab]

1. The scan kernels of the backward alone (`bimamba_triton._scan_bwd_scan`) and the whole `_scan_backward` of one
   layer, at batch 32 x 16 frames (L = 3137) and batch 8 x 64 frames (L = 12545), per variant (CUDA events,
   medians); each variant's outputs and gradients against the reference's (largest relative difference over the
   tensors, norm-wise and element-wise).
   With --aux, first the x_proj / SiLU and conv backward kernels' launch settings (`AUX_VARIANTS`), timed as the
   whole layer backward; the fastest is kept for the rest of the run.
2. A training step of the whole Ti model (16 frames, batch 32, bf16) with the reference and the fastest variant.
With --xdbl-ab, instead: only the training step (16 frames batch 32, 64 frames batch 8) with `bimamba_triton.SAVE_XDBL`
off (x_dbl recomputed in the backward) and on (the forward's kept), --rounds alternating rounds.
Prints a table; writes bench_scan_bwd.json to --out (default $OUT or .).
"""

import argparse
import json
import os
import sys
import time

import torch


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from videomamba import VideoMambaConfig, VideoMambaForVideoClassification  # noqa: E402
from videomamba import bimamba_triton as bt  # noqa: E402
from videomamba.modeling_videomamba import VideoMambaMixer  # noqa: E402

from bench_scan import cuda_time, time_training_step  # noqa: E402  (same folder)


_S4 = {"VERSION": 5, "GROUP": 6, "BD": 32, "num_warps": 1, "T": 8, "maxnreg": 128, "SWEEP_UNROLL": 2,
       "SWEEP_MAXNREG": 168}  # the session-4 default: no L1 prefetches
_S6 = {**_S4, "PF": True, "SWEEP_PF1": 4, "RS_SMEM": True}  # the session-6 default
VARIANTS = {  # SCAN_BWD_CONFIG for each variant (the session-3/4 variants with sequential sweeps are in NOTES_triton.md)
    "s4 split sweeps": _S4,
    "s4 r168": {**_S4, "maxnreg": 168},
    "s4 sweeps r128": {**_S4, "SWEEP_MAXNREG": 128},
    "s4 sweeps unroll1": {**_S4, "SWEEP_UNROLL": 1, "SWEEP_MAXNREG": None},
    "group5": {**_S4, "GROUP": 5},
    "T4": {**_S4, "T": 4},
    "nv2": {**_S4, "NV": 2},
    # session 5: L1 prefetches (Nsight Compute on the session-4 default: 25% of the group kernel's stall samples on
    # the first FMA after its checkpoint loads, 10% on the dA row's add; offline SASS: group loop 315 -> 333
    # instructions, no new spills; local kernel loops 367 / 288 -> 390 / 302, 168 registers, no spills)
    "pf": {**_S4, "PF": True},
    "spf2": {**_S4, "SWEEP_PF1": 2},
    "spf4": {**_S4, "SWEEP_PF1": 4},
    "pf spf2": {**_S4, "PF": True, "SWEEP_PF1": 2},
    "pf spf4": {**_S4, "PF": True, "SWEEP_PF1": 4},
    "pf spf4 r168": {**_S4, "PF": True, "SWEEP_PF1": 4, "maxnreg": 168},
    "pf spf4 nv2": {**_S4, "PF": True, "SWEEP_PF1": 4, "NV": 2},
    "pf spf8": {**_S4, "PF": True, "SWEEP_PF1": 8},
    "pf spf4 T4": {**_S4, "PF": True, "SWEEP_PF1": 4, "T": 4},
    "pf spf4 g8": {**_S4, "PF": True, "SWEEP_PF1": 4, "DA_BLOCK": 8},
    "pf spf4 g32": {**_S4, "PF": True, "SWEEP_PF1": 4, "DA_BLOCK": 32},
    # session 12 (Nsight Compute on the session-6 default: 33% of the group kernel's stall samples in its chunk
    # prologue, 21% long scoreboard: the 8 tokens' dt rows loaded and used one token at a time under the register cap,
    # each an L2 round trip): the dt entries as 16-byte loads (DT_VEC), and the conv's taps from the chunk's own x
    # columns plus three loads before it (X_COLS: 11 loads, not 32). (An L1 prefetch of the next chunk's rows at the
    # top of each chunk was slower on top of these, 4.55 -> 4.64-4.73 ms, and was removed; NOTES_triton.md.)
    "s6 default": _S6,
    "s6 dtvec": {**_S6, "DT_VEC": True},
    "s6 dtvec xcols": {**_S6, "DT_VEC": True, "X_COLS": True},
    # session 14: the group kernel v8 (Gluon): the chunk's inputs, checkpoints and the per-state carries in shared
    # memory (offline SASS: state loop 319 -> 239 instructions per state and chunk)
    "v8": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": 128},
    "v8 r168": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": 168},
    "v8 nocap": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": None},
    "v8 r144": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": 144},
    # then the sweeps with each chunk's inputs staged in shared memory (Gluon, one launch per mode)
    "v8 sw": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": 168, "SWEEP_SMEM": True,
              "SWEEP_SMEM_MAXNREG": 128},
    "v8 sw r168": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": 168, "SWEEP_SMEM": True,
                   "SWEEP_SMEM_MAXNREG": 168},
    "v8 sw nocap": {**_S6, "DT_VEC": True, "X_COLS": True, "SMEM": True, "SMEM_MAXNREG": 168, "SWEEP_SMEM": True,
                    "SWEEP_SMEM_MAXNREG": None},
}


_LANE = {"LANE": True, "LANE_MAXNREG": 168, "LANE_WIDE_MAXNREG": None}
AUX_VARIANTS = {  # changes to (XPROJ_BWD_CONFIG, CONV_BWD_CONFIG): the x_proj / SiLU and conv backward kernels
    # session 15: the lane-per-channel x_proj backward (Gluon) against the tf32-tile kernel; the tile kernel's own
    # settings (BT, BC, warps, PROGRAMS, register caps) were compared in sessions 4 and 12 (NOTES_triton.md)
    "aux tiles": ({"LANE": False}, {}),
    "aux lane p2112": ({**_LANE, "LANE_PROGRAMS": 16 * 132}, {}),
    "aux lane p1056": ({**_LANE, "LANE_PROGRAMS": 8 * 132}, {}),
    "aux lane p528": ({**_LANE, "LANE_PROGRAMS": 4 * 132}, {}),
    "aux lane nocap p2112": ({**_LANE, "LANE_MAXNREG": None, "LANE_PROGRAMS": 16 * 132}, {}),
    "aux lane nocap p1056": ({**_LANE, "LANE_MAXNREG": None, "LANE_PROGRAMS": 8 * 132}, {}),
    "aux lane nocap p528": ({**_LANE, "LANE_MAXNREG": None, "LANE_PROGRAMS": 4 * 132}, {}),
    "aux lane T16 p1056": ({**_LANE, "LANE_T": 16, "LANE_PROGRAMS": 8 * 132}, {}),
    "aux lane bd64 p1056": ({**_LANE, "LANE_BD": 64, "LANE_PROGRAMS": 8 * 132}, {}),
    "aux lane wide r168 p1056": ({**_LANE, "LANE_WIDE_MAXNREG": 168, "LANE_PROGRAMS": 8 * 132}, {}),
}


def aux_kernels(results, batch=32, frames=16, preset="tiny", keep=True, reps=20):
    """The whole `_scan_backward` of one layer and the x_proj backward alone (`_xproj_backward`, random inputs)
    under each AUX_VARIANTS entry (scan kernels at their defaults), `reps` timed calls each; with `keep`, keeps the
    fastest (whole layer) whose gradients match the first's (norm-wise within 2e-3: tf32 tiles against float32
    FMAs) in bt.XPROJ_BWD_CONFIG / CONV_BWD_CONFIG."""
    config = VideoMambaConfig.from_preset(preset, scan_backend="triton")
    length = 1 + frames * 196
    torch.manual_seed(0)
    mixer = VideoMambaMixer(config, layer_idx=0).cuda().to(torch.bfloat16)
    x = torch.randn(batch, length, config.hidden_size, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(batch, length, config.intermediate_size, device="cuda", dtype=torch.bfloat16)
    params = bt.stacked_mixer_parameters(mixer)
    base = (dict(bt.XPROJ_BWD_CONFIG), dict(bt.CONV_BWD_CONFIG))
    with torch.no_grad():
        xz = mixer.in_proj(x)
        tabs = bt._Tables(*params)
        recompute_ms = cuda_time(lambda: bt._xproj_recompute(xz, tabs), warmup=1, reps=5)[0]
        xdbl = bt._xproj_recompute(xz, tabs)
        dxd = torch.randn(batch, length, 2, tabs.ps, device="cuda")  # inputs of the x_proj backward alone
        dxc = torch.randn(batch, length, 2, tabs.d_inner, device="cuda")
        clone_ms = cuda_time(lambda: dxc.clone(), warmup=1, reps=reps)[0]
    out, ref, best = {"x_dbl recompute ms": recompute_ms}, None, None
    print(f"x_dbl recompute (precision {bt.XPROJ_RECOMPUTE_PRECISION}): {recompute_ms:.3f} ms", flush=True)
    for name, (xchange, cchange) in AUX_VARIANTS.items():
        bt.XPROJ_BWD_CONFIG.clear(); bt.XPROJ_BWD_CONFIG.update({**base[0], **xchange})
        bt.CONV_BWD_CONFIG.clear(); bt.CONV_BWD_CONFIG.update({**base[1], **cchange})
        with torch.no_grad():
            ms = cuda_time(lambda: bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True, A_log=params[5]),
                           warmup=1, reps=reps)[0]
            xproj_ms = cuda_time(lambda: bt._xproj_backward(xz, dxd, dxc.clone(), tabs), warmup=1,
                                 reps=reps)[0] - clone_ms
            dxz, osum, g = bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True, A_log=params[5])
        tensors = {"dxz": dxz.float(), "out_sum": osum.float(), **g}
        if ref is None:
            ref, worst = tensors, 0.0
        else:
            worst = max(((v.double() - ref[k].double()).norm() / ref[k].double().norm().clamp_min(1e-300)).item()
                        for k, v in tensors.items())
        out[name] = {"scan_backward_ms": ms, "xproj_backward_ms": xproj_ms, "worst_rel_vs_first": worst}
        print(f"{preset} b{batch} {frames}f {name:22s} whole layer backward {ms:7.2f} ms  x_proj backward {xproj_ms:6.3f} ms  "
              f"worst rel diff {worst:.1e}", flush=True)
        if worst < 2e-3 and (best is None or ms < out[best]["scan_backward_ms"]):  # tf32 tiles vs float32 FMAs
            best = name
    out["picked"] = best
    keep_change = AUX_VARIANTS[best] if keep else ({}, {})
    bt.XPROJ_BWD_CONFIG.clear(); bt.XPROJ_BWD_CONFIG.update({**base[0], **keep_change[0]})
    bt.CONV_BWD_CONFIG.clear(); bt.CONV_BWD_CONFIG.update({**base[1], **keep_change[1]})
    results[f"aux_kernels_{preset}_b{batch}_{frames}f"] = out
    print(f"{preset}: fastest {best}; XPROJ_BWD_CONFIG {bt.XPROJ_BWD_CONFIG} CONV_BWD_CONFIG {bt.CONV_BWD_CONFIG}",
          flush=True)
    del x, dy, xz, xdbl, mixer
    torch.cuda.empty_cache()
    return out


def training_inputs(frames, batch):
    """The Ti classifier (bf16, training mode, seed 0), a random bf16 video batch and labels, on the GPU."""
    config = VideoMambaConfig.from_preset("tiny", num_frames=frames, num_labels=400, scan_backend="triton")
    torch.manual_seed(0)
    model = VideoMambaForVideoClassification(config).cuda().to(torch.bfloat16).train()
    video = torch.randn(batch, frames, 3, 224, 224, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, 400, (batch,), device="cuda")
    return model, video, labels


def aux_training(results, names, rounds, frames=16, batch=32):
    """A training step of the whole Ti model (bf16) under the AUX_VARIANTS entries `names`, `rounds` alternating
    rounds (scan kernels at their defaults); the configs restored after."""
    base = (dict(bt.XPROJ_BWD_CONFIG), dict(bt.CONV_BWD_CONFIG))
    model, video, labels = training_inputs(frames, batch)
    out = {}
    for rnd in range(rounds):
        for name in names:
            bt.XPROJ_BWD_CONFIG.clear(); bt.XPROJ_BWD_CONFIG.update({**base[0], **AUX_VARIANTS[name][0]})
            bt.CONV_BWD_CONFIG.clear(); bt.CONV_BWD_CONFIG.update({**base[1], **AUX_VARIANTS[name][1]})
            res = time_training_step(model, video, labels)
            out.setdefault(name, []).append(res)
            if "oom" not in res:
                print(f"train Ti {frames}f b{batch} {name:20s} round {rnd} {res['ms']:8.1f} ms  "
                      f"{res['videos_per_s']:6.1f} videos/s  peak {res['peak_gib']:.2f} GiB", flush=True)
    bt.XPROJ_BWD_CONFIG.clear(); bt.XPROJ_BWD_CONFIG.update(base[0])
    bt.CONV_BWD_CONFIG.clear(); bt.CONV_BWD_CONFIG.update(base[1])
    results[f"aux_training_{frames}f_b{batch}"] = out
    del model, video
    torch.cuda.empty_cache()
    return out


REFERENCE = "s4 split sweeps"  # the session-4 default; always timed first
ROUNDS = 1  # --rounds: the variants timed again in order, alternating (their later timings appended)


_DA_BLOCK = bt.DA_BLOCK


def set_variant(name):
    """SCAN_BWD_CONFIG of the variant; its "DA_BLOCK" (chunks per group) sets the module's DA_BLOCK."""
    change = dict(VARIANTS[name])
    bt.DA_BLOCK = change.pop("DA_BLOCK", _DA_BLOCK)
    bt.SCAN_BWD_CONFIG.clear()
    bt.SCAN_BWD_CONFIG.update(change)


def layer_backward(results, batch, frames, names):
    config = VideoMambaConfig.from_preset("tiny", scan_backend="triton")
    length = 1 + frames * 196
    torch.manual_seed(0)
    mixer = VideoMambaMixer(config, layer_idx=0).cuda().to(torch.bfloat16)
    with torch.no_grad():  # parameters away from their symmetric init, step sizes ~1e-3..0.3
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for dt_proj in (mixer.dt_proj, mixer.dt_proj_b):
            delta = torch.exp(torch.empty(dt_proj.bias.shape, device="cuda").uniform_(-7, -1.2))
            dt_proj.bias.copy_(delta + torch.log(-torch.expm1(-delta)))
    x = torch.randn(batch, length, config.hidden_size, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(batch, length, config.intermediate_size, device="cuda", dtype=torch.bfloat16)
    params = bt.stacked_mixer_parameters(mixer)
    with torch.no_grad():
        xz = mixer.in_proj(x)
        tabs = bt._Tables(*params)
        xdbl = bt._xproj_recompute(xz, tabs)
        a_log = params[5]
        _, aneg, a2 = bt._backward_a_tables(tabs, a_log)
    key = f"b{batch}_{frames}f_L{length}"
    out, ref = {}, None
    for name in names * ROUNDS:
        if name in out and ROUNDS > 1:  # a later round: the timings only, appended
            set_variant(name)
            with torch.no_grad():
                scan = cuda_time(lambda: bt._scan_bwd_scan(xz, xdbl, dy, 0, tabs, a2, aneg), warmup=1, reps=5)
                whole = cuda_time(lambda: bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True, A_log=a_log),
                                  warmup=1, reps=5)
            out[name].setdefault("later_rounds_scan_whole_ms", []).append([scan[0], whole[0]])
            print(f"{key:22s} {name:18s} scan kernels {scan[0]:8.2f} ms  whole backward {whole[0]:8.2f} ms "
                  "(later round)", flush=True)
            continue
        set_variant(name)
        with torch.no_grad():
            scan = cuda_time(lambda: bt._scan_bwd_scan(xz, xdbl, dy, 0, tabs, a2, aneg), warmup=1, reps=5)
            whole = cuda_time(lambda: bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True, A_log=a_log), warmup=1, reps=5)
            dxz, osum, g = bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True, A_log=a_log)
        tensors = {"dxz": dxz.float(), "out_sum": osum.float(), **g}
        row = {"scan_kernels_ms": scan[0], "scan_kernels_min_max": scan[1:], "scan_backward_ms": whole[0]}
        with torch.no_grad():
            row["sweeps_ms"] = cuda_time(lambda: bt._scan_bwd_scan(xz, xdbl, dy, 0, tabs, a2, aneg, True), warmup=1,
                                         reps=5)[0]
        if ref is None:
            ref = tensors
        else:
            norm_rel, max_rel = {}, {}
            for k, v in tensors.items():
                r = ref[k].double()
                d = (v.double() - r)
                norm_rel[k] = (d.norm() / r.norm().clamp_min(1e-300)).item()
                max_rel[k] = (d.abs().max() / r.abs().max().clamp_min(1e-300)).item()
            row["vs_first_norm_rel"] = norm_rel
            row["vs_first_max_rel"] = max_rel
            row["vs_first_worst"] = max(max(norm_rel.values()), max(max_rel.values()))
            row["finite"] = all(bool(torch.isfinite(v).all()) for v in tensors.values())
        out[name] = row
        print(f"{key:22s} {name:18s} scan kernels {scan[0]:8.2f} ms (sweeps {row.get('sweeps_ms', float('nan')):6.2f})"
              f"  whole backward {whole[0]:8.2f} ms"
              + (f"  worst rel diff vs {names[0]} {row['vs_first_worst']:.2e}" if "vs_first_worst" in row else ""),
              flush=True)
        del dxz, osum, g, tensors
        torch.cuda.empty_cache()
    results[f"layer_backward_{key}"] = out
    del x, dy, xz, xdbl, mixer
    torch.cuda.empty_cache()
    return out


def model_training(results, names, frames=16, batch=32):
    model, video, labels = training_inputs(frames, batch)
    out = {}
    for name in names:
        set_variant(name)
        out[name] = time_training_step(model, video, labels)
        if "oom" not in out[name]:
            print(f"train Ti {frames}f b{batch} {name:12s} {out[name]['ms']:8.1f} ms  "
                  f"{out[name]['videos_per_s']:6.1f} videos/s  peak {out[name]['peak_gib']:.2f} GiB", flush=True)
    results[f"model_training_{frames}f_b{batch}"] = out
    del model, video
    torch.cuda.empty_cache()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--variants", default=None, help="comma-separated names from VARIANTS (REFERENCE always first)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--aux", action="store_true", help="first tune the x_proj / conv backward kernels (AUX_VARIANTS)")
    parser.add_argument("--aux-train", action="store_true",
                        help="with --aux: then only the training step under the first AUX_VARIANTS entry and the "
                             "picked one, --rounds alternating rounds (no scan variants)")
    parser.add_argument("--aux-wide", action="store_true",
                        help="with --aux: the same variants at VideoMamba-S and -M widths (batch 8), kept settings unchanged")
    parser.add_argument("--skip-64f", action="store_true")
    parser.add_argument("--reference", default=REFERENCE,
                        help="the variant timed first, which the others are compared to")
    parser.add_argument("--rounds", type=int, default=1, help="time the variants this many times, alternating")
    parser.add_argument("--xdbl-ab", action="store_true",
                        help="only the training step with bt.SAVE_XDBL off and on (x_dbl recomputed / saved), "
                             "--rounds alternating rounds at 16 and 64 frames")
    args = parser.parse_args()
    global ROUNDS
    ROUNDS = args.rounds
    torch.backends.cuda.matmul.allow_tf32 = False
    others = list(VARIANTS) if not args.variants else args.variants.split(",")
    names = [args.reference] + [n for n in others if n != args.reference]
    default = dict(bt.SCAN_BWD_CONFIG)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "default_config": default}
    try:
        import triton

        results["triton"] = triton.__version__
    except ImportError:
        pass
    t0 = time.time()
    if args.xdbl_ab:
        save0 = bt.SAVE_XDBL
        set_variant(args.reference)
        for frames, batch in ((16, 32), (64, 8)):
            for rnd in range(args.rounds):
                for save in (False, True):
                    bt.SAVE_XDBL = save
                    print(f"SAVE_XDBL {save}, round {rnd}", flush=True)
                    model_training(results, [args.reference], frames=frames, batch=batch)
                    results[f"xdbl_ab_{frames}f_b{batch}_save{int(save)}_round{rnd}"] = results.pop(
                        f"model_training_{frames}f_b{batch}")
        bt.SAVE_XDBL = save0
        names = []
    if args.aux:
        picked = aux_kernels(results)["picked"]
        if args.aux_wide:
            for preset in ("small", "middle"):
                aux_kernels(results, batch=8, preset=preset, keep=False)
        if args.aux_train:
            first = next(iter(AUX_VARIANTS))
            aux_training(results, [first] + ([picked] if picked != first else []), args.rounds)
            names = []
    res16 = layer_backward(results, 32, 16, names) if names else {}
    if names and not args.skip_64f:
        layer_backward(results, 8, 64, names)
    ok = [n for n in names[1:] if res16[n].get("finite") and res16[n]["vs_first_worst"] < 2e-2]
    best = min(ok, key=lambda n: res16[n]["scan_kernels_ms"]) if ok else None
    results["fastest_at_b32_16f"] = best
    if names:
        print(f"fastest variant (batch 32, 16 frames, gradients within 2e-2 of {names[0]}): {best}")
    if names and not args.skip_train:
        model_training(results, [names[0]] + ([best] if best else []))
    bt.SCAN_BWD_CONFIG.clear()
    bt.SCAN_BWD_CONFIG.update(default)
    bt.DA_BLOCK = _DA_BLOCK
    results["wall_s"] = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_scan_bwd.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"(bench wall {results['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
