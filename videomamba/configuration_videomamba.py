# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""VideoMamba model configuration."""

import math

from transformers import PretrainedConfig


# The paper's model sizes (Li et al., 2024, table 1): depth x width.
VIDEOMAMBA_PRESETS = {
    "tiny": {"hidden_size": 192, "num_hidden_layers": 24},
    "small": {"hidden_size": 384, "num_hidden_layers": 24},
    "middle": {"hidden_size": 576, "num_hidden_layers": 32},
}

SCAN_BACKENDS = ("auto", "torch", "mamba_ssm", "triton")


class VideoMambaConfig(PretrainedConfig):
    r"""
    Configuration of a VideoMamba model ([`VideoMambaModel`], [`VideoMambaForVideoClassification`],
    [`VideoMambaForImageClassification`]). The defaults give VideoMamba-Ti at 224x224 and 8 frames.

    Args:
        image_size (`int`, defaults to 224): height and width of the input frames the position table is made for.
        patch_size (`int`, defaults to 16): spatial size of a patch.
        tubelet_size (`int`, defaults to 1): temporal size of a patch (frames per token).
        num_frames (`int`, defaults to 8): frames the temporal position table is made for. `1` is the image model,
            which has no temporal position embedding.
        num_channels (`int`, defaults to 3): input channels.
        hidden_size (`int`, defaults to 192): width of the residual stream (`d_model`).
        num_hidden_layers (`int`, defaults to 24): number of bidirectional Mamba blocks.
        state_size (`int`, defaults to 16): SSM state size `N` (`d_state`).
        expand (`int`, defaults to 2): the mixer's inner width is `expand * hidden_size`.
        conv_kernel (`int`, defaults to 4): width of the causal depthwise convolution.
        time_step_rank (`int` or `"auto"`, defaults to `"auto"`): rank of the dt projection; `"auto"` is
            `ceil(hidden_size / 16)`.
        use_conv_bias (`bool`, defaults to `True`): bias in the depthwise convolutions.
        use_bias (`bool`, defaults to `False`): bias in `in_proj` and `out_proj`.
        rms_norm (`bool`, defaults to `True`): RMSNorm (`True`) or LayerNorm (`False`) before each mixer.
        norm_eps (`float`, defaults to 1e-5): epsilon of the norms.
        residual_in_fp32 (`bool`, defaults to `True`): keep the residual stream in float32.
        drop_path_rate (`float`, defaults to 0.0): stochastic depth; block `i` drops the previous block's output with
            rate `([0] + linspace(0, drop_path_rate, depth))[i]`, the final norm with `drop_path_rate`.
        embedding_dropout (`float`, defaults to 0.0): dropout after the position embeddings.
        head_dropout (`float`, defaults to 0.0): dropout before the classification head.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal initialisations.
        use_mamba_dt_init (`bool`, defaults to `False`): initialise `dt_proj` as Mamba does (bias = inverse softplus
            of log-uniform `[time_step_min, time_step_max]`). The official VideoMamba initialisation overwrites this
            with trunc-normal weights and zero bias, which is the default here.
        time_step_min, time_step_max, time_step_floor, time_step_scale (`float`): Mamba's dt initialisation.
        scan_backend (`str`, defaults to `"auto"`): `"auto"` picks the fastest available implementation for the
            tensors' device: `"triton"` (fused bidirectional kernel) or `"mamba_ssm"` (stock `mamba-ssm` +
            `causal-conv1d` kernels) on CUDA, `"torch"` (pure PyTorch) everywhere else.

    Example:

    ```python
    >>> from videomamba import VideoMambaConfig, VideoMambaForVideoClassification
    >>> config = VideoMambaConfig.from_preset("small", num_frames=16, num_labels=400)
    >>> model = VideoMambaForVideoClassification(config)
    ```
    """

    model_type = "videomamba"

    def __init__(
        self,
        image_size=224,
        patch_size=16,
        tubelet_size=1,
        num_frames=8,
        num_channels=3,
        hidden_size=192,
        num_hidden_layers=24,
        state_size=16,
        expand=2,
        conv_kernel=4,
        time_step_rank="auto",
        use_conv_bias=True,
        use_bias=False,
        rms_norm=True,
        norm_eps=1e-5,
        residual_in_fp32=True,
        drop_path_rate=0.0,
        embedding_dropout=0.0,
        head_dropout=0.0,
        initializer_range=0.02,
        use_mamba_dt_init=False,
        time_step_min=0.001,
        time_step_max=0.1,
        time_step_floor=1e-4,
        time_step_scale=1.0,
        scan_backend="auto",
        **kwargs,
    ):
        if scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"scan_backend must be one of {SCAN_BACKENDS}, got {scan_backend!r}.")
        if num_frames < 1 or num_frames % tubelet_size != 0:
            raise ValueError(
                f"num_frames ({num_frames}) must be a positive multiple of tubelet_size ({tubelet_size})."
            )
        if image_size % patch_size != 0:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size}).")
        self.image_size = image_size
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.state_size = state_size
        self.expand = expand
        self.conv_kernel = conv_kernel
        self.time_step_rank = math.ceil(hidden_size / 16) if time_step_rank == "auto" else int(time_step_rank)
        self.use_conv_bias = use_conv_bias
        self.use_bias = use_bias
        self.rms_norm = rms_norm
        self.norm_eps = norm_eps
        self.residual_in_fp32 = residual_in_fp32
        self.drop_path_rate = drop_path_rate
        self.embedding_dropout = embedding_dropout
        self.head_dropout = head_dropout
        self.initializer_range = initializer_range
        self.use_mamba_dt_init = use_mamba_dt_init
        self.time_step_min = time_step_min
        self.time_step_max = time_step_max
        self.time_step_floor = time_step_floor
        self.time_step_scale = time_step_scale
        self.scan_backend = scan_backend
        super().__init__(**kwargs)

    @property
    def intermediate_size(self) -> int:
        """Inner width of the mixer (`d_inner = expand * hidden_size`)."""
        return int(self.expand * self.hidden_size)

    @property
    def num_temporal_positions(self) -> int:
        """Rows of the temporal position table (0 for the image model)."""
        return 0 if self.num_frames == 1 else self.num_frames // self.tubelet_size

    @property
    def num_spatial_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "VideoMambaConfig":
        """A config of the paper's sizes: `"tiny"` (24 x 192), `"small"` (24 x 384) or `"middle"` (32 x 576)."""
        key = name.lower().removeprefix("videomamba-").removeprefix("videomamba_")
        key = {"t": "tiny", "ti": "tiny", "s": "small", "m": "middle"}.get(key, key)
        if key not in VIDEOMAMBA_PRESETS:
            raise ValueError(f"Unknown VideoMamba preset {name!r}; choose one of {sorted(VIDEOMAMBA_PRESETS)}.")
        return cls(**{**VIDEOMAMBA_PRESETS[key], **kwargs})


__all__ = ["VideoMambaConfig", "VIDEOMAMBA_PRESETS"]
