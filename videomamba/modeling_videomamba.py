# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""PyTorch VideoMamba (Li et al., "VideoMamba: State Space Model for Efficient Video Understanding", ECCV 2024).

A video is cut into 1 x 16 x 16 patches (a Conv3d), a cls token is put first, learnable spatial and temporal position
embeddings are added, and the tokens -- in spatial-first order: all patches of frame 0 row by row, then frame 1, ... --
pass a stack of bidirectional Mamba (S6) blocks with RMSNorm and a float32 residual stream. A head reads the cls token.

The bidirectional mixer runs one selective scan forward and one backward over the sequence through one of three
implementations (`config.scan_backend`): the stock CUDA kernels of `mamba-ssm` + `causal-conv1d`, a fused Triton kernel,
or pure PyTorch. All compute the same function.
"""

import functools
import math
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import logging

from .configuration_videomamba import VideoMambaConfig
from .selective_scan_torch import causal_depthwise_conv1d, selective_scan


@functools.lru_cache(maxsize=None)
def _stock_kernels():
    """`(causal_conv1d_fn, selective_scan_fn)` from `causal-conv1d` and `mamba-ssm`, or None when they don't import."""
    try:
        from causal_conv1d import causal_conv1d_fn
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:
        return None
    return causal_conv1d_fn, selective_scan_fn


def is_mamba_ssm_available() -> bool:
    """True when the stock CUDA kernels (`mamba-ssm` selective scan and `causal-conv1d`) import and a GPU is present."""
    return torch.cuda.is_available() and _stock_kernels() is not None


logger = logging.get_logger(__name__)

# The Triton modules are optional (Triton ships with PyTorch's CUDA builds); as relative imports they also travel
# with remote-code folders.
try:
    from .bimamba_triton import bimamba_scan_triton
except ImportError:
    bimamba_scan_triton = None
try:
    from .fused_add_norm_triton import fused_add_rms_norm
except ImportError:
    fused_add_rms_norm = None


def is_triton_scan_available() -> bool:
    """True when the fused Triton bidirectional scan can run (Triton imports and a CUDA device is present)."""
    return bimamba_scan_triton is not None and torch.cuda.is_available()


def _fused_add_norm():
    """The Triton fused residual-add + RMSNorm, or None when Triton or CUDA is missing."""
    return fused_add_rms_norm if torch.cuda.is_available() else None


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """Float32 for half types; float32 and float64 stay as they are (float64 runs are used as references)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def drop_path(hidden_states: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth per sample: zero whole samples with probability `drop_prob`, scale the rest by 1 / keep."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * mask / keep_prob


class VideoMambaDropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class VideoMambaRMSNorm(nn.Module):
    """RMSNorm computed in float32; the output has the dtype of the weight (the model's dtype)."""

    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = upcast(hidden_states)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return (hidden_states * upcast(self.weight)).to(self.weight.dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}"


class VideoMambaLayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (for `rms_norm=False`); the output has the dtype of the weight."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(
            upcast(hidden_states), self.normalized_shape, upcast(self.weight), upcast(self.bias), self.eps
        )
        return out.to(self.weight.dtype)


def _make_norm(config: VideoMambaConfig) -> nn.Module:
    if config.rms_norm:
        return VideoMambaRMSNorm(config.hidden_size, eps=config.norm_eps)
    return VideoMambaLayerNorm(config.hidden_size, eps=config.norm_eps)


def interpolate_spatial_position_embeddings(position_embeddings: torch.Tensor, height: int, width: int):
    """Bicubic resize of a square spatial table, as the official fine-tuning code does.

    Args:
        position_embeddings: `(1, 1 + grid * grid, hidden)` (cls position first).
        height, width: the new grid in patches.
    Returns:
        `(1, 1 + height * width, hidden)`.
    """
    cls_position, patch_positions = position_embeddings[:, :1], position_embeddings[:, 1:]
    grid = math.isqrt(patch_positions.shape[1])
    if grid * grid != patch_positions.shape[1]:
        raise ValueError(f"The spatial position table has {patch_positions.shape[1]} patches, not a square grid.")
    if (grid, grid) == (height, width):
        return position_embeddings
    hidden = patch_positions.shape[-1]
    patch_positions = patch_positions.reshape(1, grid, grid, hidden).permute(0, 3, 1, 2)
    patch_positions = F.interpolate(
        upcast(patch_positions), size=(height, width), mode="bicubic", align_corners=False
    ).to(position_embeddings.dtype)
    patch_positions = patch_positions.permute(0, 2, 3, 1).reshape(1, height * width, hidden)
    return torch.cat([cls_position, patch_positions], dim=1)


def interpolate_temporal_position_embeddings(temporal_embeddings: torch.Tensor, num_positions: int):
    """Linear resize of the temporal table `(1, T, hidden)` to `(1, num_positions, hidden)` (align_corners=False)."""
    if temporal_embeddings.shape[1] == num_positions:
        return temporal_embeddings
    resized = F.interpolate(
        upcast(temporal_embeddings).permute(0, 2, 1), size=num_positions, mode="linear", align_corners=False
    )
    return resized.permute(0, 2, 1).to(temporal_embeddings.dtype)


class VideoMambaPatchEmbeddings(nn.Module):
    """`(batch, channels, frames, height, width)` -> `(batch, frames', height', width', hidden)` with one Conv3d of
    kernel = stride = (tubelet_size, patch_size, patch_size).

    The patches do not overlap, so the convolution is computed as one matrix product of the flattened patches with
    the flattened kernel (the same numbers up to float rounding; on a GPU in bf16 several times faster than the
    convolution kernels cuDNN picks for this shape). The weights stay a Conv3d, as in the official checkpoints.
    """

    def __init__(self, config: VideoMambaConfig):
        super().__init__()
        self.tubelet_size = config.tubelet_size
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.projection = nn.Conv3d(
            config.num_channels,
            config.hidden_size,
            kernel_size=(config.tubelet_size, config.patch_size, config.patch_size),
            stride=(config.tubelet_size, config.patch_size, config.patch_size),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.projection.weight  # (hidden, channels, tubelet, patch, patch)
        pixel_values = pixel_values.to(weight.dtype)
        batch, channels, frames, height, width = pixel_values.shape
        tubelet, patch = self.tubelet_size, self.patch_size
        t, h, w = frames // tubelet, height // patch, width // patch  # a remainder is dropped, as the Conv3d does
        patches = pixel_values[:, :, : t * tubelet, : h * patch, : w * patch]
        patches = patches.reshape(batch, channels, t, tubelet, h, patch, w, patch)
        patches = patches.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(batch, t, h, w, -1)
        return F.linear(patches, weight.reshape(weight.shape[0], -1), self.projection.bias)


class VideoMambaEmbeddings(nn.Module):
    """Patch embedding, cls token, spatial and temporal position embeddings, spatial-first token order.

    The cls token gets spatial position 0 and no temporal embedding; the patch of frame `t`, row `i`, column `j` gets
    spatial position `1 + i * width + j` plus temporal position `t`, and sits at sequence index
    `1 + t * height * width + i * width + j`.
    """

    def __init__(self, config: VideoMambaConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = VideoMambaPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_spatial_patches + 1, config.hidden_size))
        if config.num_temporal_positions > 0:
            self.temporal_position_embeddings = nn.Parameter(
                torch.zeros(1, config.num_temporal_positions, config.hidden_size)
            )
        else:
            self.temporal_position_embeddings = None
        self.dropout = nn.Dropout(config.embedding_dropout)

    def _check_pixel_values(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool) -> torch.Tensor:
        config = self.config
        if pixel_values.ndim == 4:
            pixel_values = pixel_values.unsqueeze(1)
        if pixel_values.ndim != 5:
            raise ValueError(
                "pixel_values must be (batch, frames, channels, height, width) for video or (batch, channels, height, "
                f"width) for images; got a tensor of shape {tuple(pixel_values.shape)}."
            )
        _, frames, channels, height, width = pixel_values.shape
        if channels != config.num_channels:
            hint = ""
            if frames == config.num_channels:
                hint = " It looks like (batch, channels, frames, height, width): use pixel_values.transpose(1, 2)."
            raise ValueError(
                f"pixel_values has {channels} channels in dim 2 of (batch, frames, channels, height, width), but the "
                f"model expects num_channels={config.num_channels}.{hint}"
            )
        if height % config.patch_size or width % config.patch_size:
            raise ValueError(
                f"Frame size {height}x{width} is not divisible by patch_size={config.patch_size}; resize or crop the "
                "frames (the video processor does this)."
            )
        if frames % config.tubelet_size:
            raise ValueError(f"{frames} frames is not a multiple of tubelet_size={config.tubelet_size}.")
        if not interpolate_pos_encoding:
            if (height, width) != (config.image_size, config.image_size):
                raise ValueError(
                    f"Frame size {height}x{width} does not match the position table ({config.image_size}x"
                    f"{config.image_size}). Pass interpolate_pos_encoding=True, or resize the table once with "
                    "model.resize_position_embeddings(image_size=...)."
                )
            expected = max(config.num_temporal_positions, 1)
            if frames // config.tubelet_size != expected:
                raise ValueError(
                    f"Got {frames} frames but the temporal position table holds {config.num_frames} frames. Pass "
                    "interpolate_pos_encoding=True, or resize the table once with "
                    "model.resize_position_embeddings(num_frames=...)."
                )
        return pixel_values

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        """
        Args:
            pixel_values: `(batch, frames, channels, height, width)` or `(batch, channels, height, width)`.
            bool_masked_pos: `(batch, num_patches)`, True where a patch is masked (dropped from the sequence); every
                sample must keep the same number of patches. The cls token is always kept.
        Returns:
            `(batch, 1 + visible_patches, hidden)`.
        """
        pixel_values = self._check_pixel_values(pixel_values, interpolate_pos_encoding)
        patches = self.patch_embeddings(pixel_values.transpose(1, 2))  # (b, t, h, w, d)
        batch, frames, height, width, hidden = patches.shape

        position_embeddings = interpolate_spatial_position_embeddings(self.position_embeddings, height, width)
        patches = patches + position_embeddings[:, 1:].reshape(1, 1, height, width, hidden)
        if self.temporal_position_embeddings is not None:
            temporal = interpolate_temporal_position_embeddings(self.temporal_position_embeddings, frames)
            patches = patches + temporal.reshape(1, frames, 1, 1, hidden)
        patches = patches.reshape(batch, frames * height * width, hidden)

        if bool_masked_pos is not None:
            patches = self._drop_masked(patches, bool_masked_pos)
        cls_token = (self.cls_token + position_embeddings[:, :1]).expand(batch, -1, -1)
        embeddings = torch.cat([cls_token.to(patches.dtype), patches], dim=1)
        return self.dropout(embeddings)

    @staticmethod
    def _drop_masked(patches: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        batch, num_patches, hidden = patches.shape
        if bool_masked_pos.shape != (batch, num_patches):
            raise ValueError(
                f"bool_masked_pos must have shape (batch, num_patches) = ({batch}, {num_patches}) (the cls token is "
                f"never masked); got {tuple(bool_masked_pos.shape)}."
            )
        visible = ~bool_masked_pos.bool()
        counts = visible.sum(1)
        if (counts != counts[0]).any():
            raise ValueError(
                f"Every sample must keep the same number of visible patches; got {counts.tolist()} per sample."
            )
        return patches[visible].reshape(batch, int(counts[0]), hidden)


class VideoMambaMixer(nn.Module):
    """Bidirectional selective-scan mixer (Vim / VideoMamba's `bimamba`).

    One shared `in_proj` (no bias) gives `(x, z)`. The forward set (`conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`)
    scans `(x, z)` left to right; the backward set (`conv1d_b`, `x_proj_b`, `dt_proj_b`, `A_b_log`, `D_b`) scans the
    sequence-flipped `(x, z)`, and its output is flipped back. The two gated outputs are summed and pass `out_proj`.
    """

    def __init__(self, config: VideoMambaConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        self.ssm_state_size = config.state_size
        self.conv_kernel_size = config.conv_kernel
        self.time_step_rank = config.time_step_rank

        inner, rank, state = self.intermediate_size, self.time_step_rank, self.ssm_state_size
        self.in_proj = nn.Linear(self.hidden_size, inner * 2, bias=config.use_bias)
        for suffix in ("", "_b"):
            conv = nn.Conv1d(
                inner, inner, kernel_size=config.conv_kernel, groups=inner, padding=config.conv_kernel - 1,
                bias=config.use_conv_bias,
            )
            setattr(self, f"conv1d{suffix}", conv)
            setattr(self, f"x_proj{suffix}", nn.Linear(inner, rank + state * 2, bias=False))
            setattr(self, f"dt_proj{suffix}", nn.Linear(rank, inner, bias=True))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.A_b_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D_b = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, self.hidden_size, bias=config.use_bias)

    def direction_parameters(self, backward: bool):
        """The scan parameters of one direction: `(conv1d, x_proj, dt_proj, A_log, D)`."""
        if backward:
            return self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b
        return self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D

    def resolve_backend(self, hidden_states: torch.Tensor) -> str:
        backend = self.config.scan_backend
        if backend == "auto":
            # The fused Triton scan is the fastest on an H100 in inference and, since its parallel backward (v5), in
            # training too, at a fifth of the stock kernels' training memory (benchmarks/RESULTS.md).
            if hidden_states.is_cuda and is_triton_scan_available():
                return "triton"
            if hidden_states.is_cuda and is_mamba_ssm_available():
                return "mamba_ssm"
            return "torch"
        if backend in ("mamba_ssm", "triton"):
            if not hidden_states.is_cuda:
                raise ValueError(
                    f"scan_backend={backend!r} runs on CUDA tensors only; move the model to a GPU or set "
                    "config.scan_backend='torch' (or 'auto')."
                )
            available = is_mamba_ssm_available() if backend == "mamba_ssm" else is_triton_scan_available()
            if not available:
                package = "mamba-ssm and causal-conv1d" if backend == "mamba_ssm" else "triton"
                raise ImportError(
                    f"scan_backend={backend!r} needs {package}; install them (pip install 'videomamba[cuda]') or set "
                    "config.scan_backend='auto'."
                )
        return backend

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(batch, length, hidden)` -> `(batch, length, hidden)`."""
        backend = self.resolve_backend(hidden_states)
        if backend == "mamba_ssm":
            return self.mamba_ssm_forward(hidden_states)
        if backend == "triton":
            return self.triton_forward(hidden_states)
        return self.torch_forward(hidden_states)

    # --- pure PyTorch -------------------------------------------------------------------------------------------
    def scan_direction_torch(self, x, z, backward: bool, conv_state=None, ssm_state=None, return_states=False):
        """One direction in token-major layout: conv -> SiLU -> x_proj -> dt_proj -> selective scan -> gate.

        Args:
            x, z: `(batch, length, intermediate)`, already in this direction's order.
            conv_state: `(batch, intermediate, conv_kernel - 1)` inputs preceding `x`, or None (zeros).
            ssm_state: `(batch, intermediate, state)` float32 state preceding `x`, or None (zeros).
        Returns:
            `(batch, length, intermediate)` and, with `return_states`, the `(conv_state, ssm_state)` after `x`.
        """
        conv1d, x_proj, dt_proj, A_log, D = self.direction_parameters(backward)
        x_in = x
        x = causal_depthwise_conv1d(x, conv1d.weight, conv1d.bias, conv_state)
        x_dbl = x_proj(x)
        dt, B, C = torch.split(x_dbl, [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1)
        dt = F.linear(dt, dt_proj.weight)
        A = -torch.exp(upcast(A_log))
        y, last_state = selective_scan(
            x, dt, A, B, C, upcast(D), z=z, dt_bias=upcast(dt_proj.bias), delta_softplus=True,
            initial_state=ssm_state, return_final_state=True,
        )
        if not return_states:
            return y
        keep = self.conv_kernel_size - 1
        history = x_in.transpose(1, 2)
        if conv_state is not None:
            history = torch.cat([conv_state.to(history.dtype), history], dim=-1)
        else:
            history = F.pad(history, (keep, 0))
        return y, (history[..., history.shape[-1] - keep :], last_state)

    def torch_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        y = self.scan_direction_torch(x, z, backward=False)
        y_b = self.scan_direction_torch(x.flip(1), z.flip(1), backward=True).flip(1)
        return self.out_proj(y + y_b)

    # --- stock mamba-ssm + causal-conv1d kernels -------------------------------------------------------------------
    def mamba_ssm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The official composition of the stock kernels, in their (batch, channels, length) layout."""
        causal_conv1d_fn, selective_scan_fn = _stock_kernels()
        batch, length, _ = hidden_states.shape
        # in_proj straight into (batch, 2 * intermediate, length) with a unit stride along the length.
        weight = self.in_proj.weight
        if torch.is_autocast_enabled():
            weight = weight.to(torch.get_autocast_dtype("cuda"))
        xz = (weight @ hidden_states.to(weight.dtype).reshape(batch * length, -1).t()).view(-1, batch, length)
        xz = xz.transpose(0, 1)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[:, None]

        def scan(xz_dir, backward):
            conv1d, x_proj, dt_proj, A_log, D = self.direction_parameters(backward)
            x, z = xz_dir.chunk(2, dim=1)
            x = causal_conv1d_fn(x, conv1d.weight.squeeze(1), conv1d.bias, activation="silu")
            # Projections straight in (batch, channels, length): B, C and dt come out with a unit stride along the
            # length, as the scan kernel reads them, with no transposed copies.
            x_dbl = torch.matmul(x_proj.weight.to(x.dtype), x)  # (batch, rank + 2 * state, length)
            dt, B, C = torch.split(x_dbl, [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=1)
            dt = torch.matmul(dt_proj.weight.to(dt.dtype), dt)  # (batch, intermediate, length)
            return selective_scan_fn(
                x, dt, -torch.exp(A_log.float()), B, C, D.float(), z=z,
                delta_bias=dt_proj.bias.float(), delta_softplus=True,
            )

        y = scan(xz, backward=False)
        y_b = scan(xz.flip(-1), backward=True)
        return self.out_proj((y + y_b.flip(-1)).transpose(1, 2))

    # --- fused Triton kernel -----------------------------------------------------------------------------------
    def triton_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return bimamba_scan_triton(self, hidden_states)


class VideoMambaBlock(GradientCheckpointingLayer):
    """Add -> norm -> bidirectional mixer, returning the mixer output and the (float32) residual stream.

    `residual = residual + drop_path(hidden_states)` (the previous block's output), `hidden_states =
    mixer(norm(residual))`. The first block receives `residual=None` and starts the stream from the embeddings.
    """

    def __init__(self, config: VideoMambaConfig, layer_idx: int, drop_path_rate: float = 0.0):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = _make_norm(config)
        self.mixer = VideoMambaMixer(config, layer_idx=layer_idx)
        self.drop_path = VideoMambaDropPath(drop_path_rate)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None):
        """`hidden_states`, `residual`: `(batch, length, hidden)` -> `(mixer output, residual)`."""
        if residual is not None:
            hidden_states = self.drop_path(hidden_states)
        normed, residual = add_and_norm(self.norm, hidden_states, residual, self.residual_in_fp32, self.mixer)
        return self.mixer(normed), residual


def add_and_norm(norm, hidden_states, residual, residual_in_fp32, mixer):
    """`(norm(residual + hidden_states), residual + hidden_states)`, the sum kept in float32 when `residual_in_fp32`.

    When the mixer runs a CUDA kernel backend and Triton is present, one fused kernel does the add and the RMSNorm.
    """
    fused = _fused_add_norm() if isinstance(norm, VideoMambaRMSNorm) and hidden_states.is_cuda else None
    if fused is not None and mixer.resolve_backend(hidden_states) != "torch":
        return fused(hidden_states, residual, norm.weight, norm.variance_epsilon, residual_in_fp32)
    residual = hidden_states if residual is None else residual + hidden_states
    if residual_in_fp32:
        residual = upcast(residual)
    return norm(residual), residual


REMOTE_CODE_AUTO_MAP = {
    "AutoModel": "VideoMambaModel",
    "AutoModelForVideoClassification": "VideoMambaForVideoClassification",
    "AutoModelForImageClassification": "VideoMambaForImageClassification",
}


class VideoMambaPreTrainedModel(PreTrainedModel):
    config_class = VideoMambaConfig
    config: VideoMambaConfig
    base_model_prefix = "videomamba"
    main_input_name = "pixel_values"
    input_modalities = ("image", "video")
    supports_gradient_checkpointing = True
    _no_split_modules = ["VideoMambaBlock"]

    @torch.no_grad()
    def _init_weights(self, module):
        """The official model's initialisation after all its passes (see the config docstring)."""
        config = self.config
        std = config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv3d)):
            # PyTorch's default reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
            bound = 1 / math.sqrt(module.weight[0].numel())
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (VideoMambaRMSNorm, nn.LayerNorm)):
            init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, VideoMambaEmbeddings):
            init.trunc_normal_(module.position_embeddings, std=std)
            init.zeros_(module.cls_token)
            if module.temporal_position_embeddings is not None:
                init.zeros_(module.temporal_position_embeddings)
        elif isinstance(module, VideoMambaMixer):
            A = torch.arange(1, module.ssm_state_size + 1, dtype=torch.float32).repeat(module.intermediate_size, 1)
            for A_log, D in ((module.A_log, module.D), (module.A_b_log, module.D_b)):
                init.copy_(A_log, torch.log(A).to(A_log.device))
                init.ones_(D)
            # kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); GPT-2's rescaling divides by sqrt(depth).
            bound = 1 / math.sqrt(module.out_proj.in_features * config.num_hidden_layers)
            init.uniform_(module.out_proj.weight, -bound, bound)
            if config.use_mamba_dt_init:
                for dt_proj in (module.dt_proj, module.dt_proj_b):
                    self._mamba_dt_init(dt_proj)

    def _mamba_dt_init(self, dt_proj: nn.Linear):
        config = self.config
        dt_init_std = config.time_step_rank**-0.5 * config.time_step_scale
        init.uniform_(dt_proj.weight, -dt_init_std, dt_init_std)
        log_min, log_max = math.log(config.time_step_min), math.log(config.time_step_max)
        dt = torch.exp(torch.rand(dt_proj.out_features) * (log_max - log_min) + log_min)
        dt = dt.clamp(min=config.time_step_floor)
        init.copy_(dt_proj.bias, (dt + torch.log(-torch.expm1(-dt))).to(dt_proj.bias.device))

    @torch.no_grad()
    def resize_position_embeddings(self, num_frames: int | None = None, image_size: int | None = None):
        """Resize the position tables in place for another frame count and/or resolution.

        The spatial table is resized bicubically, the temporal one linearly (as the official fine-tuning code does).
        An image model (`num_frames=1`, no temporal table) inflates to a video model with a zero temporal table, the
        official initialisation; `num_frames=1` removes the temporal table.
        """
        embeddings = self.base_model.embeddings
        config = self.config
        if image_size is not None and image_size != config.image_size:
            if image_size % config.patch_size:
                raise ValueError(f"image_size={image_size} is not divisible by patch_size={config.patch_size}.")
            grid = image_size // config.patch_size
            resized = interpolate_spatial_position_embeddings(embeddings.position_embeddings.data, grid, grid)
            embeddings.position_embeddings = nn.Parameter(resized)
            config.image_size = image_size
        if num_frames is not None and num_frames != config.num_frames:
            if num_frames < 1 or num_frames % config.tubelet_size:
                raise ValueError(f"num_frames={num_frames} must be a positive multiple of tubelet_size.")
            positions = 0 if num_frames == 1 else num_frames // config.tubelet_size
            old = embeddings.temporal_position_embeddings
            if positions == 0:
                embeddings.temporal_position_embeddings = None
            elif old is None:
                ref = embeddings.position_embeddings
                embeddings.temporal_position_embeddings = nn.Parameter(
                    ref.new_zeros(1, positions, config.hidden_size)
                )
            else:
                embeddings.temporal_position_embeddings = nn.Parameter(
                    interpolate_temporal_position_embeddings(old.data, positions)
                )
            config.num_frames = num_frames

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; when the classes are registered for remote code (importing `videomamba`
        does this), the folder's `auto_map` names all three model classes, so each Auto class loads it."""
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            for auto_name, class_name in REMOTE_CODE_AUTO_MAP.items():
                auto_map.setdefault(auto_name, f"modeling_videomamba.{class_name}")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, plus: `num_frames=` / `image_size=` (or a `config` with other values)
        load the weights at the geometry they were saved with, then resize the position tables
        (see `resize_position_embeddings`). An image checkpoint loads into a video model this way."""
        target = {key: kwargs.pop(key) for key in ("num_frames", "image_size") if key in kwargs}
        config = kwargs.get("config")
        if isinstance(config, VideoMambaConfig) or target:
            hub_keys = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            try:
                saved = VideoMambaConfig.from_pretrained(
                    pretrained_model_name_or_path, **{k: kwargs[k] for k in hub_keys if k in kwargs}
                )
            except (OSError, ValueError):
                saved = None
            if saved is not None:
                if isinstance(config, VideoMambaConfig):
                    for key in ("num_frames", "image_size"):
                        target.setdefault(key, getattr(config, key))
                    config = config.__class__.from_dict(config.to_dict())
                    config.num_frames, config.image_size = saved.num_frames, saved.image_size
                    kwargs["config"] = config
                else:
                    kwargs.update({key: getattr(saved, key) for key in target})
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if target:
            model.resize_position_embeddings(**target)
        return loaded


class VideoMambaModel(VideoMambaPreTrainedModel):
    """The bare VideoMamba backbone: embeddings, bidirectional Mamba blocks and the final norm."""

    def __init__(self, config: VideoMambaConfig):
        super().__init__(config)
        self.embeddings = VideoMambaEmbeddings(config)
        rates = [0.0] + torch.linspace(0, config.drop_path_rate, config.num_hidden_layers, device="cpu").tolist()
        self.layers = nn.ModuleList(
            [VideoMambaBlock(config, layer_idx=i, drop_path_rate=rates[i]) for i in range(config.num_hidden_layers)]
        )
        self.drop_path = VideoMambaDropPath(config.drop_path_rate)
        self.norm_f = _make_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, frames, channels, height, width)`, or
                `(batch, channels, height, width)` for images): normalised frames (see `VideoMambaVideoProcessor`).
            bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*): True for patches to drop
                before the blocks (masked pretraining); the scan then runs over the visible tokens only.
            interpolate_pos_encoding (`bool`): resize the position tables on the fly to the input's frames and size.
            output_hidden_states (`bool`): also return the residual stream entering every block and the one entering
                the final norm (`num_hidden_layers + 1` tensors of shape `(batch, length, hidden)`).

        Returns:
            `BaseModelOutputWithPooling` with `last_hidden_state` `(batch, 1 + visible_patches, hidden)` after the final
            norm and `pooler_output` `(batch, hidden)`, the cls token.
        """
        if pixel_values is None:
            raise ValueError("VideoMambaModel needs pixel_values.")
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        hidden_states = self.embeddings(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        all_hidden_states = [] if output_hidden_states else None
        residual = None
        for layer in self.layers:
            hidden_states, residual = layer(hidden_states, residual)
            if output_hidden_states:
                all_hidden_states.append(residual)
        last_hidden_state, residual = add_and_norm(
            self.norm_f, self.drop_path(hidden_states), residual, self.config.residual_in_fp32, self.layers[-1].mixer
        )
        if output_hidden_states:
            all_hidden_states.append(residual)
        pooled_output = last_hidden_state[:, 0]

        if not return_dict:
            outputs = (last_hidden_state, pooled_output)
            return outputs + (tuple(all_hidden_states),) if output_hidden_states else outputs
        return BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled_output,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
        )


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: VideoMambaConfig) -> torch.Tensor:
    """Cross entropy for class indices or soft targets (mixup / cutmix), MSE for one label, BCE for multi-label."""
    num_labels = logits.shape[-1]
    problem_type = config.problem_type
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        elif labels.shape == logits.shape:
            problem_type = "soft_label_classification"
        else:
            raise ValueError(
                f"labels of shape {tuple(labels.shape)} and dtype {labels.dtype} fit none of: class indices "
                f"(batch,) int64, or soft targets (batch, {num_labels}) float."
            )
    logits = logits.float()
    if problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float().view(-1))
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    if problem_type == "soft_label_classification":
        return torch.sum(-labels.float() * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, labels.view(-1))


class VideoMambaForVideoClassification(VideoMambaPreTrainedModel):
    """VideoMamba with a linear head on the cls token after the final norm (the paper's classification model)."""

    def __init__(self, config: VideoMambaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.videomamba = VideoMambaModel(config)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        r"""
        Args:
            pixel_values: `(batch, frames, channels, height, width)` or `(batch, channels, height, width)`.
            labels (`torch.LongTensor` of shape `(batch,)`, or `torch.FloatTensor` `(batch, num_labels)` soft
                targets): when given, the loss is returned too.

        Returns:
            `ImageClassifierOutput` with `logits` `(batch, num_labels)`.

        Example:

        ```python
        >>> import torch
        >>> from videomamba import VideoMambaConfig, VideoMambaForVideoClassification
        >>> model = VideoMambaForVideoClassification(VideoMambaConfig(num_frames=8, num_labels=400))
        >>> logits = model(torch.randn(1, 8, 3, 224, 224)).logits  # (1, 400)
        ```
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.videomamba(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.head_dropout(outputs.pooler_output))
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class VideoMambaForImageClassification(VideoMambaForVideoClassification):
    """The same model for images (`num_frames=1`: no temporal table), the paper's ImageNet classifier. Accepts
    `(batch, channels, height, width)` as well as single-frame video."""


__all__ = [
    "VideoMambaPreTrainedModel",
    "VideoMambaModel",
    "VideoMambaForVideoClassification",
    "VideoMambaForImageClassification",
    "VideoMambaMixer",
    "VideoMambaBlock",
    "VideoMambaEmbeddings",
    "classification_loss",
    "is_mamba_ssm_available",
    "is_triton_scan_available",
]
