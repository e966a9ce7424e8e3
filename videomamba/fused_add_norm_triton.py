# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Fused residual add + RMSNorm in Triton, forward and backward.

    residual_out = residual + hidden_states            (float32 when residual_in_fp32)
    normed       = residual_out * rsqrt(mean(residual_out ** 2) + eps) * weight

One pass reads `hidden_states` and `residual` and writes `residual_out` and `normed` (the unfused PyTorch ops make
about six passes). The backward pass recomputes the normalisation from `residual_out` and one saved `rstd` per row.
"""

import torch


try:
    import triton
    import triton.language as tl
except ImportError as error:
    raise ImportError("videomamba's fused add + RMSNorm needs Triton (it ships with PyTorch's CUDA builds).") from error


@triton.jit
def _add_rms_norm_fwd(
    X, R, W, R_OUT, Y, RSTD, n_rows, n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_COLS)
    row_ok = rows < n_rows
    mask = row_ok[:, None] & (cols[None, :] < n_cols)
    offsets = rows[:, None].to(tl.int64) * n_cols + cols[None, :]
    r = tl.load(X + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r += tl.load(R + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(R_OUT + offsets, r.to(R_OUT.dtype.element_ty), mask=mask)
    rstd = 1.0 / tl.sqrt(tl.sum(r * r, axis=1) / n_cols + eps)
    tl.store(RSTD + rows, rstd, mask=row_ok)
    w = tl.load(W + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    y = r * rstd[:, None] * w[None, :]
    tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _add_rms_norm_bwd(
    R_OUT, W, RSTD, DY, DR_OUT, DR, DW_PARTIAL, n_rows, n_cols,
    HAS_DR_OUT: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_COLS)
    row_ok = rows < n_rows
    col_ok = cols < n_cols
    mask = row_ok[:, None] & col_ok[None, :]
    offsets = rows[:, None].to(tl.int64) * n_cols + cols[None, :]
    r = tl.load(R_OUT + offsets, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0)
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dy = tl.load(DY + offsets, mask=mask, other=0.0).to(tl.float32)
    xhat = r * rstd[:, None]
    dxhat = dy * w[None, :]
    mean_term = tl.sum(dxhat * xhat, axis=1) / n_cols
    dr = (dxhat - xhat * mean_term[:, None]) * rstd[:, None]
    if HAS_DR_OUT:
        dr += tl.load(DR_OUT + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(DR + offsets, dr, mask=mask)
    tl.store(DW_PARTIAL + pid * n_cols + cols, tl.sum(dy * xhat, axis=0), mask=col_ok)


def _launch_shape(n_cols):
    block_cols = triton.next_power_of_2(n_cols)
    block_rows = max(1, min(16, 4096 // block_cols))
    return block_rows, block_cols


class FusedAddRMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden_states, residual, weight, eps, residual_dtype, out_dtype):
        shape = hidden_states.shape
        n_cols = shape[-1]
        x = hidden_states.reshape(-1, n_cols).contiguous()
        r = residual.reshape(-1, n_cols).contiguous() if residual is not None else None
        n_rows = x.shape[0]
        residual_out = torch.empty(n_rows, n_cols, device=x.device, dtype=residual_dtype)
        normed = torch.empty(n_rows, n_cols, device=x.device, dtype=out_dtype)
        rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
        block_rows, block_cols = _launch_shape(n_cols)
        grid = (triton.cdiv(n_rows, block_rows),)
        _add_rms_norm_fwd[grid](
            x, r if r is not None else x, weight, residual_out, normed, rstd, n_rows, n_cols, eps,
            HAS_RESIDUAL=r is not None, BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, num_warps=4,
        )
        ctx.save_for_backward(residual_out, weight, rstd)
        ctx.has_residual = residual is not None
        ctx.dtypes = (hidden_states.dtype, residual.dtype if residual is not None else None)
        ctx.shape = shape
        ctx.mark_non_differentiable(rstd)
        return normed.view(shape), residual_out.view(shape)

    @staticmethod
    def backward(ctx, grad_normed, grad_residual_out):
        residual_out, weight, rstd = ctx.saved_tensors
        n_rows, n_cols = residual_out.shape
        dy = grad_normed.reshape(n_rows, n_cols).contiguous()
        dr_out = grad_residual_out.reshape(n_rows, n_cols).contiguous() if grad_residual_out is not None else None
        block_rows, block_cols = _launch_shape(n_cols)
        grid = (triton.cdiv(n_rows, block_rows),)
        dr = torch.empty(n_rows, n_cols, device=dy.device, dtype=torch.float32)
        dw_partial = torch.empty(grid[0], n_cols, device=dy.device, dtype=torch.float32)
        _add_rms_norm_bwd[grid](
            residual_out, weight, rstd, dy, dr_out if dr_out is not None else dy, dr, dw_partial, n_rows, n_cols,
            HAS_DR_OUT=dr_out is not None, BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, num_warps=4,
        )
        grad_weight = dw_partial.sum(0).to(weight.dtype)
        x_dtype, r_dtype = ctx.dtypes
        dr = dr.view(ctx.shape)
        grad_residual = dr.to(r_dtype) if ctx.has_residual else None
        return dr.to(x_dtype), grad_residual, grad_weight, None, None, None


def fused_add_rms_norm(hidden_states, residual, weight, eps, residual_in_fp32=True, out_dtype=None):
    """`(normed, residual_out)` for `residual_out = residual + hidden_states` (or `hidden_states` when `residual` is
    None), `normed = RMSNorm(residual_out) * weight`.

    Args:
        hidden_states, residual: `(..., hidden)`.
        weight: `(hidden,)`.
    Returns:
        `normed` in `out_dtype` (default: the weight's dtype) and `residual_out` in float32 when `residual_in_fp32`
        (else the dtype of `residual`, or of `hidden_states` for the first block).
    """
    if residual_in_fp32:
        residual_dtype = torch.float32
    else:
        residual_dtype = residual.dtype if residual is not None else hidden_states.dtype
    return FusedAddRMSNormFunction.apply(
        hidden_states, residual, weight, eps, residual_dtype, out_dtype or weight.dtype
    )


__all__ = ["fused_add_rms_norm"]
