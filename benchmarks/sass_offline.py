#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Compile the fused scan's Triton kernels for sm_90 on a machine without a GPU and report registers, stack (spills)
and the instruction mix of each loop, from the SASS (`cuobjdump` ships in the Triton wheel).

    pip download triton==3.6.0 --no-deps -d /tmp/tr && pip install --no-deps --target /tmp/t36 /tmp/tr/triton-*.whl
    PYTHONPATH=/tmp/t36:. python benchmarks/sass_offline.py fwd [KEY=JSON ...]      # fwd | xproj | recompute | bwd

SMEM=1 compiles the forward v7 kernel (Gluon; `S_`-prefixed keys change SCAN_FWD_SMEM_CONFIG). KEY=JSON changes
SCAN_FWD_CONFIG (e.g. `UNROLL=2 maxnreg=168`; the chunked v6 kernel: `VERSION=6 T=4 VEC=true
XREG=true maxnreg=null`), XPROJ_CONFIG with an `X_` prefix (`X_SPLIT=true`), SCAN_BWD_CONFIG with a `B_` prefix
(`B_GROUP=5 B_T=4`), XPROJ_BWD_CONFIG with `XB_`, CONV_BWD_CONFIG with `CB_`. The SASS goes to
$SASS_OUT/<kernel>.sass (default /tmp), the PTX and TTGIR of the forward scan beside it. Use the
Triton version of the GPU machine: the layouts, and so the instruction counts, differ between versions.
$SASS_OUT/<kernel>.ctrl has each instruction's scheduling controls (`control_bits`): which scoreboards a stalled
instruction waits on, and so which loads (Nsight Compute's per-instruction stall samples name the instruction).
"""
import collections, os, re, subprocess, sys, tempfile
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver


class FakeDriver:
    def __init__(self):
        from triton.backends.nvidia.driver import CudaDriver  # noqa
        self.target = GPUTarget("cuda", 90, 32)
    def get_current_target(self): return self.target
    def get_current_device(self): return 0
    def get_current_stream(self, device=None): return 0
    def get_active_torch_device(self): return torch.device("cpu")
    def get_device_interface(self): return torch.cuda


driver.set_active(FakeDriver())
OUTDIR = os.environ.get("SASS_OUT", "/tmp")  # helpers running side by side: one folder each
os.makedirs(OUTDIR, exist_ok=True)

sys.path.insert(0, os.getcwd())
from videomamba import bimamba_triton as bt  # noqa
from videomamba import VideoMambaConfig  # noqa
from videomamba.modeling_videomamba import VideoMambaMixer  # noqa

captured = {}
orig_run = triton.runtime.jit.JITFunction.run


def run(self, *args, grid, warmup, **kwargs):
    kernel = orig_run(self, *args, grid=grid, warmup=True, **kwargs)
    captured[self.__name__] = kernel
    return kernel


triton.runtime.jit.JITFunction.run = run


def control_bits(sass):
    """One line per instruction with its scheduling controls, decoded from bits 41-61 of the high 64-bit word of
    each sm_90 instruction: stall cycles, yield, the scoreboard a variable-latency instruction sets on write (wr)
    and on reading its operands (rd), and the scoreboards it waits on (wait). An instruction that stalls on a long
    scoreboard waits for every load issued before it on the scoreboards in its mask."""
    lines = sass.splitlines()
    out = []
    for i, line in enumerate(lines[:-1]):
        m = re.search(r"/\*([0-9a-f]{4,})\*/\s+(.*?);\s*/\* 0x([0-9a-f]{16}) \*/", line)
        hi = re.match(r"\s*/\* 0x([0-9a-f]{16}) \*/", lines[i + 1])
        if not (m and hi):
            continue
        ctrl = (int(hi.group(1), 16) >> 41) & 0x1FFFFF
        wr, rd, wait = (ctrl >> 5) & 7, (ctrl >> 8) & 7, (ctrl >> 11) & 0x3F
        out.append(f"{m.group(1)} {m.group(2)[:60]:60s} stall={ctrl & 15:2d}{' yield' if ctrl >> 4 & 1 else '      '} "
                   f"wr={'-' if wr == 7 else wr} rd={'-' if rd == 7 else rd} "
                   f"wait=[{','.join(str(b) for b in range(6) if wait >> b & 1)}]")
    return "\n".join(out) + "\n"


def report(name, kernel):
    cubin = kernel.asm["cubin"]
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    sass = subprocess.run([tool, "--dump-sass", f.name], capture_output=True, text=True).stdout
    res = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    regs = re.search(r"REG:(\d+)", res); stack = re.search(r"STACK:(\d+)", res)
    os.unlink(f.name)
    lines = [l for l in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4}\*/", l)]
    instrs = []
    for l in lines:
        m = re.match(r"\s+/\*([0-9a-f]{4})\*/\s+(.*?);", l)
        if m:
            instrs.append((int(m.group(1), 16), m.group(2).strip()))
    # loops: backward branches
    loops = []
    for addr, text in instrs:
        m = re.search(r"BRA\s+(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))", text)
        tgt = re.search(r"0x([0-9a-f]+)", text.split("BRA")[-1]) if "BRA" in text else None
        if tgt and int(tgt.group(1), 16) < addr:
            loops.append((int(tgt.group(1), 16), addr))
    open(f"{OUTDIR}/{name}.sass", "w").write(sass)
    open(f"{OUTDIR}/{name}.ctrl", "w").write(control_bits(sass))
    open(f"{OUTDIR}/{name}.ttgir", "w").write(kernel.asm["ttgir"])
    shared = re.search(r"SHARED:(\d+)", res)
    print(f"{name}: regs {regs and regs.group(1)} stack {stack and stack.group(1)} shared "
          f"{getattr(kernel.metadata, 'shared', 0) or 0} + static {shared.group(1) if shared else 0} bytes "
          f"total instrs {len(instrs)}")
    inner = None
    for start, end in loops:
        body = [t for a, t in instrs if start <= a <= end]
        ops = collections.Counter(t.split()[1] if t.startswith("@") else t.split()[0] for t in body)
        print(f"  loop {start:#x}-{end:#x}: {len(body)} instrs", dict(ops.most_common(25)))
        if inner is None or len(body) < inner[0]:
            inner = (len(body), ops)
    if name in ("_scan_bwd_group_kernel", "_scan_bwd_group_smem_kernel") and inner is not None:
        # the innermost loop is the state loop: instructions per state and chunk (per group of states with NV > 1)
        n, ops = inner
        def count(prefix):
            return sum(v for k, v in ops.items() if k.startswith(prefix))
        print(f"  SUMMARY group kernel: regs {regs and regs.group(1)} stack {stack and stack.group(1)} | state loop "
              f"{n} instrs: SHFL {count('SHFL')} MUFU {count('MUFU')} LDG {count('LDG')} STG {count('STG')} "
              f"SEL {count('SEL') + count('FSEL')} BAR {count('BAR')} STS/LDS {count('STS') + count('LDS')} "
              f"spill LDL/STL {count('LDL')}/{count('STL')}")


which = sys.argv[1] if len(sys.argv) > 1 else "fwd"
import json as _json
for kv in sys.argv[2:]:
    k, v = kv.split("=")
    if k.startswith("B_"):
        bt.SCAN_BWD_CONFIG[k.removeprefix("B_")] = _json.loads(v)
    elif k.startswith("XB_"):
        bt.XPROJ_BWD_CONFIG[k.removeprefix("XB_")] = _json.loads(v)
    elif k.startswith("S_"):
        bt.SCAN_FWD_SMEM_CONFIG[k.removeprefix("S_")] = _json.loads(v)
    elif k.startswith("CB_"):
        bt.CONV_BWD_CONFIG[k.removeprefix("CB_")] = _json.loads(v)
    else:
        (bt.XPROJ_CONFIG if k.startswith("X_") else bt.SCAN_FWD_CONFIG)[k.removeprefix("X_")] = _json.loads(v)
config = VideoMambaConfig.from_preset(os.environ.get("PRESET", "tiny"))  # PRESET=small|middle: wider mixers
mixer = VideoMambaMixer(config, layer_idx=0).to(torch.bfloat16)
B, L = 2, 3137
xz = torch.randn(B, L, 2 * config.intermediate_size, dtype=torch.bfloat16)
tabs = bt._Tables(*bt.stacked_mixer_parameters(mixer))
bt._fast_flags = lambda dtype: (True, dtype != torch.float32)
if os.environ.get("SMEM", "0") == "1":  # SMEM=1: the v7 forward (Gluon), as chosen on a GPU
    bt._scan_fwd_smem_config = lambda xz, tabs: bt._scan_fwd_smem_settings(tabs)
if os.environ.get("BWD_SMEM", "0") == "1":  # BWD_SMEM=1: the backward's Gluon kernels (group v8, sweeps, x_proj lanes) as on a GPU
    bt._scan_bwd_group_smem_config = lambda xz, tabs, dout: {"maxnreg": bt.SCAN_BWD_CONFIG.get("SMEM_MAXNREG")}
    bt._scan_bwd_sweep_smem_config = lambda xz, tabs, dout: {"BD": bt._scan_fwd_smem_settings(tabs)["BD"],
                                                             "maxnreg": bt.SCAN_BWD_CONFIG.get("SWEEP_SMEM_MAXNREG")}
    xcfg = bt.XPROJ_BWD_CONFIG  # and the lane-per-channel x_proj backward where XB_LANE (default on)
    bt._xproj_bwd_lane_config = lambda xz, tabs: None if not xcfg.get("LANE") else {
        "BD": xcfg["LANE_BD"], "T": xcfg["LANE_T"], "PROGRAMS": xcfg["LANE_PROGRAMS"], "maxnreg": xcfg.get("LANE_MAXNREG")}
xdbl = torch.empty(B, L, 2, tabs.ps, dtype=torch.float32)
if which == "fwd":  # SUMMED=1: the directions summed (the second launch's kernel, adding and gating, is reported)
    bt._scan_forward(xz, xdbl, tabs, summed=os.environ.get("SUMMED", "0") == "1")
elif which == "xproj":
    bt._xproj_forward(xz, tabs)
elif which == "recompute":
    bt._xproj_recompute(xz, tabs)
elif which == "bwd":
    dy = torch.randn(B, L, config.intermediate_size, dtype=torch.bfloat16)
    try:
        bt._scan_backward(xz, xdbl, dy, 0, tabs, need_out_sum=True)
    except Exception as e:
        print("bwd stopped:", str(e)[-3000:])
for name, kernel in captured.items():
    if kernel is not None and hasattr(kernel, "asm"):
        report(name, kernel)
for name, kernel in captured.items():
    if kernel is not None and hasattr(kernel, "asm") and name.startswith("_scan_"):
        open(f"{OUTDIR}/_scan_fwd_kernel.ptx", "w").write(kernel.asm["ptx"])
        open(f"{OUTDIR}/_scan_fwd_kernel.ttgir", "w").write(kernel.asm["ttgir"])
