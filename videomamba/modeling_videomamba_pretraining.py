# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Training-time VideoMamba models: masked alignment to a CLIP teacher and self-distillation.

`VideoMambaForMaskedAlignment` (paper section 3.4): the student runs only the visible tokens of a masked clip; linear
decoders map the chosen layers' token features, plus fixed sinusoidal positions, to the teacher's width, and the loss
is `mean(2 - 2 cos)` against the (L2-normalised) teacher tokens at the visible positions.

`VideoMambaForDistillation` (paper section 3.3): a classification model with a distillation head (norm + linear to the
teacher's width) on every token after the final norm. Saving it writes the plain classification model (the head is
dropped), which loads in `AutoModelForVideoClassification` / `AutoModelForImageClassification`.

Parameter names follow the official code where it has them, so its checkpoints map one to one:
`clip_decoder.{k}.head`, `clip_decoder.{k}.norm` (masked pretraining) and `distill_head.0` (norm), `distill_head.1`
(linear) (distillation). The official `clip_pos_embed` is a fixed sinusoid table, not a parameter; it is recomputed
here.
"""

import copy
import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_videomamba import VideoMambaConfig
from .modeling_videomamba import (
    VideoMambaForImageClassification,
    VideoMambaForVideoClassification,
    VideoMambaModel,
    VideoMambaPreTrainedModel,
    _make_norm,
    classification_loss,
)


ALIGNMENT_INPUTS = ("residual_before_last_mixer", "last_hidden_state")
# Files `videomamba-convert` writes next to a converted official `*_mask_pt_*` backbone.
CLIP_DECODER_FILE = "clip_decoder.safetensors"
CONVERSION_INFO_FILE = "conversion_info.json"

# Config attributes of the masked-alignment model and their defaults (the official `--clip_*` arguments).
MASKED_ALIGNMENT_DEFAULTS = {
    # `--clip_output_dim`: width of the teacher's tokens (CLIP ViT-B/16's projection: 512).
    "alignment_output_dim": 512,
    # `--clip_return_layer`: how many of the last layers are aligned (1: the final output only).
    "alignment_num_layers": 1,
    # `--clip_student_return_interval`: layer distance between aligned layers.
    "alignment_layer_interval": 1,
    # What the last aligned layer feeds the decoder; see `VideoMambaForMaskedAlignment`.
    "alignment_input": "residual_before_last_mixer",
}


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """The Transformer's fixed sin-cos table `(num_positions, dim)` in float32:
    `angle[p, j] = p / 10000 ** (2 * (j // 2) / dim)`, `sin` in even and `cos` in odd dimensions (computed in
    float64, as the official table is)."""
    positions = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    exponents = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angles = positions / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponents)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


def alignment_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`mean(2 - 2 * <p, t>)` over every token (and layer) of L2-normalised `predictions` and `targets` of the same
    shape `(..., dim)`: the squared distance of unit vectors, 0 when aligned, 4 when opposite. Computed in float32."""
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must have the same shape."
        )
    return (2 - 2 * (predictions.float() * targets.float()).sum(dim=-1)).mean()


def _visible_rows(table: torch.Tensor, bool_masked_pos: torch.Tensor | None, batch: int) -> torch.Tensor:
    """Rows of a full-length `(batch or 1, 1 + num_patches, dim)` tensor at the visible positions (cls always kept):
    `(batch, 1 + visible, dim)`."""
    if bool_masked_pos is None:
        return table.expand(batch, -1, -1)
    table = table.expand(batch, -1, -1)
    keep = torch.cat([bool_masked_pos.new_zeros(batch, 1), bool_masked_pos.bool()], dim=1).logical_not()
    return table[keep].reshape(batch, -1, table.shape[-1])


@dataclass
class VideoMambaMaskedAlignmentOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): alignment loss, when `alignment_targets` were given.
        predictions (`torch.FloatTensor` of shape `(num_aligned_layers, batch, 1 + visible_patches, output_dim)`):
            L2-normalised decoder outputs, shallowest aligned layer first.
        last_hidden_state (`torch.FloatTensor` of shape `(batch, 1 + visible_patches, hidden)`): the backbone's output
            after the final norm.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class VideoMambaAlignmentDecoder(nn.Module):
    """`Linear(hidden, output_dim)` -> `LayerNorm(output_dim)` -> L2 normalisation (the official `Linear_Decoder`)."""

    def __init__(self, hidden_size: int, output_dim: int):
        super().__init__()
        self.head = nn.Linear(hidden_size, output_dim)
        self.head._xavier_init = True  # the official decoder's initialisation (see `_init_weights`)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(..., hidden)` -> `(..., output_dim)` of unit length (float32)."""
        hidden_states = self.norm(self.head(hidden_states.to(self.head.weight.dtype)))
        return F.normalize(hidden_states.float(), dim=-1)


class VideoMambaForMaskedAlignment(VideoMambaPreTrainedModel):
    r"""VideoMamba for masked pretraining by token alignment to a teacher (UMT-style, the paper's section 3.4).

    The student sees only the visible tokens (`bool_masked_pos`, True = masked). For each aligned layer `k` (the last
    `alignment_num_layers` layers, `alignment_layer_interval` apart) a decoder `clip_decoder[k]` maps
    `features_k + sinusoid_positions` to `alignment_output_dim` and L2-normalises; the positions are a fixed sin-cos
    table over the full sequence (cls at 0, patch `p` at `1 + p`), read at the visible positions.

    Which features (`config.alignment_input`):

    - `"residual_before_last_mixer"` (default, what the official code's default fused-add-norm path does): for the last
      layer, the **un-normalised** residual stream entering the last block, i.e. before the last block's mixer output
      is added. The last block (its norm and mixer) and the final norm get no gradient from this loss; the official
      `*_mask_pt_*` checkpoints were trained so, and their `clip_decoder` weights continue pretraining exactly here.
      (The official non-fused path would feed the un-normalised stream after the last mixer; neither is normalised.)
    - `"last_hidden_state"`: the model's output, the final norm of the stream after the last block, so every block is
      trained (a cleaner choice for a new run; not the official checkpoints' decoder input).

    Earlier aligned layers `r` (with `alignment_num_layers > 1`) always read the final norm applied to the stream after
    block `r`, as the official code does (its shared `norm`).

    Config attributes (set on a `VideoMambaConfig`; missing ones get `MASKED_ALIGNMENT_DEFAULTS`):
        alignment_output_dim (`int`, 512): the teacher's token width (CLIP ViT-B/16 projection: 512).
        alignment_num_layers (`int`, 1): aligned layers, counted from the last.
        alignment_layer_interval (`int` or `float`, 1): distance between aligned layers.
        alignment_input (`str`, `"residual_before_last_mixer"`): see above.

    The backbone is `self.videomamba`, a `VideoMambaModel`; `save_backbone(folder)` writes it alone, the folder the
    fine-tuning scripts load.
    """

    def __init__(self, config: VideoMambaConfig):
        super().__init__(config)
        for key, value in MASKED_ALIGNMENT_DEFAULTS.items():
            if not hasattr(config, key):
                setattr(config, key, value)
        if config.alignment_input not in ALIGNMENT_INPUTS:
            raise ValueError(
                f"config.alignment_input must be one of {ALIGNMENT_INPUTS}, got {config.alignment_input!r}."
            )
        depth = config.num_hidden_layers
        self.aligned_layers = sorted(
            depth - 1 - int(i * config.alignment_layer_interval) for i in range(config.alignment_num_layers)
        )
        if config.alignment_num_layers < 1 or self.aligned_layers[0] < 0 or len(set(self.aligned_layers)) != len(
            self.aligned_layers
        ):
            raise ValueError(
                f"alignment_num_layers={config.alignment_num_layers} layers alignment_layer_interval="
                f"{config.alignment_layer_interval} apart do not fit {depth} distinct layers."
            )
        self.videomamba = VideoMambaModel(config)
        self.clip_decoder = nn.ModuleList(
            [
                VideoMambaAlignmentDecoder(config.hidden_size, config.alignment_output_dim)
                for _ in range(config.alignment_num_layers)
            ]
        )
        self._position_cache = {}
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Linear) and getattr(module, "_xavier_init", False):
            # The official decoder: xavier-uniform weight, zero bias (its LayerNorm: ones and zeros, as by default).
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
            return
        super()._init_weights(module)

    def position_table(self, num_positions: int, device) -> torch.Tensor:
        """The fixed sinusoid table `(1, num_positions, hidden)` (cached per length and device)."""
        key = (num_positions, str(device))
        if key not in self._position_cache:
            self._position_cache[key] = sinusoid_position_table(num_positions, self.config.hidden_size).to(device)[None]
        return self._position_cache[key]

    def unused_parameter_names(self) -> list[str]:
        """Parameters the loss does not reach: with `alignment_input="residual_before_last_mixer"` the last block
        (norm and mixer), and the final norm when only the last layer is aligned. (DDP then needs
        `find_unused_parameters=True`, which `MaskedAlignmentTrainer` sets.)"""
        if self.config.alignment_input != "residual_before_last_mixer":
            return []
        last = self.config.num_hidden_layers - 1
        prefixes = [f"videomamba.layers.{last}."]
        if self.aligned_layers == [last]:
            prefixes.append("videomamba.norm_f.")
        return [name for name, _ in self.named_parameters() if name.startswith(tuple(prefixes))]

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        alignment_targets: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideoMambaMaskedAlignmentOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, frames, channels, height, width)`).
            bool_masked_pos (`torch.BoolTensor` of shape `(batch, num_patches)`, *optional*): True = masked (dropped);
                every sample must keep the same number of tokens. None aligns every token.
            alignment_targets (`torch.FloatTensor`, *optional*): the teacher's L2-normalised tokens, of shape
                `(num_aligned_layers, batch, 1 + num_patches, output_dim)` for the full clip (the visible positions
                are picked here) or `(num_aligned_layers, batch, 1 + visible_patches, output_dim)` already picked; the
                layer dim may be left out when one layer is aligned. When given, the loss is returned.

        Returns:
            `VideoMambaMaskedAlignmentOutput` with `predictions` `(num_aligned_layers, batch, 1 + visible, output_dim)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.videomamba(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=True,
            return_dict=True,
        )
        streams = outputs.hidden_states  # streams[i]: entering block i; streams[-1]: entering the final norm
        norm_f = self.videomamba.norm_f
        last = self.config.num_hidden_layers - 1
        features = []
        for layer in self.aligned_layers:
            if layer < last:
                features.append(norm_f(streams[layer + 1]))
            elif self.config.alignment_input == "residual_before_last_mixer":
                features.append(streams[last])
            else:
                features.append(outputs.last_hidden_state)

        batch, length = features[0].shape[:2]
        num_positions = 1 + (bool_masked_pos.shape[1] if bool_masked_pos is not None else length - 1)
        positions = _visible_rows(self.position_table(num_positions, features[0].device), bool_masked_pos, batch)
        predictions = torch.stack(
            [decoder(feature + positions.to(feature.dtype)) for decoder, feature in zip(self.clip_decoder, features)]
        )

        loss = None
        if alignment_targets is not None:
            targets = self._visible_targets(alignment_targets, bool_masked_pos, predictions.shape)
            loss = alignment_loss(predictions, targets)
        if not return_dict:
            output = (predictions, outputs.last_hidden_state)
            return ((loss,) + output) if loss is not None else output
        return VideoMambaMaskedAlignmentOutput(
            loss=loss, predictions=predictions, last_hidden_state=outputs.last_hidden_state
        )

    def _visible_targets(self, targets, bool_masked_pos, shape):
        num_layers, batch, visible_length, dim = shape
        if targets.ndim == 3:
            targets = targets.unsqueeze(0)
        if targets.ndim != 4 or targets.shape[0] != num_layers or targets.shape[1] != batch:
            raise ValueError(
                f"alignment_targets must be (num_aligned_layers={num_layers}, batch={batch}, tokens, dim); got "
                f"{tuple(targets.shape)}. The teacher must return as many layers as the student aligns."
            )
        if targets.shape[-1] != dim:
            raise ValueError(
                f"The teacher's tokens are {targets.shape[-1]}-dimensional but the student's alignment decoder outputs "
                f"{dim} (config.alignment_output_dim): build the student with alignment_output_dim="
                f"{targets.shape[-1]} or use a teacher of width {dim}."
            )
        if targets.shape[2] == visible_length:
            return targets
        full_length = 1 + (bool_masked_pos.shape[1] if bool_masked_pos is not None else visible_length - 1)
        if targets.shape[2] != full_length:
            raise ValueError(
                f"alignment_targets has {targets.shape[2]} tokens; expected {full_length} (cls + every patch) or "
                f"{visible_length} (cls + visible patches). Do the teacher's and the student's patch grids agree?"
            )
        return torch.stack([_visible_rows(t, bool_masked_pos, batch) for t in targets])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, plus: a folder converted from an official `*_mask_pt_*` checkpoint by
        `videomamba-convert` (a `VideoMambaModel` folder with `clip_decoder.safetensors` and `conversion_info.json`)
        loads with its decoder weights and settings (`clip_output_dim`, `clip_return_layer`,
        `clip_student_return_interval`), ready to continue pretraining exactly. `alignment_*` keyword arguments
        override the config."""
        folder = str(pretrained_model_name_or_path)
        decoder_file = os.path.join(folder, CLIP_DECODER_FILE)
        converted = os.path.isdir(folder) and os.path.isfile(decoder_file)
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in MASKED_ALIGNMENT_DEFAULTS}
        config = kwargs.get("config")
        if config is None and (converted or overrides):
            hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
            config = VideoMambaConfig.from_pretrained(folder, **hub)
        if converted and not all(hasattr(config, key) for key in ("alignment_output_dim", "alignment_num_layers")):
            info_file = os.path.join(folder, CONVERSION_INFO_FILE)
            settings = {}
            if os.path.isfile(info_file):
                with open(info_file) as handle:
                    settings = json.load(handle).get("clip_decoder") or {}
            if settings.get("clip_norm_type") not in (None, "l2"):
                raise ValueError(
                    f"The converted decoder uses clip_norm_type={settings['clip_norm_type']!r}; only 'l2' (the "
                    "VideoMamba scripts' setting) is supported."
                )
            for key, official in (
                ("alignment_output_dim", "clip_output_dim"), ("alignment_num_layers", "clip_return_layer"),
                ("alignment_layer_interval", "clip_student_return_interval"),
            ):
                if settings.get(official) is not None:
                    setattr(config, key, settings[official])
        if config is not None:
            for key, value in overrides.items():
                setattr(config, key, value)
            kwargs["config"] = config
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if converted:
            from safetensors.torch import load_file

            prefix = "clip_decoder."
            tensors = {k[len(prefix):]: v for k, v in load_file(decoder_file).items() if k.startswith(prefix)}
            try:
                model.clip_decoder.load_state_dict(tensors, strict=True)
            except RuntimeError as error:
                raise ValueError(
                    f"{decoder_file} does not fit this model's decoders ({len(model.clip_decoder)} of width "
                    f"{model.config.alignment_output_dim}): {error}"
                ) from error
        return loaded

    def backbone_config(self) -> VideoMambaConfig:
        """A copy of the config without the alignment attributes (for the backbone folder)."""
        config = copy.deepcopy(self.config)
        for key in MASKED_ALIGNMENT_DEFAULTS:
            if hasattr(config, key):
                delattr(config, key)
        config.architectures = ["VideoMambaModel"]
        return config

    def save_backbone(self, save_directory, state_dict: dict | None = None, **kwargs):
        """Write the backbone alone as a `VideoMambaModel` folder (what fine-tuning loads). `state_dict`, if given, is
        this model's full state dict (e.g. gathered under FSDP); its `videomamba.` entries are saved."""
        backbone = self.videomamba
        if state_dict is not None:
            prefix = "videomamba."
            state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        original = backbone.config
        backbone.config = self.backbone_config()
        try:
            backbone.save_pretrained(save_directory, state_dict=state_dict, **kwargs)
        finally:
            backbone.config = original


@dataclass
class VideoMambaDistillationOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): classification loss, when `labels` were given (the distillation term
            needs the teacher and is added by `DistillationTrainer`).
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`).
        distillation_features (`torch.FloatTensor` of shape `(batch, length, distillation_hidden_size)`): the
            distillation head's L2-normalised output for every token.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    distillation_features: torch.FloatTensor | None = None


_STUDENT_CLASSES = {
    "VideoMambaForVideoClassification": VideoMambaForVideoClassification,
    "VideoMambaForImageClassification": VideoMambaForImageClassification,
}
_DISTILLATION_KEYS = ("distillation_hidden_size", "distillation_student_architecture")


class VideoMambaForDistillation(VideoMambaPreTrainedModel):
    r"""A VideoMamba classifier with a distillation head, for self-distillation from a smaller VideoMamba teacher
    (the paper's section 3.3: VideoMamba-M learns from VideoMamba-S).

    The tokens after the final norm `(batch, length, hidden)` pass `distill_head` (RMSNorm or LayerNorm per
    `config.rms_norm`, then `Linear(hidden, distillation_hidden_size)`) and are L2-normalised; `DistillationTrainer`
    aligns them with the teacher's normalised tokens. The classification part has exactly the names of
    `VideoMambaForVideoClassification` (`videomamba.*`, `classifier.*`).

    `save_pretrained` writes the classification model without the head (and without the distillation config keys),
    with `architectures` set to the student's class, so the folder loads in `AutoModelForVideoClassification` /
    `AutoModelForImageClassification`. Set `model.save_distillation_head = True` to keep the head (the Trainer's
    checkpoints do, so that training resumes exactly).

    Build one around an existing classifier with `VideoMambaForDistillation.from_student(student, teacher_width)`;
    the two share their modules.
    """

    def __init__(self, config: VideoMambaConfig):
        super().__init__(config)
        if getattr(config, "distillation_hidden_size", None) is None:
            raise ValueError(
                "VideoMambaForDistillation needs config.distillation_hidden_size (the teacher's width); build it with "
                "VideoMambaForDistillation.from_student(student, teacher_hidden_size)."
            )
        self.num_labels = config.num_labels
        self.videomamba = VideoMambaModel(config)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.distill_head = nn.Sequential(
            _make_norm(config), nn.Linear(config.hidden_size, config.distillation_hidden_size)
        )
        self.save_distillation_head = False
        self.post_init()

    @classmethod
    def from_student(cls, student: VideoMambaForVideoClassification, teacher_hidden_size: int):
        """Wrap a `VideoMambaForVideoClassification` / `VideoMambaForImageClassification`: the result shares the
        student's backbone and classifier (training one trains the other) and adds a fresh distillation head of
        output width `teacher_hidden_size`, on the student's device and dtype."""
        if not isinstance(student, VideoMambaForVideoClassification):
            raise TypeError(
                "The student must be a VideoMambaForVideoClassification or VideoMambaForImageClassification, got "
                f"{type(student).__name__}."
            )
        config = copy.deepcopy(student.config)
        config.distillation_hidden_size = int(teacher_hidden_size)
        config.distillation_student_architecture = type(student).__name__
        with torch.device("meta"):
            model = cls(config)
        model.videomamba = student.videomamba
        model.head_dropout = student.head_dropout
        model.classifier = student.classifier
        reference = next(student.parameters())
        model.distill_head = nn.Sequential(
            _make_norm(config), nn.Linear(config.hidden_size, config.distillation_hidden_size)
        ).to(device=reference.device)
        nn.init.trunc_normal_(model.distill_head[1].weight, std=config.initializer_range)
        nn.init.zeros_(model.distill_head[1].bias)
        model.distill_head.to(dtype=reference.dtype)
        model.__dict__["_student"] = student  # a plain reference, not a submodule
        return model

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_distillation_features: bool = True,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideoMambaDistillationOutput | tuple:
        r"""
        Args:
            pixel_values: `(batch, frames, channels, height, width)` or `(batch, channels, height, width)`.
            labels: class indices `(batch,)` or soft targets `(batch, num_labels)`; gives the classification loss.
            output_distillation_features: also run the distillation head (False for evaluation).

        Returns:
            `VideoMambaDistillationOutput` with `logits` `(batch, num_labels)` and `distillation_features`
            `(batch, length, distillation_hidden_size)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.videomamba(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True)
        logits = self.classifier(self.head_dropout(outputs.pooler_output))
        features = None
        if output_distillation_features:
            features = F.normalize(self.distill_head(outputs.last_hidden_state).float(), dim=-1)
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        if not return_dict:
            output = (logits, features)
            return ((loss,) + output) if loss is not None else output
        return VideoMambaDistillationOutput(loss=loss, logits=logits, distillation_features=features)

    def classification_model(self) -> VideoMambaForVideoClassification:
        """The student classifier sharing this model's backbone and classifier (no copy of the weights)."""
        student = getattr(self, "_student", None)
        if student is not None and student.videomamba is self.videomamba and student.classifier is self.classifier:
            return student
        config = copy.deepcopy(self.config)
        architecture = getattr(config, "distillation_student_architecture", None)
        student_class = _STUDENT_CLASSES.get(architecture)
        if student_class is None:
            student_class = VideoMambaForImageClassification if config.num_frames == 1 else (
                VideoMambaForVideoClassification
            )
        for key in _DISTILLATION_KEYS:
            if hasattr(config, key):
                delattr(config, key)
        with torch.device("meta"):
            student = student_class(config)
        student.videomamba = self.videomamba
        student.head_dropout = self.head_dropout
        student.classifier = self.classifier
        self.__dict__["_student"] = student
        return student

    def save_pretrained(self, save_directory, *args, state_dict: dict | None = None, **kwargs):
        """Write the student classifier (no distillation head) unless `self.save_distillation_head`."""
        if self.save_distillation_head:
            return super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        if state_dict is not None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("distill_head.")}
        student = self.classification_model()
        saved_config = student.config
        clean = copy.deepcopy(saved_config)
        for key in _DISTILLATION_KEYS:
            if hasattr(clean, key):
                delattr(clean, key)
        student.config = clean
        try:
            return student.save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        finally:
            student.config = saved_config


__all__ = [
    "ALIGNMENT_INPUTS",
    "MASKED_ALIGNMENT_DEFAULTS",
    "VideoMambaAlignmentDecoder",
    "VideoMambaForMaskedAlignment",
    "VideoMambaMaskedAlignmentOutput",
    "VideoMambaForDistillation",
    "VideoMambaDistillationOutput",
    "alignment_loss",
    "sinusoid_position_table",
]
