# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Fused bidirectional selective scan (VideoMamba's `bimamba` mixer) in Triton: forward and backward, no build step.

The mixer, per direction (the backward direction is the same computation on the sequence reversed, with its own
parameters `conv1d_b`, `x_proj_b`, `dt_proj_b`, `A_b_log`, `D_b`; both share `x` and `z` from one `in_proj`):

    xc      = silu(depthwise_conv(x) + conv_bias)        (causal forward, anti-causal backward, in original order)
    dt, B, C = split(xc @ x_proj.T, [R, N, N])
    delta   = softplus(dt @ dt_proj.weight.T + dt_proj.bias)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * xc_t          (A = -exp(A_log), state in float32)
    out_t   = (<C_t, h_t> + D * xc_t) * silu(z_t)
    mixer   = out_proj(out_forward + out_backward)

Kernels (token-major `(batch, length, channels)` throughout: no transposes, no flipped copies):

* `_conv_xproj_kernel` / `_conv_xproj_dir_kernel` (both directions per program, or one): conv + SiLU straight from
  the `in_proj` output, and the `x_proj` products on the tensor cores, writing only `x_dbl` `(batch, length, 2,
  R + 2N)` in float32. `xc` is never written. With half-precision products (the forward at half inputs)
  `_conv_xproj_tok_kernel`: the same with each lane holding one channel's 16 tokens, so that both directions' conv
  taps come from one load per (token, channel).
* `_scan_fwd_kernel`: one program per (channel block, direction, sample) walks the sequence in its direction, two
  tokens per loop iteration, each lane owning one channel's `N` states in registers, the next token's loads issued
  during the current one and rows further ahead prefetched into L2. It reads `x`, `z` and its `x_dbl` row,
  recomputes the conv, computes `dt_proj` and softplus in registers, and writes the gated output. At large batches
  the mixer sums the directions in one `(batch, length, d_inner)` buffer (direction 0's launch writes it, direction
  1's adds to it and gates the sum once), so `out_proj` is one GEMM with K = d_inner; when both directions' programs
  fit one wave of the GPU (training batches) one launch writes `out2 (batch, length, 2, d_inner)` and `out_proj`
  takes K = 2 d_inner; `bimamba_scan_fn` always returns `out2`.
* `_scan_fwd_chunk_kernel` (v6): the same computation in chunks of T tokens as (channels, T) register tiles:
  everything but the state recurrence vectorised over the chunk, the recurrence an in-register scan over the chunk's
  tokens per state. It runs the launches with few warps (`SCAN_FWD_FEW_WARPS_CONFIG`: training batches, small
  inference batches), where each warp is bound by the latency of its own chain, and every launch of a wide mixer (dt
  rank above `SCAN_FWD_V4_MAX_RANK`: VideoMamba-S, -M), whose dt_proj weights and rows do not fit v4's registers; v4
  the large launches of narrow mixers.
* `_scan_fwd_smem_kernel` (v7, written in Gluon, Triton's lower-level language, where Gluon is available): v4's
  computation with each chunk of 16 tokens' inputs (x_dbl rows, x, z, and the first direction's output when the
  second adds to it) copied into shared-memory ring buffers by `cp.async` one chunk ahead and read per token with
  broadcast shared-memory loads, so no registers wait on loads in flight. It runs every half-precision forward on
  GPUs of compute capability 8.0+ except the small batches that v6 cuts into sequence groups (`SCAN_FWD_SMEM_CONFIG`).
* Backward: the sweeps as a two-level scan (`_scan_bwd_split_local_kernel`: every group of chunks from a zero
  carry, in parallel; `_scan_bwd_split_combine_kernel`: the carries over the groups), giving the states entering
  every chunk of `T` tokens and the adjoint entering every group of chunks from its right end; then
  `_scan_bwd_group_kernel` (every group of chunks in parallel, each chunk recomputing its states with an in-register
  scan and running the adjoint scan; with `SCAN_BWD_CONFIG["GROUP"] = 6`, the default, its per-token channel sums of
  the B and C gradients are one reduce-scatter across the warp in inline PTX); `_dt_proj_bwd_kernel` (dt_proj
  backward), `_xproj_bwd_kernel` (x_proj and SiLU backward, `x_proj` weight gradient; for half-precision inputs up
  to VideoMamba-S's widths `_xproj_bwd_lane_kernel` in Gluon, a lane per channel and the products as float32 FMA
  chains) and `_conv_bwd_kernel` (conv backward into the `in_proj` output layout, `z` gradient); the parameter
  gradients' float32 partial sums added in float64 by `_sum_f64_kernel`. With Gluon, the sweeps and the group
  kernel run as `_scan_bwd_sweep_smem_kernel` and `_scan_bwd_group_smem_kernel` (v8), their inputs staged in
  shared memory. Nothing of size `(batch, length, d_inner, N)` is ever stored.

Numerics: exponentials as `exp2` with `A` pre-scaled by log2(e); the state and all accumulations in float32; inputs
bf16, fp16 or fp32. With fp32 inputs all arithmetic is IEEE fp32 (matrix products included); with half inputs the
SiLU gates use the hardware `tanh.approx` (error ~2^-11, under the input's own rounding) and the x_proj product takes
`xc` rounded to the input dtype (as the stock path does), accumulating in float32; the scan itself uses the float32
`xc`.

Backward numerics: x_dbl recomputed from float32 operands for every input dtype (half inputs: tf32x3 products); in float32 mode the sigmoids and
softplus through a range-reduced exp (`_exp_precise`; `exp2(x log2 e)` errs by |x| ulp); exp(delta A) h_{j-1} carried
by the state scan itself (never h_j - delta B x); the dt_proj output summed before its bias; the gradients that sum
over tokens in float32 over blocks (A, D: 128 tokens; dt_proj: 256; conv, x_proj: a sample or a token split), the
blocks added in float64.
"""

import math
import os

import torch
import torch.nn.functional as F


try:
    import triton
    import triton.language as tl
except Exception as error:  # pragma: no cover - exercised only where Triton is missing
    raise ImportError(
        "videomamba.bimamba_triton needs Triton (pip install triton); use scan_backend='torch' or 'mamba_ssm'."
    ) from error

try:  # Gluon (Triton 3.5+): the forward v7 kernel; without it the Triton kernels run everywhere
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.ampere import async_copy as _gl_async_copy

    _HAS_GLUON = True
except Exception:  # pragma: no cover - older Triton
    _HAS_GLUON = False


LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# ---------------------------------------------------------------------------------------------------------------
# elementwise helpers
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _exp2(x, FAST: tl.constexpr):
    if FAST:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.exp2(x)


@triton.jit
def _rcp(x, FAST: tl.constexpr):
    if FAST:
        return tl.inline_asm_elementwise(
            "rcp.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return 1.0 / x


@triton.jit
def _tanh_approx(x):
    """`tanh.approx.f32` (one MUFU operation; relative error ~2^-11, for half-precision inputs only)."""
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _sigmoid(x, FAST: tl.constexpr, TANH: tl.constexpr):
    """sigmoid(x); with TANH one `tanh.approx` (relative error ~2^-11, for half-precision inputs only)."""
    if TANH:
        return 0.5 + 0.5 * _tanh_approx(x * 0.5)
    else:
        return _rcp(1.0 + _exp2(-x * 1.4426950408889634, FAST), FAST)


@triton.jit
def _silu_of_double(h):
    """silu(2 h) = h + h tanh(h) (one `tanh.approx`): SiLU of a conv whose taps were halved (`_halved`)."""
    return h + h * _tanh_approx(h)


@triton.jit
def _gated(y, z):
    """y silu(z) = yz + yz tanh(z / 2), yz = y z / 2 (one `tanh.approx`)."""
    hz = z * 0.5
    yz = y * hz
    return yz + yz * _tanh_approx(hz)


@triton.jit
def _halved(cb, w0, w1, w2, w3):
    """The conv's bias and taps times 1/2 (exact), for `_silu_of_double`."""
    return cb * 0.5, w0 * 0.5, w1 * 0.5, w2 * 0.5, w3 * 0.5


@triton.jit
def _softplus(x, FAST: tl.constexpr):
    """log(1 + exp(x)) = max(x, 0) + log1p(u), u = exp(-|x|) in (0, 1].

    FAST (half-precision inputs): log1p(u) = ln2 * lg2.approx(1 + u), or u (1 - u / 2) below u = 2^-7 where 1 + u
    would round away u's low bits (relative error under 1e-5 everywhere, far under the inputs' rounding).
    Otherwise fp32-accurate with one exp2 and one division: log1p(u) = 2 atanh(s), s = u / (2 + u) <= 1/3."""
    u = _exp2(tl.abs(x) * -1.4426950408889634, FAST)
    if FAST:
        lg = tl.inline_asm_elementwise(
            "lg2.approx.ftz.f32 $0, $1;", "=f,f", [1.0 + u], dtype=tl.float32, is_pure=True, pack=1
        )
        small = u * (1.0 - 0.5 * u)
        return tl.maximum(x, 0.0) + tl.where(u < 0.0078125, small, lg * 0.6931471805599453)
    else:
        s = u / (2.0 + u)
        s2 = s * s
        p = 1.0 / 15.0
        p = p * s2 + 1.0 / 13.0
        p = p * s2 + 1.0 / 11.0
        p = p * s2 + 1.0 / 9.0
        p = p * s2 + 1.0 / 7.0
        p = p * s2 + 1.0 / 5.0
        p = p * s2 + 1.0 / 3.0
        p = p * s2 + 1.0
        return tl.maximum(x, 0.0) + 2.0 * s * p


@triton.jit
def _conv_taps(convw_ptr, convb_ptr, dr, D, dc, mask_d, K: tl.constexpr):
    """The depthwise conv of direction dr for the channels at offsets dc: its bias and taps w0 (this token) .. w3
    (three tokens earlier in scan order), (BD,) float32 each, zero beyond the kernel width K (tables: convb (2, D),
    convw (2, K, D))."""
    cb = tl.load(convb_ptr + dr * D + dc, mask=mask_d, other=0.0)
    wc_base = convw_ptr + dr * K * D + dc
    w0 = tl.load(wc_base + (K - 1) * D, mask=mask_d, other=0.0)
    w1 = tl.zeros_like(w0)
    w2 = tl.zeros_like(w0)
    w3 = tl.zeros_like(w0)
    if K > 1:
        w1 = tl.load(wc_base + (K - 2) * D, mask=mask_d, other=0.0)
    if K > 2:
        w2 = tl.load(wc_base + (K - 3) * D, mask=mask_d, other=0.0)
    if K > 3:
        w3 = tl.load(wc_base + (K - 4) * D, mask=mask_d, other=0.0)
    return cb, w0, w1, w2, w3


@triton.jit
def _channel_block(dtb_ptr, dsk_ptr, convw_ptr, convb_ptr, pid_d, dr, D, s_c, BD: tl.constexpr, K: tl.constexpr):
    """Program pid_d's BD channels of direction dr: their indices, mask and element offsets (s_c apart), and their
    dt_proj bias, D skip and conv taps (`_conv_taps`), (BD,) each."""
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < D
    dc = offs_d * s_c
    bdt = tl.load(dtb_ptr + dr * D + dc, mask=mask_d, other=0.0)
    dsk = tl.load(dsk_ptr + dr * D + dc, mask=mask_d, other=0.0)
    cb, w0, w1, w2, w3 = _conv_taps(convw_ptr, convb_ptr, dr, D, dc, mask_d, K)
    return offs_d, mask_d, dc, bdt, dsk, cb, w0, w1, w2, w3


@triton.jit
def _prefetch_l2(ptrs):
    """`prefetch.global.L2` of each lane's address (a hint; no result)."""
    tl.inline_asm_elementwise(
        "prefetch.global.L2 [$1]; mov.u32 $0, 0;", "=r,l", [ptrs], dtype=tl.int32, is_pure=False, pack=1
    )


@triton.jit
def _prefetch_l1(ptrs):
    """`prefetch.global.L1` of each lane's address: the line lands in L1 with no register held for it, so a later
    load of it waits tens of cycles instead of an L2 round trip (the compiler cannot sink a prefetch towards its use
    the way it sinks a load under a register cap)."""
    tl.inline_asm_elementwise(
        "prefetch.global.L1 [$1]; mov.u32 $0, 0;", "=r,l", [ptrs], dtype=tl.int32, is_pure=False, pack=1
    )


# ---------------------------------------------------------------------------------------------------------------
# forward kernels
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _xproj_dot(a, b, acc, op_dtype, PREC: tl.constexpr):
    """acc + a @ b for the conv + x_proj kernels. PREC "half": both operands rounded to the input dtype op_dtype for the
    tensor cores (xc as the stock path rounds it; the weights are exact in it); "ieee" (float32 products) or "tf32x3"
    (float32 operands split in three tensor-core products, ~float32 accurate)."""
    if PREC != "half":
        res = tl.dot(a, b, acc, input_precision=PREC)
    else:
        res = tl.dot(a.to(op_dtype), b.to(op_dtype), acc)
    return res


@triton.jit
def _conv_xproj_kernel(
    xz_ptr, convw_ptr, convb_ptr, wx_ptr, xdbl_ptr,
    L, D,
    s_xz_b, s_xz_l, s_xd_b, s_xd_l,
    PS: tl.constexpr, PSP: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr, FAST: tl.constexpr = False, TANH: tl.constexpr = False,
):
    """x_dbl[b, t, dir] = silu(conv_dir(x)[t] + bias_dir) @ x_proj_dir.T for both directions, padded rows.

    xz: (B, L, 2D) with x = [..., :D]; convw: (2, K, D) fp32; convb: (2, D) fp32; wx: (2, PSP, D) fp32, x_proj
    rows scattered to the padded row layout (zero rows elsewhere); xdbl: (B, L, 2, PS) fp32. Grid (cdiv(L, BT), B).
    PREC: the products' precision (`_xproj_dot`).
    """
    pid_t = tl.program_id(0)
    pid_b = tl.program_id(1)
    offs_t = pid_t * BT + tl.arange(0, BT)
    offs_p = tl.arange(0, PSP)
    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    acc_f = tl.zeros([BT, PSP], dtype=tl.float32)
    acc_b = tl.zeros([BT, PSP], dtype=tl.float32)
    for c0 in range(0, D, BC):
        offs_c = c0 + tl.arange(0, BC)
        mask_c = offs_c < D
        pre_f = tl.zeros([BT, BC], dtype=tl.float32) + tl.load(convb_ptr + offs_c, mask=mask_c, other=0.0)[None, :]
        pre_b = tl.zeros([BT, BC], dtype=tl.float32) + tl.load(convb_ptr + D + offs_c, mask=mask_c, other=0.0)[None, :]
        for j in tl.static_range(K):
            # forward: pre_f[t] += w_f[K-1-j] * x[t-j]; backward: pre_b[t] += w_b[K-1-j] * x[t+j]
            wf = tl.load(convw_ptr + (K - 1 - j) * D + offs_c, mask=mask_c, other=0.0)
            wb = tl.load(convw_ptr + (2 * K - 1 - j) * D + offs_c, mask=mask_c, other=0.0)
            tm = offs_t - j
            xm = tl.load(
                x_base + tm[:, None] * s_xz_l + offs_c[None, :],
                mask=((tm >= 0) & (tm < L))[:, None] & mask_c[None, :], other=0.0,
            ).to(tl.float32)
            pre_f += wf[None, :] * xm
            if j == 0:
                pre_b += wb[None, :] * xm
            else:
                tp = offs_t + j
                xp = tl.load(
                    x_base + tp[:, None] * s_xz_l + offs_c[None, :],
                    mask=(tp < L)[:, None] & mask_c[None, :], other=0.0,
                ).to(tl.float32)
                pre_b += wb[None, :] * xp
        xc_f = pre_f * _sigmoid(pre_f, FAST, TANH)  # the same SiLU as the scan's recomputation
        xc_b = pre_b * _sigmoid(pre_b, FAST, TANH)
        w_f = tl.load(wx_ptr + offs_p[None, :] * D + offs_c[:, None], mask=mask_c[:, None], other=0.0)
        w_b = tl.load(wx_ptr + PSP * D + offs_p[None, :] * D + offs_c[:, None], mask=mask_c[:, None], other=0.0)
        acc_f = _xproj_dot(xc_f, w_f, acc_f, xz_ptr.dtype.element_ty, PREC)
        acc_b = _xproj_dot(xc_b, w_b, acc_b, xz_ptr.dtype.element_ty, PREC)
    out_mask = (offs_t < L)[:, None] & (offs_p < PS)[None, :]
    out = xdbl_ptr + pid_b.to(tl.int64) * s_xd_b + offs_t[:, None] * s_xd_l + offs_p[None, :]
    tl.store(out, acc_f, mask=out_mask)
    tl.store(out + PS, acc_b, mask=out_mask)


@triton.jit
def _cols16(x):
    """(BC, 16) -> the tuple of its 16 columns (BC,) in order (register renames: the token axis is in-thread)."""
    ev, od = tl.split(tl.reshape(x, (x.shape[0], 8, 2)))  # columns 0, 2, .., 14 and 1, 3, .., 15
    ce = _cols(ev, 8)
    co = _cols(od, 8)
    res = ()
    for i in tl.static_range(8):
        res = res + (ce[i], co[i])
    return res


@triton.jit
def _from_cols16(c):
    """The inverse of `_cols16`: 16 columns (BC,) -> (BC, 16)."""
    ce = ()
    co = ()
    for i in tl.static_range(8):
        ce = ce + (c[2 * i],)
        co = co + (c[2 * i + 1],)
    return tl.reshape(tl.join(_from_cols(ce, 8), _from_cols(co, 8)), (c[0].shape[0], 16))


@triton.jit
def _conv_silu_cols(seq, convw_ptr, convb_ptr, D, offs_c, mask_c, DR: tl.constexpr, K: tl.constexpr,
                    FAST: tl.constexpr, TANH: tl.constexpr):
    """silu(conv_dir(x) + bias_dir) for 16 tokens -> (BC, 16) float32, from `seq`: the columns (BC,) of the tokens
    t0 - 3 .. t0 + 18 (index i is token t0 - 3 + i). Direction 0 sums w[K - 1 - j] x[t - j], direction 1 (looking
    ahead) w[K - 1 - j] x[t + j], j = 0 .. K - 1, in that order from the bias (as `_conv_xproj_kernel`)."""
    pre = tl.zeros([offs_c.shape[0], 16], dtype=tl.float32) + tl.load(convb_ptr + DR * D + offs_c, mask=mask_c,
                                                                      other=0.0)[:, None]
    for j in tl.static_range(K):
        w = tl.load(convw_ptr + (DR * K + K - 1 - j) * D + offs_c, mask=mask_c, other=0.0)
        cols = ()
        for k in tl.static_range(16):
            cols = cols + (seq[3 + k - j * (1 - 2 * DR)],)
        pre += w[:, None] * _from_cols16(cols)
    return pre * _sigmoid(pre, FAST, TANH)


@triton.jit(do_not_specialize=["s_c"])
def _conv_xproj_tok_kernel(
    xz_ptr, convw_ptr, convb_ptr, wx_ptr, xdbl_ptr,
    L, D,
    s_xz_b, s_xd_b, s_xd_l, s_c,
    S_XZ_L: tl.constexpr, PS: tl.constexpr, PSP: tl.constexpr, K: tl.constexpr,
    BC: tl.constexpr, PREC: tl.constexpr, FAST: tl.constexpr = False, TANH: tl.constexpr = False,
):
    """`_conv_xproj_kernel` with the tokens in registers (K <= 4): program (16 tokens, sample) for both directions,
    grid (cdiv(L, 16), B); same inputs and outputs, the same conv and SiLU arithmetic.

    Per block of BC channels, a (BC, 16) tile with the channels across the lanes and the 16 tokens in each lane's
    registers (`s_c` = 1 at run time, not specialised, so that the compiler does not vectorise along channels), plus
    the three tokens on either side as (BC,) columns: both directions' conv taps are register picks of one load per
    (token, channel), not K shifted tile loads and conversions per direction. Then SiLU, and per direction x_dbl^T
    (PSP, 16) += x_proj (PSP, BC) @ xc (BC, 16), the weights as the tensor cores' A operand (rows past PS, zero
    padding, not read). The row stride S_XZ_L is a compile-time constant: the tokens' addresses are immediate offsets
    from the block's first token."""
    pid_t = tl.program_id(0)
    pid_b = tl.program_id(1)
    t0 = pid_t * 16
    offs_t = t0 + tl.arange(0, 16)
    offs_p = tl.arange(0, PSP)
    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b + t0 * S_XZ_L
    acc_f = tl.zeros([PSP, 16], dtype=tl.float32)  # transposed: the tokens' x_dbl rows as columns
    acc_b = tl.zeros([PSP, 16], dtype=tl.float32)
    for c0 in range(0, D, BC):
        offs_c = c0 + tl.arange(0, BC)
        mask_c = offs_c < D
        xblk = x_base + offs_c * s_c  # (BC,): the block's first token
        xt = tl.load(xblk[:, None] + (tl.arange(0, 16) * S_XZ_L)[None, :],
                     mask=mask_c[:, None] & (offs_t < L)[None, :], other=0.0).to(tl.float32)
        tv = offs_c * 0 + t0
        before = ()
        after = ()
        for j in tl.static_range(3):
            before = before + (tl.load(xblk + (j - 3) * S_XZ_L, mask=mask_c & (tv + j >= 3), other=0.0).to(tl.float32),)
            after = after + (tl.load(xblk + (16 + j) * S_XZ_L, mask=mask_c & (tv + 16 + j < L),
                                     other=0.0).to(tl.float32),)
        seq = before + _cols16(xt) + after
        xc_f = _conv_silu_cols(seq, convw_ptr, convb_ptr, D, offs_c, mask_c, 0, K, FAST, TANH)
        xc_b = _conv_silu_cols(seq, convw_ptr, convb_ptr, D, offs_c, mask_c, 1, K, FAST, TANH)
        wmask = mask_c[None, :] & (offs_p < PS)[:, None]
        w_f = tl.load(wx_ptr + offs_p[:, None] * D + offs_c[None, :], mask=wmask, other=0.0)
        w_b = tl.load(wx_ptr + PSP * D + offs_p[:, None] * D + offs_c[None, :], mask=wmask, other=0.0)
        acc_f = _xproj_dot(w_f, xc_f, acc_f, xz_ptr.dtype.element_ty, PREC)
        acc_b = _xproj_dot(w_b, xc_b, acc_b, xz_ptr.dtype.element_ty, PREC)
    out_mask = (offs_t < L)[None, :] & (offs_p < PS)[:, None]
    out = xdbl_ptr + pid_b.to(tl.int64) * s_xd_b + offs_t[None, :] * s_xd_l + offs_p[:, None]
    tl.store(out, acc_f, mask=out_mask)
    tl.store(out + PS, acc_b, mask=out_mask)


@triton.jit
def _conv_xproj_dir_kernel(
    xz_ptr, convw_ptr, convb_ptr, wx_ptr, xdbl_ptr,
    L, D,
    s_xz_b, s_xz_l, s_xd_b, s_xd_l,
    PS: tl.constexpr, PSP: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr, FAST: tl.constexpr = False, TANH: tl.constexpr = False,
):
    """`_conv_xproj_kernel` with one direction per program (grid (cdiv(L, BT), B, 2)): half the accumulators and
    conv tiles per program, K shifted loads instead of 2 K - 1 for both directions together.
    Direction 1's conv looks ahead: pre[t] = bias + sum_j w_b[K-1-j] x[t+j]."""
    pid_t = tl.program_id(0)
    pid_b = tl.program_id(1)
    dr = tl.program_id(2)
    step = 1 - 2 * dr
    offs_t = pid_t * BT + tl.arange(0, BT)
    offs_p = tl.arange(0, PSP)
    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    acc = tl.zeros([BT, PSP], dtype=tl.float32)
    for c0 in range(0, D, BC):
        offs_c = c0 + tl.arange(0, BC)
        mask_c = offs_c < D
        pre = tl.zeros([BT, BC], dtype=tl.float32) + tl.load(convb_ptr + dr * D + offs_c, mask=mask_c, other=0.0)[None, :]
        for j in tl.static_range(K):
            w = tl.load(convw_ptr + (dr * K + K - 1 - j) * D + offs_c, mask=mask_c, other=0.0)
            tj = offs_t - j * step
            xj = tl.load(
                x_base + tj[:, None] * s_xz_l + offs_c[None, :],
                mask=((tj >= 0) & (tj < L))[:, None] & mask_c[None, :], other=0.0,
            ).to(tl.float32)
            pre += w[None, :] * xj
        xc = pre * _sigmoid(pre, FAST, TANH)
        wd = tl.load(wx_ptr + dr * PSP * D + offs_p[None, :] * D + offs_c[:, None], mask=mask_c[:, None], other=0.0)
        acc = _xproj_dot(xc, wd, acc, xz_ptr.dtype.element_ty, PREC)
    out_mask = (offs_t < L)[:, None] & (offs_p < PS)[None, :]
    out = xdbl_ptr + pid_b.to(tl.int64) * s_xd_b + offs_t[:, None] * s_xd_l + dr * PS + offs_p[None, :]
    tl.store(out, acc, mask=out_mask)


@triton.jit
def _flat_sum(x):
    """Sum of a (BD, 4, G) tile over its last two axes as one in-lane chain (one multiply, then FMAs) rather than
    four chains joined by adds."""
    return tl.sum(tl.reshape(x, (x.shape[0], x.shape[1] * x.shape[2]), can_reorder=True), axis=1)


@triton.jit
def _scan_token(h, xt, xp1, xp2, xp3, zt, dtl, bv, cv, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                FAST: tl.constexpr, TANH: tl.constexpr, LEAN: tl.constexpr = False):
    """One token of one direction: conv over (xt, xp1, xp2, xp3) (this, then earlier tokens in scan order), SiLU,
    dt_proj + softplus, state update, readout, D skip and gate. Tiles: h, a2, bv, cv (BD, 4, NG); wdt, dtl
    (BD, 4, RG); the rest (BD,). Returns the new state and the gated output (BD,).
    LEAN (with TANH): the conv taps come halved, so that pre is half the conv output and SiLU = pre + pre tanh(pre);
    the dt_proj and readout sums as single chains; the output is returned ungated (`_scan_out` gates it)."""
    pre = cb + w0 * xt + w1 * xp1 + w2 * xp2 + w3 * xp3
    if LEAN:
        xc = _silu_of_double(pre)
        delta = _softplus(_flat_sum(wdt * dtl) + bdt, FAST)
    else:
        xc = pre * _sigmoid(pre, FAST, TANH)
        delta = _softplus(tl.sum(tl.sum(wdt * dtl, axis=2), axis=1) + bdt, FAST)
    a = _exp2(a2 * delta[:, None, None], FAST)
    h = a * h + bv * (delta * xc)[:, None, None]
    if LEAN:
        return h, _flat_sum(h * cv) + dsk * xc  # ungated: `_scan_out` gates
    else:
        y = tl.sum(tl.sum(h * cv, axis=2), axis=1) + dsk * xc
        return h, y * (zt * _sigmoid(zt, FAST, TANH))


@triton.jit
def _scan_out(out, pv, zt, ADD: tl.constexpr, LEAN: tl.constexpr, GATE: tl.constexpr):
    """The value a token stores: `_scan_token`'s output plus, with ADD, the value already there (pv). LEAN: the output
    comes ungated, and with GATE the sum is gated once here (`_gated`; so the first of two summed directions stores its
    output ungated and the second gates both)."""
    if LEAN:
        if ADD:
            out = out + pv
        if GATE:
            out = _gated(out, zt)
        return out
    else:
        return out + pv  # pv: zeros without ADD


@triton.jit
def _load_token(x_base, xd_base, o_base, t, s_xz_l, s_xd_l4, s_o_l, D, mask_d, off_r3, off_b3, off_c3,
                ADD: tl.constexpr):
    """Inputs of token t: x and z (BD,) in float32, the dt, B and C parts of its x_dbl row as broadcast tiles, and
    with ADD the output already there (the other direction's, to add to), else zeros."""
    row = x_base + t * s_xz_l
    xrow = xd_base + (t * s_xd_l4) * 4
    xt = tl.load(row, mask=mask_d, other=0.0).to(tl.float32)
    zt = tl.load(row + D, mask=mask_d, other=0.0).to(tl.float32)
    if ADD:
        prev = tl.load(o_base + t * s_o_l, mask=mask_d, other=0.0).to(tl.float32)
    else:
        prev = tl.zeros_like(xt)
    return xt, zt, tl.load(xrow + off_r3), tl.load(xrow + off_b3), tl.load(xrow + off_c3), prev


@triton.jit
def _prefetch_ahead(x_base, xd_base, t, step, L, s_xz_l, s_xd_l4, D, PS: tl.constexpr, PF_DIST: tl.constexpr,
                    BD: tl.constexpr = 32):
    """L2 prefetch of the x, z and x_dbl rows of tokens t + step * (PF_DIST + lane), one token per lane (x_base:
    the (BD,) channel pointers; each warp prefetches its own channels' part of the x and z rows)."""
    tp = t + step * (PF_DIST + tl.arange(0, BD) % 32)
    tp = tl.minimum(tl.maximum(tp, 0), L - 1)
    _prefetch_l2(x_base + tp * s_xz_l)
    _prefetch_l2(x_base + tp * s_xz_l + D)
    prow = xd_base + tp * s_xd_l4 * 4
    _prefetch_l2(prow)
    _prefetch_l2(prow + (PS - 1))


@triton.jit
def _prefetch_pair_l1(t, step, L, xd_base, s_xd_l4, pa, s_a, pb, s_b, PS: tl.constexpr, BD: tl.constexpr,
                      TWO: tl.constexpr):
    """L1 prefetch of the inputs of tokens t and t + step (clamped to the sequence), no registers held: lane l takes
    token l % 2, and its x_dbl row's first or last float ((l >> 1) % 2: the row's two cache lines) and its row of
    `pa` (and with TWO of `pb`): per-lane channel pointers at token 0, token strides s_a, s_b (one line per warp)."""
    lane = tl.arange(0, BD)
    tp = tl.minimum(tl.maximum(t + step * (lane % 2), 0), L - 1)
    _prefetch_l1(xd_base + tp * s_xd_l4 * 4 + ((lane >> 1) % 2) * (PS - 1))
    _prefetch_l1(pa + tp * s_a)
    if TWO:
        _prefetch_l1(pb + tp * s_b)


@triton.jit
def _scan_fwd_kernel(
    xz_ptr, xdbl_ptr, convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a2_ptr, dsk_ptr, out_ptr,
    L, D, dir0,
    s_xz_b, s_xz_l, s_xd_b4, s_xd_l4, s_o_b, s_o_l, s_o_dir,
    K: tl.constexpr, RG: tl.constexpr, NG: tl.constexpr, PS: tl.constexpr, BD: tl.constexpr,
    FAST: tl.constexpr, TANH: tl.constexpr, PREFETCH: tl.constexpr, PF_DIST: tl.constexpr,
    PIPE: tl.constexpr, UNROLL: tl.constexpr, ADD: tl.constexpr, LEAN: tl.constexpr = False,
    GATE: tl.constexpr = True, EVEN: tl.constexpr = False,
):
    """One direction of the selective scan for BD channels of one sample, gated, into out[b, :, (dir,) :].

    Program (channel block, direction - dir0, sample); direction 1 walks t = L-1 .. 0 and its conv looks ahead. The
    output is out2 (B, L, 2, D) (s_o_dir = D), or the sum of the directions (B, L, D) (s_o_dir = 0) written by two
    launches: direction 0, then direction 1 with ADD (each token's output adds the value found there).
    Per-channel tables, fp32: convw (2, K, D), convb / dtb / dsk (2, D), dtw (2, D, 4 RG) = dt_proj.weight zero-padded,
    a2 (2, D, 4 NG) = A * log2(e) zero-padded. Tiles are channels-first, (BD, 4, groups): the vectorised axis of 4
    comes first in the compiler's order and the channel axis next, so that each lane owns one channel with all its
    states and dt weights in registers (no shuffles or shared memory per token), and each token's B / C / dt row
    arrives as 16-byte broadcast loads.
    x_dbl rows are padded: (B, L, 2, PS), PS = 4 (RG + 2 NG) (passed in), dt at 0, B at 4 RG, C at 4 (RG + NG), pads
    zero; its strides come divided by 4 (`s_xd_b4`, `s_xd_l4`) so that the compiler knows rows are 16-byte aligned.
    PIPE = 0: each token's loads at the top of its step. PIPE = 1: software pipelining, the next token's loads are
    issued during the current token (with enough registers, see SCAN_FWD_CONFIG["maxnreg"], the compiler keeps them
    early). UNROLL = 2 takes two tokens per loop iteration; with PIPE = 1 the two tokens' inputs alternate between two
    register sets, so no register copies rotate the pipeline. PREFETCH pulls rows PF_DIST tokens ahead into L2.
    """
    pid_d = tl.program_id(0)
    dr = tl.program_id(1) + dir0
    pid_b = tl.program_id(2)
    offs_d = pid_d * BD + tl.arange(0, BD)
    if EVEN:  # D a multiple of BD: every channel in range, loads and stores unmasked
        mask_d = tl.full([BD], 1, tl.int1)
    else:
        mask_d = offs_d < D
    g_n = tl.arange(0, NG)[None, None, :]
    g_r = tl.arange(0, RG)[None, None, :]
    v4 = tl.arange(0, 4)[None, :, None]
    d3 = offs_d[:, None, None]
    m3 = mask_d[:, None, None]
    n3 = g_n * 4 + v4  # state index (1, 4, NG)
    r3 = g_r * 4 + v4

    a2 = tl.load(a2_ptr + (dr * D + d3) * (NG * 4) + n3, mask=m3, other=0.0)  # (BD, 4, NG)
    wdt = tl.load(dtw_ptr + (dr * D + d3) * (RG * 4) + r3, mask=m3, other=0.0)  # (BD, 4, RG)
    bdt = tl.load(dtb_ptr + dr * D + offs_d, mask=mask_d, other=0.0)
    dsk = tl.load(dsk_ptr + dr * D + offs_d, mask=mask_d, other=0.0)
    cb, w0, w1, w2, w3 = _conv_taps(convw_ptr, convb_ptr, dr, D, offs_d, mask_d, K)
    LEAN_T: tl.constexpr = LEAN and TANH
    if LEAN_T:  # `_scan_token` LEAN: the conv's output halved
        cb, w0, w1, w2, w3 = _halved(cb, w0, w1, w2, w3)

    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b + offs_d
    xd_base = xdbl_ptr + (pid_b.to(tl.int64) * s_xd_b4) * 4 + dr * PS
    o_base = out_ptr + pid_b.to(tl.int64) * s_o_b + dr * s_o_dir + offs_d
    out_ty = out_ptr.dtype.element_ty
    zero3 = d3 * 0
    off_r3 = r3 + zero3
    off_b3 = 4 * RG + n3 + zero3
    off_c3 = 4 * (RG + NG) + n3 + zero3

    h = tl.zeros([BD, 4, NG], dtype=tl.float32)
    xp1 = tl.zeros([BD], dtype=tl.float32)
    xp2 = tl.zeros([BD], dtype=tl.float32)
    xp3 = tl.zeros([BD], dtype=tl.float32)
    step = 1 - 2 * dr
    t = dr * (L - 1)
    if PIPE == 0:
        for i in range(0, L // UNROLL):
            if PREFETCH:
                if (i * UNROLL) % 32 == 0:
                    _prefetch_ahead(x_base, xd_base, t, step, L, s_xz_l, s_xd_l4, D, PS, PF_DIST, BD)
            xt, zt, dtl, bv, cv, pv = _load_token(x_base, xd_base, o_base, t, s_xz_l, s_xd_l4, s_o_l, D, mask_d,
                                                  off_r3, off_b3, off_c3, ADD)
            if UNROLL == 2:
                xt2, zt2, dtl2, bv2, cv2, pv2 = _load_token(x_base, xd_base, o_base, t + step, s_xz_l, s_xd_l4, s_o_l,
                                                            D, mask_d, off_r3, off_b3, off_c3, ADD)
            h, out = _scan_token(h, xt, xp1, xp2, xp3, zt, dtl, bv, cv, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                                 FAST, TANH, LEAN_T)
            tl.store(o_base + t * s_o_l, _scan_out(out, pv, zt, ADD, LEAN_T, GATE).to(out_ty), mask=mask_d)
            xp3 = xp2
            xp2 = xp1
            xp1 = xt
            if UNROLL == 2:
                h, out = _scan_token(h, xt2, xp1, xp2, xp3, zt2, dtl2, bv2, cv2, a2, wdt, bdt, dsk, cb, w0, w1, w2,
                                     w3, FAST, TANH, LEAN_T)
                tl.store(o_base + (t + step) * s_o_l, _scan_out(out, pv2, zt2, ADD, LEAN_T, GATE).to(out_ty),
                         mask=mask_d)
                xp3 = xp2
                xp2 = xp1
                xp1 = xt2
            t += UNROLL * step
    else:
        xt, zt, dtl, bv, cv, pv = _load_token(x_base, xd_base, o_base, t, s_xz_l, s_xd_l4, s_o_l, D, mask_d,
                                              off_r3, off_b3, off_c3, ADD)
        for i in range(0, L // UNROLL):
            if PREFETCH:
                if (i * UNROLL) % 32 == 0:
                    _prefetch_ahead(x_base, xd_base, t, step, L, s_xz_l, s_xd_l4, D, PS, PF_DIST, BD)
            if UNROLL == 1:
                tn = t + step * (i + 1 < L).to(tl.int32)  # the last iteration reloads its own token
                nx, nz, ndtl, nbv, ncv, npv = _load_token(x_base, xd_base, o_base, tn, s_xz_l, s_xd_l4, s_o_l, D,
                                                          mask_d, off_r3, off_b3, off_c3, ADD)
                h, out = _scan_token(h, xt, xp1, xp2, xp3, zt, dtl, bv, cv, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                                     FAST, TANH, LEAN_T)
                tl.store(o_base + t * s_o_l, _scan_out(out, pv, zt, ADD, LEAN_T, GATE).to(out_ty), mask=mask_d)
                xp3 = xp2
                xp2 = xp1
                xp1 = xt
                xt, zt, dtl, bv, cv, pv = nx, nz, ndtl, nbv, ncv, npv
                t += step
            else:
                # ping-pong: set 2 (token t + step) loads during token t, set 1 (token t + 2 step) during t + step
                xt2, zt2, dtl2, bv2, cv2, pv2 = _load_token(x_base, xd_base, o_base, t + step, s_xz_l, s_xd_l4, s_o_l,
                                                            D, mask_d, off_r3, off_b3, off_c3, ADD)
                h, out = _scan_token(h, xt, xp1, xp2, xp3, zt, dtl, bv, cv, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                                     FAST, TANH, LEAN_T)
                tl.store(o_base + t * s_o_l, _scan_out(out, pv, zt, ADD, LEAN_T, GATE).to(out_ty), mask=mask_d)
                xp3 = xp2
                xp2 = xp1
                xp1 = xt
                tn = t + step * (1 + (2 * i + 2 < L).to(tl.int32))  # past the end: reload a valid token
                xt, zt, dtl, bv, cv, pv = _load_token(x_base, xd_base, o_base, tn, s_xz_l, s_xd_l4, s_o_l, D, mask_d,
                                                      off_r3, off_b3, off_c3, ADD)
                h, out = _scan_token(h, xt2, xp1, xp2, xp3, zt2, dtl2, bv2, cv2, a2, wdt, bdt, dsk, cb, w0, w1, w2,
                                     w3, FAST, TANH, LEAN_T)
                tl.store(o_base + (t + step) * s_o_l, _scan_out(out, pv2, zt2, ADD, LEAN_T, GATE).to(out_ty),
                         mask=mask_d)
                xp3 = xp2
                xp2 = xp1
                xp1 = xt2
                t += 2 * step
    if UNROLL == 2:
        if L % 2 == 1:  # the last token (PIPE 1: its inputs are already loaded)
            if PIPE == 0:
                xt, zt, dtl, bv, cv, pv = _load_token(x_base, xd_base, o_base, t, s_xz_l, s_xd_l4, s_o_l, D, mask_d,
                                                      off_r3, off_b3, off_c3, ADD)
            h, out = _scan_token(h, xt, xp1, xp2, xp3, zt, dtl, bv, cv, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                                 FAST, TANH, LEAN_T)
            tl.store(o_base + t * s_o_l, _scan_out(out, pv, zt, ADD, LEAN_T, GATE).to(out_ty), mask=mask_d)


@triton.jit
def _lin_combine(a1, b1, a2, b2):
    """(a1, b1) earlier, (a2, b2) later segment of h -> a h + b: the composed segment (a1 a2, a2 b1 + b2)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _split4(t):
    """(BD, T, 4) -> its four (BD, T) slices along the last axis (register renames: that axis is in-thread)."""
    t = tl.reshape(t, (t.shape[0], t.shape[1], 2, 2))
    lo, hi = tl.split(t)  # elements 0, 2 and 1, 3
    t0, t2 = tl.split(lo)
    t1, t3 = tl.split(hi)
    return t0, t1, t2, t3


@triton.jit
def _cols(x, T: tl.constexpr):
    """(BD, T) -> the tuple of its T columns (BD,), T in 2, 4, 8 (register renames: the T axis is in-thread)."""
    if T == 2:
        c0, c1 = tl.split(x)
        res = (c0, c1)
    elif T == 4:
        e, o = tl.split(tl.reshape(x, (x.shape[0], 2, 2)))
        c0, c2 = tl.split(e)
        c1, c3 = tl.split(o)
        res = (c0, c1, c2, c3)
    else:
        e, o = tl.split(tl.reshape(x, (x.shape[0], 4, 2)))
        e2, e6 = tl.split(tl.reshape(e, (x.shape[0], 2, 2)))
        o2, o6 = tl.split(tl.reshape(o, (x.shape[0], 2, 2)))
        c0, c4 = tl.split(e2)
        c2, c6 = tl.split(e6)
        c1, c5 = tl.split(o2)
        c3, c7 = tl.split(o6)
        res = (c0, c1, c2, c3, c4, c5, c6, c7)
    return res


@triton.jit
def _from_cols(c, T: tl.constexpr):
    """The inverse of `_cols`: T columns (BD,) -> (BD, T)."""
    if T == 2:
        res = tl.join(c[0], c[1])
    elif T == 4:
        res = tl.reshape(tl.join(tl.join(c[0], c[2]), tl.join(c[1], c[3])), (c[0].shape[0], 4))
    else:
        ev = tl.reshape(tl.join(tl.join(c[0], c[4]), tl.join(c[2], c[6])), (c[0].shape[0], 4))
        od = tl.reshape(tl.join(tl.join(c[1], c[5]), tl.join(c[3], c[7])), (c[0].shape[0], 4))
        res = tl.reshape(tl.join(ev, od), (c[0].shape[0], 8))
    return res


@triton.jit
def _conv_taps_cols(pre, seq, w1, w2, w3, K: tl.constexpr, T: tl.constexpr):
    """pre (BD, T) plus the conv's earlier taps w1 x[i-1] + w2 x[i-2] + w3 x[i-3] (added in that order), taken from seq:
    the three inputs before the chunk, then its T columns (`_cols`), in scan order."""
    if K > 1:
        pre += w1[:, None] * _from_cols(seq[2:2 + T], T)
    if K > 2:
        pre += w2[:, None] * _from_cols(seq[1:1 + T], T)
    if K > 3:
        pre += w3[:, None] * _from_cols(seq[0:T], T)
    return pre


@triton.jit
def _conv_taps_shifted(pre, xrow, back, pos, valid2, w1, w2, w3, K: tl.constexpr):
    """`_conv_taps_cols` with the earlier taps loaded: xrow (BD, T) the chunk's x pointers, back the pointer step to
    the previous scan position, pos (T,) the scan positions (positions before the sequence read as zero)."""
    if K > 1:
        pre += w1[:, None] * tl.load(xrow - back, mask=valid2 & (pos >= 1)[None, :], other=0.0).to(tl.float32)
    if K > 2:
        pre += w2[:, None] * tl.load(xrow - 2 * back, mask=valid2 & (pos >= 2)[None, :], other=0.0).to(tl.float32)
    if K > 3:
        pre += w3[:, None] * tl.load(xrow - 3 * back, mask=valid2 & (pos >= 3)[None, :], other=0.0).to(tl.float32)
    return pre


@triton.jit(do_not_specialize=["s_c"])
def _scan_fwd_chunk_kernel(
    xz_ptr, xdbl_ptr, convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a2_ptr, dsk_ptr, out_ptr, hin_ptr, sdel_ptr,
    L, D, dir0, NGRP, GCH,
    s_xz_b, s_xz_l, s_xd_b4, s_xd_l4, s_o_b, s_o_l, s_o_dir, s_c,
    K: tl.constexpr, R: tl.constexpr, N: tl.constexpr, RP4: tl.constexpr, NP4: tl.constexpr, PS: tl.constexpr,
    BD: tl.constexpr, T: tl.constexpr, FAST: tl.constexpr, TANH: tl.constexpr, PREFETCH: tl.constexpr,
    PF_DIST: tl.constexpr, ADD: tl.constexpr, VEC: tl.constexpr = False, XREG: tl.constexpr = False,
    GROUPED: tl.constexpr = False, STATES_ONLY: tl.constexpr = False, LEAN: tl.constexpr = False,
):
    """`_scan_fwd_kernel` (v6, `SCAN_FWD_CONFIG["VERSION"] = 6`) in chunks of T tokens: same grid, tables, x_dbl
    layout and outputs (out2 (B, L, 2, D) with s_o_dir = D, or the summed (B, L, D) with ADD on direction 1's launch).

    Per chunk (in the direction's scan order), `(BD, T)` tiles with the channels across lanes and the chunk's T
    tokens in each lane's registers (`s_c` = 1 at run time, not specialised, so that the compiler cannot vectorise
    along channels and put the tokens across lanes): conv (shifted loads of the K - 1 earlier tokens, L1 hits), SiLU,
    dt_proj (R broadcast loads per token) + softplus, the gate, for all T tokens at once; then per state an in-register
    linear scan over the T tokens from the carried state (folded into the first token), the readout summed over the
    states, and the new carry (the last token's state). Only the per-state h update is sequential over tokens; the
    rest of the chain has T-fold instruction-level parallelism. The states' carries, their A (a2) and the dt_proj
    weights are tuples of (BD,) values (registers).

    GROUPED (sequence parallelism for small batches; grid (channel blocks, directions, batch * NGRP)): program
    (.., b * NGRP + k) scans group k, the GCH chunks from scan position p0 = k GCH T. With STATES_ONLY (the first of
    the two passes, `_scan_forward`): no output; from a zero state, group k < NGRP - 1 leaves its local end state
    in `hin (B, 2, NGRP, 4 NG, D)` slot k and its sum of delta S_k in `sdel (B, 2, NGRP, D)` slot k. Without it, the
    program first forms the state entering its group from those, h_in(0) = 0, h_in(j + 1) = exp2(a2 S_j) h_in(j) +
    (local end state of group j) (the product of exp(delta_t A) over a group is exp(A S_j)), then scans.

    LEAN (with TANH) as in `_scan_token`: the conv taps halved once (`_halved`, `_silu_of_double`), the gate as
    `_gated`."""
    pid_d = tl.program_id(0)
    dr = tl.program_id(1) + dir0
    grp = 0
    if GROUPED:
        pid_b = tl.program_id(2) // NGRP
        grp = tl.program_id(2) % NGRP
    else:
        pid_b = tl.program_id(2)
    step = 1 - 2 * dr
    c_lo = grp * GCH
    c_hi = tl.minimum(c_lo + GCH, tl.cdiv(L, T))
    if STATES_ONLY:
        c_hi = tl.where(grp == NGRP - 1, c_lo, c_hi)  # the last group's end state is not needed
    offs_d, mask_d, dc, bdt, dsk, cb, w0, w1, w2, w3 = _channel_block(dtb_ptr, dsk_ptr, convw_ptr, convb_ptr, pid_d, dr,
                                                                     D, s_c, BD, K)
    LEAN_T: tl.constexpr = LEAN and TANH
    if LEAN_T:  # the conv's output halved
        cb, w0, w1, w2, w3 = _halved(cb, w0, w1, w2, w3)
    wdt = ()
    for r in tl.static_range(R):
        wdt = wdt + (tl.load(dtw_ptr + (dr * D + offs_d) * RP4 + r, mask=mask_d, other=0.0),)
    a2s = ()
    for n in tl.static_range(N):
        a2s = a2s + (tl.load(a2_ptr + (dr * D + offs_d) * NP4 + n, mask=mask_d, other=0.0),)

    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    xd_base = xdbl_ptr + (pid_b.to(tl.int64) * s_xd_b4) * 4 + dr * PS
    o_base = out_ptr + pid_b.to(tl.int64) * s_o_b + dr * s_o_dir
    out_ty = out_ptr.dtype.element_ty
    offs_j = tl.arange(0, T)
    dmask2 = mask_d[:, None]
    dc2 = dc[:, None]
    zero2 = tl.zeros([BD, T], dtype=tl.int32)
    zero3 = tl.zeros([BD, T, 4], dtype=tl.int32)
    is_first = (offs_j == 0)[None, :]
    is_last = (offs_j == T - 1)[None, :]
    hs = (tl.zeros([BD], dtype=tl.float32),) * N
    xp1 = tl.zeros([BD], dtype=tl.float32)  # XREG: x of the three tokens before the chunk (scan order)
    xp2 = tl.zeros([BD], dtype=tl.float32)
    xp3 = tl.zeros([BD], dtype=tl.float32)
    if GROUPED:
        slot0 = (pid_b.to(tl.int64) * 2 + dr) * NGRP
        if not STATES_ONLY:
            for j in range(0, grp):  # the state entering this group, from the groups before it
                sdj = tl.load(sdel_ptr + (slot0 + j) * D + offs_d, mask=mask_d, other=0.0)
                new_hs = ()
                for n in tl.static_range(N):
                    loc = tl.load(hin_ptr + (slot0 + j) * (NP4 * D) + n * D + offs_d, mask=mask_d, other=0.0)
                    new_hs = new_hs + (_exp2(a2s[n] * sdj, FAST) * hs[n] + loc,)
                hs = new_hs
        if XREG:
            p0v = offs_d * 0 + c_lo * T  # the conv's history: scan positions p0 - 1, p0 - 2, p0 - 3
            t0 = dr * (L - 1) + step * (c_lo * T)
            xp1 = tl.load(x_base + (t0 - step) * s_xz_l + dc, mask=mask_d & (p0v >= 1), other=0.0).to(tl.float32)
            xp2 = tl.load(x_base + (t0 - 2 * step) * s_xz_l + dc, mask=mask_d & (p0v >= 2), other=0.0).to(tl.float32)
            xp3 = tl.load(x_base + (t0 - 3 * step) * s_xz_l + dc, mask=mask_d & (p0v >= 3), other=0.0).to(tl.float32)
    sd = tl.zeros([BD], dtype=tl.float32)  # STATES_ONLY: the group's sum of delta
    for c in range(c_lo, c_hi):
        if PREFETCH:
            if BD == 32:
                if (c * T) % 32 == 0:
                    _prefetch_ahead(x_base + dc, xd_base, dr * (L - 1) + step * (c * T), step, L, s_xz_l, s_xd_l4,
                                    D, PS, PF_DIST)
        pos = c * T + offs_j  # scan positions of the chunk's tokens
        valid = pos < L
        tok = tl.where(valid, pos + dr * (L - 1 - 2 * pos), 0)  # past the end: row 0 (read, never written)
        valid2 = valid[None, :] & dmask2
        # conv over the direction's past: scan positions i, i-1, ..., i-K+1 (the earlier ones hit L1)
        xrow = x_base + tok[None, :] * s_xz_l + dc2
        xt = tl.load(xrow, mask=valid2, other=0.0).to(tl.float32)
        pre = cb[:, None] + w0[:, None] * xt
        if XREG:
            # the earlier tokens' x from registers: this chunk's columns and the previous chunk's last three
            seq = (xp3, xp2, xp1) + _cols(xt, T)
            pre = _conv_taps_cols(pre, seq, w1, w2, w3, K, T)
            xp3 = seq[T]
            xp2 = seq[T + 1]
            xp1 = seq[T + 2]
        else:
            pre = _conv_taps_shifted(pre, xrow, step * s_xz_l, pos, valid2, w1, w2, w3, K)
        if LEAN_T:
            xc = _silu_of_double(pre)
        else:
            xc = pre * _sigmoid(pre, FAST, TANH)
        if not STATES_ONLY:
            z = tl.load(xrow + D, mask=valid2, other=0.0).to(tl.float32)
            if LEAN_T:  # `_gated` in two parts, its tanh issued here with z's load (the schedule measured)
                hz = z * 0.5
                gate = _tanh_approx(hz)
            else:
                gate = z * _sigmoid(z, FAST, TANH)
        # the x_dbl rows: same address in every lane (broadcast loads); rows past the end are row 0
        xdrow = xd_base + (tok * s_xd_l4)[None, :] * 4 + zero2
        dtp = tl.zeros([BD, T], dtype=tl.float32)
        if VEC:
            # 16-byte broadcast loads of 4 consecutive row entries, (BD, T, 4) tiles split in registers
            xdrow3 = xd_base + (tok * s_xd_l4)[None, :, None] * 4 + tl.arange(0, 4)[None, None, :] + zero3
            for g in tl.static_range((R + 3) // 4):
                d0, d1, d2, d3 = _split4(tl.load(xdrow3 + 4 * g))
                dtp += wdt[4 * g][:, None] * d0
                if 4 * g + 1 < R:
                    dtp += wdt[4 * g + 1][:, None] * d1
                if 4 * g + 2 < R:
                    dtp += wdt[4 * g + 2][:, None] * d2
                if 4 * g + 3 < R:
                    dtp += wdt[4 * g + 3][:, None] * d3
        else:
            for r in tl.static_range(R):
                dtp += wdt[r][:, None] * tl.load(xdrow + r)
        delta = tl.where(valid2, _softplus(dtp + bdt[:, None], FAST), 0.0)  # past the end: a = 1, no input
        u = delta * xc
        y = tl.zeros([BD, T], dtype=tl.float32)
        new_hs = ()
        for n in tl.static_range(N):
            if VEC:
                if n % 4 == 0:
                    b4 = _split4(tl.load(xdrow3 + RP4 + n))
                    if not STATES_ONLY:
                        c4 = _split4(tl.load(xdrow3 + RP4 + NP4 + n))
                bn = b4[n % 4]
            else:
                bn = tl.load(xdrow + RP4 + n)
            a = _exp2(delta * a2s[n][:, None], FAST)
            bx = u * bn
            bx = tl.where(is_first, bx + a * hs[n][:, None], bx)  # the carried state enters the first token
            _, h = tl.associative_scan((a, bx), 1, _lin_combine)
            if not STATES_ONLY:
                if VEC:
                    cn = c4[n % 4]
                else:
                    cn = tl.load(xdrow + RP4 + NP4 + n)
                y += h * cn
            new_hs = new_hs + (tl.sum(tl.where(is_last, h, -0.0), axis=1),)  # the last token's state (x + -0 = x)
        hs = new_hs
        if STATES_ONLY:
            sd += tl.sum(delta, axis=1)
        else:
            if LEAN_T:
                yz = (y + dsk[:, None] * xc) * hz
                out = yz + yz * gate
            else:
                out = (y + dsk[:, None] * xc) * gate
            optr = o_base + tok[None, :] * s_o_l + dc2
            if ADD:
                out += tl.load(optr, mask=valid2, other=0.0).to(tl.float32)
            tl.store(optr, out.to(out_ty), mask=valid2)
    if STATES_ONLY:
        if grp < NGRP - 1:
            for n in tl.static_range(N):
                tl.store(hin_ptr + (slot0 + grp) * (NP4 * D) + n * D + offs_d, hs[n], mask=mask_d)
            tl.store(sdel_ptr + (slot0 + grp) * D + offs_d, sd, mask=mask_d)


# ---------------------------------------------------------------------------------------------------------------
# forward v7: the per-token rows staged in shared memory (Gluon)
# ---------------------------------------------------------------------------------------------------------------
# v4 keeps each token's x_dbl row (dt, B, C: 44 broadcast floats) and x, z in registers one token ahead, so that the
# loads are issued early: 168 registers, 3 warps per scheduler, and Nsight Compute still finds a third of the stall
# samples on those loads. Triton cannot place data in shared memory explicitly; Gluon (Triton's lower-level language,
# `triton.experimental.gluon`) can. v7 copies chunks of T tokens' rows, x, z and (adding) the earlier direction's
# output into shared-memory ring buffers with `cp.async` (no registers held while in flight, one chunk ahead), and
# each token reads its row with broadcast `ld.shared` just before use. Same grid, tables, arithmetic (LEAN forms,
# half-precision inputs) and outputs as v4.
if _HAS_GLUON:
    _gl_barrier = getattr(gl, "thread_barrier", None) or getattr(gl, "barrier")  # renamed in later Triton releases
    _gl_async_load = getattr(_gl_async_copy, "async_load", None) or _gl_async_copy.async_copy_global_to_shared

    if hasattr(gl.shared_memory_descriptor, "reinterpret"):
        @gluon.jit
        def _smem_ring(buf, ty: gl.constexpr, NBUF: gl.constexpr, T: gl.constexpr, W: gl.constexpr,
                       layout: gl.constexpr):
            """A (NBUF T, W) buffer viewed as NBUF slots of (T, W)."""
            return buf.reinterpret(ty, [NBUF, T, W], layout)
    else:
        @gluon.jit
        def _smem_ring(buf, ty: gl.constexpr, NBUF: gl.constexpr, T: gl.constexpr, W: gl.constexpr,
                       layout: gl.constexpr):
            """A (NBUF T, W) buffer viewed as NBUF slots of (T, W)."""
            return buf._reinterpret(ty, [NBUF, T, W], layout)

    @gluon.jit
    def _gl_load(ptr, mask, MASKED: gl.constexpr):
        if MASKED:
            return gl.load(ptr, mask=mask, other=0.0)
        else:
            return gl.load(ptr)

    @gluon.jit
    def _gl_conv_taps(convw_ptr, convb_ptr, dr, D, offs_d, mask_d, K: gl.constexpr, MASKED: gl.constexpr):
        """`_conv_taps` for the Gluon kernels (their zeros take the layout of a loaded tap): the conv bias and taps w0
        (this token) .. w3 (three tokens earlier in scan order) of direction dr at the channels offs_d (MASKED: those
        under mask_d, the rest zero), zero beyond K."""
        cb = _gl_load(convb_ptr + dr * D + offs_d, mask_d, MASKED)
        taps = convw_ptr + (dr * K + K - 1) * D + offs_d
        w0 = _gl_load(taps, mask_d, MASKED)
        w1 = gl.zeros_like(w0)
        w2 = gl.zeros_like(w0)
        w3 = gl.zeros_like(w0)
        if K > 1:
            w1 = _gl_load(taps - D, mask_d, MASKED)
        if K > 2:
            w2 = _gl_load(taps - 2 * D, mask_d, MASKED)
        if K > 3:
            w3 = _gl_load(taps - 3 * D, mask_d, MASKED)
        return cb, w0, w1, w2, w3

    @gluon.jit
    def _smem_copy_chunk(xz_ptr, xdbl_ptr, out_ptr, rows_s, x_s, z_s, p_s, c, L, dr, D, c0, x_b, xd_b, o_b,
                         s_xz_l, s_xd_l, s_o_l, PS: gl.constexpr, PSP: gl.constexpr, BD: gl.constexpr,
                         T: gl.constexpr, ADD: gl.constexpr, GATE: gl.constexpr, num_warps: gl.constexpr):
        """Issue (one commit group) the copies of chunk c, scan positions c T .. c T + T - 1 (tokens t = p, or
        L - 1 - p for direction 1), into one ring slot each: x_dbl rows (T, PSP) float32 (PS used), and this
        program's channels of x, and with GATE z, with ADD the output already there, (T, BD) each in its own dtype.
        Positions past the end and channels past D are not copied."""
        LROWS: gl.constexpr = gl.BlockedLayout([1, 4], [128 // PSP, PSP // 4], [num_warps, 1], [1, 0])
        LCH: gl.constexpr = gl.BlockedLayout([1, 8], [256 // BD, BD // 8], [num_warps, 1], [1, 0])
        p_r = c * T + gl.arange(0, T, layout=gl.SliceLayout(1, LROWS))
        t_r = gl.minimum(gl.maximum(gl.where(dr == 0, p_r, L - 1 - p_r), 0), L - 1)
        col = gl.arange(0, PSP, layout=gl.SliceLayout(0, LROWS))
        _gl_async_load(rows_s, xdbl_ptr + xd_b + t_r[:, None] * s_xd_l + col[None, :],
                       mask=(p_r < L)[:, None] & (col < PS)[None, :])
        p_x = c * T + gl.arange(0, T, layout=gl.SliceLayout(1, LCH))
        t_x = gl.minimum(gl.maximum(gl.where(dr == 0, p_x, L - 1 - p_x), 0), L - 1)
        ch = c0 + gl.arange(0, BD, layout=gl.SliceLayout(0, LCH))
        m_x = (p_x < L)[:, None] & (ch < D)[None, :]
        off = t_x[:, None] * s_xz_l + ch[None, :]
        _gl_async_load(x_s, xz_ptr + x_b + off, mask=m_x)
        if GATE:
            _gl_async_load(z_s, xz_ptr + x_b + D + off, mask=m_x)
        if ADD:
            _gl_async_load(p_s, out_ptr + o_b + t_x[:, None] * s_o_l + ch[None, :], mask=m_x)
        _gl_async_copy.commit_group()

    @gluon.jit
    def _smem_token(h, xt, xp1, xp2, xp3, j, rows_s, z_s, p_s, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                    RP4: gl.constexpr, NP4: gl.constexpr, ADD: gl.constexpr, GATE: gl.constexpr, LN: gl.constexpr,
                    LRK: gl.constexpr, LD: gl.constexpr):
        """`_scan_token` (LEAN) for the token in ring row j: its x_dbl row read from shared memory as broadcast
        (RP4,) / (NP4,) vectors; h, a2 (BD, NP4), wdt (BD, RP4), the rest (BD,). The conv taps come halved
        (`_halved`). With ADD the value already stored is added (from its staged copy); with GATE the sum is gated.
        Returns the new state and the output (BD,) float32."""
        row = rows_s.index(j)
        dtl = row.slice(0, RP4).load(gl.SliceLayout(0, LRK))
        bv = row.slice(RP4, NP4).load(gl.SliceLayout(0, LN))
        cv = row.slice(RP4 + NP4, NP4).load(gl.SliceLayout(0, LN))
        xc = _silu_of_double(cb + w0 * xt + w1 * xp1 + w2 * xp2 + w3 * xp3)
        delta = _softplus(gl.convert_layout(gl.sum(wdt * dtl[None, :], axis=1), LD) + bdt, True)
        h = _exp2(a2 * delta[:, None], True) * h + bv[None, :] * (delta * xc)[:, None]
        y = gl.sum(h * cv[None, :], axis=1) + dsk * xc
        if ADD:
            y = y + p_s.index(j).load(LD).to(gl.float32)
        if GATE:
            y = _gated(y, z_s.index(j).load(LD).to(gl.float32))
        return h, y

    @gluon.jit
    def _scan_fwd_smem_kernel(
        xz_ptr, xdbl_ptr, convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a2_ptr, dsk_ptr, out_ptr,
        L, D, dir0, s_xz_b, s_xz_l, s_xd_b, s_xd_l, s_o_b, s_o_l, s_o_dir,
        K: gl.constexpr, RP4: gl.constexpr, NP4: gl.constexpr, PS: gl.constexpr, PSP: gl.constexpr,
        BD: gl.constexpr, T: gl.constexpr, NBUF: gl.constexpr, UNROLL: gl.constexpr, ADD: gl.constexpr,
        GATE: gl.constexpr, EVEN: gl.constexpr, num_warps: gl.constexpr,
    ):
        """One direction of the selective scan for BD = 32 num_warps channels of one sample (v7; half-precision
        inputs, LEAN arithmetic): grid, tables, x_dbl rows (B, L, 2, PS) and outputs as `_scan_fwd_kernel` (out2
        (B, L, 2, D) with s_o_dir = D, or the directions summed in (B, L, D): direction 0 stores ungated (GATE
        off), direction 1 adds (ADD) and gates). Each lane owns one channel: its N states, A and dt_proj weights in
        registers ((BD, NP4) / (BD, RP4) tiles, a row per lane). The inputs of chunks of T scan positions go to
        ring buffers of NBUF slots in shared memory by `cp.async`, chunk c + NBUF - 1 issued when chunk c starts;
        one barrier per chunk (every warp done with the slot about to be refilled, and the copies visible), and a
        second after the issue so that the compiler's own barrier analysis puts none in the token loop. UNROLL = 2:
        two tokens per iteration (the conv history without register moves)."""
        pid_d = gl.program_id(0)
        dr = gl.program_id(1) + dir0
        pid_b = gl.program_id(2)
        LN: gl.constexpr = gl.BlockedLayout([1, NP4], [32, 1], [num_warps, 1], [1, 0])
        LRK: gl.constexpr = gl.BlockedLayout([1, RP4], [32, 1], [num_warps, 1], [1, 0])
        LD: gl.constexpr = gl.SliceLayout(1, LN)
        SL1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        SL2: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        c0 = pid_d * BD
        offs_d = c0 + gl.arange(0, BD, layout=LD)
        offs_dr = c0 + gl.arange(0, BD, layout=gl.SliceLayout(1, LRK))
        offs_n = gl.arange(0, NP4, layout=gl.SliceLayout(0, LN))
        offs_r = gl.arange(0, RP4, layout=gl.SliceLayout(0, LRK))
        if EVEN:
            mask_d = gl.full([BD], 1, gl.int1, LD)
            mask_dr = gl.full([BD], 1, gl.int1, gl.SliceLayout(1, LRK))
        else:
            mask_d = offs_d < D
            mask_dr = offs_dr < D
        a2 = gl.load(a2_ptr + (dr * D + offs_d)[:, None] * NP4 + offs_n[None, :], mask=mask_d[:, None], other=0.0)
        wdt = gl.load(dtw_ptr + (dr * D + offs_dr)[:, None] * RP4 + offs_r[None, :], mask=mask_dr[:, None],
                      other=0.0)
        bdt = gl.load(dtb_ptr + dr * D + offs_d, mask=mask_d, other=0.0)
        dsk = gl.load(dsk_ptr + dr * D + offs_d, mask=mask_d, other=0.0)
        cb, w0, w1, w2, w3 = _gl_conv_taps(convw_ptr, convb_ptr, dr, D, offs_d, mask_d, K, True)
        cb, w0, w1, w2, w3 = _halved(cb, w0, w1, w2, w3)

        half_ty: gl.constexpr = xz_ptr.dtype.element_ty
        rows_s = gl.allocate_shared_memory(gl.float32, [NBUF * T, PSP], SL1)
        x_s = gl.allocate_shared_memory(half_ty, [NBUF * T, BD], SL1)
        z_s = gl.allocate_shared_memory(half_ty, [NBUF * T, BD], SL1)
        p_s = gl.allocate_shared_memory(half_ty, [NBUF * T, BD], SL1)
        rows_r = _smem_ring(rows_s, gl.float32, NBUF, T, PSP, SL2)
        x_r = _smem_ring(x_s, half_ty, NBUF, T, BD, SL2)
        z_r = _smem_ring(z_s, half_ty, NBUF, T, BD, SL2)
        p_r = _smem_ring(p_s, half_ty, NBUF, T, BD, SL2)
        x_b = pid_b.to(gl.int64) * s_xz_b
        xd_b = pid_b.to(gl.int64) * s_xd_b + dr * PS
        o_b = pid_b.to(gl.int64) * s_o_b + dr * s_o_dir
        o_base = out_ptr + o_b + offs_d
        for c in gl.static_range(NBUF - 1):
            _smem_copy_chunk(xz_ptr, xdbl_ptr, out_ptr, rows_r.index(c), x_r.index(c), z_r.index(c), p_r.index(c),
                             c, L, dr, D, c0, x_b, xd_b, o_b, s_xz_l, s_xd_l, s_o_l, PS, PSP, BD, T, ADD, GATE,
                             num_warps)
        h = gl.zeros([BD, NP4], gl.float32, LN)
        xp1 = gl.zeros([BD], gl.float32, LD)
        xp2 = gl.zeros([BD], gl.float32, LD)
        xp3 = gl.zeros([BD], gl.float32, LD)
        step = 1 - 2 * dr
        for c in range(gl.cdiv(L, T)):
            _gl_async_copy.wait_group(NBUF - 2)  # this thread's copies of chunk c have landed
            _gl_barrier()  # everyone's, and every warp is done with chunk c - 1's slot
            cn = c + NBUF - 1
            sn = cn % NBUF
            _smem_copy_chunk(xz_ptr, xdbl_ptr, out_ptr, rows_r.index(sn), x_r.index(sn), z_r.index(sn),
                             p_r.index(sn), cn, L, dr, D, c0, x_b, xd_b, o_b, s_xz_l, s_xd_l, s_o_l, PS, PSP, BD, T,
                             ADD, GATE, num_warps)
            _gl_barrier()
            j0 = (c % NBUF) * T
            n = gl.minimum(L - c * T, T)
            t = gl.where(dr == 0, c * T, L - 1 - c * T)
            jt = j0
            if UNROLL == 2:
                for i in range(n // 2):
                    j = j0 + 2 * i
                    xt = x_s.index(j).load(LD).to(gl.float32)
                    xt2 = x_s.index(j + 1).load(LD).to(gl.float32)
                    h, y = _smem_token(h, xt, xp1, xp2, xp3, j, rows_s, z_s, p_s, a2, wdt, bdt, dsk, cb, w0, w1, w2,
                                       w3, RP4, NP4, ADD, GATE, LN, LRK, LD)
                    gl.store(o_base + t * s_o_l, y.to(half_ty), mask=mask_d)
                    h, y = _smem_token(h, xt2, xt, xp1, xp2, j + 1, rows_s, z_s, p_s, a2, wdt, bdt, dsk, cb, w0, w1,
                                       w2, w3, RP4, NP4, ADD, GATE, LN, LRK, LD)
                    gl.store(o_base + (t + step) * s_o_l, y.to(half_ty), mask=mask_d)
                    xp3 = xp1
                    xp2 = xt
                    xp1 = xt2
                    t += 2 * step
                jt = j0 + 2 * (n // 2)
            for j in range(jt, j0 + n):
                xt = x_s.index(j).load(LD).to(gl.float32)
                h, y = _smem_token(h, xt, xp1, xp2, xp3, j, rows_s, z_s, p_s, a2, wdt, bdt, dsk, cb, w0, w1, w2, w3,
                                   RP4, NP4, ADD, GATE, LN, LRK, LD)
                gl.store(o_base + t * s_o_l, y.to(half_ty), mask=mask_d)
                xp3 = xp2
                xp2 = xp1
                xp1 = xt
                t += step
        _gl_async_copy.wait_group(0)


# ---------------------------------------------------------------------------------------------------------------
# backward kernels
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _exp_precise(x):
    """exp(x) in float32 to about an ulp (x clamped to [-87, 88]): x = k ln2 + r (Cody-Waite, ln2 in two parts, the
    first with 9 significant bits so that k * it is exact), |r| <= ln2 / 2, then 2^r * 2^k with 2^k made from exponent
    bits. exp2(x log2(e)) as one product (what `tl.exp` is on the GPU, and `_exp2` of a scaled argument) has a
    relative error of |x| ulp from rounding the product alone: 7 ulp in the sigmoid and softplus of a dt_proj output
    near -7 (step size ~1e-3), and the dt_proj gradients are sums of those sigmoids."""
    xc = tl.minimum(tl.maximum(x, -87.0), 88.0)
    k = tl.floor(xc * 1.4426950408889634 + 0.5)
    r = (xc - k * 0.693359375) - k * -2.1219444005469058e-4
    scale = ((k.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return tl.exp2(r * 1.4426950408889634) * scale


@triton.jit
def _sigmoid_precise(x, FAST: tl.constexpr):
    """sigmoid(x) to about an ulp (`_exp_precise` and a correctly rounded division); FAST: `_sigmoid`."""
    if FAST:
        return _sigmoid(x, True, False)
    else:
        e = _exp_precise(-tl.abs(x))
        return tl.math.div_rn(tl.where(x >= 0, 1.0, e), 1.0 + e)


@triton.jit
def _dt_split(dot, bias, FAST: tl.constexpr):
    """dt_proj's output dot + bias as hi + lo, lo the rounding error of the sum (TwoSum; 0 with FAST). With step sizes
    ~1e-3 the sum is ~-7, and its rounding (half an ulp of 7, 2.4e-7) alone would be the relative error of the
    softplus and the sigmoid there (both ~exp(x)), i.e. of every step size and dt gradient."""
    hi = dot + bias
    if FAST:
        return hi, tl.zeros_like(hi)
    else:
        bb = hi - dot
        return hi, (dot - (hi - bb)) + (bias - bb)


@triton.jit
def _softplus_sigmoid(hi, lo, FAST: tl.constexpr):
    """(softplus(x), sigmoid(x)) of x = hi + lo (`_dt_split`), each to about an ulp (`_exp_precise`, correctly
    rounded divisions, first order in lo); FAST: `_softplus` and `_sigmoid` of hi (half-precision inputs, where the
    hardware approximations are far below the input's rounding)."""
    if FAST:
        return _softplus(hi, True), _sigmoid(hi, True, False)
    else:
        u = _exp_precise(-tl.abs(hi))
        sig = tl.math.div_rn(tl.where(hi >= 0, 1.0, u), 1.0 + u)
        # log1p(u) = 2 atanh(s), s = u / (2 + u) <= 1/3
        s = tl.math.div_rn(u, 2.0 + u)
        s2 = s * s
        p = 1.0 / 15.0
        p = p * s2 + 1.0 / 13.0
        p = p * s2 + 1.0 / 11.0
        p = p * s2 + 1.0 / 9.0
        p = p * s2 + 1.0 / 7.0
        p = p * s2 + 1.0 / 5.0
        p = p * s2 + 1.0 / 3.0
        p = p * s2 + 1.0
        return tl.maximum(hi, 0.0) + 2.0 * s * p + sig * lo, sig + sig * (1.0 - sig) * lo


@triton.jit
def _lin_combine_prev(a1, b1, e1, a2, b2, e2):
    """(a1, b1, e1) earlier, (a2, b2, e2) later segment: h = a2 (a1 h0 + b1) + b2, and e = a_j h_{j-1} of the
    segment's last token j (the decayed previous state): the later segment's e2 (from a zero start) plus the earlier
    segment's state b1 decayed through the whole later segment (a2). Exact products, no cancellation: recovering
    a_j h_{j-1} as h_j - delta_j B_j x_j loses all its digits where exp(delta A) is small, and with FMA contraction
    it is not even zero at h_{j-1} = 0."""
    ab = a2 * b1
    return a1 * a2, ab + b2, ab + e2


@triton.jit
def _rev_shifted(m1, l1, v1, m2, l2, v2):
    """Reverse scan G_j = g_j + a_{j+1} G_{j+1} run forward over the flipped rows, each element (1, a_j, g_j): the
    decay of a step is the *earlier-in-scan* element's own a (the next token's), so no shifted copy of a is needed.
    A segment's summary is (M, L, V): G at its end = V + M * (a G entering it), L the a of its last element."""
    ml = m2 * l1
    return ml * m1, l2, v2 + ml * v1


@triton.jit
def _sweep_state_delta(h, xt, xp1, xp2, xp3, dtl, bv, cb, w0, w1, w2, w3, wdtt, bdt, a2t, FAST: tl.constexpr):
    """One token of the state sweep: conv + SiLU, dt_proj + softplus (as `_scan_bwd_group_kernel` recomputes them),
    h = exp(delta A) h + delta B xc. Tiles: h, a2t, bv (BD, 4, NG); wdtt, dtl (BD, 4, RG); the rest (BD,).
    Returns (h, delta)."""
    pre = cb + w0 * xt + w1 * xp1 + w2 * xp2 + w3 * xp3
    xc = pre * _sigmoid_precise(pre, FAST)
    dt_hi, dt_lo = _dt_split(tl.sum(tl.sum(wdtt * dtl, axis=2), axis=1), bdt, FAST)
    delta, _ = _softplus_sigmoid(dt_hi, dt_lo, FAST)
    return _exp2(a2t * delta[:, None, None], FAST) * h + bv * (delta * xc)[:, None, None], delta


@triton.jit
def _sweep_adjoint_token(g, z, dout, dtl, cv, wdtt, bdt, a2t, FAST: tl.constexpr):
    """One token of the adjoint sweep: exp(delta_i A) (C_i gy_i + G_{i+1}) with gy = dout silu(z)."""
    gy = dout * (z * _sigmoid_precise(z, FAST))
    dt_hi, dt_lo = _dt_split(tl.sum(tl.sum(wdtt * dtl, axis=2), axis=1), bdt, FAST)
    delta, _ = _softplus_sigmoid(dt_hi, dt_lo, FAST)
    return _exp2(a2t * delta[:, None, None], FAST) * (cv * gy[:, None, None] + g)


@triton.jit(do_not_specialize=["s_c"])
def _scan_bwd_split_local_kernel(
    xz_ptr, xdbl_ptr, dout_ptr, convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a2_ptr,
    ckpt_ptr, pdel_ptr, sdel_ptr, gcar_ptr,
    L, D, NCH, NGRP,
    s_xz_b, s_xz_l, s_xd_b4, s_xd_l4, s_do_b, s_do_l, s_do_dir, s_c,
    K: tl.constexpr, RG: tl.constexpr, NG: tl.constexpr, RP4: tl.constexpr, NP4: tl.constexpr, PS: tl.constexpr,
    BD: tl.constexpr, T: tl.constexpr, GT: tl.constexpr, FAST: tl.constexpr, UNROLL: tl.constexpr = 1,
    PF1: tl.constexpr = 0,
):
    """Level 1 of the backward's sweeps (a two-level scan): the two recurrences of the backward, the state forward and
    the adjoint backward in scan order (`_sweep_state_delta`, `_sweep_adjoint_token`), over one group of GT tokens
    (scan positions p0 = grp GT .. p0 + n - 1, the groups of `_scan_bwd_group_kernel`) from a zero carry, all groups in
    parallel (grid: channel block, 2 * mode + direction, sample * NGRP + group); loads issued one token ahead, UNROLL
    2 (T and GT even) two tokens per iteration.

    Mode 0: the local state entering every chunk of the group but its first (h = 0 at p0) into `ckpt (B, 2, NCH,
    4 NG, D)` (its slots), the sum of delta from p0 to each chunk's first token (exclusive) into `pdel (B, 2, NCH,
    D)`, the local state after the group's last token into the ckpt slot of the next group's first chunk (not for
    the last group), and the group's sum of delta into `sdel (B, 2, NGRP, D)`. The true state entering chunk c of
    group k is then ckpt(c) + exp2(a2 pdel(c)) h_in(k) (the product of exp(delta_t A) over a span is exp(A sum
    delta)), h_in(k) from `_scan_bwd_split_combine_kernel` (which stores it in the slot of group k's first chunk),
    the sum formed by the group kernel. Mode 1 (groups after the first): the adjoint from the group's right
    end with zero carry, its local exp(delta_p0 A) G_p0 into `gcar` at slot grp - 1 (the slot of the group it
    enters; the combine kernel turns the slots into the true carries in place).
    PF1 > 0 (UNROLL 2; not under the interpreter): each iteration prefetches into L1 the inputs of the two tokens
    PF1 positions ahead (`_prefetch_pair_l1`)."""
    pid_d = tl.program_id(0)
    mode = tl.program_id(1) // 2
    dr = tl.program_id(1) % 2
    pid_b = tl.program_id(2) // NGRP
    grp = tl.program_id(2) % NGRP
    p0 = grp * GT
    n = tl.minimum(GT, L - p0)  # tokens of the group (>= 1)
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < D
    dc = offs_d * s_c
    step = 1 - 2 * dr
    bdt = tl.load(dtb_ptr + dr * D + dc, mask=mask_d, other=0.0)
    d3 = offs_d[:, None, None]
    m3 = mask_d[:, None, None]
    v4 = tl.arange(0, 4)[None, :, None]
    n3 = tl.arange(0, NG)[None, None, :] * 4 + v4
    r3 = tl.arange(0, RG)[None, None, :] * 4 + v4
    a2t = tl.load(a2_ptr + (dr * D + d3) * NP4 + n3, mask=m3, other=0.0)
    wdtt = tl.load(dtw_ptr + (dr * D + d3) * RP4 + r3, mask=m3, other=0.0)
    zero3 = d3 * 0
    off_r3 = r3 + zero3
    st_off3 = n3 * D + d3 * s_c
    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    xd_base = xdbl_ptr + (pid_b.to(tl.int64) * s_xd_b4) * 4 + dr * PS
    dslot = pid_b.to(tl.int64) * 2 + dr
    if mode == 0:
        cb, w0, w1, w2, w3 = _conv_taps(convw_ptr, convb_ptr, dr, D, dc, mask_d, K)
        off_b3 = RP4 + n3 + zero3
        ck_base = ckpt_ptr + (dslot * NCH) * (NP4 * D)
        pd_base = pdel_ptr + (dslot * NCH) * D + dc
        t = dr * (L - 1) + step * p0  # the token at scan position p0
        # the conv's history: the inputs at positions p0 - 1, p0 - 2, p0 - 3 (those before the sequence: zero)
        p0v = offs_d * 0 + p0
        xp1 = tl.load(x_base + (t - step) * s_xz_l + dc, mask=mask_d & (p0v >= 1), other=0.0).to(tl.float32)
        xp2 = tl.load(x_base + (t - 2 * step) * s_xz_l + dc, mask=mask_d & (p0v >= 2), other=0.0).to(tl.float32)
        xp3 = tl.load(x_base + (t - 3 * step) * s_xz_l + dc, mask=mask_d & (p0v >= 3), other=0.0).to(tl.float32)
        h = tl.zeros([BD, 4, NG], dtype=tl.float32)
        sd = tl.zeros([BD], dtype=tl.float32)  # sum of delta from p0
        nxt_x = tl.load(x_base + t * s_xz_l + dc, mask=mask_d, other=0.0)
        nxt_dtl = tl.load(xd_base + (t * s_xd_l4) * 4 + off_r3)
        nxt_bv = tl.load(xd_base + (t * s_xd_l4) * 4 + off_b3)
        c0 = p0 // T
        if UNROLL == 2:
            for i2 in range(0, n // 2):
                i = 2 * i2
                if PF1 > 0:
                    _prefetch_pair_l1(t + PF1 * step, step, L, xd_base, s_xd_l4, x_base + dc, s_xz_l, x_base,
                                      s_xz_l, PS, BD, False)
                if i % T == 0:  # T even: token i + 1 never starts a chunk
                    tl.store(ck_base + (c0 + i // T) * (NP4 * D) + st_off3, h, mask=m3 & (zero3 + i > 0))
                    tl.store(pd_base + (c0 + i // T) * D, sd, mask=mask_d)
                t1 = t + step  # token i + 1 (< n): the second register set
                x2 = tl.load(x_base + t1 * s_xz_l + dc, mask=mask_d, other=0.0)
                dtl2 = tl.load(xd_base + (t1 * s_xd_l4) * 4 + off_r3)
                bv2 = tl.load(xd_base + (t1 * s_xd_l4) * 4 + off_b3)
                xt = nxt_x.to(tl.float32)
                h, d1 = _sweep_state_delta(h, xt, xp1, xp2, xp3, nxt_dtl, nxt_bv, cb, w0, w1, w2, w3, wdtt, bdt, a2t,
                                           FAST)
                sd += d1
                tn = t + step * (1 + (i + 2 < n).to(tl.int32))  # token i + 2 (past the group: reload i + 1)
                nxt_x = tl.load(x_base + tn * s_xz_l + dc, mask=mask_d, other=0.0)
                nxt_dtl = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_r3)
                nxt_bv = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_b3)
                x2f = x2.to(tl.float32)
                h, d2 = _sweep_state_delta(h, x2f, xt, xp1, xp2, dtl2, bv2, cb, w0, w1, w2, w3, wdtt, bdt, a2t, FAST)
                sd += d2
                xp3 = xp1
                xp2 = xt
                xp1 = x2f
                t += 2 * step
            if n % 2 == 1:  # the group's last token (the sequence's), its inputs already loaded
                if (n - 1) % T == 0:
                    tl.store(ck_base + (c0 + (n - 1) // T) * (NP4 * D) + st_off3, h, mask=m3 & (zero3 + n > 1))
                    tl.store(pd_base + (c0 + (n - 1) // T) * D, sd, mask=mask_d)
                h, d1 = _sweep_state_delta(h, nxt_x.to(tl.float32), xp1, xp2, xp3, nxt_dtl, nxt_bv, cb, w0, w1, w2,
                                           w3, wdtt, bdt, a2t, FAST)
                sd += d1
        else:
            for i in range(0, n):
                if i % T == 0:
                    tl.store(ck_base + (c0 + i // T) * (NP4 * D) + st_off3, h, mask=m3 & (zero3 + i > 0))
                    tl.store(pd_base + (c0 + i // T) * D, sd, mask=mask_d)
                xt = nxt_x.to(tl.float32)
                dtl = nxt_dtl
                bv = nxt_bv
                tn = t + step * (i + 1 < n).to(tl.int32)
                nxt_x = tl.load(x_base + tn * s_xz_l + dc, mask=mask_d, other=0.0)
                nxt_dtl = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_r3)
                nxt_bv = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_b3)
                h, d1 = _sweep_state_delta(h, xt, xp1, xp2, xp3, dtl, bv, cb, w0, w1, w2, w3, wdtt, bdt, a2t, FAST)
                sd += d1
                xp3 = xp2
                xp2 = xp1
                xp1 = xt
                t += step
        tl.store(sdel_ptr + (dslot * NGRP + grp) * D + dc, sd, mask=mask_d)
        if grp + 1 < NGRP:
            tl.store(ck_base + (c0 + GT // T) * (NP4 * D) + st_off3, h, mask=m3)
    elif grp > 0:
        off_c3 = RP4 + NP4 + n3 + zero3
        do_base = dout_ptr + pid_b.to(tl.int64) * s_do_b + dr * s_do_dir
        g = tl.zeros([BD, 4, NG], dtype=tl.float32)
        t = dr * (L - 1) + step * (p0 + n - 1)  # the token at the group's last scan position
        nxt_z = tl.load(x_base + t * s_xz_l + D + dc, mask=mask_d, other=0.0)
        nxt_do = tl.load(do_base + t * s_do_l + dc, mask=mask_d, other=0.0)
        nxt_dtl = tl.load(xd_base + (t * s_xd_l4) * 4 + off_r3)
        nxt_cv = tl.load(xd_base + (t * s_xd_l4) * 4 + off_c3)
        if UNROLL == 2:
            for ii2 in range(0, n // 2):
                if PF1 > 0:
                    _prefetch_pair_l1(t - PF1 * step, -step, L, xd_base, s_xd_l4, x_base + D + dc, s_xz_l,
                                      do_base + dc, s_do_l, PS, BD, True)
                t1 = t - step  # position p0 + n - 2 - 2 ii2 (>= p0)
                z2 = tl.load(x_base + t1 * s_xz_l + D + dc, mask=mask_d, other=0.0)
                do2 = tl.load(do_base + t1 * s_do_l + dc, mask=mask_d, other=0.0)
                dtl2 = tl.load(xd_base + (t1 * s_xd_l4) * 4 + off_r3)
                cv2 = tl.load(xd_base + (t1 * s_xd_l4) * 4 + off_c3)
                g = _sweep_adjoint_token(g, nxt_z.to(tl.float32), nxt_do.to(tl.float32), nxt_dtl, nxt_cv, wdtt, bdt,
                                         a2t, FAST)
                tn = t - step * (1 + (2 * ii2 + 2 < n).to(tl.int32))  # two positions back (before p0: reload)
                nxt_z = tl.load(x_base + tn * s_xz_l + D + dc, mask=mask_d, other=0.0)
                nxt_do = tl.load(do_base + tn * s_do_l + dc, mask=mask_d, other=0.0)
                nxt_dtl = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_r3)
                nxt_cv = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_c3)
                g = _sweep_adjoint_token(g, z2.to(tl.float32), do2.to(tl.float32), dtl2, cv2, wdtt, bdt, a2t, FAST)
                t -= 2 * step
            if n % 2 == 1:  # position p0, its inputs already loaded
                g = _sweep_adjoint_token(g, nxt_z.to(tl.float32), nxt_do.to(tl.float32), nxt_dtl, nxt_cv, wdtt, bdt,
                                         a2t, FAST)
        else:
            for ii in range(0, n):
                z = nxt_z.to(tl.float32)
                dout = nxt_do.to(tl.float32)
                dtl = nxt_dtl
                cv = nxt_cv
                tn = t - step * (ii + 1 < n).to(tl.int32)
                nxt_z = tl.load(x_base + tn * s_xz_l + D + dc, mask=mask_d, other=0.0)
                nxt_do = tl.load(do_base + tn * s_do_l + dc, mask=mask_d, other=0.0)
                nxt_dtl = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_r3)
                nxt_cv = tl.load(xd_base + (tn * s_xd_l4) * 4 + off_c3)
                g = _sweep_adjoint_token(g, z, dout, dtl, cv, wdtt, bdt, a2t, FAST)
                t -= step
        tl.store(gcar_ptr + (dslot * NGRP + grp - 1) * (NP4 * D) + st_off3, g, mask=m3)


@triton.jit(do_not_specialize=["s_c"])
def _scan_bwd_split_combine_kernel(
    a2_ptr, ckpt_ptr, sdel_ptr, gcar_ptr, D, NCH, NGRP, s_c,
    NG: tl.constexpr, NP4: tl.constexpr, BD: tl.constexpr, GCH: tl.constexpr, FAST: tl.constexpr,
):
    """Level 2 of the split sweeps: the group carries from `_scan_bwd_split_local_kernel`'s local values, sequential
    over the NGRP groups, in place (grid: channel block, 2 * mode + direction, sample). With S_k the sum of delta
    over group k (`sdel`) and E_k = exp2(a2 S_k):
    mode 0: h_in(0) = 0, h_in(k + 1) = E_k h_in(k) + (local state at the end of group k), in the ckpt slot of
    group k + 1's first chunk (chunk (k + 1) GCH), where the local pass left the local state;
    mode 1, gcar: gcar(NGRP - 1) = 0, gcar(k - 1) = (local exp(delta A) G at group k's first position, in slot
    k - 1) + E_k gcar(k): gcar(k) what enters group k from its right end (exp(delta_p A) G_p at its first position p
    after it)."""
    pid_d = tl.program_id(0)
    mode = tl.program_id(1) // 2
    dr = tl.program_id(1) % 2
    pid_b = tl.program_id(2)
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < D
    dc = offs_d * s_c
    d3 = offs_d[:, None, None]
    m3 = mask_d[:, None, None]
    n3 = tl.arange(0, NG)[None, None, :] * 4 + tl.arange(0, 4)[None, :, None]
    a2t = tl.load(a2_ptr + (dr * D + d3) * NP4 + n3, mask=m3, other=0.0)
    st_off3 = n3 * D + d3 * s_c
    slot0 = (pid_b.to(tl.int64) * 2 + dr) * NGRP
    sd_base = sdel_ptr + slot0 * D + dc
    c = tl.zeros([BD, 4, NG], dtype=tl.float32)
    if mode == 0:
        hb = ckpt_ptr + (pid_b.to(tl.int64) * 2 + dr) * NCH * (NP4 * D) + st_off3
        tl.store(hb, c, mask=m3)
        for k in range(0, NGRP - 1):
            s = tl.load(sd_base + k * D, mask=mask_d, other=0.0)
            loc = tl.load(hb + (k + 1) * GCH * (NP4 * D), mask=m3, other=0.0)
            c = _exp2(a2t * s[:, None, None], FAST) * c + loc
            tl.store(hb + (k + 1) * GCH * (NP4 * D), c, mask=m3)
    else:
        gb = gcar_ptr + slot0 * (NP4 * D) + st_off3
        for kk in range(0, NGRP - 1):
            k = NGRP - 1 - kk
            tl.store(gb + k * (NP4 * D), c, mask=m3)
            s = tl.load(sd_base + k * D, mask=mask_d, other=0.0)
            loc = tl.load(gb + (k - 1) * (NP4 * D), mask=m3, other=0.0)
            c = loc + _exp2(a2t * s[:, None, None], FAST) * c
        tl.store(gb, c, mask=m3)


def _reduce_scatter_ptx(t_rows: int) -> str:
    """PTX of the per-state channel sums of the v6 group kernel (`GROUP` 6): a reduce-scatter over the 32 lanes of
    the 2 T values each lane holds (operands $2T.. : P_0..P_{T-1} = G u, then Q_0..Q_{T-1} = gy h, one channel per
    lane; then T copies of the lane index). Each halving step exchanges half of the values with lane ^ m (the lane
    with bit m set keeps the upper half and sends the lower one), adds, and drops the half sent; once one value is
    left the remaining lane bits are full butterfly steps. Lane l ends with the sum over the 32 lanes of value
    l >> (5 - log2(2T)) (P_j for j < T, else Q_{j-T}), in all T outputs. Every sum is the same tree of additions
    as the butterfly of `tl.sum(axis=0)` (lane ^ 16 first, then 8, 4, 2, 1), so the results are bitwise equal:
    2T - 1 + 5 - log2(2T) shuffles instead of 10 T (T 8: 16 instead of 80)."""
    nv = 2 * t_rows
    assert nv & (nv - 1) == 0 and 2 <= nv <= 32, t_rows
    lines = ["{", ".reg .pred %rsp;", ".reg .b32 %rsm;", f".reg .f32 %rsv<{nv}>, %rss, %rsr;"]
    lines += [f"mov.b32 %rsv{i}, ${t_rows + i};" for i in range(nv)]
    width, mask = nv, 16
    while width > 1:
        half = width // 2
        lines += [f"and.b32 %rsm, ${t_rows + nv}, {mask};", "setp.ne.b32 %rsp, %rsm, 0;"]
        for i in range(half):
            lines += [
                f"selp.b32 %rss, %rsv{i}, %rsv{i + half}, %rsp;",
                f"selp.b32 %rsv{i}, %rsv{i + half}, %rsv{i}, %rsp;",
                f"shfl.sync.bfly.b32 %rsr, %rss, {mask}, 31, -1;",
                f"add.f32 %rsv{i}, %rsv{i}, %rsr;",
            ]
        width, mask = half, mask // 2
    while mask >= 1:
        lines += [f"shfl.sync.bfly.b32 %rsr, %rsv0, {mask}, 31, -1;", "add.f32 %rsv0, %rsv0, %rsr;"]
        mask //= 2
    lines += [f"mov.b32 ${i}, %rsv0;" for i in range(t_rows)]
    lines.append("}")
    return "\n".join(lines)


def _reduce_scatter_constraints(t_rows: int) -> str:
    return ",".join(["=f"] * t_rows + ["f"] * (2 * t_rows) + ["r"] * t_rows)


def _reduce_scatter_smem_ptx() -> str:
    """`_reduce_scatter_ptx(8)` through shared memory: each lane stores its 16 values (P_0..P_7, Q_0..Q_7) as row l
    of a 32 x 16 float32 matrix (four 16-byte stores, their column chunks XOR-swizzled by (l >> 1) & 3 so that no two
    lanes of an 8-lane phase share a bank), then lane l reads column o = l >> 1 of the 16 rows of parity p = l & 1
    (16 loads, conflict-free) and adds them in the butterfly's tree (rows k and k ^ 8, then ^ 4, ^ 2, ^ 1 of the
    parity's rows: lane bits 4..1), and one shuffle with lane ^ 1 adds the two parities: the same additions as the
    shuffle version, so bitwise the same sums, in 4 stores, 16 loads, 16 adds and one shuffle instead of 16
    shuffles, 30 selects and 16 adds. Operands: $0..$7 out, $8..$23 the values, $24.. the lane's write offset
    64 l + ((l & 6) << 3), $32.. its read offset 64 (l & 1) + 4 (l >> 1) (8 copies each, the first used)."""
    lines = ["{", ".shared .align 128 .b8 rsbuf[2048];", ".reg .b32 %rsw, %rsr, %rsa<4>, %rsb<4>;",
             ".reg .f32 %rsx<16>, %rss;", "mov.u32 %rsw, rsbuf;", "add.u32 %rsr, %rsw, $32;",
             "add.u32 %rsw, %rsw, $24;"]
    lines += [f"xor.b32 %rsa{c}, %rsw, {16 * c};" for c in range(4)]
    for c in range(4):  # chunk c: values 4c .. 4c + 3, operands $8 + 4c ..
        lines.append(f"st.shared.v4.f32 [%rsa{c}], {{{', '.join(f'${8 + 4 * c + i}' for i in range(4))}}};")
    lines += ["bar.warp.sync -1;"]
    lines += [f"xor.b32 %rsb{m}, %rsr, {16 * m};" for m in range(4)]
    lines += [f"ld.shared.f32 %rsx{k}, [%rsb{k & 3}+{128 * k}];" for k in range(16)]
    lines += ["bar.warp.sync -1;"]
    width = 16
    while width > 1:
        half = width // 2
        lines += [f"add.f32 %rsx{k}, %rsx{k}, %rsx{k + half};" for k in range(half)]
        width = half
    lines += ["shfl.sync.bfly.b32 %rss, %rsx0, 1, 31, -1;", "add.f32 %rsx0, %rsx0, %rss;"]
    lines += [f"mov.b32 ${i}, %rsx0;" for i in range(8)]
    lines.append("}")
    return "\n".join(lines)


_RS_SMEM_PTX = tl.constexpr(_reduce_scatter_smem_ptx())
_RS_SMEM_CON = tl.constexpr(",".join(["=f"] * 8 + ["f"] * 16 + ["r"] * 16))
_RS_PTX_T8 = tl.constexpr(_reduce_scatter_ptx(8))
_RS_CON_T8 = tl.constexpr(_reduce_scatter_constraints(8))
_RS_PTX_T4 = tl.constexpr(_reduce_scatter_ptx(4))
_RS_CON_T4 = tl.constexpr(_reduce_scatter_constraints(4))


@triton.jit
def _keep_first(a, b):
    return a


@triton.jit
def _channel_sums_scattered(P, Q, lane2, offs_j, BD: tl.constexpr, T: tl.constexpr, SH: tl.constexpr,
                            ASM: tl.constexpr, SMEM: tl.constexpr = False):
    """(BD,) per lane l: sum over the BD = 32 channels (lanes) of P[:, j] if l >> SH < T else of Q[:, j],
    j = (l >> SH) % T (P, Q (BD, T); lane2 (BD, T) int32 the channel index). ASM: `_reduce_scatter_ptx`'s shuffles,
    or with SMEM (T 8) `_reduce_scatter_smem_ptx` (each lane's write and read offsets in its shared-memory buffer
    computed here, loop-invariant); otherwise (the interpreter, which has no inline assembly) two `tl.sum`s and a
    selection, the same values."""
    if ASM:
        if SMEM and T == 8:
            wofs = lane2 * 64 + ((lane2 & 6) << 3)
            rofs = (lane2 & 1) * 64 + (lane2 >> 1) * 4
            out = tl.inline_asm_elementwise(_RS_SMEM_PTX, _RS_SMEM_CON, [P, Q, wofs, rofs], dtype=tl.float32,
                                            is_pure=False, pack=8)
        elif T == 8:
            out = tl.inline_asm_elementwise(_RS_PTX_T8, _RS_CON_T8, [P, Q, lane2], dtype=tl.float32, is_pure=True,
                                            pack=8)
        else:
            out = tl.inline_asm_elementwise(_RS_PTX_T4, _RS_CON_T4, [P, Q, lane2], dtype=tl.float32, is_pure=True,
                                            pack=4)
        return tl.reduce(out, 1, _keep_first)
    else:
        lane = tl.arange(0, BD)
        idx = lane >> SH
        jl = idx % T
        sp = tl.sum(P, axis=0)
        sq = tl.sum(Q, axis=0)
        pick = tl.where((idx >= T)[:, None], sq[None, :], sp[None, :])
        return tl.sum(tl.where(jl[:, None] == offs_j[None, :], pick, 0.0), axis=1)



@triton.jit
def _pick_last(x, k: tl.constexpr):
    """x[..., k] of a tile whose last axis lies in each thread's registers (a register pick once compiled)."""
    sel = tl.arange(0, x.shape[2])[None, None, :] == k
    return tl.sum(tl.where(sel, x, -0.0), axis=2)


@triton.jit(do_not_specialize=["s_c"])
def _scan_bwd_group_kernel(
    xz_ptr, xdbl_ptr, dout_ptr, convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a2_ptr, dsk_ptr,
    ckpt_ptr, gcar_ptr, y_ptr, dxc_ptr, ddp_ptr, dxd_ptr, dA_ptr, dD_ptr, aneg_ptr, pdel_ptr,
    L, D, NCH, NDB, NGRP,
    s_xz_b, s_xz_l, s_xd_b4, s_xd_l4, s_do_b, s_do_l, s_do_dir, s_y_b, s_y_l, s_c,
    R: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
    RP4: tl.constexpr, NP4: tl.constexpr, PS: tl.constexpr,
    BD: tl.constexpr, T: tl.constexpr, GCH: tl.constexpr, FAST: tl.constexpr,
    RS: tl.constexpr = False, RS_ASM: tl.constexpr = False, NV: tl.constexpr = 1, PF: tl.constexpr = False,
    RS_SMEM: tl.constexpr = False, DT_VEC: tl.constexpr = False, X_COLS: tl.constexpr = False,
):
    """Phase 2 of the v5 backward: one group of GCH chunks of T tokens, BD channels, one direction of one sample
    (grid: channel block, direction, sample * NGRP + group). The chunks of the group from its last, starting from the
    adjoint carry that the sweeps stored for the group (`gcar`, updated in place per state: no (4 NG, BD) tiles in
    registers) and the state checkpoints `ckpt`. Per chunk, per state: the chunk's states from its checkpoint and the
    adjoint G_j = C_j gy_j + a_{j+1} G_{j+1} as in-register scans over the chunk's rows, then y (B, L, 2, D) (this
    direction's ungated output), dxc, ddp (gradients wrt the conv output and the dt_proj output), this channel
    block's share of the B and C gradients dxd (B, L, 2, NDB, 2 NP4: B, then C), and per group the dA
    (B, 2, NGRP, 4 NG, D) and dD (B, 2, NGRP, D) partial sums (float32 over at most GCH * T tokens; added in float64
    on the host).

    RS (v6, `SCAN_BWD_CONFIG["GROUP"] = 6`; needs BD = 32, one warp, T 4 or 8): the dB / dC channel sums of a state
    as one reduce-scatter (`_channel_sums_scattered`; RS_ASM: inline PTX, its exchange through shared memory with
    RS_SMEM and T 8, else shuffles) instead of a butterfly per row, each lane then storing one distinct value (lane
    l: row (l >> SH) % T, dB for l < 16, dC above; one lane of every 2^SH), through one pointer per lane instead of T
    row pointers. NV (a divisor of N; 1 by default): the state loop NV states per iteration (unrolled), B and C of
    the NV states loaded as one vector per token.

    `ckpt` holds the states local to the group (`_scan_bwd_split_local_kernel`) but for the group's first chunk c0,
    which holds the true state entering the group (`_scan_bwd_split_combine_kernel`); the state entering chunk c > c0
    is ckpt(c) + exp2(a2 pdel(c)) ckpt(c0), `pdel (B, 2, NCH, D)` the sum of delta from the group's start to the
    chunk's: one load, one exp2 and an FMA per state and chunk.

    PF (`SCAN_BWD_CONFIG["PF"]`; needs D % BD = 0, no masked-off channel; not under the interpreter): at the top of
    state n's iteration, the rows of state n + 1 that come from L2 (checkpoints, adjoint carry, dA) are prefetched
    into L1 (`_prefetch_l1`), so that their loads one iteration later do not stall the state's first FMAs for an L2
    round trip.

    DT_VEC (`SCAN_BWD_CONFIG["DT_VEC"]`): the chunk's dt entries of x_dbl as 16-byte broadcast loads, (BD, T, 4)
    tiles split in registers, instead of R scalar loads per token (under the register cap the compiler issues them
    one token at a time, each an L2 round trip). X_COLS (T 2, 4 or 8): the conv's earlier taps from the chunk's own
    x columns and the three positions before it, not K shifted tile loads. Same arithmetic in the same order."""
    pid_d = tl.program_id(0)
    dr = tl.program_id(1)
    pid_g = tl.program_id(2)
    pid_b = pid_g // NGRP
    grp = pid_g % NGRP
    step = 1 - 2 * dr
    offs_d, mask_d, dc, bdt, dsk, cb, w0, w1, w2, w3 = _channel_block(dtb_ptr, dsk_ptr, convw_ptr, convb_ptr, pid_d, dr,
                                                                     D, s_c, BD, K)

    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    xd_base = xdbl_ptr + (pid_b.to(tl.int64) * s_xd_b4) * 4 + dr * PS
    ck_base = ckpt_ptr + ((pid_b.to(tl.int64) * 2 + dr) * NCH) * (NP4 * D)
    gslot = (pid_b.to(tl.int64) * 2 + dr) * NGRP + grp
    gc_c = gcar_ptr + gslot * (NP4 * D) + dc
    dA_c = dA_ptr + gslot * (NP4 * D) + dc

    offs_j = tl.arange(0, T)
    dmask2 = mask_d[:, None]
    dc2 = dc[:, None]
    zero2 = tl.zeros([BD, T], dtype=tl.int32)
    dD_acc = tl.zeros([BD], dtype=tl.float32)
    is_first = (offs_j == 0)[None, :]
    is_last = (offs_j == T - 1)[None, :]
    y_base = y_ptr + pid_b.to(tl.int64) * s_y_b + dr * D
    dxc_base = dxc_ptr + pid_b.to(tl.int64) * s_y_b + dr * D
    do_base = dout_ptr + pid_b.to(tl.int64) * s_do_b + dr * s_do_dir
    dxd_base = dxd_ptr + ((pid_b.to(tl.int64) * L) * 2 * NDB + dr * NDB + pid_d) * (2 * NP4)
    if RS:
        SH: tl.constexpr = 4 - (T.bit_length() - 1)  # 5 - log2(2 T)
        lane = tl.arange(0, BD)
        lane2 = lane[:, None] + zero2
        rs_row = (lane >> SH) % T
        rs_col = (lane >> SH >= T).to(tl.int32) * NP4
        rs_lead = (lane & ((1 << SH) - 1)) == 0
    c_lo = grp * GCH
    nc = tl.minimum(GCH, NCH - c_lo)
    for cc in range(0, nc):
        c = c_lo + nc - 1 - cc
        pos = c * T + offs_j  # scan positions of the chunk's rows
        valid = pos < L
        tok = pos + dr * (L - 1 - 2 * pos)
        tok = tl.where(valid, tok, 0)
        if RS:
            rs_pos = c * T + rs_row
            rs_valid = rs_lead & (rs_pos < L)
            rs_tok = tl.where(rs_pos < L, rs_pos + dr * (L - 1 - 2 * rs_pos), 0)
            rs_ptr = dxd_base + rs_tok * (2 * NDB * 2 * NP4) + rs_col
        valid2 = valid[None, :] & dmask2
        # conv over the direction's past: scan positions i, i-1, ..., i-K+1
        xrow = x_base + tok[None, :] * s_xz_l + dc2
        xt = tl.load(xrow, mask=valid2, other=0.0).to(tl.float32)
        pre = cb[:, None] + w0[:, None] * xt
        if X_COLS:  # the taps from the chunk's own columns and the three positions before it (3 loads, not 3 T)
            t0 = dr * (L - 1) + step * (c * T)  # the token at the chunk's first scan position
            p0v = offs_d * 0 + c * T
            seq = ()
            for j in tl.static_range(3):
                seq = seq + (tl.load(x_base + (t0 - (3 - j) * step) * s_xz_l + dc, mask=mask_d & (p0v >= 3 - j),
                                     other=0.0).to(tl.float32),)
            pre = _conv_taps_cols(pre, seq + _cols(xt, T), w1, w2, w3, K, T)
        else:
            pre = _conv_taps_shifted(pre, xrow, step * s_xz_l, pos, valid2, w1, w2, w3, K)
        sg = _sigmoid_precise(pre, FAST)
        xc = pre * sg
        z = tl.load(xrow + D, mask=valid2, other=0.0).to(tl.float32)
        dout = tl.load(do_base + tok[None, :] * s_do_l + dc2, mask=valid2, other=0.0).to(tl.float32)
        gy = dout * (z * _sigmoid_precise(z, FAST))
        xdrow = xd_base + (tok * s_xd_l4)[None, :] * 4 + zero2
        # dt_proj: the rank-R product first, the bias last, the sum's rounding kept apart (`_dt_split`)
        dtp = tl.zeros([BD, T], dtype=tl.float32)
        if DT_VEC:  # the rows' dt entries as 16-byte broadcast loads, (BD, T, 4) tiles split in registers
            xdrow3 = xd_base + (tok * s_xd_l4)[None, :, None] * 4 + tl.arange(0, 4)[None, None, :] + zero2[:, :, None]
            for q in tl.static_range((R + 3) // 4):
                d4 = _split4(tl.load(xdrow3 + 4 * q, mask=valid[None, :, None], other=0.0))
                for j in tl.static_range(4):
                    if 4 * q + j < R:
                        wr = tl.load(dtw_ptr + (dr * D + offs_d) * RP4 + 4 * q + j, mask=mask_d, other=0.0)
                        dtp += wr[:, None] * d4[j]
        else:
            for r in tl.static_range(R):
                wr = tl.load(dtw_ptr + (dr * D + offs_d) * RP4 + r, mask=mask_d, other=0.0)
                dtp += wr[:, None] * tl.load(xdrow + r, mask=valid[None, :], other=0.0)
        dtp, dtp_lo = _dt_split(dtp, bdt[:, None], FAST)
        delta, sig_dt = _softplus_sigmoid(dtp, dtp_lo, FAST)
        delta = tl.where(valid2, delta, 0.0)
        u = delta * xc
        yacc = tl.zeros([BD, T], dtype=tl.float32)
        dxc_acc = tl.zeros([BD, T], dtype=tl.float32)
        ddl_acc = tl.zeros([BD, T], dtype=tl.float32)
        ck_c = ck_base + c * (NP4 * D) + dc
        pdel = tl.load(pdel_ptr + ((pid_b.to(tl.int64) * 2 + dr) * NCH + c) * D + dc, mask=mask_d, other=0.0)
        lo_off = (c - c_lo) * (NP4 * D)  # back to the group's first chunk
        lo_mask = mask_d & (offs_d * 0 + c > c_lo)
        if not RS:
            rowp = dxd_base + tok * (2 * NDB * 2 * NP4)
        # a run-time loop over the states (NV at a time, the NV unrolled): a fully unrolled one lets the compiler hoist
        # all states' loads
        for n0 in range(0, N, NV):
            if NV > 1:  # B and C of NV states per token as one vector load each
                vo = xdrow[:, :, None] + (n0 + tl.arange(0, NV))[None, None, :]
                b4 = tl.load(vo + RP4, mask=valid[None, :, None], other=0.0)
                c4 = tl.load(vo + RP4 + NP4, mask=valid[None, :, None], other=0.0)
            for k in tl.static_range(NV):
                n = n0 + k
                if PF:  # the next state's checkpoint, carry and dA rows into L1 (the last state: its own again)
                    n1 = tl.minimum(n + 1, N - 1) * D
                    _prefetch_l1(ck_c + n1)
                    _prefetch_l1(gc_c + n1)
                    _prefetch_l1(dA_c + n1)
                    _prefetch_l1(ck_c + (n1 - lo_off))
                a2n = tl.load(a2_ptr + (dr * D + offs_d) * NP4 + n, mask=mask_d, other=0.0)
                An = tl.load(aneg_ptr + (dr * D + offs_d) * NP4 + n, mask=mask_d, other=0.0)
                if NV == 1:
                    Bn = tl.load(xdrow + RP4 + n, mask=valid[None, :], other=0.0)
                    Cn = tl.load(xdrow + RP4 + NP4 + n, mask=valid[None, :], other=0.0)
                else:
                    Bn = _pick_last(b4, k)
                    Cn = _pick_last(c4, k)
                hin = tl.load(ck_c + n * D, mask=mask_d, other=0.0)
                # plus the group's entering state, decayed to the chunk's start
                hin += _exp2(a2n * pdel, FAST) * tl.load(ck_c + (n * D - lo_off), mask=lo_mask, other=0.0)
                gcn = tl.load(gc_c + n * D, mask=mask_d, other=0.0)
                dAn = tl.load(dA_c + n * D, mask=mask_d & (cc > 0), other=0.0)
                a = _exp2(delta * a2n[:, None], FAST)
                bx = u * Bn
                # states h_j and ah_j = exp(delta_j A) h_{j-1} of the chunk's rows, from the checkpoint
                ah_in = a * hin[:, None]
                _, hs, ah = tl.associative_scan(
                    (a, tl.where(is_first, bx + ah_in, bx), tl.where(is_first, ah_in, 0.0)), 1, _lin_combine_prev
                )
                yacc += hs * Cn
                g = gy * Cn + tl.where(is_last, gcn[:, None], 0.0)
                # the adjoint scan G_j = g_j + a_{j+1} G_{j+1} as a forward scan of the flipped rows (Triton 3.6
                # lowers `reverse=True` over in-thread rows with ~115 shuffles; the flips are register renames), the
                # decay taken from the previous element of the scan (`_rev_shifted`): no exp(delta_{j+1} A) per row
                _, _, G = tl.associative_scan((tl.full([BD, T], 1.0, tl.float32), tl.flip(a, 1), tl.flip(g, 1)), 1,
                                              _rev_shifted)
                G = tl.flip(G, 1)
                Gah = G * ah
                tl.store(dA_c + n * D, dAn + tl.sum(Gah * delta, axis=1), mask=mask_d)
                GB = G * Bn
                ddl_acc += GB * xc + Gah * An[:, None]
                dxc_acc += GB * delta
                if RS:
                    dBC = _channel_sums_scattered(G * u, gy * hs, lane2, offs_j, BD, T, SH, RS_ASM, RS_SMEM)
                    tl.store(rs_ptr + n, dBC, mask=rs_valid)
                else:
                    dB = tl.sum(G * u, axis=0)
                    dC = tl.sum(gy * hs, axis=0)
                    tl.store(rowp + n, dB, mask=valid)
                    tl.store(rowp + NP4 + n, dC, mask=valid)
                tl.store(gc_c + n * D, tl.sum(tl.where(is_first, a * G, 0.0), axis=1), mask=mask_d)
        yv = yacc + dsk[:, None] * xc
        tl.store(y_base + tok[None, :] * s_y_l + dc2, yv, mask=valid2)
        tl.store(dxc_base + tok[None, :] * s_y_l + dc2, dxc_acc + gy * dsk[:, None], mask=valid2)
        dD_acc += tl.sum(gy * xc, axis=1)
        ddp = ddl_acc * sig_dt
        tl.store(ddp_ptr + pid_b.to(tl.int64) * s_y_b + dr * D + tok[None, :] * s_y_l + dc2, ddp, mask=valid2)
        tl.debug_barrier()  # the carry and dA rows stored above are read back by the next chunk
    tl.store(dD_ptr + gslot * D + dc, dD_acc, mask=mask_d)


# ---------------------------------------------------------------------------------------------------------------
# backward group kernel v8: the chunk's inputs, the checkpoints and the per-state carries in shared memory (Gluon)
# ---------------------------------------------------------------------------------------------------------------
# `_scan_bwd_group_kernel` (v6) reads, per state and chunk, the T tokens' B and C entries as broadcast loads, the
# state checkpoint, the adjoint carry and the dA row from global memory, and writes the carry and dA rows back
# (22 loads, 3 stores and ~80 address and predicate instructions of its ~320 per state and chunk; the carries go
# through L2 because a run-time state loop cannot index registers). v8 copies each chunk's x, z and dout columns,
# its dt, B and C entries (transposed: one state's T entries contiguous) and its checkpoint rows into a two-slot
# shared-memory ring by `cp.async`, one chunk ahead, and keeps the carries and dA rows in shared memory for the
# whole group. The recurrences run on the chunk's columns (in-thread register picks), the same arithmetic in the
# same order as v6.
if _HAS_GLUON:

    @gluon.jit
    def _gl_pick(x, k: gl.constexpr, LT: gl.constexpr):
        """Column k (BD,) of a (BD, T) tile whose rows lie in each thread's registers (a register pick once
        compiled: the other columns' -0.0 fold away)."""
        j = gl.arange(0, x.shape[1], layout=gl.SliceLayout(0, LT))[None, :]
        return gl.sum(gl.where(j == k, x, -0.0), axis=1)

    @gluon.jit
    def _gl_tile(cols, T: gl.constexpr, LT: gl.constexpr):
        """The (BD, T) tile of T columns (BD,) (register selects with constant conditions: renames once compiled)."""
        j = gl.arange(0, T, layout=gl.SliceLayout(0, LT))[None, :]
        res = gl.where(j == 0, cols[0][:, None], cols[1][:, None])
        for k in gl.static_range(2, T):
            res = gl.where(j == k, cols[k][:, None], res)
        return res

    @gluon.jit
    def _bwd_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, ckpt_ptr, xw_s, z_s, do_s, dt_s, bc_s, ck_s, c, L, D, dr, c0,
                        x_b, xd_b, do_b, ck_b, s_xz_l, s_xd_l, s_do_l,
                        R: gl.constexpr, RPP: gl.constexpr, RP4: gl.constexpr, N: gl.constexpr,
                        NP4: gl.constexpr, BD: gl.constexpr, T: gl.constexpr, num_warps: gl.constexpr):
        """Issue (one commit group) the copies of chunk c (scan positions c T .. c T + T - 1) into one ring slot
        each: x of the 2T positions c T - T .. c T + T - 1 (the conv's history), z and dout of the chunk (T, BD)
        half; its dt entries (RPP, T) and B, C entries (2 NP4, T) float32, transposed; the checkpoint rows
        (NP4, BD) float32. Positions outside the sequence are zero-filled (masked copies), as are pads."""
        LX: gl.constexpr = gl.BlockedLayout([1, 8], [32 * 8 // BD, BD // 8], [num_warps, 1], [1, 0])
        LQ: gl.constexpr = gl.BlockedLayout([1, 1], [32 // T, T], [num_warps, 1], [1, 0])
        LC: gl.constexpr = gl.BlockedLayout([1, 4], [32 * 4 // BD, BD // 4], [num_warps, 1], [1, 0])
        ch = c0 + gl.arange(0, BD, layout=gl.SliceLayout(0, LX))
        px = c * T - T + gl.arange(0, 2 * T, layout=gl.SliceLayout(1, LX))
        tx = gl.minimum(gl.maximum(gl.where(dr == 0, px, L - 1 - px), 0), L - 1)
        mx = ((px >= 0) & (px < L))[:, None] & (ch < D)[None, :]
        _gl_async_load(xw_s, xz_ptr + x_b + tx[:, None] * s_xz_l + ch[None, :], mask=mx)
        pz = c * T + gl.arange(0, T, layout=gl.SliceLayout(1, LX))
        tz = gl.minimum(gl.where(dr == 0, pz, L - 1 - pz), L - 1)
        tz = gl.maximum(tz, 0)
        mz = (pz < L)[:, None] & (ch < D)[None, :]
        _gl_async_load(z_s, xz_ptr + x_b + D + tz[:, None] * s_xz_l + ch[None, :], mask=mz)
        _gl_async_load(do_s, dout_ptr + do_b + tz[:, None] * s_do_l + ch[None, :], mask=mz)
        pq = c * T + gl.arange(0, T, layout=gl.SliceLayout(0, LQ))
        tq = gl.maximum(gl.minimum(gl.where(dr == 0, pq, L - 1 - pq), L - 1), 0)
        rq = gl.arange(0, RPP, layout=gl.SliceLayout(1, LQ))
        _gl_async_load(dt_s, xdbl_ptr + xd_b + tq[None, :] * s_xd_l + rq[:, None],
                       mask=(rq < R)[:, None] & (pq < L)[None, :])
        q = gl.arange(0, 2 * NP4, layout=gl.SliceLayout(1, LQ))
        _gl_async_load(bc_s, xdbl_ptr + xd_b + RP4 + tq[None, :] * s_xd_l + q[:, None],
                       mask=((q % NP4) < N)[:, None] & (pq < L)[None, :])
        chc = c0 + gl.arange(0, BD, layout=gl.SliceLayout(0, LC))
        nc = gl.arange(0, NP4, layout=gl.SliceLayout(1, LC))
        _gl_async_load(ck_s, ckpt_ptr + ck_b + c * (NP4 * D) + nc[:, None] * D + chc[None, :],
                       mask=(nc < N)[:, None] & (chc < D)[None, :])
        _gl_async_copy.commit_group()

    @gluon.jit
    def _group_state_globals(n, dr, D, offs_d, a2t_ptr, ant_ptr, ck_lo, lo_mask, NP4: gl.constexpr):
        """State n's rows of A log2(e) and A and of the group's entering state (zero in the group's first chunk)
        (BD,) each, from global memory (loaded an iteration of the state loop ahead of their use)."""
        n = gl.minimum(n, NP4 - 1)  # the last iteration's look-ahead stays in the tables
        return (gl.load(a2t_ptr + (dr * NP4 + n) * D + offs_d), gl.load(ant_ptr + (dr * NP4 + n) * D + offs_d),
                gl.load(ck_lo + n * D, mask=lo_mask, other=0.0))

    @gluon.jit
    def _group_state_rows(n, s, a2n, h_lo, pdel, bc_f, ck_f, gc_s, dA_s, NP4: gl.constexpr, LD: gl.constexpr,
                          LJ: gl.constexpr):
        """State n's inputs from shared memory in the group kernel v8: its state entering the chunk (the checkpoint
        row from ring slot s plus h_lo, the group's entering state, decayed to the chunk's start), adjoint carry and
        dA sum so far (BD,); its B and C entries of the chunk's T tokens (1, T)."""
        Bn = bc_f.index(s * (2 * NP4) + n).load(LJ)[None, :]
        Cn = bc_f.index(s * (2 * NP4) + NP4 + n).load(LJ)[None, :]
        hin = ck_f.index(s * NP4 + n).load(LD) + _exp2(a2n * pdel, True) * h_lo
        return hin, gc_s.index(n).load(LD), dA_s.index(n).load(LD), Bn, Cn

    @gluon.jit
    def _group_state(hin, gcn, dAn, Bn, Cn, a2n, An, dcol, u, gy, delta, is_last, yacc, gb_acc, ga_acc,
                     T: gl.constexpr, LT: gl.constexpr):
        """One state of one chunk in the group kernel v8 (BD channels, T tokens; tiles (BD, T), rows (BD,)): the
        states h_j forward from hin, the adjoint G_j back from the carry gcn, and their contributions. Returns the
        channel-sum operands G u and gy h (BD, T) (the state's dB and dC), its dA sum and adjoint carry updated
        (BD,), and the output, d(B u) and d(exp(delta A)) accumulators over the states (BD, T) updated."""
        # exp(delta_j A) column by column (an exponential's result picked from a tile costs an add)
        acol = ()
        for j in gl.static_range(T):
            acol = acol + (_exp2(dcol[j] * a2n, True),)
        bx = u * Bn
        # the chunk's states h_j and ah_j = exp(delta_j A) h_{j-1} from the checkpoint, in order
        h = hin
        hcol = ()
        ahcol = ()
        for j in gl.static_range(T):
            ahj = acol[j] * h
            h = _gl_pick(bx, j, LT) + ahj
            hcol = hcol + (h,)
            ahcol = ahcol + (ahj,)
        hs = _gl_tile(hcol, T, LT)
        ah = _gl_tile(ahcol, T, LT)
        yacc += hs * Cn
        g = gy * Cn + gl.where(is_last, gcn[:, None], 0.0)
        # the adjoint G_j = g_j + a_{j+1} G_{j+1}, from the chunk's last row back
        Gj = _gl_pick(g, T - 1, LT)
        gcol = (Gj,)
        for jj in gl.static_range(1, T):
            Gj = _gl_pick(g, T - 1 - jj, LT) + acol[T - jj] * Gj
            gcol = (Gj,) + gcol
        G = _gl_tile(gcol, T, LT)
        Gah = G * ah
        gb_acc += G * Bn
        ga_acc += Gah * An[:, None]
        return G * u, gy * hs, dAn + gl.sum(Gah * delta, axis=1), acol[0] * Gj, yacc, gb_acc, ga_acc

    @gluon.jit(do_not_specialize=["L", "NCH", "NGRP"])  # NCH 1 specialised: an assertion in Triton 3.6's lowering
    def _scan_bwd_group_smem_kernel(
        xz_ptr, xdbl_ptr, dout_ptr, convw_ptr, convb_ptr, dtwt_ptr, dtb_ptr, a2t_ptr, ant_ptr, dsk_ptr,
        ckpt_ptr, gcar_ptr, y_ptr, dxc_ptr, ddp_ptr, dxd_ptr, dA_ptr, dD_ptr, pdel_ptr,
        L, D, NCH, NDB, NGRP,
        s_xz_b, s_xz_l, s_xd_b, s_xd_l, s_do_b, s_do_l, s_do_dir, s_y_b, s_y_l,
        R: gl.constexpr, N: gl.constexpr, K: gl.constexpr, RP4: gl.constexpr, RPP: gl.constexpr,
        NP4: gl.constexpr, PS: gl.constexpr, T: gl.constexpr, GCH: gl.constexpr, num_warps: gl.constexpr,
    ):
        """`_scan_bwd_group_kernel` (GROUP 6, T 8, BD 32, shared-memory channel sums) with its memory traffic staged
        in shared memory (v8; half-precision inputs, D a multiple of 32 num_warps): same grid (channel block,
        direction, sample * NGRP + group), inputs and outputs, except the tables, here transposed so that every
        load of them is one line over the channels: a2t, ant (2, NP4, D) (one state's row of A log2(e) / A) and dtwt
        (2, RP4, D) (the dt_proj weights). Chunk c + 1's inputs are copied into the ring (`_bwd_copy_chunk`) while
        chunk c is computed, the adjoint carry and dA rows of the group's states live in shared memory (read from
        `gcar` at the start, dA written at the end), B, C and dt of the chunk's T rows come as broadcast 16-byte
        shared-memory loads, and each state's rows from global memory are loaded one state ahead
        (`_group_state_globals`). One warp per 32 channels; num_warps 1 (the channel sums' shared-memory exchange in
        `_reduce_scatter_smem_ptx` is per warp)."""
        BD: gl.constexpr = 32 * num_warps
        LT: gl.constexpr = gl.BlockedLayout([1, T], [32, 1], [num_warps, 1], [1, 0])
        LD: gl.constexpr = gl.SliceLayout(1, LT)
        LJ: gl.constexpr = gl.SliceLayout(0, LT)
        SL1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        SL2: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        pid_d = gl.program_id(0)
        dr = gl.program_id(1)
        pid_g = gl.program_id(2)
        pid_b = pid_g // NGRP
        grp = pid_g % NGRP
        c0 = pid_d * BD
        offs_d = c0 + gl.arange(0, BD, layout=LD)
        bdt = gl.load(dtb_ptr + dr * D + offs_d)
        dsk = gl.load(dsk_ptr + dr * D + offs_d)
        cb, w0, w1, w2, w3 = _gl_conv_taps(convw_ptr, convb_ptr, dr, D, offs_d, None, K, False)

        half_ty: gl.constexpr = xz_ptr.dtype.element_ty
        do_ty: gl.constexpr = dout_ptr.dtype.element_ty
        # flat (2 rows, W) buffers (rows read one at a time) and their two-slot ring views (copies, tile loads)
        xw_f = gl.allocate_shared_memory(half_ty, [4 * T, BD], SL1)
        z_f = gl.allocate_shared_memory(half_ty, [2 * T, BD], SL1)
        do_f = gl.allocate_shared_memory(do_ty, [2 * T, BD], SL1)
        dt_f = gl.allocate_shared_memory(gl.float32, [2 * RPP, T], SL1)
        bc_f = gl.allocate_shared_memory(gl.float32, [4 * NP4, T], SL1)
        xw_s = _smem_ring(xw_f, half_ty, 2, 2 * T, BD, SL2)
        z_s = _smem_ring(z_f, half_ty, 2, T, BD, SL2)
        do_s = _smem_ring(do_f, do_ty, 2, T, BD, SL2)
        dt_s = _smem_ring(dt_f, gl.float32, 2, RPP, T, SL2)
        bc_s = _smem_ring(bc_f, gl.float32, 2, 2 * NP4, T, SL2)
        ck_f = gl.allocate_shared_memory(gl.float32, [2 * NP4, BD], SL1)
        ck_s = _smem_ring(ck_f, gl.float32, 2, NP4, BD, SL2)
        gc_s = gl.allocate_shared_memory(gl.float32, [NP4, BD], SL1)
        dA_s = gl.allocate_shared_memory(gl.float32, [NP4, BD], SL1)

        x_b = pid_b.to(gl.int64) * s_xz_b
        xd_b = pid_b.to(gl.int64) * s_xd_b + dr * PS
        do_b = pid_b.to(gl.int64) * s_do_b + dr * s_do_dir
        slot0 = (pid_b.to(gl.int64) * 2 + dr) * NCH
        ck_b = slot0 * (NP4 * D)
        gslot = (pid_b.to(gl.int64) * 2 + dr) * NGRP + grp
        c_lo = grp * GCH
        nc = gl.minimum(GCH, NCH - c_lo)
        # the first chunk's copies, then the carries of the group's states into shared memory
        _bwd_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, ckpt_ptr, xw_s.index(0), z_s.index(0), do_s.index(0),
                        dt_s.index(0), bc_s.index(0), ck_s.index(0), c_lo + nc - 1, L, D, dr, c0, x_b, xd_b, do_b,
                        ck_b, s_xz_l, s_xd_l, s_do_l, R, RPP, RP4, N, NP4, BD, T, num_warps)
        zero_d = gl.zeros([BD], gl.float32, LD)
        for q in gl.static_range(N):
            gc_s.index(q).store(gl.load(gcar_ptr + gslot * (NP4 * D) + q * D + offs_d))
            dA_s.index(q).store(zero_d)

        offs_j = gl.arange(0, T, layout=LJ)
        is_last = (offs_j == T - 1)[None, :]
        lane2 = gl.arange(0, BD, layout=LD)[:, None] + gl.zeros([BD, T], gl.int32, LT)
        SH: gl.constexpr = 4 - (T.bit_length() - 1)  # 5 - log2(2 T)
        lane = gl.arange(0, BD, layout=LD) % 32
        rs_row = (lane >> SH) % T
        rs_col = (lane >> SH >= T).to(gl.int32) * NP4
        rs_lead = (lane & ((1 << SH) - 1)) == 0
        dxd_base = dxd_ptr + ((pid_b.to(gl.int64) * L) * 2 * NDB + dr * NDB + pid_d * num_warps
                              + gl.arange(0, BD, layout=LD) // 32) * (2 * NP4)
        y_b = pid_b.to(gl.int64) * s_y_b + dr * D
        dD_acc = gl.zeros([BD], gl.float32, LD)
        for cc in range(0, nc):
            c = c_lo + nc - 1 - cc
            s = cc % 2
            _gl_async_copy.wait_group(0)  # this thread's copies of chunk c have landed
            _gl_barrier()  # everyone's, and every warp is done with chunk c + 1's slot
            if cc + 1 < nc:
                _bwd_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, ckpt_ptr, xw_s.index(1 - s), z_s.index(1 - s),
                                do_s.index(1 - s), dt_s.index(1 - s), bc_s.index(1 - s), ck_s.index(1 - s), c - 1,
                                L, D, dr, c0, x_b, xd_b, do_b, ck_b, s_xz_l, s_xd_l, s_do_l, R, RPP, RP4, N, NP4,
                                BD, T, num_warps)
            _gl_barrier()
            pos = c * T + offs_j
            valid = pos < L
            tok = gl.where(valid, pos + dr * (L - 1 - 2 * pos), 0)
            valid2 = valid[None, :] & (offs_d < D)[:, None]
            pdel = gl.load(pdel_ptr + (slot0 + c) * D + offs_d)
            # conv over the direction's past (scan positions i, i-1, ..., i-K+1): the ring's x columns
            xcol = ()
            for r in gl.static_range(T - 3, 2 * T):
                xcol = xcol + (xw_f.index(s * (2 * T) + r).load(LD).to(gl.float32),)
            xt = _gl_tile(xcol[3:3 + T], T, LT)
            pre = cb[:, None] + w0[:, None] * xt
            if K > 1:
                pre += w1[:, None] * _gl_tile(xcol[2:2 + T], T, LT)
            if K > 2:
                pre += w2[:, None] * _gl_tile(xcol[1:1 + T], T, LT)
            if K > 3:
                pre += w3[:, None] * _gl_tile(xcol[0:T], T, LT)
            sg = _sigmoid_precise(pre, True)
            xc = pre * sg
            z = z_s.index(s).permute([1, 0]).load(LT).to(gl.float32)
            dout = do_s.index(s).permute([1, 0]).load(LT).to(gl.float32)
            gy = dout * (z * _sigmoid_precise(z, True))
            dtp = gl.zeros([BD, T], gl.float32, LT)
            for r in gl.static_range(R):
                wr = gl.load(dtwt_ptr + (dr * RP4 + r) * D + offs_d)
                dtp += wr[:, None] * dt_f.index(s * RPP + r).load(LJ)[None, :]
            dtp = dtp + bdt[:, None]  # `_dt_split` and `_softplus_sigmoid` with FAST (no low part)
            delta = gl.where(valid2, _softplus(dtp, True), 0.0)
            sig_dt = _sigmoid(dtp, True, False)
            u = delta * xc
            dcol = ()
            for j in gl.static_range(T):
                dcol = dcol + (_gl_pick(delta, j, LT),)
            yacc = gl.zeros([BD, T], gl.float32, LT)
            gb_acc = gl.zeros([BD, T], gl.float32, LT)  # sum over the states of G B
            ga_acc = gl.zeros([BD, T], gl.float32, LT)  # sum over the states of G exp(delta A) h A
            lo_mask = (offs_d * 0 + c) > c_lo
            ck_lo = ckpt_ptr + ck_b + c_lo * (NP4 * D) + offs_d
            rs_pos = c * T + rs_row
            rs_valid = rs_lead & (rs_pos < L)
            rs_tok = gl.where(rs_pos < L, rs_pos + dr * (L - 1 - 2 * rs_pos), 0)
            rs_ptr = dxd_base + rs_tok * (2 * NDB * 2 * NP4) + rs_col
            # each state's rows from global memory are loaded during the state before it (off its chains' start)
            a2n, An, h_lo = _group_state_globals(0, dr, D, offs_d, a2t_ptr, ant_ptr, ck_lo, lo_mask, NP4)
            for n in range(0, N):
                hin, gcn, dAn, Bn, Cn = _group_state_rows(n, s, a2n, h_lo, pdel, bc_f, ck_f, gc_s, dA_s, NP4, LD,
                                                          LJ)
                a2c, Ac = a2n, An
                a2n, An, h_lo = _group_state_globals(n + 1, dr, D, offs_d, a2t_ptr, ant_ptr, ck_lo, lo_mask, NP4)
                P, Q, dAn, gcn, yacc, gb_acc, ga_acc = _group_state(
                    hin, gcn, dAn, Bn, Cn, a2c, Ac, dcol, u, gy, delta, is_last, yacc, gb_acc, ga_acc, T, LT)
                dA_s.index(n).store(dAn)
                gl.store(rs_ptr + n, _channel_sums_scattered(P, Q, lane2, offs_j, BD, T, SH, True, True),
                         mask=rs_valid)
                gc_s.index(n).store(gcn)
            # d/d delta of sum_n G (exp(delta A) h_prev A + B u) and d/d xc of G B u + gy D xc
            rows = y_b + tok[None, :] * s_y_l + offs_d[:, None]
            gl.store(y_ptr + rows, yacc + dsk[:, None] * xc, mask=valid2)
            gl.store(dxc_ptr + rows, gb_acc * delta + gy * dsk[:, None], mask=valid2)
            dD_acc += gl.sum(gy * xc, axis=1)
            gl.store(ddp_ptr + rows, (ga_acc + gb_acc * xc) * sig_dt, mask=valid2)
        for q in gl.static_range(N):
            gl.store(dA_ptr + gslot * (NP4 * D) + q * D + offs_d, dA_s.index(q).load(LD))
        gl.store(dD_ptr + gslot * D + offs_d, dD_acc)

    @gluon.jit(do_not_specialize=["L", "NCH", "NGRP"])
    def _scan_bwd_sweep_smem_kernel(
        xz_ptr, xdbl_ptr, dout_ptr, convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a2_ptr,
        ckpt_ptr, pdel_ptr, sdel_ptr, gcar_ptr,
        L, D, NCH, NGRP,
        s_xz_b, s_xz_l, s_xd_b, s_xd_l, s_do_b, s_do_l, s_do_dir,
        MODE: gl.constexpr, K: gl.constexpr, RP4: gl.constexpr, NP4: gl.constexpr, PS: gl.constexpr,
        PSP: gl.constexpr, T: gl.constexpr, GCH: gl.constexpr, num_warps: gl.constexpr,
    ):
        """`_scan_bwd_split_local_kernel` (level 1 of the backward's sweeps) for one MODE (0: the state sweep; 1: the
        adjoint sweep, groups after the first) with each chunk's inputs staged in shared memory (half-precision
        inputs, D a multiple of BD = 32 num_warps; grid (D / BD, direction, sample * NGRP + group)): the chunks of T
        tokens of the group (GCH of them) go to a two-slot ring by `cp.async` one chunk ahead (`_smem_copy_chunk`:
        x_dbl rows and x; for MODE 1 z and dout instead of the output), each token reading its row as broadcast
        shared-memory loads, as the forward v7 does. Same outputs as the Triton kernel: MODE 0 the local states
        entering the group's chunks (ckpt), the sums of delta to them (pdel), the group's sum (sdel) and end state;
        MODE 1 the local adjoint entering from the group's right end (gcar slot grp - 1). Arithmetic as
        `_sweep_state_delta` / `_sweep_adjoint_token` with FAST (the dt_proj sum as one product row)."""
        BD: gl.constexpr = 32 * num_warps
        LN: gl.constexpr = gl.BlockedLayout([1, NP4], [32, 1], [num_warps, 1], [1, 0])
        LRK: gl.constexpr = gl.BlockedLayout([1, RP4], [32, 1], [num_warps, 1], [1, 0])
        LD: gl.constexpr = gl.SliceLayout(1, LN)
        SL1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        SL2: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        pid_d = gl.program_id(0)
        dr = gl.program_id(1)
        pid_b = gl.program_id(2) // NGRP
        grp = gl.program_id(2) % NGRP
        c0 = pid_d * BD
        offs_d = c0 + gl.arange(0, BD, layout=LD)
        offs_dr = c0 + gl.arange(0, BD, layout=gl.SliceLayout(1, LRK))
        offs_n = gl.arange(0, NP4, layout=gl.SliceLayout(0, LN))
        offs_r = gl.arange(0, RP4, layout=gl.SliceLayout(0, LRK))
        a2 = gl.load(a2_ptr + (dr * D + offs_d)[:, None] * NP4 + offs_n[None, :])
        wdt = gl.load(dtw_ptr + (dr * D + offs_dr)[:, None] * RP4 + offs_r[None, :])
        bdt = gl.load(dtb_ptr + dr * D + offs_d)
        half_ty: gl.constexpr = xz_ptr.dtype.element_ty
        do_ty: gl.constexpr = dout_ptr.dtype.element_ty
        rows_s = gl.allocate_shared_memory(gl.float32, [2 * T, PSP], SL1)
        x_s = gl.allocate_shared_memory(half_ty, [2 * T, BD], SL1)
        z_s = gl.allocate_shared_memory(half_ty, [2 * T, BD], SL1)
        p_s = gl.allocate_shared_memory(do_ty, [2 * T, BD], SL1)
        rows_r = _smem_ring(rows_s, gl.float32, 2, T, PSP, SL2)
        x_r = _smem_ring(x_s, half_ty, 2, T, BD, SL2)
        z_r = _smem_ring(z_s, half_ty, 2, T, BD, SL2)
        p_r = _smem_ring(p_s, do_ty, 2, T, BD, SL2)
        x_b = pid_b.to(gl.int64) * s_xz_b
        xd_b = pid_b.to(gl.int64) * s_xd_b + dr * PS
        do_b = pid_b.to(gl.int64) * s_do_b + dr * s_do_dir
        dslot = pid_b.to(gl.int64) * 2 + dr
        p0 = grp * (GCH * T)
        n = gl.minimum(GCH * T, L - p0)  # tokens of the group (>= 1)
        c_lo = grp * GCH
        nc = (n + T - 1) // T  # its chunks
        step = 1 - 2 * dr
        if MODE == 0:
            cb, w0, w1, w2, w3 = _gl_conv_taps(convw_ptr, convb_ptr, dr, D, offs_d, None, K, False)
            ck_tile = ckpt_ptr + (dslot * NCH) * (NP4 * D) + offs_n[None, :] * D + offs_d[:, None]
            t = dr * (L - 1) + step * p0  # the token at scan position p0
            # the conv's history: the inputs at positions p0 - 1, p0 - 2, p0 - 3 (those before the sequence: zero)
            p0v = offs_d * 0 + p0
            xp1 = gl.load(xz_ptr + x_b + (t - step) * s_xz_l + offs_d, mask=p0v >= 1, other=0.0).to(gl.float32)
            xp2 = gl.load(xz_ptr + x_b + (t - 2 * step) * s_xz_l + offs_d, mask=p0v >= 2, other=0.0).to(gl.float32)
            xp3 = gl.load(xz_ptr + x_b + (t - 3 * step) * s_xz_l + offs_d, mask=p0v >= 3, other=0.0).to(gl.float32)
            h = gl.zeros([BD, NP4], gl.float32, LN)
            sd = gl.zeros([BD], gl.float32, LD)
            _smem_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, rows_r.index(0), x_r.index(0), z_r.index(0), p_r.index(0),
                             c_lo, L, dr, D, c0, x_b, xd_b, do_b, s_xz_l, s_xd_l, s_do_l, PS, PSP, BD, T, False,
                             False, num_warps)
            for k in range(0, nc):
                c = c_lo + k
                s = k % 2
                _gl_async_copy.wait_group(0)
                _gl_barrier()
                if k + 1 < nc:
                    _smem_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, rows_r.index(1 - s), x_r.index(1 - s),
                                     z_r.index(1 - s), p_r.index(1 - s), c + 1, L, dr, D, c0, x_b, xd_b, do_b, s_xz_l,
                                     s_xd_l, s_do_l, PS, PSP, BD, T, False, False, num_warps)
                _gl_barrier()
                if k > 0:  # the local state entering the chunk (h = 0 at the group's first)
                    gl.store(ck_tile + c * (NP4 * D), h)
                gl.store(pdel_ptr + (dslot * NCH + c) * D + offs_d, sd)
                for j in range(s * T, s * T + gl.minimum(T, n - k * T)):
                    row = rows_s.index(j)
                    dtl = row.slice(0, RP4).load(gl.SliceLayout(0, LRK))
                    bv = row.slice(RP4, NP4).load(gl.SliceLayout(0, LN))
                    xt = x_s.index(j).load(LD).to(gl.float32)
                    pre = cb + w0 * xt + w1 * xp1 + w2 * xp2 + w3 * xp3
                    xc = pre * _sigmoid(pre, True, False)
                    delta = _softplus(gl.convert_layout(gl.sum(wdt * dtl[None, :], axis=1), LD) + bdt, True)
                    h = _exp2(a2 * delta[:, None], True) * h + bv[None, :] * (delta * xc)[:, None]
                    sd += delta
                    xp3 = xp2
                    xp2 = xp1
                    xp1 = xt
            gl.store(sdel_ptr + (dslot * NGRP + grp) * D + offs_d, sd)
            if grp + 1 < NGRP:
                gl.store(ck_tile + (c_lo + GCH) * (NP4 * D), h)
        else:
            if grp > 0:
                g = gl.zeros([BD, NP4], gl.float32, LN)
                _smem_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, rows_r.index(0), x_r.index(0), z_r.index(0),
                                 p_r.index(0), c_lo + nc - 1, L, dr, D, c0, x_b, xd_b, do_b, s_xz_l, s_xd_l, s_do_l,
                                 PS, PSP, BD, T, True, True, num_warps)
                for k in range(0, nc):
                    c = c_lo + nc - 1 - k
                    s = k % 2
                    _gl_async_copy.wait_group(0)
                    _gl_barrier()
                    if k + 1 < nc:
                        _smem_copy_chunk(xz_ptr, xdbl_ptr, dout_ptr, rows_r.index(1 - s), x_r.index(1 - s),
                                         z_r.index(1 - s), p_r.index(1 - s), c - 1, L, dr, D, c0, x_b, xd_b, do_b,
                                         s_xz_l, s_xd_l, s_do_l, PS, PSP, BD, T, True, True, num_warps)
                    _gl_barrier()
                    m = gl.minimum(T, L - c * T)  # the chunk's valid rows (the last chunk may be partial)
                    for jj in range(0, m):
                        j = s * T + m - 1 - jj
                        row = rows_s.index(j)
                        dtl = row.slice(0, RP4).load(gl.SliceLayout(0, LRK))
                        cv = row.slice(RP4 + NP4, NP4).load(gl.SliceLayout(0, LN))
                        z = z_s.index(j).load(LD).to(gl.float32)
                        dout = p_s.index(j).load(LD).to(gl.float32)
                        gy = dout * (z * _sigmoid(z, True, False))
                        delta = _softplus(gl.convert_layout(gl.sum(wdt * dtl[None, :], axis=1), LD) + bdt, True)
                        g = _exp2(a2 * delta[:, None], True) * (cv[None, :] * gy[:, None] + g)
                gl.store(gcar_ptr + (dslot * NGRP + grp - 1) * (NP4 * D) + offs_n[None, :] * D + offs_d[:, None], g)
        _gl_async_copy.wait_group(0)


@triton.jit
def _xproj_bwd_kernel(
    xz_ptr, convw_ptr, convb_ptr, wx_ptr, dxd_ptr, dxc_ptr, dpre_ptr, dwx_ptr, dcb_ptr,
    L, D, TPS,
    s_xz_b, s_xz_l, s_xd_b, s_xd_l, s_y_b, s_y_l,
    PS: tl.constexpr, PSP: tl.constexpr, K: tl.constexpr,
    BT: tl.constexpr, BC: tl.constexpr, IEEE: tl.constexpr,
):
    """x_proj and SiLU backward, one direction per program. Grid (channel blocks, token splits, 2 * B).

    dxd: (B, L, 2, PS) fp32, the gradient wrt x_dbl; dxc: (B, L, 2, D) fp32 from the scan. Writes
    dpre (B, L, 2, D) fp32 = (dxc + dxd @ x_proj) * silu'(pre), and per (sample, split) partial sums
    dwx (B * splits, 2, PSP, D) (gradient wrt the padded x_proj weight) and dcb (B * splits, 2, D) (conv bias).
    The conv is recomputed in the direction's order: forward taps x[t - j], backward taps x[t + j].
    """
    pid_c = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_b = tl.program_id(2) // 2
    dr = tl.program_id(2) % 2
    step = 1 - 2 * dr
    nsplit = tl.num_programs(1)
    offs_c = pid_c * BC + tl.arange(0, BC)
    mask_c = offs_c < D
    offs_p = tl.arange(0, PSP)
    mask_p = offs_p < PS
    w = tl.load(wx_ptr + dr * PSP * D + offs_p[:, None] * D + offs_c[None, :], mask=mask_c[None, :], other=0.0)
    cb = tl.load(convb_ptr + dr * D + offs_c, mask=mask_c, other=0.0)
    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    dwx = tl.zeros([PSP, BC], dtype=tl.float32)
    dcb = tl.zeros([BT, BC], dtype=tl.float32)  # summed over the tile rows once, at the end
    t_lo = pid_s * TPS
    t_hi = tl.minimum(t_lo + TPS, L)
    for t0 in range(t_lo, t_hi, BT):
        offs_t = t0 + tl.arange(0, BT)
        mask_t = offs_t < t_hi
        m2 = mask_t[:, None] & mask_c[None, :]
        pre = tl.zeros([BT, BC], dtype=tl.float32) + cb[None, :]
        for j in tl.static_range(K):
            wj = tl.load(convw_ptr + (dr * K + K - 1 - j) * D + offs_c, mask=mask_c, other=0.0)
            tj = offs_t - step * j
            xj = tl.load(x_base + tj[:, None] * s_xz_l + offs_c[None, :],
                         mask=((tj >= 0) & (tj < L))[:, None] & mask_c[None, :], other=0.0).to(tl.float32)
            pre += wj[None, :] * xj
        if IEEE:
            sg = _sigmoid_precise(pre, False)
        else:
            sg = 1.0 / (1.0 + tl.exp(-pre))
        g = tl.load(dxd_ptr + pid_b.to(tl.int64) * s_xd_b + offs_t[:, None] * s_xd_l + dr * PS + offs_p[None, :],
                    mask=mask_t[:, None] & mask_p[None, :], other=0.0)
        yrow = pid_b.to(tl.int64) * s_y_b + offs_t[:, None] * s_y_l + dr * D + offs_c[None, :]
        dxc = tl.load(dxc_ptr + yrow, mask=m2, other=0.0)
        if IEEE:
            dxc = tl.dot(g, w, dxc, input_precision="ieee")
            dwx = tl.dot(tl.trans(g), tl.where(m2, pre * sg, 0.0), dwx, input_precision="ieee")
        else:
            dxc = tl.dot(g, w, dxc, input_precision="tf32")
            dwx = tl.dot(tl.trans(g), tl.where(m2, pre * sg, 0.0), dwx, input_precision="tf32")
        dp = tl.where(m2, dxc * sg * (1.0 + pre * (1.0 - sg)), 0.0)
        tl.store(dpre_ptr + yrow, dp, mask=m2)
        dcb += dp
    part = (pid_b * nsplit + pid_s).to(tl.int64) * 2 + dr
    tl.store(dwx_ptr + part * (PSP * D) + offs_p[:, None] * D + offs_c[None, :], dwx, mask=mask_c[None, :])
    tl.store(dcb_ptr + part * D + offs_c, tl.sum(dcb, axis=0), mask=mask_c)


# x_proj backward with a lane per channel (Gluon). `_xproj_bwd_kernel` computes its two products as tf32 tiles
# (the tile of x_dbl-gradient rows times the weight, and the rows' transpose times silu(pre)) and holds 64 x 64 tiles of
# both in registers: 224 registers, one program of 8 warps per multiprocessor, the issue slots 24% busy. Here each lane
# keeps one channel's column of the weight and of its gradient (48 floats each at Ti) in registers and runs the two
# products as float32 FMA chains over each token's gradient row, read as broadcast shared-memory loads: about 100
# FMAs per channel and token, with the rows, x and the scan's dxc staged as the forward v7 stages its inputs.
if _HAS_GLUON:

    @gluon.jit(do_not_specialize=["L", "TPS"])
    def _xproj_bwd_lane_kernel(
        xz_ptr, convw_ptr, convb_ptr, wx_ptr, dxd_ptr, dxc_ptr, dwx_ptr, dcb_ptr,
        L, D, TPS, s_xz_b, s_xz_l, s_xd_b, s_xd_l, s_y_b, s_y_l,
        K: gl.constexpr, RP4: gl.constexpr, NP4: gl.constexpr, PS: gl.constexpr, PSP: gl.constexpr,
        T: gl.constexpr, num_warps: gl.constexpr,
    ):
        """`_xproj_bwd_kernel` with a lane per channel (half-precision xz, D a multiple of BD = 32 num_warps). Grid
        (D / BD, token splits, 2 B): one direction and TPS scan positions (a multiple of T) per program.

        dxd (B, L, 2, PS) fp32: the gradient wrt x_dbl (dt part RP4, B and C parts NP4 each); dxc (B, L, 2, D) fp32
        from the scan, overwritten with dpre = (dxc + dxd_row . wx[:, c]) silu'(pre). Writes the program's partial
        sums dwx (B * splits, 2, PS, D) = sum over its tokens of dxd_row silu(pre) and dcb (B * splits, 2, D) = sum
        of dpre. Each lane holds its channel's wx column ((BD, RP4) and two (BD, NP4) tiles, a row per lane) and
        the matching dwx accumulators; chunks of T positions (dxd rows, x, dxc) go to a two-slot ring by `cp.async`
        one chunk ahead (`_smem_copy_chunk`, dxc as the rows "added"). The conv is recomputed in scan order (taps
        x[t - j] forward, x[t + j] backward), the three positions before the split loaded directly."""
        BD: gl.constexpr = 32 * num_warps
        LN: gl.constexpr = gl.BlockedLayout([1, NP4], [32, 1], [num_warps, 1], [1, 0])
        LRK: gl.constexpr = gl.BlockedLayout([1, RP4], [32, 1], [num_warps, 1], [1, 0])
        LD: gl.constexpr = gl.SliceLayout(1, LN)
        LDR: gl.constexpr = gl.SliceLayout(1, LRK)
        SL1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
        SL2: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        pid_d = gl.program_id(0)
        pid_s = gl.program_id(1)
        pid_b = gl.program_id(2) // 2
        dr = gl.program_id(2) % 2
        c0 = pid_d * BD
        offs_d = c0 + gl.arange(0, BD, layout=LD)
        offs_dr = c0 + gl.arange(0, BD, layout=LDR)
        offs_n = gl.arange(0, NP4, layout=gl.SliceLayout(0, LN))
        offs_r = gl.arange(0, RP4, layout=gl.SliceLayout(0, LRK))
        w_base = wx_ptr + dr * (PSP * D)
        w_dt = gl.load(w_base + offs_r[None, :] * D + offs_dr[:, None])  # (BD, RP4)
        w_b = gl.load(w_base + (RP4 + offs_n)[None, :] * D + offs_d[:, None])  # (BD, NP4)
        w_c = gl.load(w_base + (RP4 + NP4 + offs_n)[None, :] * D + offs_d[:, None])
        cb, w0, w1, w2, w3 = _gl_conv_taps(convw_ptr, convb_ptr, dr, D, offs_d, None, K, False)
        half_ty: gl.constexpr = xz_ptr.dtype.element_ty
        rows_s = gl.allocate_shared_memory(gl.float32, [2 * T, PSP], SL1)
        x_s = gl.allocate_shared_memory(half_ty, [2 * T, BD], SL1)
        g_s = gl.allocate_shared_memory(gl.float32, [2 * T, BD], SL1)
        rows_r = _smem_ring(rows_s, gl.float32, 2, T, PSP, SL2)
        x_r = _smem_ring(x_s, half_ty, 2, T, BD, SL2)
        g_r = _smem_ring(g_s, gl.float32, 2, T, BD, SL2)
        x_b = pid_b.to(gl.int64) * s_xz_b
        xd_b = pid_b.to(gl.int64) * s_xd_b + dr * PS
        y_b = pid_b.to(gl.int64) * s_y_b + dr * D
        p0 = pid_s * TPS
        n = gl.minimum(TPS, L - p0)  # the split's positions (>= 1)
        c_lo = p0 // T
        nc = (n + T - 1) // T
        step = 1 - 2 * dr
        t = dr * (L - 1) + step * p0  # the token at scan position p0
        p0v = offs_d * 0 + p0
        xp1 = gl.load(xz_ptr + x_b + (t - step) * s_xz_l + offs_d, mask=p0v >= 1, other=0.0).to(gl.float32)
        xp2 = gl.load(xz_ptr + x_b + (t - 2 * step) * s_xz_l + offs_d, mask=p0v >= 2, other=0.0).to(gl.float32)
        xp3 = gl.load(xz_ptr + x_b + (t - 3 * step) * s_xz_l + offs_d, mask=p0v >= 3, other=0.0).to(gl.float32)
        dw_dt = gl.zeros([BD, RP4], gl.float32, LRK)
        dw_b = gl.zeros([BD, NP4], gl.float32, LN)
        dw_c = gl.zeros([BD, NP4], gl.float32, LN)
        dcb = gl.zeros([BD], gl.float32, LD)
        y_base = dxc_ptr + y_b + offs_d
        _smem_copy_chunk(xz_ptr, dxd_ptr, dxc_ptr, rows_r.index(0), x_r.index(0), x_r.index(0), g_r.index(0),
                         c_lo, L, dr, D, c0, x_b, xd_b, y_b, s_xz_l, s_xd_l, s_y_l, PS, PSP, BD, T, True, False,
                         num_warps)
        for k in range(0, nc):
            s = k % 2
            _gl_async_copy.wait_group(0)
            _gl_barrier()  # chunk k landed for every warp, and every warp is done with the other slot
            if k + 1 < nc:
                _smem_copy_chunk(xz_ptr, dxd_ptr, dxc_ptr, rows_r.index(1 - s), x_r.index(1 - s), x_r.index(1 - s),
                                 g_r.index(1 - s), c_lo + k + 1, L, dr, D, c0, x_b, xd_b, y_b, s_xz_l, s_xd_l, s_y_l,
                                 PS, PSP, BD, T, True, False, num_warps)
            _gl_barrier()
            for j in range(s * T, s * T + gl.minimum(T, n - k * T)):
                row = rows_s.index(j)
                g_dt = row.slice(0, RP4).load(gl.SliceLayout(0, LRK))
                g_b = row.slice(RP4, NP4).load(gl.SliceLayout(0, LN))
                g_c = row.slice(RP4 + NP4, NP4).load(gl.SliceLayout(0, LN))
                xt = x_s.index(j).load(LD).to(gl.float32)
                pre = cb + w0 * xt + w1 * xp1 + w2 * xp2 + w3 * xp3
                sg = 1.0 / (1.0 + gl.exp(-pre))
                acc = g_s.index(j).load(LD) + gl.convert_layout(gl.sum(w_dt * g_dt[None, :], axis=1), LD)
                acc += gl.sum(w_b * g_b[None, :], axis=1) + gl.sum(w_c * g_c[None, :], axis=1)
                dp = acc * sg * (1.0 + pre * (1.0 - sg))
                gl.store(y_base + t * s_y_l, dp)
                act = pre * sg
                dw_dt += g_dt[None, :] * gl.convert_layout(act, LDR)[:, None]
                dw_b += g_b[None, :] * act[:, None]
                dw_c += g_c[None, :] * act[:, None]
                dcb += dp
                xp3 = xp2
                xp2 = xp1
                xp1 = xt
                t += step
        _gl_async_copy.wait_group(0)
        part = ((pid_b * gl.num_programs(1) + pid_s).to(gl.int64) * 2 + dr)
        dw_rows = dwx_ptr + part * (PS * D)
        gl.store(dw_rows + offs_r[None, :] * D + offs_dr[:, None], dw_dt)
        gl.store(dw_rows + (RP4 + offs_n)[None, :] * D + offs_d[:, None], dw_b)
        gl.store(dw_rows + (RP4 + NP4 + offs_n)[None, :] * D + offs_d[:, None], dw_c)
        gl.store(dcb_ptr + part * D + offs_d, dcb)


@triton.jit
def _dt_proj_bwd_kernel(ddp_ptr, xdbl_ptr, dtw_ptr, dxdp_ptr, dxd_ptr, dwp_ptr, dbp_ptr, M, D, NDB,
                        R: tl.constexpr, RP: tl.constexpr, RP4: tl.constexpr, N: tl.constexpr, NP4: tl.constexpr,
                        PS: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    """dt_proj backward, one pass over its float32 output gradient, and the whole gradient wrt x_dbl: program (token
    block, direction) reads ddp (M = B L tokens, 2, D) for BT tokens and writes the rows of dxd (M, 2, PS): its dt
    part ddp @ W (the gradient wrt the low-rank dt rows of x_dbl), its B and C parts the sum of the group kernel's
    NDB channel-block partials dxdp (M, 2, NDB, 2 NP4) (float32, in block order), every pad zero; and the block's
    partial sums of the weight and bias gradients, dwp (blocks, 2, D, RP) = ddp^T dt_low and dbp (blocks, 2, D)
    (float32 over BT tokens; the blocks are added in float64 on the host). W from the padded table dtw (2, D, RP4);
    all products IEEE float32."""
    blk = tl.program_id(0)
    dr = tl.program_id(1)
    offs_m = blk * BT + tl.arange(0, BT)
    mask_m = offs_m < M
    offs_r = tl.arange(0, RP)
    mask_r = offs_r < R
    rows = offs_m.to(tl.int64)[:, None] * (2 * PS) + dr * PS + offs_r[None, :]
    m_mr = mask_m[:, None] & mask_r[None, :]
    dtl = tl.load(xdbl_ptr + rows, mask=m_mr, other=0.0)  # (BT, RP)
    acc = tl.zeros([BT, RP], dtype=tl.float32)
    part = (blk * 2 + dr).to(tl.int64) * D
    for c0 in range(0, D, BC):
        offs_c = c0 + tl.arange(0, BC)
        mask_c = offs_c < D
        g = tl.load(ddp_ptr + offs_m.to(tl.int64)[:, None] * (2 * D) + dr * D + offs_c[None, :],
                    mask=mask_m[:, None] & mask_c[None, :], other=0.0)  # (BT, BC)
        w = tl.load(dtw_ptr + (dr * D + offs_c)[:, None] * RP4 + offs_r[None, :],
                    mask=mask_c[:, None] & mask_r[None, :], other=0.0)  # (BC, RP)
        acc = tl.dot(g, w, acc, input_precision="ieee")
        pw = tl.dot(tl.trans(g), dtl, input_precision="ieee")  # (BC, RP)
        tl.store(dwp_ptr + (part + offs_c)[:, None] * RP + offs_r[None, :], pw, mask=mask_c[:, None])
        tl.store(dbp_ptr + part + offs_c, tl.sum(g, axis=0), mask=mask_c)
    tl.store(dxd_ptr + rows, acc, mask=mask_m[:, None] & (offs_r < RP4)[None, :])  # acc is zero beyond R
    offs_q = tl.arange(0, 2 * NP4)
    m_mq = mask_m[:, None] & ((offs_q % NP4) < N)[None, :]
    prow = dxdp_ptr + (offs_m.to(tl.int64)[:, None] * 2 + dr) * (NDB * 2 * NP4) + offs_q[None, :]
    sbc = tl.zeros([BT, 2 * NP4], dtype=tl.float32)
    for k in range(0, NDB):
        sbc += tl.load(prow + k * (2 * NP4), mask=m_mq, other=0.0)
    tl.store(dxd_ptr + offs_m.to(tl.int64)[:, None] * (2 * PS) + dr * PS + RP4 + offs_q[None, :], sbc,
             mask=mask_m[:, None])


@triton.jit
def _conv_bwd_kernel(
    xz_ptr, convw_ptr, dpre_ptr, y_ptr, dout_ptr, dxz_ptr, osum_ptr, dcw_ptr,
    L, D, TPS,
    s_xz_b, s_xz_l, s_y_b, s_y_l, s_do_b, s_do_l, s_do_dir, s_g_b, s_g_l,
    K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, WRITE_OUT: tl.constexpr, PRECISE: tl.constexpr = False,
):
    """Conv backward into the in_proj output layout, and the gate. Grid (channel blocks, token splits, B).

    dx[t] = sum_k w_f[k] dpre_f[t + K-1-k] + w_b[k] dpre_b[t - (K-1) + k]; dz = (dout_f y_f + dout_b y_b) silu'(z).
    Writes dxz (B, L, 2D) (x part, z part), optionally osum (B, L, D) = (y_f + y_b) silu(z) (the out_proj input,
    for its weight gradient), and partial conv weight gradients dcw (B * splits, 2, K, D).
    """
    pid_c = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_b = tl.program_id(2)
    nsplit = tl.num_programs(1)
    offs_c = pid_c * BC + tl.arange(0, BC)
    mask_c = offs_c < D
    x_base = xz_ptr + pid_b.to(tl.int64) * s_xz_b
    y_base = pid_b.to(tl.int64) * s_y_b
    # weight-gradient products accumulated elementwise over the token tiles, summed over tokens once at the end
    # (a sum over the tile's rows per iteration costs cross-warp reductions through shared memory)
    dcw_f0 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_f1 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_f2 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_f3 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_b0 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_b1 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_b2 = tl.zeros([BT, BC], dtype=tl.float32)
    dcw_b3 = tl.zeros([BT, BC], dtype=tl.float32)
    t_lo = pid_s * TPS
    t_hi = tl.minimum(t_lo + TPS, L)
    for t0 in range(t_lo, t_hi, BT):
        offs_t = t0 + tl.arange(0, BT)
        mask_t = offs_t < t_hi
        m2 = mask_t[:, None] & mask_c[None, :]
        x = tl.load(x_base + offs_t[:, None] * s_xz_l + offs_c[None, :], mask=m2, other=0.0).to(tl.float32)
        dx = tl.zeros([BT, BC], dtype=tl.float32)
        for k in tl.static_range(K):
            wf = tl.load(convw_ptr + k * D + offs_c, mask=mask_c, other=0.0)
            wb = tl.load(convw_ptr + (K + k) * D + offs_c, mask=mask_c, other=0.0)
            tf = offs_t + (K - 1 - k)
            dpf = tl.load(dpre_ptr + y_base + tf[:, None] * s_y_l + offs_c[None, :],
                          mask=(tf < L)[:, None] & m2, other=0.0)
            tb = offs_t - (K - 1 - k)
            dpb = tl.load(dpre_ptr + y_base + tb[:, None] * s_y_l + D + offs_c[None, :],
                          mask=(tb >= 0)[:, None] & m2, other=0.0)
            dx += wf[None, :] * dpf + wb[None, :] * dpb
            # weight gradients: w_f[k] sees x[t - (K-1) + k] at output t; w_b[k] sees x[t + (K-1) - k]
            # here: the pair (dpre_f[tf], x[t]) with tf = t + K-1-k, and (dpre_b[tb], x[t]) with tb = t - (K-1) + k
            cf = dpf * x
            cbk = dpb * x
            if k == 0:
                dcw_f0 += cf
                dcw_b0 += cbk
            elif k == 1:
                dcw_f1 += cf
                dcw_b1 += cbk
            elif k == 2:
                dcw_f2 += cf
                dcw_b2 += cbk
            else:
                dcw_f3 += cf
                dcw_b3 += cbk
        z = tl.load(x_base + offs_t[:, None] * s_xz_l + D + offs_c[None, :], mask=m2, other=0.0).to(tl.float32)
        yrow = y_base + offs_t[:, None] * s_y_l + offs_c[None, :]
        y_f = tl.load(y_ptr + yrow, mask=m2, other=0.0)
        y_b = tl.load(y_ptr + yrow + D, mask=m2, other=0.0)
        drow = dout_ptr + pid_b.to(tl.int64) * s_do_b + offs_t[:, None] * s_do_l + offs_c[None, :]
        do_f = tl.load(drow, mask=m2, other=0.0).to(tl.float32)
        do_b = tl.load(drow + s_do_dir, mask=m2, other=0.0).to(tl.float32)
        if PRECISE:
            sz = _sigmoid_precise(z, False)
        else:
            sz = 1.0 / (1.0 + tl.exp(-z))
        dz = (do_f * y_f + do_b * y_b) * sz * (1.0 + z * (1.0 - sz))
        grow = dxz_ptr + pid_b.to(tl.int64) * s_g_b + offs_t[:, None] * s_g_l + offs_c[None, :]
        tl.store(grow, dx.to(dxz_ptr.dtype.element_ty), mask=m2)
        tl.store(grow + D, dz.to(dxz_ptr.dtype.element_ty), mask=m2)
        if WRITE_OUT:
            orow = osum_ptr + pid_b.to(tl.int64) * (L * D) + offs_t[:, None] * D + offs_c[None, :]
            tl.store(orow, ((y_f + y_b) * z * sz).to(osum_ptr.dtype.element_ty), mask=m2)
    part = (pid_b * nsplit + pid_s).to(tl.int64) * (2 * K * D)
    tl.store(dcw_ptr + part + 0 * D + offs_c, tl.sum(dcw_f0, axis=0), mask=mask_c)
    tl.store(dcw_ptr + part + (K + 0) * D + offs_c, tl.sum(dcw_b0, axis=0), mask=mask_c)
    if K > 1:
        tl.store(dcw_ptr + part + 1 * D + offs_c, tl.sum(dcw_f1, axis=0), mask=mask_c)
        tl.store(dcw_ptr + part + (K + 1) * D + offs_c, tl.sum(dcw_b1, axis=0), mask=mask_c)
    if K > 2:
        tl.store(dcw_ptr + part + 2 * D + offs_c, tl.sum(dcw_f2, axis=0), mask=mask_c)
        tl.store(dcw_ptr + part + (K + 2) * D + offs_c, tl.sum(dcw_b2, axis=0), mask=mask_c)
    if K > 3:
        tl.store(dcw_ptr + part + 3 * D + offs_c, tl.sum(dcw_f3, axis=0), mask=mask_c)
        tl.store(dcw_ptr + part + (K + 3) * D + offs_c, tl.sum(dcw_b3, axis=0), mask=mask_c)


# ---------------------------------------------------------------------------------------------------------------
# host side
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _sum_f64_kernel(x_ptr, out_ptr, Q, J, NB, C, QS, BLOCK: tl.constexpr, ROWS: tl.constexpr):
    """Float64 partial sums of float32 rows: x (A, J, NB, C) contiguous, rows q = a NB + b (Q = A NB of them);
    program (column block, j, s) adds rows s QS .. s QS + QS - 1 into out (S, J, C) float64, ROWS loads in flight."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    j = tl.program_id(1)
    s = tl.program_id(2)
    m = offs < C
    hi = tl.minimum(s * QS + QS, Q)
    acc = tl.zeros([BLOCK], dtype=tl.float64)
    for q0 in range(s * QS, hi, ROWS):
        for k in tl.static_range(ROWS):
            q = q0 + k
            row = ((q // NB * J + j) * NB + q % NB).to(tl.int64) * C
            acc += tl.load(x_ptr + row + offs, mask=m & (offs * 0 + q < hi), other=0.0).to(tl.float64)
    tl.store(out_ptr + (s * J + j).to(tl.int64) * C + offs, acc, mask=m)


def _sum_f64(part: torch.Tensor, dims=(0,)) -> torch.Tensor:
    """part (float32) summed over dims (0,) or (0, 2), accumulated in float64 (`_sum_f64_kernel`: one read of the
    float32 partials, where `part.sum(dims, dtype=torch.float64)` first writes a float64 copy of them; H100, Ti,
    batch 32 x 16 frames: the backward's partial sums 12.3 -> 1.8 ms per training step). -> float64."""
    if dims not in ((0,), (0, 2)):
        raise ValueError(f"_sum_f64 sums over dims (0,) or (0, 2), got {dims}.")
    part = part.contiguous()
    a, j, nb = (part.shape[0], 1, 1) if dims == (0,) else part.shape[:3]
    rest = part.shape[1:] if dims == (0,) else part.shape[3:]
    c, q = part[0].numel() // (j * nb), a * nb
    block = 512 if c >= 2048 else 128
    # enough programs to fill the GPU, each adding at least 8 rows
    splits = max(1, min(_cdiv(q, 8), _cdiv(4 * 132, _cdiv(c, block) * j)))
    qs = _cdiv(q, splits)
    splits = _cdiv(q, qs)
    out = torch.empty(splits, j, c, device=part.device, dtype=torch.float64)
    _sum_f64_kernel[(_cdiv(c, block), j, splits)](part, out, q, j, nb, c, qs, BLOCK=block, ROWS=4,
                                                   num_warps=4 if block == 512 else 1)
    out = out.sum(0)
    return out.view(rest) if dims == (0,) else out.view((j,) + tuple(rest))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _reg_cap(maxnreg) -> dict:
    """Launch options capping a kernel's registers per thread at `maxnreg` (None or 0: the compiler's choice)."""
    return {"maxnreg": maxnreg} if maxnreg else {}


# Launch settings (also read by benchmarks/bench_scan.py to compare variants).
# Forward scan (v4, channels-first tiles), H100, Ti mixer, batch 128, 16 frames: two tokens per iteration (ping-pong
# register sets) with a 168-register cap and L2 prefetch 32 tokens ahead 2.96 ms (64 ahead: 3.18, 128: 3.26); one
# token per iteration 3.56-3.59 (cap 168 or 160), 4.02-4.19 without the cap (128 registers: the compiler then issues
# the next token's loads late, and batch 128 is 1.45 waves); plain loop 5.96-6.02; caps of 175-200 registers 4.15-4.28
# (three waves). The old (groups, 4, channels) tiles, whose
# broadcast loads Triton 3.6 spread over 4 lanes: 4.55-4.65 ms. See benchmarks/NOTES_triton.md.
# VERSION 6 (absent: 4, the kernel above) selects `_scan_fwd_chunk_kernel`: chunks of T tokens (2, 4, 8, 16) as
# (BD, T) register tiles; VEC: the x_dbl rows as 16-byte broadcast loads; XREG (T 2, 4, 8): the conv's earlier tokens
# from registers; PREFETCH / PF_DIST / maxnreg as for v4 (UNROLL, PIPE unused). Offline SASS (Triton 3.6, sm_90, Ti
# bf16), registers / instructions per token: v4 168 / 188; v6 T 4 VEC XREG 134 / 165, T 8 VEC XREG 183 / 166. Timed
# (H100, batch 128 x 16 frames): the fastest v6 (T 4 VEC, cap 128) 3.09 ms, slower than v4 (NOTES_triton.md "Forward
# v6"). BD 64 with 2 warps (session 4): two channel blocks per program, a warp each, so each token's x_dbl row comes
# from L2 once per two warps and from L1 for the other: 2.96 ms against 3.07 for BD 32 in the same run (BD 128, 4
# warps: 2.98).
# Session 6, measured slower and not kept (NOTES_triton.md "Session 6"): two channels per lane sharing each token's
# rows, some exponentials as FMA-pipe polynomials, both directions in one warp.
# LEAN (session 10; half-precision inputs): the conv taps halved in the program's prologue so that SiLU is
# pre + pre tanh(pre), the dt_proj and readout sums as single FMA chains, and with the directions summed the first
# launch stores its output ungated and the second gates the sum once (`_scan_out`); EVEN: no channel masks where
# D is a multiple of BD. Offline SASS 374 -> 351 instructions per two tokens; H100, batch 128, three alternating
# rounds: 16 frames 3.25-3.37 -> 3.01-3.11 ms, 64 frames 12.85-13.13 -> 11.66-11.98; whole model 1,185-1,191 ->
# 1,250-1,251 videos/s at 16 frames, 299-300 -> 318-319 at 64 (bf16 outputs differ from before by rounding:
# rel. L2 2.5e-3).
SCAN_FWD_CONFIG = {"BD": 64, "num_warps": 2, "PREFETCH": True, "PF_DIST": 32, "UNROLL": 2, "PIPE": 1, "maxnreg": 168,
                   "LEAN": True, "EVEN": True}
# Few programs (training batches, small inference batches): when a launch's warps at FEW_WARPS_CONFIG fit the GPU at
# FEW_WARPS_PER_SM per multiprocessor, each warp alone on its scheduler is bound by the latency of its own per-token
# chain, not by issue, and the chunked v6 kernel, whose T tokens per step run their conv, dt_proj, softplus and
# exponentials side by side, wins at 255 registers (session 6, H100, bf16, Ti, both directions in one launch: batch
# 32 x 16 frames 1.14-1.22 -> 0.97 ms, 16 x 16 1.04-1.11 -> 0.83, 8 x 64 3.75 -> 2.98; at batch 128 v4 stays faster).
# None: always SCAN_FWD_CONFIG.
SCAN_FWD_FEW_WARPS_CONFIG = {"VERSION": 6, "BD": 32, "num_warps": 1, "T": 8, "VEC": True, "XREG": True, "maxnreg": 255,
                             "PREFETCH": True, "PF_DIST": 32, "LEAN": True}
SCAN_FWD_FEW_WARPS_PER_SM = 8  # 255 registers: 2 warps per scheduler
# Wide mixers (session 10): v4 keeps the dt_proj weights and two tokens' dt rows in each lane's registers, 3 x 4 RG of
# them; above this dt rank the chunked v6 kernel (SCAN_FWD_FEW_WARPS_CONFIG) runs at every batch. H100, bf16, batch
# 128 x 16 frames, one layer's scan (directions summed) / whole model, three alternating rounds: S (rank 24; v4
# without spills, 414 instead of 351 SASS per two tokens) 8.58-8.60 -> 7.60-7.64 ms, 471.5-471.9 -> 515.7-516.4
# videos/s; M (rank 36; v4 spills 128 bytes at its 168-register cap, 555 per two tokens; 200 or 232 registers: 23.0 /
# 20.9 ms) 20.0-20.2 -> 14.0-14.2 ms, 146.7 -> 188.2 videos/s; Ti (rank 12) stays on v4 (3.0 against 4.3 ms).
SCAN_FWD_V4_MAX_RANK = 16


def _scan_fwd_config(batch: int, d_inner: int, num_dirs: int, device: torch.device, rank: int = 0) -> dict:
    """SCAN_FWD_FEW_WARPS_CONFIG where a launch of `num_dirs` directions fits the GPU at its occupancy or the dt rank
    is above SCAN_FWD_V4_MAX_RANK, else SCAN_FWD_CONFIG (always under the interpreter)."""
    few = SCAN_FWD_FEW_WARPS_CONFIG
    if few is None or _interpreting() or device.type != "cuda":
        return SCAN_FWD_CONFIG
    if rank > SCAN_FWD_V4_MAX_RANK:
        return few
    warps = _cdiv(d_inner, few["BD"]) * few["num_warps"] * num_dirs * batch
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return few if warps <= sms * SCAN_FWD_FEW_WARPS_PER_SM else SCAN_FWD_CONFIG


# v7 (session 11; `_scan_fwd_smem_kernel`, Gluon): each token's x_dbl row, x, z and (adding) the earlier direction's
# output staged in shared memory by `cp.async` a chunk of T tokens ahead, read with broadcast shared-memory loads just
# before use. Offline SASS (Triton 3.6, sm_90, Ti bf16, the adding and gating launch): 150 instructions per token
# (v4: 175.5) at 120 registers (v4: 168). H100, bf16, one layer's scan, two alternating rounds: Ti batch 128 x 16
# frames 2.15-2.24 ms (v4 3.09-3.16), 64 frames 8.39-8.52 (v4 11.9-12.0); batch 32 (out2, one launch) 0.77-0.80
# (v6 1.05-1.15); S 4.49-4.60 (v6 7.56); M (UNROLL 1, 168 registers) 9.63-9.66 (v6 13.7-13.8). Outputs equal to
# v4's bit for bit at Ti's width (the same arithmetic in the same order). Used for half-precision inputs on CUDA
# (compute capability 8.0+, for `cp.async`) wherever the v6 kernel would not cut the sequence into groups (small
# batches keep v6's sequence parallelism); `None` turns it off. Wide dt ranks (RP4 above WIDE_RP4) take WIDE_UNROLL
# and WIDE_MAXNREG (M's 64 padded dt_proj weights per lane).
SCAN_FWD_SMEM_CONFIG = {"BD": 128, "T": 16, "NBUF": 2, "UNROLL": 2, "maxnreg": 128,
                        "WIDE_RP4": 32, "WIDE_UNROLL": 1, "WIDE_MAXNREG": 168}


def _scan_fwd_smem_config(xz: torch.Tensor, tabs) -> dict:
    """The v7 launch settings for this call ({"BD", "num_warps", "EVEN", "T", "NBUF", "UNROLL", "maxnreg"}), or None
    where v7 does not apply: no Gluon, not CUDA or below compute capability 8.0, the interpreter, float32 inputs,
    a conv wider than 4, x_dbl rows over 128 floats or with the padded dt rank not a multiple of the padded state
    size (a shared-memory slice starts at a multiple of its length; VideoMamba's 16 states and dt ranks of 12-36
    padded to 16-64 are), channels or strides not in 16-byte units, or a launch small enough for the v6 kernel's
    sequence groups."""
    cfg = SCAN_FWD_SMEM_CONFIG
    if cfg is None or not _HAS_GLUON or _interpreting() or xz.device.type != "cuda":
        return None
    if xz.dtype not in (torch.float16, torch.bfloat16) or tabs.k > 4 or tabs.psp > 128 or tabs.rp4 % tabs.np4:
        return None
    batch, length, _ = xz.shape
    d_inner = tabs.d_inner
    if d_inner % 8 or xz.stride(2) != 1 or xz.stride(1) % 8 or xz.stride(0) % 8 or xz.data_ptr() % 16:
        return None
    if torch.cuda.get_device_capability(xz.device) < (8, 0):
        return None
    few = SCAN_FWD_FEW_WARPS_CONFIG
    if few is not None and _scan_fwd_group_tokens(few, batch, d_inner, length, xz.device):
        return None
    return _scan_fwd_smem_settings(tabs)


def _scan_fwd_smem_settings(tabs) -> dict:
    """v7's launch settings for these tables: the largest channel block (BD, a warp per 32 channels) of at most
    SCAN_FWD_SMEM_CONFIG["BD"] that divides d_inner (EVEN: no channel masks), else one with masks; UNROLL and the
    register cap by dt rank."""
    cfg, d_inner = SCAN_FWD_SMEM_CONFIG, tabs.d_inner
    bd = next((b for b in (cfg["BD"], 64, 32) if b <= cfg["BD"] and d_inner % b == 0), None)
    even = bd is not None
    if not even:
        bd = min(cfg["BD"], max(32, _next_pow2(d_inner)))
    wide = tabs.rp4 > cfg["WIDE_RP4"]
    return {"BD": bd, "num_warps": bd // 32, "EVEN": even, "T": cfg["T"], "NBUF": cfg["NBUF"],
            "UNROLL": cfg["WIDE_UNROLL"] if wide else cfg["UNROLL"],
            "maxnreg": cfg["WIDE_MAXNREG"] if wide else cfg["maxnreg"]}


# The mixer sums the directions in the scan's output buffer (two launches; half the output memory, out_proj with
# K = d_inner) rather than out_proj over both directions' outputs (K = 2 d_inner, one launch), unless the two
# directions' warps together fit in one wave of the GPU (about SCAN_FWD_WARPS_PER_SM warps per
# multiprocessor at the default 168-register cap): then one launch runs both directions side by side in the time of one
# (batch 32 x 16 frames on the H100: 384 programs per direction against ~1,584 resident).
SUM_DIRECTIONS = True
SCAN_FWD_WARPS_PER_SM = 12


# Sequence groups of the v6 forward (small batches): when a launch leaves the GPU mostly idle (at batch 1, 24 warps
# for 132 multiprocessors), the sequence is cut into groups of whole chunks scanned in parallel, in two passes
# (`_scan_forward`): the groups' local end states, then the groups' scans from their entering states. The groups aim
# for SCAN_FWD_FEW_WARPS_PER_SM warps per multiprocessor, each at least SCAN_FWD_GROUP_MIN_TOKENS long, and are used
# from SCAN_FWD_MIN_GROUPS groups on (the first pass costs about one more scan without its output).
# `SCAN_FWD_CONFIG["GROUP_TOKENS"]` (v6) forces a group length (tests; also under the interpreter).
SCAN_FWD_GROUPS = True
SCAN_FWD_GROUP_MIN_TOKENS = 64
SCAN_FWD_MIN_GROUPS = 4


def _scan_fwd_group_tokens(cfg: dict, batch: int, d_inner: int, length: int, device: torch.device) -> int:
    """Tokens per sequence group of the v6 forward (a multiple of its chunk T), or 0 for one group."""
    t_chunk = cfg.get("T", 8)
    tokens = cfg.get("GROUP_TOKENS")
    if tokens is None:
        if not SCAN_FWD_GROUPS or _interpreting() or device.type != "cuda":
            return 0
        warps = _cdiv(d_inner, cfg["BD"]) * cfg["num_warps"] * 2 * batch
        target = torch.cuda.get_device_properties(device).multi_processor_count * SCAN_FWD_FEW_WARPS_PER_SM
        groups = min(target // warps, length // SCAN_FWD_GROUP_MIN_TOKENS)
        if groups < max(2, SCAN_FWD_MIN_GROUPS):
            return 0
        tokens = _cdiv(length, groups)
    tokens = t_chunk * _cdiv(max(1, int(tokens)), t_chunk)
    return tokens if tokens < length else 0


def _sum_directions(batch: int, d_inner: int, device: torch.device) -> bool:
    if not SUM_DIRECTIONS:
        return False
    if _interpreting():
        return True
    cfg = SCAN_FWD_CONFIG
    warps = 2 * _cdiv(d_inner, cfg["BD"]) * cfg["num_warps"] * batch
    return warps > torch.cuda.get_device_properties(device).multi_processor_count * SCAN_FWD_WARPS_PER_SM
# Backward: VERSION 5, the sweeps + chunk groups in parallel (the single-kernel VERSION 4, 29.8 ms per layer at batch
# 32 x 16 frames on the H100, was removed in session 4, the sequential sweeps in session 5; NOTES_triton.md).
# Group kernel: "GROUP": 6 (the dB / dC channel sums as one inline-PTX reduce-scatter: 16 shuffles per state and
# 8-token chunk instead of 80, bitwise the same results as GROUP 5's butterflies; needs BD 32, one warp, T 4 or 8),
# "NV": 2 or 4 (B and C of that many states per vector load), "maxnreg" 128 (4 warps per scheduler; spills only
# outside the state loop), "PF" (L1 prefetch of the next state's checkpoint, carry and dA rows: Nsight Compute put 35%
# of its stall samples on two FMAs waiting for them from L2). Sweeps (`_scan_bwd_split_local_kernel`, every group of
# T * DA_BLOCK tokens from a zero carry, in parallel; `_scan_bwd_split_combine_kernel`, the carries over the groups):
# "SWEEP_UNROLL": 2 tokens per iteration, "SWEEP_MAXNREG": 168, "SWEEP_PF1": 4 (L1 prefetch of the token pair 4
# positions ahead), "SWEEP_BD", "SWEEP_COMBINE_BD" (channels per program).
# Measured (H100, Ti mixer, bf16, batch 32 x 16 frames; benchmarks/bench_scan_bwd.py), scan kernels per layer: session
# 3 (GROUP 5, sequential sweeps) 7.58 ms; GROUP 6 6.81; its 128-register cap 5.60; split sweeps 5.69 (sweeps 1.79 ->
# 1.50; at batch 8 x 64 frames 6.25 -> 1.79); PF and SWEEP_PF1 4.92-4.99 (group prefetch alone 5.10, local prefetch
# alone 5.42; bitwise the same results), whole layer backward 8.08 -> 7.52-7.59.
# "RS_SMEM" (session 6; T 8): the reduce-scatter's exchange through 2 KB of shared memory per warp
# (`_reduce_scatter_smem_ptx`: 4 stores, 16 loads, one shuffle) instead of 16 shuffles and 30 selects; bitwise the same
# sums; 333 -> 323 instructions per state and chunk, scan kernels 4.68-4.71 -> 4.56-4.62 ms per layer at batch 32 x 16
# frames (layer backward 6.64-6.66 -> 6.50-6.54 ms), 4.72 -> 4.60 at 8 x 64.
# "DT_VEC", "X_COLS" (session 12; Nsight Compute: a third of the group kernel's stall samples in its chunk prologue,
# where under the register cap each of the 8 tokens' x_dbl dt entries were loaded and used one token at a time, 12
# scalar loads each): the dt entries as 16-byte loads (3 per token), the conv taps from the chunk's own x columns plus
# the three positions before it (11 loads instead of 32); bitwise the same results. Scan kernels 4.66-4.74 ->
# 4.55-4.60 ms per layer at batch 32 x 16 frames, 4.64-4.69 -> 4.52-4.58 at 8 x 64; training step 205.1 -> 201.4 ms.
# "SMEM_MAXNREG" (sessions 14, 16): the group kernel v8 at 168 registers; shared memory (20.5 KB per program) allows 11
# programs per multiprocessor, registers 12. Session 16 (batch 32 x 16 frames, two states per state-loop iteration,
# an option not kept): caps 184 and 200 2.38-2.54 ms per layer against 2.21-2.23 at 168.
SCAN_BWD_CONFIG = {"VERSION": 5, "GROUP": 6, "BD": 32, "num_warps": 1, "T": 8, "maxnreg": 128, "SWEEP_UNROLL": 2,
                   "SWEEP_MAXNREG": 168, "PF": True, "SWEEP_PF1": 4, "RS_SMEM": True, "DT_VEC": True, "X_COLS": True,
                   "SMEM": True, "SMEM_MAXNREG": 168,
                   "SWEEP_SMEM": True, "SWEEP_SMEM_MAXNREG": 128}
# conv + x_proj (same shapes): one direction per program, 32 channels per step, 3 stages 0.55-0.56 ms; both directions
# per program (255 registers, spills) 0.61-0.67 with 64 channels, 0.68-0.77 with 32; see NOTES_triton.md.
# TOK (session 8): half-precision products by `_conv_xproj_tok_kernel` (tokens in registers, 19 instead of 27 SASS
# instructions per channel, token and direction): batch 128 x 16 frames 0.56 -> 0.51 ms, 32 x 16 0.16 -> 0.145, 16 x
# 64 0.28 -> 0.25 (outputs bitwise equal); 2 pipeline stages 0.62, 3 0.78; two or four 16-token blocks per program
# (the weights read half / a quarter as often) 0.55 / 0.57 (209 / 255 registers). The backward's float32-accurate
# recompute keeps the tiled kernel: tf32x3 products of the tokens kernel 0.43 -> 0.54 ms at batch 32 x 16 frames.
# TOK_MAXNREG (session 9): the tokens kernel capped at 128 registers (148 uncapped; 32 bytes of stack), so that the
# register file no longer limits it to 3 programs per multiprocessor: three A/B rounds (H100, bf16, Ti) batch 128 x
# 16 frames 0.58-0.61 -> 0.56-0.59 ms, 32 x 16 0.206-0.213 -> 0.198-0.200, 16 x 64 0.343-0.349 -> 0.326-0.330; whole
# forward 1,173-1,174 -> 1,181-1,182 videos/s (batch 128 x 16 frames); x_dbl bitwise equal.
# TOK_MAX_D (session 10): the tokens kernel only up to this d_inner. Whole model, batch 128 x 16 frames (H100, bf16,
# three alternating rounds): S (d_inner 768) 471.5-471.9 videos/s with it, 476.7-476.9 with the tiled kernel; M (1,152,
# x_dbl rows of 68 padded to 128) 186.2-186.3 -> 208.7 with the chunked scan; Ti (384) keeps it (session 8).
XPROJ_CONFIG = {"BT": 64, "BC": 32, "num_warps": 4, "num_stages": 3, "SPLIT": True,
                "TOK": True, "TOK_BC": 128, "TOK_WARPS": 4, "TOK_STAGES": 1, "TOK_MAXNREG": 128, "TOK_MAX_D": 512}
# x_proj / SiLU backward (one direction per program) and conv backward (weight-gradient products summed once per
# program, not per tile); PROGRAMS: the programs the token splits aim for. Picked by `bench_scan_bwd.py --aux`
# (H100, batch 32 x 16 frames, whole layer backward 10.39 -> 10.17 ms; 12.11 before these kernels were reworked;
# with the later scan kernels, 64 channels per x_proj backward program, so that every dxd row is read by 6 programs
# instead of 24: 8.45 -> 8.10 ms).
# LANE (session 15): the lane-per-channel x_proj backward (`_xproj_bwd_lane_kernel`, Gluon) where it applies, with
# LANE_BD channels and LANE_T-token chunks per program, token splits aiming for LANE_PROGRAMS programs, LANE_MAXNREG
# registers (LANE_WIDE_MAXNREG for x_dbl rows over LANE_WIDE_PS floats), up to LANE_MAX_PS-float rows. H100, bf16,
# `bench_scan_bwd.py --aux --aux-wide` (20 timed calls each): x_proj backward alone, Ti batch 32 x 16 frames 0.917 ms
# (tiles) -> 0.617 (1,056 programs; 2,112: 0.649; 528: 0.704; uncapped 0.67-0.86; 16-token chunks 0.654; 64
# channels 0.953); S batch 8: 0.508 -> 0.479 (uncapped); M: 1.10 (tiles) against 1.40-1.77, so M keeps the tiles.
# Ti training step, three alternating rounds: 168.9-174.9 -> 161.9-166.8 ms.
XPROJ_BWD_CONFIG = {"BT": 64, "BC": 64, "num_warps": 8, "num_stages": 2, "PROGRAMS": 32 * 132,
                    "LANE": True, "LANE_BD": 128, "LANE_T": 8, "LANE_PROGRAMS": 8 * 132, "LANE_MAX_PS": 64,
                    "LANE_MAXNREG": 168, "LANE_WIDE_PS": 48, "LANE_WIDE_MAXNREG": None}
CONV_BWD_CONFIG = {"BT": 16, "BC": 32, "num_warps": 8, "num_stages": 1}

_ROW_INDEX_CACHE = {}


def _row_indices(r: int, n: int, device: torch.device):
    """Rows of x_proj in the padded x_dbl layout (cached: no host-to-device copy per call)."""
    key = (r, n, device.type, device.index)
    if key not in _ROW_INDEX_CACHE:
        rp4, np4 = 4 * _next_pow2(_cdiv(r, 4)), 4 * _next_pow2(_cdiv(n, 4))
        rows = torch.cat([torch.arange(r), rp4 + torch.arange(n), rp4 + np4 + torch.arange(n)])
        _ROW_INDEX_CACHE[key] = rows.to(device)
    return _ROW_INDEX_CACHE[key]


@triton.jit
def _load_dir(p0, p1, dr, offs, mask):
    """tl.load of direction dr's tensor (p0 for 0, p1 for 1) at offs, as float32 (zero where masked)."""
    if dr == 0:
        v = tl.load(p0 + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        v = tl.load(p1 + offs, mask=mask, other=0.0).to(tl.float32)
    return v


@triton.jit
def _tables_kernel(
    cw0, cw1, cb0, cb1, xw0, xw1, dw0, dw1, db0, db1, al0, al1, dk0, dk1,
    convw_ptr, convb_ptr, dtw_ptr, dtb_ptr, a_ptr, a2_ptr, dsk_ptr, wx_ptr, wxh_ptr,
    D, K: tl.constexpr, R: tl.constexpr, N: tl.constexpr, RP4: tl.constexpr, NP4: tl.constexpr,
    PSP: tl.constexpr, HAS_CB: tl.constexpr, HALF: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """`_Tables` from the two directions' parameters (index 0 / 1 of each pointer pair, contiguous, any float
    dtype): conv weight (D, K), conv bias (D,), x_proj (R + 2N, D), dt_proj weight (D, R) and bias (D,), A_log (D, N),
    D (D,). Writes (float32) convw (2, K, D), convb (2, D), dtw (2, D, RP4), dtb (2, D), A = -exp(A_log) (2, D, N),
    a2 = A log2(e) (2, D, NP4), dsk (2, D), wx (2, PSP, D): x_proj's rows at their x_dbl positions (dt rows at 0,
    B at RP4, C at RP4 + NP4; zero rows elsewhere), with HALF also wxh, wx in wxh's dtype. Grid (cdiv(D, BLOCK_D), 2)."""
    dr = tl.program_id(1)
    offs_d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    for j in tl.static_range(K):
        tl.store(convw_ptr + (dr * K + j) * D + offs_d, _load_dir(cw0, cw1, dr, offs_d * K + j, mask_d), mask=mask_d)
    if HAS_CB:
        cb = _load_dir(cb0, cb1, dr, offs_d, mask_d)
    else:
        cb = tl.zeros([BLOCK_D], dtype=tl.float32)
    tl.store(convb_ptr + dr * D + offs_d, cb, mask=mask_d)
    tl.store(dtb_ptr + dr * D + offs_d, _load_dir(db0, db1, dr, offs_d, mask_d), mask=mask_d)
    tl.store(dsk_ptr + dr * D + offs_d, _load_dir(dk0, dk1, dr, offs_d, mask_d), mask=mask_d)
    rows = (dr * D + offs_d)[:, None]
    r = tl.arange(0, RP4)[None, :]
    w = _load_dir(dw0, dw1, dr, offs_d[:, None] * R + r, mask_d[:, None] & (r < R))
    tl.store(dtw_ptr + rows * RP4 + r, w, mask=mask_d[:, None])
    n = tl.arange(0, NP4)[None, :]
    a = -_exp_precise(_load_dir(al0, al1, dr, offs_d[:, None] * N + n, mask_d[:, None] & (n < N)))
    tl.store(a_ptr + rows * N + n, a, mask=mask_d[:, None] & (n < N))
    tl.store(a2_ptr + rows * NP4 + n, tl.where(n < N, a * 1.4426950408889634, 0.0), mask=mask_d[:, None])
    p = tl.arange(0, PSP)  # x_dbl position -> x_proj row (-1: a zero row)
    pb = p - RP4
    pc = p - RP4 - NP4
    src = tl.where(p < R, p, -1)
    src = tl.where((pb >= 0) & (pb < N), R + pb, src)
    src = tl.where((pc >= 0) & (pc < N), R + N + pc, src)
    xw = _load_dir(xw0, xw1, dr, src[:, None] * D + offs_d[None, :], (src >= 0)[:, None] & mask_d[None, :])
    wofs = (dr * PSP + p)[:, None] * D + offs_d[None, :]
    tl.store(wx_ptr + wofs, xw, mask=mask_d[None, :])
    if HALF:
        tl.store(wxh_ptr + wofs, xw.to(wxh_ptr.dtype.element_ty), mask=mask_d[None, :])


class _Tables:
    """Per-channel parameter tables of both directions in the kernels' float32 layouts (see the kernel docstrings),
    built by one launch of `_tables_kernel`: convw (2, K, D), convb (2, D), dtw (2, D, RP4), dtb (2, D), A (2, D, N),
    a2 (2, D, NP4), dsk (2, D), wx (2, PSP, D) float32, and wxh: wx in `half_dtype` (None without).

    `_Tables(conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D)` takes the parameters
    stacked over the directions (`stacked_mixer_parameters`); `_Tables.from_directions(fwd, bwd)` takes each
    direction's seven tensors as they are in the module (no stacking copies)."""

    def __init__(self, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D,
                 half_dtype=None):
        stacked = (conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D)
        if conv_weight.dim() != 3 or conv_weight.shape[0] != 2:
            raise ValueError(f"Expected stacked parameters of 2 directions, got conv weights {tuple(conv_weight.shape)}.")
        self._build([t[0] if t is not None else None for t in stacked],
                    [t[1] if t is not None else None for t in stacked], half_dtype)

    @classmethod
    def from_directions(cls, fwd, bwd, half_dtype=None):
        """fwd, bwd: `(conv_weight (D, 1, K) or (D, K), conv_bias (D,) or None, x_proj_weight (R + 2N, D),
        dt_proj_weight (D, R), dt_proj_bias (D,), A_log (D, N), D (D,))` of each direction."""
        tabs = cls.__new__(cls)
        tabs._build(list(fwd), list(bwd), half_dtype)
        return tabs

    def _build(self, fwd, bwd, half_dtype):
        conv_weight, _, x_proj_weight, dt_proj_weight, _, A_log, _ = fwd
        d_inner, k = conv_weight.shape[0], conv_weight.shape[-1]
        r, n = dt_proj_weight.shape[-1], A_log.shape[-1]
        if not 1 <= k <= 4:
            raise ValueError(f"The fused Triton scan supports conv kernels of width 1 to 4, got {k}.")
        if x_proj_weight.shape[0] != r + 2 * n:
            raise ValueError(f"x_proj has {x_proj_weight.shape[0]} rows, expected dt_rank + 2 * d_state = {r + 2 * n}.")
        expected = {"conv_weight": (d_inner, k), "conv_bias": (d_inner,), "x_proj_weight": (r + 2 * n, d_inner),
                    "dt_proj_weight": (d_inner, r), "dt_proj_bias": (d_inner,), "A_log": (d_inner, n), "D": (d_inner,)}
        for name, f, b in zip(_SCAN_PARAMETER_NAMES, fwd, bwd):
            if (f is None) != (b is None) or (f is not None and f.shape != b.shape):
                raise ValueError(f"The two directions' {name} must have the same shapes.")
            shape = tuple(f.shape) if f is not None else None
            if name == "conv_weight" and len(shape) == 3 and shape[1] == 1:
                shape = (shape[0], shape[2])  # nn.Conv1d's depthwise (D, 1, K)
            if shape is not None and shape != expected[name]:
                raise ValueError(f"{name} has shape {tuple(f.shape)}, expected {expected[name]} (d_inner {d_inner}, "
                                 f"conv width {k}, dt_rank {r}, d_state {n}).")
        self.d_inner, self.k, self.r, self.n = d_inner, k, r, n
        self.rg, self.ng = _next_pow2(_cdiv(r, 4)), _next_pow2(_cdiv(n, 4))  # tl.arange needs powers of 2
        self.rp4, self.np4 = 4 * self.rg, 4 * self.ng
        self.ps = self.rp4 + 2 * self.np4
        self.psp = max(16, _next_pow2(self.ps))
        dev = conv_weight.device
        sizes = {"convw": (2, k, d_inner), "convb": (2, d_inner), "dtw": (2, d_inner, self.rp4), "dtb": (2, d_inner),
                 "A": (2, d_inner, n), "a2": (2, d_inner, self.np4), "dsk": (2, d_inner),
                 "wx": (2, self.psp, d_inner)}
        buf = torch.empty(sum(math.prod(shape) for shape in sizes.values()), device=dev, dtype=torch.float32)
        offset = 0
        for name, shape in sizes.items():
            size = math.prod(shape)
            setattr(self, name, buf[offset:offset + size].view(shape))
            offset += size
        self.wxh = torch.empty(sizes["wx"], device=dev, dtype=half_dtype) if half_dtype is not None else None
        self.row_index = _row_indices(r, n, dev)
        args = [t if t is None or t.is_contiguous() else t.contiguous()
                for pair in zip(fwd, bwd) for t in pair]
        if args[2] is None:  # no conv bias: any pointer, never read
            args[2] = args[3] = args[0]
        block_d = min(64, max(16, _next_pow2(d_inner)))
        _tables_kernel[(_cdiv(d_inner, block_d), 2)](
            *args, self.convw, self.convb, self.dtw, self.dtb, self.A, self.a2, self.dsk, self.wx,
            self.wxh if self.wxh is not None else self.wx, d_inner,
            K=k, R=r, N=n, RP4=self.rp4, NP4=self.np4, PSP=self.psp, HAS_CB=fwd[1] is not None,
            HALF=self.wxh is not None, BLOCK_D=block_d, num_warps=4,
        )


PRECISE_FP32 = True


def _fast_flags(dtype: torch.dtype):
    """(FAST, TANH): hardware approximations (ex2/rcp.approx.ftz; tanh.approx gates) for half-precision inputs;
    float32 inputs keep IEEE division (PRECISE_FP32). Off in the interpreter, which has no inline assembly."""
    half = dtype in (torch.float16, torch.bfloat16)
    if _interpreting():
        return False, False
    return half or not PRECISE_FP32, half


def _xproj_forward(xz: torch.Tensor, tabs: _Tables) -> torch.Tensor:
    """xz (B, L, 2D) -> x_dbl (B, L, 2, PS) float32, both directions, padded rows."""
    batch, length, _ = xz.shape
    xdbl = torch.empty(batch, length, 2, tabs.ps, device=xz.device, dtype=torch.float32)
    # half inputs: the weights go in as the input dtype (the kernel rounds them to it anyway): half the bytes
    if xz.dtype == torch.float32:
        wx = tabs.wx
    else:
        wx = tabs.wxh if tabs.wxh is not None and tabs.wxh.dtype == xz.dtype else tabs.wx.to(xz.dtype)
    fast, tanh = _fast_flags(xz.dtype)
    _conv_xproj(xz, tabs, wx, xdbl, "ieee" if xz.dtype == torch.float32 else "half", fast, tanh)
    return xdbl


def _conv_xproj(xz, tabs: _Tables, wx, xdbl, prec: str, fast: bool, tanh: bool):
    """Launch the conv + SiLU + x_proj kernel: xz (B, L, 2D) -> xdbl (B, L, 2, PS). Half-precision products ("half")
    take the tokens-in-registers kernel where XPROJ_CONFIG["TOK"] is set, the conv is at most 4 wide and d_inner at
    most XPROJ_CONFIG["TOK_MAX_D"], the others the tiled kernels."""
    batch, length, _ = xz.shape
    cfg = XPROJ_CONFIG
    if prec == "half" and cfg.get("TOK", False) and tabs.k <= 4 and tabs.d_inner <= cfg.get("TOK_MAX_D", tabs.d_inner):
        _conv_xproj_tok_kernel[(_cdiv(length, 16), batch)](
            xz, tabs.convw, tabs.convb, wx, xdbl,
            length, tabs.d_inner, xz.stride(0), xdbl.stride(0), xdbl.stride(1), 1,
            S_XZ_L=xz.stride(1), PS=tabs.ps, PSP=tabs.psp, K=tabs.k,
            BC=min(cfg["TOK_BC"], max(16, _next_pow2(tabs.d_inner))), PREC=prec, FAST=fast, TANH=tanh,
            num_warps=cfg["TOK_WARPS"], num_stages=cfg["TOK_STAGES"],
            **_reg_cap(cfg.get("TOK_MAXNREG")),
        )
        return
    bc = min(cfg["BC"], max(16, _next_pow2(tabs.d_inner)))
    kernel, grid = _conv_xproj_kernel, (_cdiv(length, cfg["BT"]), batch)
    if cfg.get("SPLIT", False):
        kernel, grid = _conv_xproj_dir_kernel, (_cdiv(length, cfg["BT"]), batch, 2)
    kernel[grid](
        xz, tabs.convw, tabs.convb, wx, xdbl,
        length, tabs.d_inner, xz.stride(0), xz.stride(1), xdbl.stride(0), xdbl.stride(1),
        PS=tabs.ps, PSP=tabs.psp, K=tabs.k, BT=cfg["BT"], BC=bc, PREC=prec,
        FAST=fast, TANH=tanh, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )


def _scan_forward(xz: torch.Tensor, xdbl: torch.Tensor, tabs: _Tables, summed: bool = False) -> torch.Tensor:
    """-> out2 (B, L, 2, D) in xz's dtype: each direction's gated output; with `summed`, out_f + out_b (B, L, D)
    (half the memory: direction 0 writes it, then direction 1 adds to it, in a second launch)."""
    batch, length, _ = xz.shape
    d_inner = tabs.d_inner
    shape = (batch, length, d_inner) if summed else (batch, length, 2, d_inner)
    out = torch.empty(shape, device=xz.device, dtype=xz.dtype)
    launches = [(0, 1, False), (1, 1, True)] if summed else [(0, 2, False)]  # (first direction, directions, ADD)
    smem = _scan_fwd_smem_config(xz, tabs)
    if smem is not None:
        for dir0, num_dirs, add in launches:
            _scan_fwd_smem_kernel[(_cdiv(d_inner, smem["BD"]), num_dirs, batch)](
                xz, xdbl, tabs.convw, tabs.convb, tabs.dtw, tabs.dtb, tabs.a2, tabs.dsk, out,
                length, d_inner, dir0, xz.stride(0), xz.stride(1), xdbl.stride(0), xdbl.stride(1),
                out.stride(0), out.stride(1), 0 if summed else out.stride(2),
                K=tabs.k, RP4=tabs.rp4, NP4=tabs.np4, PS=tabs.ps, PSP=tabs.psp, BD=smem["BD"], T=smem["T"],
                NBUF=smem["NBUF"], UNROLL=smem["UNROLL"], ADD=add, GATE=add or not summed, EVEN=smem["EVEN"],
                num_warps=smem["num_warps"], **_reg_cap(smem["maxnreg"]),
            )
        return out
    cfg = _scan_fwd_config(batch, d_inner, 1 if summed else 2, xz.device, tabs.r)
    fast, tanh = _fast_flags(xz.dtype)
    maxnreg = cfg.get("maxnreg")
    version = cfg.get("VERSION", 4)
    if version not in (4, 6):
        raise ValueError(f"SCAN_FWD_CONFIG['VERSION'] must be 4 or 6, got {version!r}.")
    if version == 6:
        t_chunk = cfg.get("T", 8)
        group_tokens = _scan_fwd_group_tokens(cfg, batch, d_inner, length, xz.device)
        ngrp, gch = (_cdiv(length, group_tokens), group_tokens // t_chunk) if group_tokens else (1, _cdiv(length, t_chunk))
        hin = sdel = out  # unused without groups
        if ngrp > 1:
            hin = torch.empty(batch, 2, ngrp, tabs.np4, d_inner, device=xz.device, dtype=torch.float32)
            sdel = torch.empty(batch, 2, ngrp, d_inner, device=xz.device, dtype=torch.float32)

        def chunk_scan(grid_dirs, dir0, add, states_only):
            _scan_fwd_chunk_kernel[(_cdiv(d_inner, cfg["BD"]), grid_dirs, batch * ngrp)](
                xz, xdbl, tabs.convw, tabs.convb, tabs.dtw, tabs.dtb, tabs.a2, tabs.dsk, out, hin, sdel,
                length, d_inner, dir0, ngrp, gch, xz.stride(0), xz.stride(1), xdbl.stride(0) // 4,
                xdbl.stride(1) // 4, out.stride(0), out.stride(1), 0 if summed else out.stride(2), 1,
                K=tabs.k, R=tabs.r, N=tabs.n, RP4=tabs.rp4, NP4=tabs.np4, PS=tabs.ps, BD=cfg["BD"],
                T=t_chunk, FAST=fast, TANH=tanh, PREFETCH=cfg["PREFETCH"] and not _interpreting(),
                PF_DIST=cfg["PF_DIST"], ADD=add, VEC=cfg.get("VEC", False),
                XREG=cfg.get("XREG", False) and t_chunk in (2, 4, 8), GROUPED=ngrp > 1, STATES_ONLY=states_only,
                LEAN=cfg.get("LEAN", False),
                num_warps=cfg["num_warps"], **_reg_cap(maxnreg),
            )

        if ngrp > 1:
            # sequence parallelism: (1) every group's local end state from zero, (2) every group's scan from the
            # state entering it, which each program forms from the local end states of the groups before it
            chunk_scan(2, 0, False, True)
        for dir0, num_dirs, add in launches:
            chunk_scan(num_dirs, dir0, add, False)
        return out
    lean = bool(cfg.get("LEAN", False))
    for dir0, num_dirs, add in launches:
        _scan_fwd_kernel[(_cdiv(d_inner, cfg["BD"]), num_dirs, batch)](
            xz, xdbl, tabs.convw, tabs.convb, tabs.dtw, tabs.dtb, tabs.a2, tabs.dsk, out,
            length, d_inner, dir0, xz.stride(0), xz.stride(1), xdbl.stride(0) // 4, xdbl.stride(1) // 4,
            out.stride(0), out.stride(1), 0 if summed else out.stride(2),
            K=tabs.k, RG=tabs.rg, NG=tabs.ng, PS=tabs.ps, BD=cfg["BD"], FAST=fast, TANH=tanh,
            PREFETCH=cfg["PREFETCH"] and not _interpreting(), PF_DIST=cfg["PF_DIST"], PIPE=cfg["PIPE"],
            UNROLL=cfg["UNROLL"], ADD=add, LEAN=lean, GATE=add or not summed,
            EVEN=bool(cfg.get("EVEN", False)) and d_inner % cfg["BD"] == 0,
            num_warps=cfg["num_warps"], **_reg_cap(maxnreg),
        )
    return out


def _xproj_recompute(xz: torch.Tensor, tabs: _Tables) -> torch.Tensor:
    """x_dbl for the backward: the conv + x_proj kernel with float32 operands for every input dtype (the forward
    rounds xc and the weights to half precision for the tensor cores; the backward differentiates the unrounded
    function, its B, C and dt then as accurate as in float32 mode). Products: IEEE float32 for float32 inputs;
    for half inputs XPROJ_RECOMPUTE_PRECISION ("tf32x3": three tensor-core products of the split operands, error
    ~1e-6 relative, far under the half-precision input's own; "ieee": float32 FMAs, several times slower)."""
    batch, length, _ = xz.shape
    xdbl = torch.empty(batch, length, 2, tabs.ps, device=xz.device, dtype=torch.float32)
    prec = "ieee" if xz.dtype == torch.float32 or _interpreting() else XPROJ_RECOMPUTE_PRECISION
    _conv_xproj(xz, tabs, tabs.wx, xdbl, prec, False, False)
    return xdbl


XPROJ_RECOMPUTE_PRECISION = "tf32x3"
# SAVE_XDBL (session 13): the autograd functions keep the forward's x_dbl (float32, (B, L, 2, PS): 384 bytes per token
# and layer at Ti's sizes) for the backward instead of recomputing it (`_xproj_recompute`, 0.40-0.44 ms per layer at
# batch 32 x 16 frames whatever its tile settings: ~9.6 ms of a ~201 ms training step). The backward then
# differentiates at the x_dbl the forward used (for half-precision inputs: products of the rounded xc and weights, as
# the stock path computes them), so its recomputed outputs equal the forward's. Float32 inputs: the same x_dbl either
# way (IEEE products in both).
SAVE_XDBL = True
TOKEN_BLOCK = 128  # tokens per program of `_dt_proj_bwd_kernel` (a power of 2, at least 16): its float32 partial sums
DA_BLOCK = 16  # backward chunks (of T tokens) per float32 partial sum of the A and D gradients


def _scan_bwd_scan(xz, xdbl, dout, dout_dir_stride, tabs: _Tables, a2, aneg, _sweep_only=False):
    """The scan kernels of the backward: the sweeps (`_scan_bwd_split_local_kernel` + `_scan_bwd_split_combine_kernel`),
    then `_scan_bwd_group_kernel`. a2 = A log2(e) and aneg = A (2, D, 4 NG) float32. Returns y, dxc, ddp
    (B, L, 2, D), dxd_part (B, L, 2, channel blocks, 2 NP4: the B and C columns) and the dA (B, 2, NBLK, 4 NG, D) /
    dD (B, 2, NBLK, D) partial sums, all float32 (see the kernels' docstrings). `_sweep_only` (benchmarks): the
    sweeps only."""
    batch, length, _ = xz.shape
    d_inner, dev, f32 = tabs.d_inner, xz.device, torch.float32
    cfg = SCAN_BWD_CONFIG
    if cfg.get("VERSION", 5) != 5:
        raise ValueError(f"SCAN_BWD_CONFIG['VERSION'] = {cfg['VERSION']!r}: the only backward is 5 (the single-kernel "
                         "backward 4 was removed in session 4; see benchmarks/NOTES_triton.md).")
    bd, t_chunk = cfg["BD"], cfg["T"]
    ndb, nch = _cdiv(d_inner, bd), _cdiv(length, t_chunk)
    fast, _ = _fast_flags(xz.dtype)
    ckpt = torch.empty(batch, 2, nch, tabs.np4, d_inner, device=dev, dtype=f32)
    y = torch.empty(batch, length, 2, d_inner, device=dev, dtype=f32)
    dxc = torch.empty_like(y)
    dxd_part = torch.empty(batch, length, 2, ndb, 2 * tabs.np4, device=dev, dtype=f32)
    ddp = torch.empty_like(y)
    nblk = _cdiv(nch, DA_BLOCK)
    dA = torch.empty(batch, 2, nblk, tabs.np4, d_inner, device=dev, dtype=f32)
    dD = torch.empty(batch, 2, nblk, d_inner, device=dev, dtype=f32)
    # the sweeps as a two-level scan: every group of DA_BLOCK chunks from a zero carry (local states entering each
    # chunk, sums of delta, the local end state / adjoint), then the group carries sequentially over the groups; the
    # group kernel adds the entering state to each chunk's local one
    gcar = torch.empty(batch, 2, nblk, tabs.np4, d_inner, device=dev, dtype=f32)
    pdel = torch.empty(batch, 2, nch, d_inner, device=dev, dtype=f32)
    sdel = torch.empty(batch, 2, nblk, d_inner, device=dev, dtype=f32)
    sbd = cfg.get("SWEEP_BD", 32)
    sweep = _scan_bwd_sweep_smem_config(xz, tabs, dout)
    if sweep is not None:  # the sweeps with their inputs staged in shared memory (Gluon), one launch per mode
        for mode in (0, 1):
            _scan_bwd_sweep_smem_kernel[(d_inner // sweep["BD"], 2, batch * nblk)](
                xz, xdbl, dout, tabs.convw, tabs.convb, tabs.dtw, tabs.dtb, a2, ckpt, pdel, sdel, gcar,
                length, d_inner, nch, nblk,
                xz.stride(0), xz.stride(1), xdbl.stride(0), xdbl.stride(1), dout.stride(0), dout.stride(1),
                dout_dir_stride,
                MODE=mode, K=tabs.k, RP4=tabs.rp4, NP4=tabs.np4, PS=tabs.ps, PSP=tabs.psp, T=t_chunk, GCH=DA_BLOCK,
                num_warps=sweep["BD"] // 32, **_reg_cap(sweep["maxnreg"]),
            )
    else:
        _scan_bwd_split_local_kernel[(_cdiv(d_inner, sbd), 4, batch * nblk)](
            xz, xdbl, dout, tabs.convw, tabs.convb, tabs.dtw, tabs.dtb, a2, ckpt, pdel, sdel, gcar,
            length, d_inner, nch, nblk,
            xz.stride(0), xz.stride(1), xdbl.stride(0) // 4, xdbl.stride(1) // 4,
            dout.stride(0), dout.stride(1), dout_dir_stride, 1,
            K=tabs.k, RG=tabs.rg, NG=tabs.ng, RP4=tabs.rp4, NP4=tabs.np4, PS=tabs.ps,
            BD=sbd, T=t_chunk, GT=t_chunk * DA_BLOCK, FAST=fast,
            UNROLL=cfg.get("SWEEP_UNROLL", 1) if t_chunk % 2 == 0 else 1,
            PF1=0 if _interpreting() else cfg.get("SWEEP_PF1", 0), num_warps=max(1, sbd // 32),
            **_reg_cap(cfg.get("SWEEP_MAXNREG")),
        )
    cbd = cfg.get("SWEEP_COMBINE_BD", 32)
    _scan_bwd_split_combine_kernel[(_cdiv(d_inner, cbd), 4, batch)](
        a2, ckpt, sdel, gcar, d_inner, nch, nblk, 1,
        NG=tabs.ng, NP4=tabs.np4, BD=cbd, GCH=DA_BLOCK, FAST=fast, num_warps=max(1, cbd // 32),
    )
    del sdel
    if _sweep_only:
        return None
    smem = _scan_bwd_group_smem_config(xz, tabs, dout)
    if smem is not None:
        # v8 reads one state's row of A over the channels: the tables transposed to (2, NP4, D)
        a2t, ant = a2.transpose(1, 2).contiguous(), aneg.transpose(1, 2).contiguous()
        dtwt = tabs.dtw.transpose(1, 2).contiguous()  # and the dt_proj weights, (2, RP4, D): one line per load
        _scan_bwd_group_smem_kernel[(d_inner // 32, 2, batch * nblk)](
            xz, xdbl, dout, tabs.convw, tabs.convb, dtwt, tabs.dtb, a2t, ant, tabs.dsk,
            ckpt, gcar, y, dxc, ddp, dxd_part, dA, dD, pdel,
            length, d_inner, nch, ndb, nblk,
            xz.stride(0), xz.stride(1), xdbl.stride(0), xdbl.stride(1), dout.stride(0), dout.stride(1),
            dout_dir_stride, y.stride(0), y.stride(1),
            R=tabs.r, N=tabs.n, K=tabs.k, RP4=tabs.rp4, RPP=max(4, _next_pow2(tabs.r)), NP4=tabs.np4, PS=tabs.ps,
            T=t_chunk, GCH=DA_BLOCK, num_warps=1, **_reg_cap(smem.get("maxnreg")),
        )
        del gcar, pdel, ckpt
        return y, dxc, ddp, dxd_part, dA, dD
    maxnreg = cfg.get("maxnreg")
    rs = cfg.get("GROUP", 5) == 6
    nv = cfg.get("NV", 1) if tabs.n % cfg.get("NV", 1) == 0 else 1  # states per vector load of B and C
    pf = bool(cfg.get("PF", False)) and d_inner % bd == 0 and not _interpreting()  # L1 prefetch, next state's rows
    if rs and (bd != 32 or cfg["num_warps"] != 1 or t_chunk not in (4, 8)):
        raise ValueError(f"SCAN_BWD_CONFIG GROUP 6 needs BD 32, num_warps 1 and T 4 or 8, got {cfg}")
    _scan_bwd_group_kernel[(ndb, 2, batch * nblk)](
        xz, xdbl, dout, tabs.convw, tabs.convb, tabs.dtw, tabs.dtb, a2, tabs.dsk,
        ckpt, gcar, y, dxc, ddp, dxd_part, dA, dD, aneg, pdel,
        length, d_inner, nch, ndb, nblk,
        xz.stride(0), xz.stride(1), xdbl.stride(0) // 4, xdbl.stride(1) // 4,
        dout.stride(0), dout.stride(1), dout_dir_stride, y.stride(0), y.stride(1), 1,
        R=tabs.r, N=tabs.n, K=tabs.k, RP4=tabs.rp4, NP4=tabs.np4, PS=tabs.ps,
        BD=bd, T=t_chunk, GCH=DA_BLOCK, FAST=fast, RS=rs, RS_ASM=rs and not _interpreting(), NV=nv, PF=pf,
        RS_SMEM=bool(cfg.get("RS_SMEM", False)), DT_VEC=bool(cfg.get("DT_VEC", False)),
        X_COLS=bool(cfg.get("X_COLS", False)) and t_chunk in (2, 4, 8),
        num_warps=cfg["num_warps"], **_reg_cap(maxnreg),
    )
    del gcar, pdel
    del ckpt
    return y, dxc, ddp, dxd_part, dA, dD


def _scan_bwd_sweep_smem_config(xz: torch.Tensor, tabs, dout: torch.Tensor):
    """The launch settings of the backward's sweeps through shared memory (`_scan_bwd_sweep_smem_kernel`, Gluon)
    ({"BD", "maxnreg"}), or None where they do not apply (then `_scan_bwd_split_local_kernel` runs):
    SCAN_BWD_CONFIG["SWEEP_SMEM"] off, or where the forward v7 would not run for these tables (its settings give the
    channel block; channels must fill whole blocks), or a dout not contiguous in its channels."""
    cfg = SCAN_BWD_CONFIG
    if not cfg.get("SWEEP_SMEM") or dout.stride(-1) != 1 or dout.dtype not in (torch.float16, torch.bfloat16):
        return None
    if not _HAS_GLUON or _interpreting() or xz.device.type != "cuda" or xz.dtype not in (torch.float16, torch.bfloat16):
        return None
    if tabs.k > 4 or tabs.psp > 128 or tabs.rp4 % tabs.np4 or xz.stride(2) != 1 or xz.stride(1) % 8:
        return None
    if torch.cuda.get_device_capability(xz.device) < (8, 0):
        return None
    fwd = _scan_fwd_smem_settings(tabs)
    if not fwd["EVEN"]:
        return None
    return {"BD": fwd["BD"], "maxnreg": cfg.get("SWEEP_SMEM_MAXNREG")}


def _scan_bwd_group_smem_config(xz: torch.Tensor, tabs, dout: torch.Tensor):
    """The launch settings of the backward group kernel v8 (`_scan_bwd_group_smem_kernel`, Gluon) for this call
    ({"maxnreg"}), or None where it does not apply (then `_scan_bwd_group_kernel` runs): SCAN_BWD_CONFIG["SMEM"]
    off, no Gluon, not CUDA or below compute capability 8.0, the interpreter, float32 inputs, chunks other than 8
    tokens or channel blocks other than 32, a conv wider than 4, or channels not a multiple of 32."""
    cfg = SCAN_BWD_CONFIG
    if not cfg.get("SMEM") or not _HAS_GLUON or _interpreting() or xz.device.type != "cuda":
        return None
    if xz.dtype not in (torch.float16, torch.bfloat16) or cfg["T"] != 8 or cfg["BD"] != 32 or tabs.k > 4:
        return None
    if tabs.d_inner % 32 or tabs.n > tabs.np4 or tabs.np4 & (tabs.np4 - 1) or xz.stride(2) != 1 or dout.stride(-1) != 1:
        return None
    if torch.cuda.get_device_capability(xz.device) < (8, 0):
        return None
    return {"maxnreg": cfg.get("SMEM_MAXNREG")}


def _xproj_bwd_lane_config(xz: torch.Tensor, tabs):
    """The launch settings of the lane-per-channel x_proj backward (`_xproj_bwd_lane_kernel`, Gluon) for this call
    ({"BD", "T", "PROGRAMS", "maxnreg"}), or None where it does not apply (then `_xproj_bwd_kernel` runs):
    XPROJ_BWD_CONFIG["LANE"] off, no Gluon, not CUDA or below compute capability 8.0, the interpreter, float32
    inputs, a conv wider than 4, x_dbl rows over LANE_MAX_PS floats (VideoMamba-M's 96: each lane's two 96-float
    columns and 192 FMAs per token lose to the tf32 tiles) or a padded dt rank not a multiple of the padded state
    size, channels not a multiple of 32, or x rows not in 16-byte units (the `cp.async` copies)."""
    cfg = XPROJ_BWD_CONFIG
    if not cfg.get("LANE") or not _HAS_GLUON or _interpreting() or xz.device.type != "cuda":
        return None
    if xz.dtype not in (torch.float16, torch.bfloat16) or tabs.k > 4 or tabs.rp4 % tabs.np4:
        return None
    if tabs.ps > cfg["LANE_MAX_PS"] or tabs.psp > 128:
        return None
    if tabs.d_inner % 32 or xz.stride(2) != 1 or xz.stride(1) % 8 or xz.stride(0) % 8 or xz.data_ptr() % 16:
        return None
    if torch.cuda.get_device_capability(xz.device) < (8, 0):
        return None
    bd = next(b for b in (cfg["LANE_BD"], 64, 32) if b <= cfg["LANE_BD"] and tabs.d_inner % b == 0)
    maxnreg = cfg.get("LANE_MAXNREG") if tabs.ps <= cfg["LANE_WIDE_PS"] else cfg.get("LANE_WIDE_MAXNREG")
    return {"BD": bd, "T": cfg["LANE_T"], "PROGRAMS": cfg["LANE_PROGRAMS"], "maxnreg": maxnreg}


def _backward_a_tables(tabs: _Tables, A_log=None):
    """-> (A in float64 (2, D, N), A and A log2(e) as the backward kernels' float32 tables (2, D, 4 NG)), each table
    rounded once from float64 (the forward's a2 is float32 A times log2(e): two roundings). A_log (2, D, N) gives A
    exactly; else the float32 A of the tables."""
    a_exact = -torch.exp(A_log.detach().double()) if A_log is not None else tabs.A.double()
    aneg, a2 = torch.zeros_like(tabs.a2), torch.zeros_like(tabs.a2)
    aneg[..., : tabs.n] = a_exact
    a2[..., : tabs.n] = a_exact * LOG2E
    return a_exact, aneg, a2


def _token_splits(batch: int, length: int, d_inner: int):
    """(splits, tokens per split, channel block) of `_xproj_bwd_kernel` and `_conv_bwd_kernel` (XPROJ_BWD_CONFIG):
    enough programs to fill the GPU, few enough to keep the partial sums small; whole BT-token tiles per split."""
    xcfg = XPROJ_BWD_CONFIG
    bt, bc = xcfg["BT"], min(xcfg["BC"], max(16, _next_pow2(d_inner)))
    nsplit = max(1, min(_cdiv(length, bt), _cdiv(xcfg.get("PROGRAMS", 8 * 132), batch * _cdiv(d_inner, bc))))
    tps = _cdiv(_cdiv(length, nsplit), bt) * bt
    return _cdiv(length, tps), tps, bc


def _xproj_backward(xz, dxd, dxc, tabs: _Tables):
    """x_proj and SiLU backward of both directions: dxd (B, L, 2, PS) float32 the gradient wrt x_dbl, dxc (B, L, 2,
    D) float32 the scan's gradient wrt the conv's SiLU output. Returns dpre (dxc overwritten: the gradient wrt the
    conv output before the SiLU) and the float32 gradients wrt the x_proj weight (2, R + 2N, D) and the conv bias
    (2, D), their partial sums added in float64. `_xproj_bwd_lane_kernel` where it applies (a lane per channel,
    Gluon), else `_xproj_bwd_kernel` (tf32 tiles for half-precision inputs, IEEE float32 for float32 ones)."""
    batch, length, _ = xz.shape
    d_inner, dev, f32 = tabs.d_inner, xz.device, torch.float32
    lane = _xproj_bwd_lane_config(xz, tabs)
    if lane is not None:  # one channel per lane: token splits of whole chunks, weight-gradient partials of PS rows
        bd, t_lane = lane["BD"], lane["T"]
        nsplit = max(1, min(_cdiv(length, t_lane), _cdiv(lane["PROGRAMS"], 2 * batch * (d_inner // bd))))
        tps = _cdiv(_cdiv(length, nsplit), t_lane) * t_lane
        nsplit = _cdiv(length, tps)
        dwx = torch.empty(batch * nsplit, 2, tabs.ps, d_inner, device=dev, dtype=f32)
        dcb = torch.empty(batch * nsplit, 2, d_inner, device=dev, dtype=f32)
        _xproj_bwd_lane_kernel[(d_inner // bd, nsplit, 2 * batch)](
            xz, tabs.convw, tabs.convb, tabs.wx, dxd, dxc, dwx, dcb,
            length, d_inner, tps, xz.stride(0), xz.stride(1), dxd.stride(0), dxd.stride(1), dxc.stride(0),
            dxc.stride(1), K=tabs.k, RP4=tabs.rp4, NP4=tabs.np4, PS=tabs.ps, PSP=tabs.psp, T=t_lane,
            num_warps=bd // 32, **_reg_cap(lane["maxnreg"]),
        )
    else:
        xcfg = XPROJ_BWD_CONFIG
        nsplit, tps, bc = _token_splits(batch, length, d_inner)
        dwx = torch.empty(batch * nsplit, 2, tabs.psp, d_inner, device=dev, dtype=f32)
        dcb = torch.empty(batch * nsplit, 2, d_inner, device=dev, dtype=f32)
        _xproj_bwd_kernel[(_cdiv(d_inner, bc), nsplit, 2 * batch)](
            xz, tabs.convw, tabs.convb, tabs.wx, dxd, dxc, dxc, dwx, dcb,
            length, d_inner, tps, xz.stride(0), xz.stride(1), dxd.stride(0), dxd.stride(1), dxc.stride(0),
            dxc.stride(1), PS=tabs.ps, PSP=tabs.psp, K=tabs.k, BT=xcfg["BT"], BC=bc, IEEE=xz.dtype == torch.float32,
            num_warps=xcfg["num_warps"], num_stages=xcfg["num_stages"],
            **_reg_cap(xcfg.get("maxnreg")),
        )
    return dxc, _sum_f64(dwx).to(f32)[:, tabs.row_index], _sum_f64(dcb).to(f32)


def _scan_backward(xz, xdbl, dout, dout_dir_stride, tabs: _Tables, need_out_sum: bool, A_log=None):
    """Gradients of the two gated directions wrt xz and all scan parameters.

    dout: (B, L, D) shared by both directions (dout_dir_stride 0) or (B, L, 2, D) (dout_dir_stride D).
    A_log: (2, D, N), for the chain-rule factor dA/dA_log = A in float64 (else the float32 A of the tables).
    Returns dxz (B, L, 2D) in xz's dtype, out_sum (B, L, D) = out_f + out_b (or None), and a dict of float32
    parameter gradients in the stacked shapes.
    """
    batch, length, _ = xz.shape
    d_inner, dev, f32 = tabs.d_inner, xz.device, torch.float32
    a_exact, aneg, a2 = _backward_a_tables(tabs, A_log)
    y, dxc, ddp, dxd_part, dA, dD = _scan_bwd_scan(xz, xdbl, dout, dout_dir_stride, tabs, a2, aneg)
    # dt_proj: dt = dt_low @ W.T + bias, with ddp the gradient wrt dt: one pass over ddp for the gradients wrt dt_low
    # (dxd's first R columns), W and the bias, the weight and bias gradients as float32 sums over TOKEN_BLOCK tokens
    # (the blocks added in float64); the same pass sums the channel blocks' B and C partials into dxd's other columns
    dxd = torch.empty(batch, length, 2, tabs.ps, device=dev, dtype=f32)
    m, nblk_t, rp = batch * length, _cdiv(batch * length, TOKEN_BLOCK), max(16, _next_pow2(tabs.r))
    dwp = torch.empty(nblk_t, 2, d_inner, rp, device=dev, dtype=f32)
    dbp = torch.empty(nblk_t, 2, d_inner, device=dev, dtype=f32)
    _dt_proj_bwd_kernel[(nblk_t, 2)](ddp, xdbl, tabs.dtw, dxd_part, dxd, dwp, dbp, m, d_inner, dxd_part.shape[3],
                                      R=tabs.r, RP=rp, RP4=tabs.rp4, N=tabs.n, NP4=tabs.np4, PS=tabs.ps,
                                      BT=TOKEN_BLOCK, BC=32, num_warps=4)
    del dxd_part
    d_dt_weight = _sum_f64(dwp)[..., : tabs.r].to(f32)
    d_dt_bias = _sum_f64(dbp).to(f32)
    del ddp, dwp, dbp

    dpre, d_x_proj, d_conv_bias = _xproj_backward(xz, dxd, dxc, tabs)
    del dxd
    ccfg = CONV_BWD_CONFIG
    nsplit, tps, _ = _token_splits(batch, length, d_inner)
    dxz = torch.empty_like(xz)
    out_sum = torch.empty(batch, length, d_inner, device=dev, dtype=xz.dtype) if need_out_sum else None
    dcw = torch.empty(batch * nsplit, 2, tabs.k, d_inner, device=dev, dtype=f32)
    cbc = min(ccfg["BC"], max(16, _next_pow2(d_inner)))
    _conv_bwd_kernel[(_cdiv(d_inner, cbc), nsplit, batch)](
        xz, tabs.convw, dpre, y, dout, dxz, out_sum if need_out_sum else dxz, dcw,
        length, d_inner, tps, xz.stride(0), xz.stride(1), y.stride(0), y.stride(1),
        dout.stride(0), dout.stride(1), dout_dir_stride, dxz.stride(0), dxz.stride(1),
        K=tabs.k, BT=ccfg["BT"], BC=cbc, WRITE_OUT=need_out_sum, PRECISE=xz.dtype == torch.float32,
        num_warps=ccfg["num_warps"], num_stages=ccfg["num_stages"],
        **_reg_cap(ccfg.get("maxnreg")),
    )
    def total(part, dims=(0,)):  # partial sums over samples / token splits / chunk groups, added in float64
        return _sum_f64(part, dims).to(f32)

    grads = {
        "conv_weight": total(dcw).transpose(1, 2),  # (2, D, K)
        "conv_bias": d_conv_bias,
        "x_proj_weight": d_x_proj,  # (2, R + 2N, D)
        "dt_proj_weight": d_dt_weight,  # (2, D, R)
        "dt_proj_bias": d_dt_bias,
        "A_log": (_sum_f64(dA, (0, 2))[:, : tabs.n].transpose(1, 2) * a_exact).to(f32),  # dA * A
        "D": total(dD, (0, 2)),
    }
    return dxz, out_sum, grads


def _cast_grad(grad, like):
    if like is None or not like.requires_grad:
        return None
    return grad.to(like.dtype)


def _check_input(xz: torch.Tensor):
    if not xz.is_cuda and not _interpreting():
        raise ValueError("The Triton scan runs on CUDA tensors; use scan_backend='torch' on the CPU.")
    if xz.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"The Triton scan takes float32, float16 or bfloat16 inputs, got {xz.dtype}.")


class BiMambaScanFunction(torch.autograd.Function):
    """xz (B, L, 2D) -> out2 (B, L, 2, D): both directions' gated outputs (sum over dim 2 for the mixer)."""

    @staticmethod
    def forward(ctx, xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D):
        _check_input(xz)
        xz = xz.contiguous()
        tabs = _Tables(conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D,
                       half_dtype=_half_dtype(xz.dtype))
        xdbl = _xproj_forward(xz, tabs)
        out2 = _scan_forward(xz, xdbl, tabs)
        ctx.save_for_backward(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D,
                              xdbl if SAVE_XDBL else None)
        ctx.tabs = tabs  # the backward's tables too (the saved parameters' version check still guards them)
        return out2

    @staticmethod
    def backward(ctx, dout2):
        xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D, xdbl = ctx.saved_tensors
        tabs = ctx.tabs
        if xdbl is None:
            xdbl = _xproj_recompute(xz, tabs)
        dout2 = dout2.contiguous()
        dxz, _, g = _scan_backward(xz, xdbl, dout2, dout2.stride(2), tabs, need_out_sum=False, A_log=A_log)
        return (
            dxz, _cast_grad(g["conv_weight"], conv_weight), _cast_grad(g["conv_bias"], conv_bias),
            _cast_grad(g["x_proj_weight"], x_proj_weight), _cast_grad(g["dt_proj_weight"], dt_proj_weight),
            _cast_grad(g["dt_proj_bias"], dt_proj_bias), _cast_grad(g["A_log"], A_log), _cast_grad(g["D"], D),
        )


_SCAN_PARAMETER_NAMES = ("conv_weight", "conv_bias", "x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D")


def _half_dtype(dtype: torch.dtype):
    return dtype if dtype in (torch.float16, torch.bfloat16) else None


def _mixer_forward(hidden_states, in_weight, in_bias, out_weight, out_bias, tabs: _Tables, keep_xdbl=False):
    """in_proj -> conv + x_proj -> both directions' scans -> out_proj, (B, L, H) -> (B, L, H) (no autograd).
    With `keep_xdbl`, returns (output, x_dbl (B, L, 2, PS) float32)."""
    batch, length, _ = hidden_states.shape
    xz = F.linear(hidden_states, in_weight, in_bias)
    _check_input(xz)
    xdbl = _xproj_forward(xz, tabs)
    if _sum_directions(batch, tabs.d_inner, xz.device):
        y = _scan_forward(xz, xdbl, tabs, summed=True)  # out_f + out_b (B, L, D)
    else:  # out_proj(out_f + out_b) as one product over the concatenated directions: K = 2 * d_inner
        y = _scan_forward(xz, xdbl, tabs).view(batch, length, 2 * tabs.d_inner)
        out_weight = torch.cat([out_weight, out_weight], dim=1)
    kept = xdbl if keep_xdbl else None
    del xz, xdbl  # freed before out_proj's output is allocated, unless kept
    out = F.linear(y, out_weight, out_bias)
    return (out, kept) if keep_xdbl else out


class BiMambaInnerFunction(torch.autograd.Function):
    """The whole mixer: in_proj -> fused bidirectional scan -> out_proj. Takes each direction's seven scan
    parameters as they are in the module (forward direction's, then the backward direction's, in the order of
    `_SCAN_PARAMETER_NAMES`). Saves its input, the parameters and (SAVE_XDBL) x_dbl; the backward recomputes
    in_proj and the states."""

    @staticmethod
    def forward(ctx, hidden_states, in_weight, in_bias, out_weight, out_bias, *scan_parameters):
        hidden_states = hidden_states.contiguous()
        tabs = _Tables.from_directions(scan_parameters[:7], scan_parameters[7:], _half_dtype(hidden_states.dtype))
        out, xdbl = _mixer_forward(hidden_states, in_weight, in_bias, out_weight, out_bias, tabs, keep_xdbl=True)
        ctx.save_for_backward(hidden_states, in_weight, in_bias, out_weight, out_bias, xdbl if SAVE_XDBL else None,
                              *scan_parameters)
        ctx.tabs = tabs  # the backward's tables too (the saved parameters' version check still guards them)
        return out

    @staticmethod
    def backward(ctx, dout):
        hidden_states, in_weight, in_bias, out_weight, out_bias, xdbl, *scan_parameters = ctx.saved_tensors
        batch, length, hidden = hidden_states.shape
        xz = F.linear(hidden_states, in_weight, in_bias)
        tabs = ctx.tabs
        if xdbl is None:
            xdbl = _xproj_recompute(xz, tabs)
        dout = dout.contiguous().to(xz.dtype)
        dy_inner = torch.matmul(dout, out_weight)  # (B, L, D): the gradient of out_f + out_b
        A_log = torch.stack([scan_parameters[5], scan_parameters[12]])
        dxz, out_sum, g = _scan_backward(xz, xdbl, dy_inner, 0, tabs, need_out_sum=True, A_log=A_log)
        del xdbl, dy_inner
        dout2d = dout.reshape(batch * length, -1)
        d_out_weight = dout2d.t() @ out_sum.reshape(batch * length, -1) if out_weight.requires_grad else None
        d_out_bias = dout2d.sum(0) if out_bias is not None and out_bias.requires_grad else None
        dxz2d = dxz.reshape(batch * length, -1)
        d_hidden = torch.matmul(dxz, in_weight) if ctx.needs_input_grad[0] else None
        d_in_weight = dxz2d.t() @ hidden_states.reshape(batch * length, -1) if in_weight.requires_grad else None
        d_in_bias = dxz2d.sum(0) if in_bias is not None and in_bias.requires_grad else None
        scan_grads = [
            _cast_grad(g[name][direction].reshape(param.shape), param) if param is not None else None
            for direction in (0, 1)
            for name, param in zip(_SCAN_PARAMETER_NAMES, scan_parameters[7 * direction:7 * direction + 7])
        ]
        return (d_hidden, d_in_weight, d_in_bias, d_out_weight, d_out_bias, *scan_grads)


def bimamba_scan_fn(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D):
    """Functional fused bidirectional scan (differentiable).

    Args:
        xz: `(batch, length, 2 * d_inner)`, the in_proj output: x = `xz[..., :d_inner]`, z = `xz[..., d_inner:]`.
        conv_weight: `(2, d_inner, K)`; conv_bias: `(2, d_inner)` or None; x_proj_weight: `(2, R + 2N, d_inner)`;
        dt_proj_weight: `(2, d_inner, R)`; dt_proj_bias, D: `(2, d_inner)`; A_log: `(2, d_inner, N)`.
        Index 0 is the forward direction, 1 the backward one (scanning right to left, conv looking ahead).
    Returns:
        `(batch, length, 2, d_inner)` in xz's dtype: the gated output of each direction; the mixer feeds their sum
        to out_proj.
    """
    return BiMambaScanFunction.apply(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D)


def stacked_mixer_parameters(mixer):
    """The mixer's two directions' scan parameters stacked along a new dim 0 (differentiable views/copies), in the
    order of `bimamba_scan_fn`'s arguments after xz."""
    fwd, bwd = mixer.direction_parameters(False), mixer.direction_parameters(True)
    conv_weight = torch.stack([fwd[0].weight.squeeze(1), bwd[0].weight.squeeze(1)])
    conv_bias = torch.stack([fwd[0].bias, bwd[0].bias]) if fwd[0].bias is not None else None
    x_proj_weight = torch.stack([fwd[1].weight, bwd[1].weight])
    dt_proj_weight = torch.stack([fwd[2].weight, bwd[2].weight])
    dt_proj_bias = torch.stack([fwd[2].bias, bwd[2].bias])
    A_log = torch.stack([fwd[3], bwd[3]])
    D = torch.stack([fwd[4], bwd[4]])
    return conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D


def _autocast_dtype(device_type: str):
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # older torch
        enabled = torch.is_autocast_enabled()
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # older torch
        return torch.get_autocast_gpu_dtype()


def bimamba_scan_triton(mixer, hidden_states: torch.Tensor) -> torch.Tensor:
    """The whole `VideoMambaMixer` forward through the fused Triton kernels (differentiable).

    Args:
        mixer: a `VideoMambaMixer`.
        hidden_states: `(batch, length, hidden_size)`.
    Returns:
        `(batch, length, hidden_size)`, in the autocast dtype under autocast, else in hidden_states' dtype.
    """
    if hidden_states.dim() != 3:
        raise ValueError(f"hidden_states must be (batch, length, hidden), got shape {tuple(hidden_states.shape)}.")
    dtype = _autocast_dtype(hidden_states.device.type) or hidden_states.dtype
    in_weight, out_weight = mixer.in_proj.weight.to(dtype), mixer.out_proj.weight.to(dtype)
    in_bias = mixer.in_proj.bias.to(dtype) if mixer.in_proj.bias is not None else None
    out_bias = mixer.out_proj.bias.to(dtype) if mixer.out_proj.bias is not None else None
    scan_parameters = []
    for backward in (False, True):
        conv, x_proj, dt_proj, A_log, D = mixer.direction_parameters(backward)
        scan_parameters += [conv.weight, conv.bias, x_proj.weight, dt_proj.weight, dt_proj.bias, A_log, D]
    with torch.autocast(hidden_states.device.type, enabled=False):
        hidden_states = hidden_states.to(dtype)
        if torch.is_grad_enabled() and (hidden_states.requires_grad or any(
                p is not None and p.requires_grad for p in (in_weight, in_bias, out_weight, out_bias, *scan_parameters))):
            return BiMambaInnerFunction.apply(hidden_states, in_weight, in_bias, out_weight, out_bias, *scan_parameters)
        # nothing to differentiate (inference): the same computation without the autograd node
        tabs = _Tables.from_directions(scan_parameters[:7], scan_parameters[7:], _half_dtype(dtype))
        return _mixer_forward(hidden_states.contiguous(), in_weight, in_bias, out_weight, out_bias, tabs)


__all__ = ["bimamba_scan_triton", "bimamba_scan_fn", "stacked_mixer_parameters", "BiMambaScanFunction",
           "BiMambaInnerFunction"]
