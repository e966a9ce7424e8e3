# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Hour-long video with VideoMamba: exact chunked inference with bounded memory, streaming decode, a CLI.

**Exact chunked inference.** A VideoMamba block is `residual += hidden; hidden = mixer(norm(residual))`, and inside
the mixer everything is per token (`in_proj`, `x_proj`, `dt_proj`, the gate, `out_proj`) except the two selective
scans and their depthwise convolutions (kernel 4). So the blocks can run layer by layer over a long token sequence cut
into chunks of `chunk_size` tokens:

1. forward sweep, chunks left to right: add the previous block's output to the residual stream, norm, `in_proj`,
   and the forward scan, which starts from the `(conv_state, ssm_state)` the previous chunk left behind;
   `out_proj(y)` goes into an output buffer;
2. backward sweep, chunks right to left: norm and `in_proj` again (recomputed, not stored), and the backward scan
   over the flipped chunk, starting from the state the chunk to its right left behind; `out_proj.weight @ y_b` is
   added to the output buffer (`out_proj` is linear, so this equals `out_proj(y + y_b)`).

The result equals the full-sequence forward pass up to float rounding (the tests check several chunk sizes, with and
without a mask). Memory: the residual stream and the output buffer, `2 * batch * length * hidden` floats (1.1 GB for
VideoMamba-Ti on 3,600 frames at 224, 705,601 tokens), plus the intermediates of one chunk. With `offload=True` both
buffers live in (pinned) CPU memory and only one chunk is on the GPU at a time.

**Backends.** A *direction scan* runs one direction over one chunk from a given state and returns the new state.
`"torch"` uses `VideoMambaMixer.scan_direction_torch`, which takes states natively. The stock `mamba-ssm` kernels
(`selective_scan_fn`, `causal_conv1d_fn`) always start from zero, so `StatelessKernelDirectionScan` adds the states
exactly: the convolution's state by prepending the previous `kernel - 1` raw inputs, the scan's by adding
`silu(z_t) * <C_t, exp(A * S_t) h0>` with `S_t = sum_{s<=t} delta_s` (a cumulative sum; `A < 0`, so every factor is
in (0, 1]) to the output and `exp(A * S_L) h0` to the final state. The fused Triton kernel (`bimamba_triton`) is used
when it exposes `scan_direction_with_states` (see `docs/long_video.md`); otherwise the chunked path falls back to
`mamba_ssm` or `torch`, which compute the same function.

**Streaming.** `encode_long_video` decodes a file with `StreamingVideoReader` (frames sampled at a requested fps or
count, never the whole video in memory) and computes the patch embeddings batch by batch straight into the residual
stream; the temporal position table is interpolated to the frame count once it is known (as
`interpolate_pos_encoding=True` does). Then the chunked blocks run, and the outputs are pooled per frame (features)
or read at the cls token (classification).

CLI: `python -m videomamba.long_video classify|features VIDEO --model FOLDER [--fps 1] [--chunk-size N]`.
"""

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .modeling_videomamba import (
    VideoMambaMixer,
    interpolate_spatial_position_embeddings,
    interpolate_temporal_position_embeddings,
    is_mamba_ssm_available,
    is_triton_scan_available,
)


logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# Direction scans: one direction over one chunk, from a state, returning the next state
# --------------------------------------------------------------------------------------------------------------------


class TorchDirectionScan:
    """Pure PyTorch (any device): `VideoMambaMixer.scan_direction_torch`, which starts from and returns states."""

    name = "torch"

    def __call__(self, mixer: VideoMambaMixer, x, z, backward: bool, conv_state=None, ssm_state=None):
        """`x`, `z`: `(batch, length, intermediate)` in this direction's order. Returns `(y, (conv_state, ssm_state))`
        with `y` `(batch, length, intermediate)`, `conv_state` `(batch, intermediate, conv_kernel - 1)` (the last raw
        inputs) and `ssm_state` `(batch, intermediate, state_size)` float32."""
        y, (conv_state, ssm_state) = mixer.scan_direction_torch(
            x, z, backward, conv_state=conv_state, ssm_state=ssm_state, return_states=True
        )
        return y, (conv_state.clone(), ssm_state)


def add_initial_state_contribution(out, last_state, delta, delta_bias, A, C, z, initial_state, block_size=1024):
    """Make a zero-start selective scan's results those of a scan started from `initial_state`, exactly.

    With `h0` the initial state, the state at step `t` gains `P_t h0`, `P_t = prod_{s<=t} exp(delta_s A) =
    exp(A * S_t)`, `S_t = sum_{s<=t} delta_s` (`delta = softplus(dt + delta_bias)`). So the gated output gains
    `silu(z_t) * <C_t, P_t h0>` and the final state `P_L h0`. Computed in float32, in blocks of `block_size` tokens so
    that the `(batch, d_inner, d_state, block)` factors stay small.

    Args (channel-major, as the stock kernels take them):
        out: `(batch, d_inner, length)` the kernel's gated output. last_state: `(batch, d_inner, d_state)`.
        delta: `(batch, d_inner, length)` before bias and softplus. delta_bias: `(d_inner,)`.
        A: `(d_inner, d_state)`. C: `(batch, d_state, length)`. z: `(batch, d_inner, length)` or None.
        initial_state: `(batch, d_inner, d_state)`.
    Returns:
        `(out, last_state)` with the contribution added (`out` in its dtype, `last_state` float32).
    """
    A = A.float()
    h0 = initial_state.float()
    S = delta.float()
    if delta_bias is not None:
        S = S + delta_bias.float()[:, None]
    S = torch.cumsum(F.softplus(S), dim=-1)  # (batch, d_inner, length), nondecreasing
    length = out.shape[-1]
    contribution = torch.empty(S.shape, dtype=torch.float32, device=out.device)
    for start in range(0, length, block_size):
        end = min(start + block_size, length)
        decay = torch.exp(A[None, :, :, None] * S[:, :, None, start:end])  # (batch, d_inner, d_state, block)
        decay.mul_(h0.unsqueeze(-1)).mul_(C[:, None, :, start:end].float())
        contribution[..., start:end] = decay.sum(2)
        del decay
    if z is not None:
        contribution.mul_(F.silu(z.float()))
    out = (out.float() + contribution).to(out.dtype)
    last_state = last_state.float() + torch.exp(A[None] * S[:, :, -1:]) * h0
    return out, last_state


def _length_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """Contiguous with a unit stride along the last (length) dim, also when that dim has size 1 (the CUDA kernels
    read the strides; `.contiguous()` keeps any stride for a size-1 dim)."""
    tensor = tensor.contiguous()
    if tensor.stride(-1) != 1:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    return tensor


class StatelessKernelDirectionScan:
    """A direction scan from kernels that always start from a zero state, with the states added exactly.

    Args:
        conv_fn: `conv_fn(x, weight, bias, activation="silu")`, `x` `(batch, channels, length)`, `weight`
            `(channels, kernel)`: causal depthwise convolution from zero padding (`causal_conv1d_fn`'s signature).
        scan_fn: `scan_fn(u, delta, A, B, C, D, z=, delta_bias=, delta_softplus=True, return_last_state=True)` in the
            `(batch, channels, length)` layout, returning `(out, last_state)` (`selective_scan_fn`'s signature).

    The convolution starts from its state by running over `[conv_state, x]` and dropping the first `kernel - 1`
    outputs; the scan by `add_initial_state_contribution`.
    """

    def __init__(self, conv_fn, scan_fn, name: str = "stateless_kernels", block_size: int = 1024):
        self.conv_fn = conv_fn
        self.scan_fn = scan_fn
        self.name = name
        self.block_size = block_size

    def __call__(self, mixer: VideoMambaMixer, x, z, backward: bool, conv_state=None, ssm_state=None):
        conv1d, x_proj, dt_proj, A_log, D = mixer.direction_parameters(backward)
        keep = mixer.conv_kernel_size - 1
        x_cm = x.transpose(1, 2)  # (batch, d_inner, length)
        if conv_state is not None:
            x_cm = torch.cat([conv_state.to(x_cm.dtype), x_cm], dim=-1)
        x_cm = _length_contiguous(x_cm)
        if x_cm.shape[-1] >= keep:
            next_conv_state = x_cm[..., x_cm.shape[-1] - keep :].clone()
        else:
            next_conv_state = F.pad(x_cm, (keep - x_cm.shape[-1], 0))
        bias = conv1d.bias.to(x_cm.dtype) if conv1d.bias is not None else None
        x_conv = self.conv_fn(x_cm, conv1d.weight.squeeze(1).to(x_cm.dtype), bias, activation="silu")
        if conv_state is not None:
            x_conv = x_conv[..., keep:]
        x_conv = _length_contiguous(x_conv)
        x_dbl = F.linear(x_conv.transpose(1, 2), x_proj.weight)  # (batch, length, rank + 2 * state)
        dt, B, C = torch.split(x_dbl, [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], dim=-1)
        delta = _length_contiguous(F.linear(dt, dt_proj.weight).transpose(1, 2).to(x_conv.dtype))
        B = _length_contiguous(B.transpose(1, 2).to(x_conv.dtype))
        C = _length_contiguous(C.transpose(1, 2).to(x_conv.dtype))
        z_cm = _length_contiguous(z.transpose(1, 2).to(x_conv.dtype))
        A = -torch.exp(A_log.float())
        delta_bias = dt_proj.bias.float()
        out, last_state = self.scan_fn(
            x_conv, delta, A, B, C, D.float(), z=z_cm, delta_bias=delta_bias, delta_softplus=True,
            return_last_state=True,
        )
        if ssm_state is not None:
            out, last_state = add_initial_state_contribution(
                out, last_state, delta, delta_bias, A, C, z_cm, ssm_state, self.block_size
            )
        return out.transpose(1, 2), (next_conv_state, last_state.float())


class TritonDirectionScan:
    """The fused Triton kernels, when `bimamba_triton` exposes `scan_direction_with_states(mixer, x, z, backward,
    conv_state, ssm_state) -> (y, (conv_state, ssm_state))` with the `TorchDirectionScan` contract."""

    name = "triton"

    def __init__(self, function):
        self.function = function

    def __call__(self, mixer, x, z, backward, conv_state=None, ssm_state=None):
        return self.function(mixer, x, z, backward, conv_state, ssm_state)


def _load_mamba_ssm_kernels():
    """`(causal_conv1d_fn, selective_scan_fn)` of the stock kernels, or a clear error."""
    try:
        from causal_conv1d import causal_conv1d_fn
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as error:
        raise ImportError(
            "The chunked 'mamba_ssm' backend needs mamba-ssm and causal-conv1d (pip install 'videomamba[cuda]'); "
            "or use backend='torch'."
        ) from error
    return causal_conv1d_fn, selective_scan_fn


def _triton_stateful_function():
    if not is_triton_scan_available():
        return None
    import importlib

    module = importlib.import_module(f"{__package__}.bimamba_triton")
    return getattr(module, "scan_direction_with_states", None)


def get_direction_scan(backend: str, device: torch.device):
    """The direction scan for a backend name (`"auto"`, `"torch"`, `"mamba_ssm"`, `"triton"`) on `device`.

    `"triton"` uses the Triton kernels if they can start from a state, else falls back (with a log message) to
    `mamba_ssm` when available, else to `torch`. `"auto"` takes the first of triton (stateful), mamba_ssm, torch that
    runs on `device`. A callable is returned as is (any object with the `TorchDirectionScan` contract).
    """
    if callable(backend):
        return backend
    device = torch.device(device)
    if backend not in ("auto", "torch", "mamba_ssm", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch', 'mamba_ssm' or 'triton', got {backend!r}.")
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return TorchDirectionScan()
    if backend in ("mamba_ssm", "triton") and device.type != "cuda":
        raise ValueError(
            f"backend={backend!r} runs on CUDA only, but the model is on {device}; use backend='torch' or 'auto'."
        )
    if backend in ("auto", "triton"):
        function = _triton_stateful_function()
        if function is not None:
            return TritonDirectionScan(function)
        if backend == "triton":
            logger.info(
                "The Triton kernels cannot start a scan from a state; chunked inference uses %s instead (same result).",
                "mamba_ssm" if is_mamba_ssm_available() else "torch",
            )
        if not is_mamba_ssm_available():
            return TorchDirectionScan()
    conv_fn, scan_fn = _load_mamba_ssm_kernels()
    return StatelessKernelDirectionScan(conv_fn, scan_fn, name="mamba_ssm")


# --------------------------------------------------------------------------------------------------------------------
# Chunk size
# --------------------------------------------------------------------------------------------------------------------


def _check_chunk_size(chunk_size):
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be a positive int (tokens per chunk) or None, got {chunk_size!r}.")
    if chunk_size <= 0:
        raise ValueError(
            f"chunk_size must be a positive number of tokens, got {chunk_size}; pass chunk_size=None to choose it "
            "from the free memory."
        )


def available_memory(device) -> int:
    """Bytes that can still be allocated on `device`: free CUDA memory plus PyTorch's cached-but-unused blocks, or the
    host's `MemAvailable` for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _ = torch.cuda.mem_get_info(index)
        return int(free + torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index))
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def chunk_bytes_per_token(config, batch_size: int = 1, scan_name: str = "torch") -> int:
    """Rough peak bytes one token of a chunk costs in one direction of one block (measured on the pure PyTorch scan,
    whose `(d_inner, d_state)` float32 intermediates dominate; the kernels keep those on chip)."""
    inner, state, hidden = config.intermediate_size, config.state_size, config.hidden_size
    per_token = 4 * (12 * inner + 6 * hidden)  # xz, conv, gate, outputs, norm (float32 at most)
    if scan_name == "torch":
        per_token += 4 * 7 * inner * state  # dA, dBx, the recurrence's local states and decays, h, h @ C
    return batch_size * per_token


def choose_chunk_size(
    config, length: int, batch_size: int = 1, device="cpu", scan_name: str = "torch", memory_fraction: float = 0.5,
    free_bytes: int | None = None,
) -> int:
    """A chunk size (tokens) whose intermediates take about `memory_fraction` of the free memory on `device`; at most
    `length`, at least 1, a multiple of 256 when above it."""
    free = available_memory(device) if free_bytes is None else free_bytes
    tokens = int(free * memory_fraction) // chunk_bytes_per_token(config, batch_size, scan_name)
    if tokens >= 256:
        tokens -= tokens % 256
    return max(1, min(length, tokens))


# --------------------------------------------------------------------------------------------------------------------
# The chunked blocks
# --------------------------------------------------------------------------------------------------------------------


def _progress_bar(progress, total, desc, unit):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)


@torch.no_grad()
def run_blocks_chunked(backbone, stream: torch.Tensor, chunk_size: int, direction_scan, progress=False) -> torch.Tensor:
    """Run all bidirectional blocks of `backbone` (a `VideoMambaModel`) over `stream`, chunk by chunk, in place.

    Args:
        stream: `(batch, length, hidden)` the embeddings (the first block's input), in the residual dtype (float32
            with `residual_in_fp32`). It may live on the CPU (offload) while the model is on a GPU.
        chunk_size: tokens per chunk.
        direction_scan: see `get_direction_scan`.
    Returns:
        `stream`, now holding the residual stream entering the final norm (`residual + hidden` after the last block).
    """
    _check_chunk_size(chunk_size)
    if chunk_size is None:
        raise ValueError("run_blocks_chunked needs a chunk_size; chunked_forward chooses one when it is None.")
    device = backbone.norm_f.weight.device
    batch, length, _ = stream.shape
    starts = list(range(0, length, chunk_size))
    non_blocking = stream.device.type == "cpu" and device.type == "cuda" and stream.is_pinned()
    outputs = torch.zeros_like(stream)  # the blocks' mixer outputs ("hidden_states")
    if non_blocking:
        outputs = outputs.pin_memory()

    def load(buffer, start, end):
        return buffer[:, start:end].to(device, non_blocking=non_blocking)

    bar = _progress_bar(progress, len(backbone.layers) * len(starts) * 2, "VideoMamba blocks", "chunk")
    for index, layer in enumerate(backbone.layers):
        mixer = layer.mixer
        states = (None, None)
        for start in starts:
            end = min(start + chunk_size, length)
            residual = load(stream, start, end)
            if index > 0:
                # residual + drop_path(hidden): drop path is the identity at inference.
                residual = residual + load(outputs, start, end)
                if layer.residual_in_fp32:
                    residual = residual.float()
                stream[:, start:end].copy_(residual)
            elif layer.residual_in_fp32:
                residual = residual.float()
            x, z = mixer.in_proj(layer.norm(residual)).chunk(2, dim=-1)
            y, states = direction_scan(mixer, x, z, False, *states)
            outputs[:, start:end].copy_(mixer.out_proj(y))
            if bar is not None:
                bar.update()
        states = (None, None)
        for start in reversed(starts):
            end = min(start + chunk_size, length)
            residual = load(stream, start, end)
            if layer.residual_in_fp32:
                residual = residual.float()
            x, z = mixer.in_proj(layer.norm(residual)).chunk(2, dim=-1)
            y_b, states = direction_scan(mixer, x.flip(1), z.flip(1), True, *states)
            # out_proj(y + y_b) = out_proj(y) + W y_b: the bias was added in the forward sweep.
            total = load(outputs, start, end) + F.linear(y_b.flip(1), mixer.out_proj.weight).to(outputs.dtype)
            outputs[:, start:end].copy_(total)
            if bar is not None:
                bar.update()
    for start in starts:
        end = min(start + chunk_size, length)
        stream[:, start:end].copy_(load(stream, start, end) + load(outputs, start, end))
    if bar is not None:
        bar.close()
    return stream


# --------------------------------------------------------------------------------------------------------------------
# Embeddings, chunk-wise
# --------------------------------------------------------------------------------------------------------------------


def _residual_dtype(backbone) -> torch.dtype:
    return torch.float32 if backbone.config.residual_in_fp32 else backbone.norm_f.weight.dtype


def embed_patches(embeddings, frames: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Patch embedding plus spatial positions of a batch of frames (no temporal position, no cls token).

    Args:
        embeddings: the model's `VideoMambaEmbeddings`.
        frames: `(batch, frames, channels, height, width)`, frames a multiple of `tubelet_size`.
    Returns:
        `(batch, frames / tubelet * tokens_per_frame, hidden)` in the model's dtype, and `tokens_per_frame`.
    """
    frames = embeddings._check_pixel_values(frames, interpolate_pos_encoding=True)
    patches = embeddings.patch_embeddings(frames.transpose(1, 2))  # (batch, t, h, w, hidden)
    batch, steps, height, width, hidden = patches.shape
    positions = interpolate_spatial_position_embeddings(embeddings.position_embeddings, height, width)
    patches = patches + positions[:, 1:].reshape(1, 1, height, width, hidden)
    return patches.reshape(batch, steps * height * width, hidden), height * width


def finish_embeddings(embeddings, stream: torch.Tensor, num_steps: int, tokens_per_step: int, chunk_size: int = 65536):
    """Add the temporal positions (the table interpolated to `num_steps`) to `stream[:, 1:]` and write the cls token
    (with its spatial position) at `stream[:, 0]`, in place, chunk by chunk.

    `stream`: `(batch, 1 + num_steps * tokens_per_step, hidden)` with the patch embeddings from `embed_patches`.
    """
    dtype = embeddings.patch_embeddings.projection.weight.dtype
    table = embeddings.temporal_position_embeddings
    device = embeddings.position_embeddings.device
    if table is not None:
        temporal = interpolate_temporal_position_embeddings(table, num_steps)[0]  # (num_steps, hidden)
        steps_per_chunk = max(1, chunk_size // tokens_per_step)
        for step in range(0, num_steps, steps_per_chunk):
            last = min(step + steps_per_chunk, num_steps)
            start, end = 1 + step * tokens_per_step, 1 + last * tokens_per_step
            block = stream[:, start:end].to(device).to(dtype).reshape(stream.shape[0], last - step, tokens_per_step, -1)
            block = block + temporal[step:last, None, :]
            stream[:, start:end].copy_(block.flatten(1, 2))
    position = embeddings.position_embeddings[:, :1]
    cls_token = (embeddings.cls_token + position).to(dtype)
    stream[:, 0].copy_(cls_token[:, 0].expand(stream.shape[0], -1))
    return stream


class _TokenBuffer:
    """A `(batch, capacity, hidden)` tensor filled by appending along the length; grows by half when full."""

    def __init__(self, batch, capacity, hidden, dtype, device, pin):
        self.length = 0
        self.pin = pin
        self.tensor = self._allocate(batch, max(capacity, 1), hidden, dtype, device)

    def _allocate(self, batch, capacity, hidden, dtype, device):
        tensor = torch.empty(batch, capacity, hidden, dtype=dtype, device=device)
        return tensor.pin_memory() if self.pin else tensor

    def append(self, values: torch.Tensor):
        needed = self.length + values.shape[1]
        if needed > self.tensor.shape[1]:
            batch, capacity, hidden = self.tensor.shape
            grown = self._allocate(batch, max(needed, capacity + capacity // 2), hidden, self.tensor.dtype,
                                   self.tensor.device)
            grown[:, : self.length].copy_(self.tensor[:, : self.length])
            self.tensor = grown
        self.tensor[:, self.length : needed].copy_(values)
        self.length = needed

    def finish(self) -> torch.Tensor:
        if self.length == self.tensor.shape[1]:
            return self.tensor
        return self.tensor[:, : self.length]


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def _backbone(model):
    backbone = getattr(model, "base_model", model)
    if not hasattr(backbone, "layers") or not hasattr(backbone, "embeddings"):
        raise TypeError(f"Expected a VideoMamba model (VideoMambaModel or a task model), got {type(model).__name__}.")
    if model.training:
        raise ValueError(
            "Chunked inference computes the eval-mode forward pass (no dropout, no drop path); call model.eval() first."
        )
    return backbone


def _prepare(backbone, length, batch, chunk_size, backend):
    """The device, the direction scan and the chunk size (chosen from the free memory when None)."""
    _check_chunk_size(chunk_size)
    device = backbone.norm_f.weight.device
    scan = get_direction_scan(backend if backend is not None else backbone.config.scan_backend, device)
    if chunk_size is None:
        chunk_size = choose_chunk_size(
            backbone.config, length, batch, device, getattr(scan, "name", "torch")
        )
    return device, scan, chunk_size


@torch.no_grad()
def chunked_forward(
    model,
    pixel_values: torch.Tensor,
    bool_masked_pos: torch.BoolTensor | None = None,
    chunk_size: int | None = None,
    backend=None,
    offload: bool = False,
    interpolate_pos_encoding: bool = True,
    frames_per_batch: int = 16,
    progress=False,
) -> BaseModelOutputWithPooling:
    """The VideoMamba backbone's forward pass, computed chunk by chunk with bounded memory; equal to
    `model(pixel_values, bool_masked_pos, interpolate_pos_encoding).last_hidden_state` up to float rounding.

    Args:
        model: `VideoMambaModel` or a task model (its backbone is used), in eval mode.
        pixel_values: `(batch, frames, channels, height, width)` (may live on the CPU; embedded `frames_per_batch`
            frames at a time on the model's device).
        bool_masked_pos: `(batch, num_patches)`, True for dropped patches (see `VideoMambaModel.forward`).
        chunk_size: tokens per chunk; `None` chooses it from the free memory (`choose_chunk_size`).
        backend: `"auto"`, `"torch"`, `"mamba_ssm"`, `"triton"` or a direction-scan object; defaults to
            `config.scan_backend`.
        offload: keep the residual stream in CPU memory, moving one chunk at a time to the model's device.
        progress: show a tqdm bar over the chunks.
    Returns:
        `BaseModelOutputWithPooling` with `last_hidden_state` `(batch, 1 + visible_patches, hidden)` (model dtype, on
        the stream's device) and `pooler_output` `(batch, hidden)`.
    """
    backbone = _backbone(model)
    config = backbone.config
    embeddings = backbone.embeddings
    pixel_values = embeddings._check_pixel_values(pixel_values, interpolate_pos_encoding)
    batch, num_frames = pixel_values.shape[:2]
    tokens_per_frame = (pixel_values.shape[-2] // config.patch_size) * (pixel_values.shape[-1] // config.patch_size)
    steps = num_frames // config.tubelet_size
    length = 1 + steps * tokens_per_frame
    _check_chunk_size(chunk_size)
    device = backbone.norm_f.weight.device
    buffer_device = torch.device("cpu") if offload else device
    stream = torch.empty(batch, length, config.hidden_size, dtype=_residual_dtype(backbone), device=buffer_device)
    if offload and device.type == "cuda":
        stream = stream.pin_memory()
    _, scan, chunk_size = _prepare(backbone, length, batch, chunk_size, backend)  # after the stream exists
    frames_per_batch = max(config.tubelet_size, frames_per_batch - frames_per_batch % config.tubelet_size)
    position = 1
    for first in range(0, num_frames, frames_per_batch):
        patches, _ = embed_patches(embeddings, pixel_values[:, first : first + frames_per_batch].to(device))
        stream[:, position : position + patches.shape[1]].copy_(patches)
        position += patches.shape[1]
    finish_embeddings(embeddings, stream, steps, tokens_per_frame, chunk_size)
    if bool_masked_pos is not None:
        visible_patches = embeddings._drop_masked(stream[:, 1:], bool_masked_pos.to(stream.device))
        stream = torch.cat([stream[:, :1], visible_patches], dim=1)
        del visible_patches
        length = stream.shape[1]
    run_blocks_chunked(backbone, stream, min(chunk_size, length), scan, progress)
    last_hidden_state = _final_norm(backbone, stream, chunk_size)
    return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=last_hidden_state[:, 0])


def _final_norm(backbone, stream, chunk_size):
    """`norm_f` over the stream, chunk-wise, in place when the dtypes agree."""
    device = backbone.norm_f.weight.device
    dtype = backbone.norm_f.weight.dtype
    out = stream if stream.dtype == dtype else torch.empty(stream.shape, dtype=dtype, device=stream.device)
    for start in range(0, stream.shape[1], chunk_size):
        end = min(start + chunk_size, stream.shape[1])
        out[:, start:end].copy_(backbone.norm_f(stream[:, start:end].to(device)))
    return out


@torch.no_grad()
def chunked_classify(model, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
    """Logits `(batch, num_labels)` of a `VideoMambaForVideoClassification` via `chunked_forward` (same arguments)."""
    if not hasattr(model, "classifier"):
        raise TypeError(f"chunked_classify needs a classification model, got {type(model).__name__}.")
    pooled = chunked_forward(model, pixel_values, **kwargs).pooler_output
    return model.classifier(model.head_dropout(pooled.to(model.classifier.weight.device)))


@dataclass
class LongVideoOutput:
    """What `encode_long_video` returns (batch of one video).

    Attributes:
        pooler_output: `(hidden,)` the cls token after the final norm (the video's feature).
        frame_features: `(steps, hidden)` mean of each temporal position's patch tokens after the final norm (one per
            sampled frame when `tubelet_size == 1`).
        timestamps: `(steps,)` sample time (seconds) of the first frame of each temporal position.
        logits: `(num_labels,)` for a classification model, else None.
        num_tokens, chunk_size, backend: what ran.
    """

    pooler_output: torch.Tensor
    frame_features: torch.Tensor
    timestamps: torch.Tensor
    logits: torch.Tensor | None
    num_tokens: int
    chunk_size: int
    backend: str

    def segment_features(self, segment_seconds: float):
        """Mean frame features over consecutive windows of `segment_seconds`: `(features (segments, hidden),
        starts (segments,), ends (segments,))` in seconds; empty windows are left out."""
        return pool_segments(self.frame_features, self.timestamps, segment_seconds)


def pool_segments(frame_features: torch.Tensor, timestamps: torch.Tensor, segment_seconds: float):
    """Average `(steps, hidden)` features into windows `[k * s, (k + 1) * s)` of their `timestamps`."""
    if not segment_seconds > 0:
        raise ValueError(f"segment_seconds must be positive, got {segment_seconds}.")
    index = torch.floor(timestamps.double() / segment_seconds).long()
    keys, inverse = torch.unique(index, return_inverse=True)
    sums = torch.zeros(len(keys), frame_features.shape[-1], dtype=torch.float32)
    sums.index_add_(0, inverse, frame_features.float())
    counts = torch.bincount(inverse, minlength=len(keys)).clamp(min=1)
    starts = keys.double() * segment_seconds
    return sums / counts[:, None], starts, starts + segment_seconds


@torch.no_grad()
def encode_long_video(
    model,
    video,
    fps: float | None = None,
    num_frames: int | None = None,
    chunk_size: int | None = None,
    backend=None,
    offload: bool = False,
    frames_per_batch: int = 32,
    max_frames: int | None = None,
    progress=True,
) -> LongVideoOutput:
    """Stream a video file through VideoMamba with bounded memory.

    Frames are decoded and sampled by `StreamingVideoReader` (`fps`, default 1, or `num_frames`), resized to
    `config.image_size` (short side) and centre-cropped, embedded `frames_per_batch` at a time into the residual stream,
    then the blocks run chunk by chunk (`run_blocks_chunked`). Use `torch.autocast` around the call for bf16.

    Args:
        model: `VideoMambaModel` or `VideoMambaForVideoClassification`, in eval mode, on its device.
        video: a path, or an iterable of `FrameBatch`-like objects with `pixel_values` `(frames, 3, H, W)` and
            `timestamps` (e.g. a `StreamingVideoReader`).
    Returns:
        `LongVideoOutput`.
    """
    from .streaming import StreamingVideoReader

    backbone = _backbone(model)
    config = backbone.config
    embeddings = backbone.embeddings
    _check_chunk_size(chunk_size)
    device = backbone.norm_f.weight.device
    if isinstance(video, (str, os.PathLike)):
        reader = StreamingVideoReader(
            video, fps=fps, num_frames=num_frames, image_size=config.image_size, batch_size=frames_per_batch,
            max_frames=max_frames,
        )
    elif fps is not None or num_frames is not None or max_frames is not None:
        raise ValueError(
            "fps, num_frames and max_frames apply when `video` is a path; for an iterable of frame batches, sample "
            "when making it (e.g. StreamingVideoReader(path, fps=...))."
        )
    else:
        reader = video
    expected = reader.expected_num_samples() if hasattr(reader, "expected_num_samples") else None
    tokens_per_frame = config.num_spatial_patches
    tubelet = config.tubelet_size
    capacity = 1 + ((expected or 64) + 2 * tubelet) // tubelet * tokens_per_frame
    buffer_device = torch.device("cpu") if offload else device
    tokens = _TokenBuffer(
        1, capacity, config.hidden_size, _residual_dtype(backbone), buffer_device,
        pin=offload and device.type == "cuda",
    )
    tokens.length = 1  # the cls token's place
    timestamps = []
    leftover = None  # frames short of a tubelet, carried to the next batch
    bar = _progress_bar(progress, expected, "decoding", "frame")
    num_sampled = 0
    for batch in reader:
        frames = batch.pixel_values
        num_sampled += frames.shape[0]
        times = batch.timestamps.double()
        if leftover is not None:
            frames = torch.cat([leftover, frames])
        usable = frames.shape[0] - frames.shape[0] % tubelet
        leftover = frames[usable:] if usable < frames.shape[0] else None
        timestamps.append(times)
        if usable:
            patches, tokens_per_frame = embed_patches(embeddings, frames[:usable].to(device).unsqueeze(0))
            tokens.append(patches)
        if bar is not None:
            bar.update(batch.pixel_values.shape[0])
    if bar is not None:
        bar.close()
    if num_sampled == 0:
        raise ValueError("The video yielded no frames.")
    timestamps = torch.cat(timestamps)
    if leftover is not None:
        # Complete the last tubelet by repeating the last frame.
        pad = tubelet - leftover.shape[0]
        logger.warning("%d sampled frames is not a multiple of tubelet_size=%d; repeating the last frame.",
                       num_sampled, tubelet)
        frames = torch.cat([leftover, leftover[-1:].expand(pad, -1, -1, -1)])
        patches, tokens_per_frame = embed_patches(embeddings, frames.to(device).unsqueeze(0))
        tokens.append(patches)
    stream = tokens.finish()
    length = stream.shape[1]
    steps = (length - 1) // tokens_per_frame
    _, scan, chunk_size = _prepare(backbone, length, 1, chunk_size, backend)
    finish_embeddings(embeddings, stream, steps, tokens_per_frame, chunk_size)
    run_blocks_chunked(backbone, stream, min(chunk_size, length), scan, progress)

    # Final norm and pooling, chunk by chunk on frame boundaries.
    norm_f = backbone.norm_f
    pooled = norm_f(stream[:, :1].to(device))[0, 0]
    frame_features = torch.empty(steps, config.hidden_size, dtype=torch.float32)
    steps_per_chunk = max(1, chunk_size // tokens_per_frame)
    for step in range(0, steps, steps_per_chunk):
        last = min(step + steps_per_chunk, steps)
        block = stream[:, 1 + step * tokens_per_frame : 1 + last * tokens_per_frame].to(device)
        normed = norm_f(block).float().view(last - step, tokens_per_frame, -1)
        frame_features[step:last] = normed.mean(1).cpu()
    logits = None
    if hasattr(model, "classifier"):
        logits = model.classifier(model.head_dropout(pooled[None].to(model.classifier.weight.dtype)))[0]
    return LongVideoOutput(
        pooler_output=pooled.float().cpu(),
        frame_features=frame_features,
        timestamps=timestamps[::tubelet][:steps],
        logits=None if logits is None else logits.float().cpu(),
        num_tokens=length,
        chunk_size=chunk_size,
        backend=getattr(scan, "name", type(scan).__name__),
    )


def classify_long_video(model, video, top_k: int = 5, **kwargs) -> list[dict]:
    """Top-`top_k` classes of a long video: `[{"label", "index", "score"}]` (softmax scores). Arguments as
    `encode_long_video`."""
    if not hasattr(model, "classifier"):
        raise TypeError(f"classify_long_video needs a classification model, got {type(model).__name__}.")
    output = encode_long_video(model, video, **kwargs)
    probabilities = output.logits.softmax(-1)
    scores, indices = probabilities.topk(min(top_k, probabilities.numel()))
    id2label = model.config.id2label or {}
    return [
        {"label": id2label.get(int(i), str(int(i))), "index": int(i), "score": float(s)}
        for s, i in zip(scores, indices)
    ]


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


def _save_features(path: Path, arrays: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in arrays.items()}, str(temporary))
    elif path.suffix == ".npz":
        import numpy as np

        with open(temporary, "wb") as handle:
            np.savez(handle, **{key: value.numpy() for key, value in arrays.items()})
    elif path.suffix == ".npy":
        import numpy as np

        with open(temporary, "wb") as handle:
            np.save(handle, arrays["features"].numpy())
        times = path.with_name(path.stem + "_timestamps.npy")
        with open(times.with_name(f".{times.name}.tmp"), "wb") as handle:
            np.save(handle, arrays["timestamps"].numpy())
        os.replace(times.with_name(f".{times.name}.tmp"), times)
    else:
        raise ValueError(f"--output must end in .npy, .npz or .safetensors, got {path.name!r}.")
    os.replace(temporary, path)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of tokens, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of tokens, got {value}; leave it out to choose it from the free memory"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m videomamba.long_video",
        description="Classify a long video, or extract its per-frame / per-segment features, with VideoMamba: "
        "streaming decode and exact chunked inference with bounded memory.",
    )
    parser.add_argument("command", choices=("classify", "features"))
    parser.add_argument("video", help="video file (read as a stream with PyAV)")
    parser.add_argument("--model", required=True, help="a saved VideoMamba folder (or Hub id)")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--fps", type=float, default=None, help="frames sampled per second (default 1)")
    sampling.add_argument("--num-frames", type=int, default=None, help="sample this many frames, evenly spread")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many sampled frames")
    parser.add_argument("--chunk-size", type=_positive_int, default=None,
                        help="tokens per chunk (default: chosen from the free memory)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                        help="autocast dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--backend", choices=("auto", "torch", "mamba_ssm", "triton"), default=None,
                        help="scan backend (default: the model's config.scan_backend)")
    parser.add_argument("--offload", action="store_true", help="keep the residual stream in CPU memory")
    parser.add_argument("--frames-per-batch", type=int, default=32, help="frames decoded and embedded per batch")
    parser.add_argument("--top-k", type=int, default=5, help="classify: classes to print")
    parser.add_argument("--segment-seconds", type=float, default=None,
                        help="features: average frame features over windows of this many seconds")
    parser.add_argument("--output", default=None,
                        help="features: .npy (features; timestamps beside it), .npz or .safetensors; classify: .json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_cli(argv=None) -> dict:
    """Run the CLI on `argv` and return its JSON summary (also printed)."""
    args = build_parser().parse_args(argv)
    from .modeling_videomamba import VideoMambaForVideoClassification, VideoMambaModel

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype_name = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    model_class = VideoMambaForVideoClassification if args.command == "classify" else VideoMambaModel
    model = model_class.from_pretrained(args.model).to(device).eval()
    kwargs = dict(
        fps=args.fps, num_frames=args.num_frames, chunk_size=args.chunk_size, backend=args.backend,
        offload=args.offload, frames_per_batch=args.frames_per_batch, max_frames=args.max_frames,
        progress=not args.no_progress,
    )
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        output = encode_long_video(model, args.video, **kwargs)
    summary = {
        "video": args.video, "frames": int(output.timestamps.numel()), "tokens": output.num_tokens,
        "chunk_size": output.chunk_size, "backend": output.backend,
    }
    if args.command == "classify":
        probabilities = output.logits.softmax(-1)
        scores, indices = probabilities.topk(min(args.top_k, probabilities.numel()))
        id2label = model.config.id2label or {}
        summary["top_k"] = [
            {"label": id2label.get(int(i), str(int(i))), "index": int(i), "score": round(float(s), 6)}
            for s, i in zip(scores, indices)
        ]
        if args.output:
            Path(args.output).write_text(json.dumps(summary, indent=1))
    else:
        if args.segment_seconds:
            features, starts, ends = output.segment_features(args.segment_seconds)
            arrays = {"features": features, "timestamps": starts, "segment_ends": ends}
        else:
            arrays = {"features": output.frame_features, "timestamps": output.timestamps}
        arrays["video_feature"] = output.pooler_output
        summary["features_shape"] = list(arrays["features"].shape)
        output_path = Path(args.output or Path(args.video).with_suffix(".features.npz").name)
        _save_features(output_path, arrays)
        summary["output"] = str(output_path)
    print(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> int:
    run_cli(argv)
    return 0


__all__ = [
    "LongVideoOutput",
    "StatelessKernelDirectionScan",
    "TorchDirectionScan",
    "TritonDirectionScan",
    "add_initial_state_contribution",
    "available_memory",
    "choose_chunk_size",
    "chunk_bytes_per_token",
    "chunked_classify",
    "chunked_forward",
    "classify_long_video",
    "embed_patches",
    "encode_long_video",
    "finish_embeddings",
    "get_direction_scan",
    "pool_segments",
    "run_blocks_chunked",
    "run_cli",
]


if __name__ == "__main__":
    sys.exit(main())
