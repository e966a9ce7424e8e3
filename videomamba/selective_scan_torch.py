# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Pure PyTorch selective scan (Mamba's S6), used wherever the CUDA kernels are not.

The recurrence, per channel `d` and state `n` (Gu & Dao, 2023, algorithm 2):

    delta_t = softplus(dt_t + dt_bias)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t
    y_t     = <C_t, h_t> + D * x_t,        out_t = y_t * silu(z_t)

`linear_recurrence` evaluates `h_t = a_t * h_{t-1} + u_t` without a Python loop over every token: the sequence is
cut into chunks of `chunk_size`; one loop of `chunk_size` steps runs all chunks at once (each step a vectorised op over
batch x chunks x channels x states), the chunks' end states are combined by the same function recursively, and one
broadcast adds each chunk's incoming state. Decays are products of factors in (0, 1], so nothing overflows. The cost is
about twice the sequential scan's arithmetic in `2 * chunk_size + L / chunk_size**2` Python steps instead of `L`.
On a CPU the plain loop over tokens is the faster one unless each step is tiny (few channels and states, a long
sequence): by default (`chunk_size=None`) CPU tensors take it when the sequence has at most 256 tokens or a step has
at least 4096 values (batch x channels x states), and everything else is chunked by 32.

`selective_scan` wraps it in an autograd function with a hand-written backward (a reverse recurrence of the same kind),
so that only the inputs are kept for the backward pass, not the (batch, length, channels, states) intermediates.
All arithmetic is in float32 (float64 inputs stay float64); the output has the dtype of `x`.
"""

import torch
import torch.nn.functional as F


# On a CPU a loop over the tokens costs one small op per token, the chunked scan about four full passes over the
# (batch, length, channels, states) tensors plus its padding: measured on 2 cores, the loop is 2-10x faster for
# sequences up to 256 tokens (the padding of 33 tokens to 64 costs most) and for steps of 4096 values or more (batch
# 1, 1569 tokens, 384 x 16: 38 ms instead of 119 ms); only tiny steps over long sequences favour chunks.
_CPU_LOOP_MAX_LENGTH = 256
_CPU_LOOP_MIN_STEP = 4096


def default_chunk_size(a: torch.Tensor) -> int:
    """The chunk size `linear_recurrence` uses for `a` `(batch, length, *state_shape)` when none is given: the
    length itself (a plain loop over tokens) where that is faster, on CPUs, else 32."""
    length = a.shape[1]
    if a.device.type == "cpu" and (length <= _CPU_LOOP_MAX_LENGTH or a[:, 0].numel() >= _CPU_LOOP_MIN_STEP):
        return max(length, 2)
    return 32


def linear_recurrence(
    a: torch.Tensor, u: torch.Tensor, h0: torch.Tensor | None = None, chunk_size: int | None = None
):
    """Solve `h_t = a_t * h_{t-1} + u_t` along dim 1.

    Args:
        a, u: `(batch, length, *state_shape)`.
        h0: `(batch, *state_shape)` state before the first step, or `None` for zeros.
        chunk_size: tokens per chunk (a sequence no longer than this is a plain loop); `None` picks the faster
            one for the tensors' device and sizes (`default_chunk_size`).
    Returns:
        `h`: `(batch, length, *state_shape)`.
    """
    if chunk_size is None:
        chunk_size = default_chunk_size(a)
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be at least 2, got {chunk_size}.")
    batch, length = a.shape[:2]
    if length <= chunk_size:
        h = torch.empty_like(u)
        prev = h0
        for t in range(length):
            prev = u[:, t] if prev is None else torch.addcmul(u[:, t], a[:, t], prev)
            h[:, t] = prev
        return h

    state_shape = a.shape[2:]
    num_chunks = -(-length // chunk_size)
    pad = num_chunks * chunk_size - length
    if pad:
        a = torch.cat([a, a.new_ones((batch, pad, *state_shape))], dim=1)
        u = torch.cat([u, u.new_zeros((batch, pad, *state_shape))], dim=1)
    a = a.view(batch, num_chunks, chunk_size, *state_shape)
    u = u.view(batch, num_chunks, chunk_size, *state_shape)

    # Within every chunk at once: states from a zero start, and the running product of decays.
    h_local = torch.empty_like(u)
    decay = torch.empty_like(a)
    h_local[:, :, 0] = u[:, :, 0]
    decay[:, :, 0] = a[:, :, 0]
    for k in range(1, chunk_size):
        torch.addcmul(u[:, :, k], a[:, :, k], h_local[:, :, k - 1], out=h_local[:, :, k])
        torch.mul(decay[:, :, k - 1], a[:, :, k], out=decay[:, :, k])

    # State entering each chunk: the chunks' end states, chained by the same recurrence.
    chunk_end = linear_recurrence(decay[:, :, -1], h_local[:, :, -1], h0, chunk_size)
    first = h0.unsqueeze(1) if h0 is not None else chunk_end.new_zeros((batch, 1, *state_shape))
    incoming = torch.cat([first, chunk_end[:, :-1]], dim=1)
    h = torch.addcmul(h_local, decay, incoming.unsqueeze(2))
    return h.view(batch, num_chunks * chunk_size, *state_shape)[:, :length]


def _discretize(x, dt, A, B, dt_bias, delta_softplus):
    """Returns `delta (b, l, d)`, `dA = exp(delta A) (b, l, d, n)` and `dBx = delta B x (b, l, d, n)`."""
    delta = dt if dt_bias is None else dt + dt_bias
    if delta_softplus:
        delta = F.softplus(delta)
    dA = torch.exp(delta.unsqueeze(-1) * A)
    dBx = (delta * x).unsqueeze(-1) * B.unsqueeze(2)
    return delta, dA, dBx


class SelectiveScanFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, dt_bias, initial_state, delta_softplus, chunk_size):
        out_dtype = x.dtype
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        tensors = [t if t is None else t.to(compute_dtype) for t in (x, dt, A, B, C, D, z, dt_bias, initial_state)]
        x_, dt_, A_, B_, C_, D_, z_, dt_bias_, h0_ = tensors
        _, dA, dBx = _discretize(x_, dt_, A_, B_, dt_bias_, delta_softplus)
        h = linear_recurrence(dA, dBx, h0_, chunk_size)
        del dA, dBx
        y = torch.matmul(h, C_.unsqueeze(-1)).squeeze(-1)
        last_state = h[:, -1].clone()
        del h
        if D_ is not None:
            y = y + D_ * x_
        if z_ is not None:
            y = y * F.silu(z_)
        ctx.save_for_backward(x, dt, A, B, C, D, z, dt_bias, initial_state)
        ctx.delta_softplus = delta_softplus
        ctx.chunk_size = chunk_size
        ctx.compute_dtype = compute_dtype
        ctx.mark_non_differentiable(last_state)
        return y.to(out_dtype), last_state

    @staticmethod
    def backward(ctx, grad_out, grad_last_state):
        saved = ctx.saved_tensors
        x, dt, A, B, C, D, z, dt_bias, h0 = [t if t is None else t.to(ctx.compute_dtype) for t in saved]
        grad_out = grad_out.to(ctx.compute_dtype)
        delta, dA, dBx = _discretize(x, dt, A, B, dt_bias, ctx.delta_softplus)
        h = linear_recurrence(dA, dBx, h0, ctx.chunk_size)
        del dBx
        y = torch.matmul(h, C.unsqueeze(-1)).squeeze(-1)
        if D is not None:
            y = y + D * x

        grad_z = None
        if z is not None:
            sig_z = torch.sigmoid(z)
            grad_y = grad_out * z * sig_z
            grad_z = grad_out * y * sig_z * (1 + z * (1 - sig_z))
        else:
            grad_y = grad_out
        grad_x = grad_y * D if D is not None else torch.zeros_like(x)
        grad_D = (grad_y * x).sum((0, 1)) if D is not None else None
        grad_C = torch.matmul(grad_y.unsqueeze(-2), h).squeeze(-2)

        # dL/dh_t from y_t, then the reverse recurrence G_t = g_t + dA_{t+1} G_{t+1}.
        grad_h = grad_y.unsqueeze(-1) * C.unsqueeze(2)
        if grad_last_state is not None:
            grad_h[:, -1] += grad_last_state.to(grad_h.dtype)
        decay_next = torch.cat([dA[:, 1:], torch.zeros_like(dA[:, :1])], dim=1)
        G = linear_recurrence(decay_next.flip(1), grad_h.flip(1), None, ctx.chunk_size).flip(1)
        del grad_h, decay_next
        h_prev = torch.cat([h0.unsqueeze(1) if h0 is not None else torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        del h
        grad_h0 = dA[:, 0] * G[:, 0] if h0 is not None else None

        # dBx = delta * x * B
        grad_B = torch.matmul((delta * x).unsqueeze(-2), G).squeeze(-2)
        grad_delta_x = torch.matmul(G, B.unsqueeze(-1)).squeeze(-1)
        grad_x = grad_x + grad_delta_x * delta
        grad_delta = grad_delta_x * x
        # dA = exp(delta * A)
        grad_exponent = G * h_prev * dA
        del G, h_prev, dA
        grad_delta = grad_delta + (grad_exponent * A).sum(-1)
        grad_A = (grad_exponent * delta.unsqueeze(-1)).sum((0, 1))
        del grad_exponent
        if ctx.delta_softplus:
            pre = dt if dt_bias is None else dt + dt_bias
            grad_delta = grad_delta * torch.sigmoid(pre)
        grad_dt_bias = grad_delta.sum((0, 1)) if dt_bias is not None else None

        def cast(grad, like):
            return None if grad is None else grad.to(like.dtype)

        x0, dt0, A0, B0, C0, D0, z0, bias0, h00 = saved
        return (
            cast(grad_x, x0), cast(grad_delta, dt0), cast(grad_A, A0), cast(grad_B, B0), cast(grad_C, C0),
            cast(grad_D, D0), cast(grad_z, z0), cast(grad_dt_bias, bias0), cast(grad_h0, h00), None, None,
        )


def selective_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int | None = None,
):
    """Selective scan in token-major layout.

    Args:
        x, dt, z: `(batch, length, d_inner)`.
        A: `(d_inner, d_state)` (negative real).
        B, C: `(batch, length, d_state)`.
        D, dt_bias: `(d_inner,)`.
        initial_state: `(batch, d_inner, d_state)`, the state before the first token (float32).
        chunk_size: see `linear_recurrence` (`None`: the faster choice for the device and sizes).
    Returns:
        `(batch, length, d_inner)` in the dtype of `x`, and with `return_final_state` also the state after the last
        token `(batch, d_inner, d_state)` in float32 (not differentiable).
    """
    out, last_state = SelectiveScanFunction.apply(
        x, dt, A, B, C, D, z, dt_bias, initial_state, delta_softplus, chunk_size
    )
    return (out, last_state) if return_final_state else out


def causal_depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv_state=None):
    """Causal depthwise convolution followed by SiLU, token-major.

    Args:
        x: `(batch, length, channels)`.
        weight: `(channels, 1, kernel)` (an `nn.Conv1d(groups=channels)` weight).
        conv_state: `(batch, channels, kernel - 1)`, the inputs before the first token, or `None` for zeros.
    Returns:
        `(batch, length, channels)`.
    """
    kernel = weight.shape[-1]
    x = x.transpose(1, 2)
    if conv_state is None:
        x = F.pad(x, (kernel - 1, 0))
    else:
        x = torch.cat([conv_state.to(x.dtype), x], dim=-1)
    return F.silu(F.conv1d(x, weight, bias, groups=weight.shape[0])).transpose(1, 2)


__all__ = [
    "default_chunk_size", "linear_recurrence", "selective_scan", "causal_depthwise_conv1d", "SelectiveScanFunction",
]
