"""The pure PyTorch selective scan against a naive float64 loop: outputs, states and every gradient."""

import pytest
import torch
import torch.nn.functional as F

from videomamba.selective_scan_torch import (
    causal_depthwise_conv1d,
    default_chunk_size,
    linear_recurrence,
    selective_scan,
)


def naive_scan(x, dt, A, B, C, D, z, dt_bias, h0=None):
    delta = F.softplus(dt + dt_bias)
    batch, length, inner = x.shape
    h = torch.zeros(batch, inner, A.shape[1], dtype=x.dtype) if h0 is None else h0
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1) + D * x
    return y * F.silu(z), h


def random_inputs(batch, length, inner, state, dtype=torch.float64):
    def rand(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=True)

    A = (-torch.rand(inner, state, dtype=dtype) * 3 - 0.1).requires_grad_()
    return [rand(batch, length, inner), rand(batch, length, inner), A, rand(batch, length, state),
            rand(batch, length, state), rand(inner), rand(batch, length, inner), rand(inner)]


@pytest.mark.parametrize("length", [1, 7, 32, 33, 100, 1100])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_naive_loop_with_gradients(length, with_state):
    inputs = random_inputs(2, length, 6, 4)
    h0 = torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True) if with_state else None
    out, last = selective_scan(*inputs[:7], dt_bias=inputs[7], initial_state=h0, return_final_state=True)
    expected, expected_last = naive_scan(*inputs, h0=h0)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, expected_last, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(out)
    params = inputs + ([h0] if with_state else [])
    got = torch.autograd.grad((out * grad).sum(), params)
    want = torch.autograd.grad((expected * grad).sum(), params)
    for name, g, w in zip("x dt A B C D z dt_bias h0".split(), got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=name)


@pytest.mark.parametrize("chunk_size", [2, 5, 32, 500, None])
def test_chunk_size_does_not_change_the_result(chunk_size):
    a = torch.rand(3, 203, 5, dtype=torch.float64)
    u = torch.randn(3, 203, 5, dtype=torch.float64)
    h0 = torch.randn(3, 5, dtype=torch.float64)
    h = linear_recurrence(a, u, h0, chunk_size=chunk_size)
    expected, prev = [], h0
    for t in range(203):
        prev = a[:, t] * prev + u[:, t]
        expected.append(prev)
    torch.testing.assert_close(h, torch.stack(expected, 1), rtol=1e-12, atol=1e-12)


def test_default_chunk_size_loops_over_short_or_wide_cpu_sequences():
    assert default_chunk_size(torch.rand(16, 33, 128, 8)) == 33  # the CPU demo: a plain loop, no padding to 64
    assert default_chunk_size(torch.rand(1, 300, 8, 4)) == 32  # tiny steps over a long sequence: chunks
    assert default_chunk_size(torch.rand(1, 300, 64, 64)) == 300
    assert default_chunk_size(torch.rand(2, 1, 3)) == 2
    if torch.cuda.is_available():
        assert default_chunk_size(torch.rand(16, 33, 128, 8, device="cuda")) == 32


def test_default_scan_equals_the_chunked_scan():
    x, dt, A, B, C, D, z, bias = random_inputs(2, 33, 6, 4)
    out = selective_scan(x, dt, A, B, C, D, z, bias)
    chunked = selective_scan(x, dt, A, B, C, D, z, bias, chunk_size=32)
    torch.testing.assert_close(out, chunked, rtol=1e-9, atol=1e-9)
    grad = torch.randn_like(out)
    got = torch.autograd.grad((out * grad).sum(), (x, dt, A, B, C, D, z, bias))
    want = torch.autograd.grad((chunked * grad).sum(), (x, dt, A, B, C, D, z, bias))
    for name, g, w in zip("x dt A B C D z dt_bias".split(), got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=name)


def test_chunk_size_below_two_is_refused():
    with pytest.raises(ValueError, match="chunk_size"):
        linear_recurrence(torch.rand(1, 10, 2), torch.rand(1, 10, 2), chunk_size=1)


def test_state_carry_splits_a_sequence_exactly():
    x, dt, A, B, C, D, z, bias = [t.detach() for t in random_inputs(2, 50, 6, 4)]
    full = selective_scan(x, dt, A, B, C, D, z, bias)
    first, state = selective_scan(x[:, :20], dt[:, :20], A, B[:, :20], C[:, :20], D, z[:, :20], bias,
                                  return_final_state=True)
    second = selective_scan(x[:, 20:], dt[:, 20:], A, B[:, 20:], C[:, 20:], D, z[:, 20:], bias, initial_state=state)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-12, atol=1e-12)


def test_half_precision_inputs_compute_in_float32():
    inputs = [t.detach() for t in random_inputs(2, 40, 8, 4, dtype=torch.float32)]
    out32 = selective_scan(*inputs[:7], dt_bias=inputs[7])
    bf16 = [t.to(torch.bfloat16) for t in inputs]
    out16 = selective_scan(*bf16[:7], dt_bias=bf16[7])
    assert out16.dtype == torch.bfloat16
    reference = selective_scan(*[t.to(torch.bfloat16).float() for t in inputs[:7]], dt_bias=bf16[7].float())
    torch.testing.assert_close(out16.float(), reference, rtol=1e-2, atol=1e-2)
    assert (out32 - reference).norm() / out32.norm() < 0.05


def test_causal_conv_with_state_continues_the_sequence():
    x = torch.randn(2, 30, 6, dtype=torch.float64)
    weight = torch.randn(6, 1, 4, dtype=torch.float64)
    bias = torch.randn(6, dtype=torch.float64)
    full = causal_depthwise_conv1d(x, weight, bias)
    expected = torch.stack(
        [F.silu(sum(weight[:, 0, k] * x[:, t - 3 + k] for k in range(4) if t - 3 + k >= 0) + bias) for t in range(30)],
        dim=1,
    )
    torch.testing.assert_close(full, expected)
    tail = causal_depthwise_conv1d(x[:, 12:], weight, bias, conv_state=x[:, 9:12].transpose(1, 2))
    torch.testing.assert_close(tail, full[:, 12:])
