# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Convert official VideoMamba checkpoints (OpenGVLab/VideoMamba `.pth` files) into `save_pretrained` folders, and back.

    videomamba-convert videomamba_m16_k400_f16_res224.pth ./videomamba-m16-k400-f16 --labels kinetics400.txt
    videomamba-convert --to-original ./videomamba-m16-k400-f16 ./videomamba_m16_k400_f16_res224.pth

What is read (with `torch.load(weights_only=True)`), raw or wrapped in `model` / `module` (`--model-key` picks another
entry, e.g. `model_ema`), by the layout its keys show:

- Conv2d patch embedding + `head` (image_sm `VisionMamba`, in1k)       -> `VideoMambaForImageClassification`
- Conv3d patch embedding + `head` (video_sm `VisionMamba`, k400, ...)  -> `VideoMambaForVideoClassification`
- final `norm` + `clip_decoder` (video_sm pretrain model, `*_mask_pt_*`) -> `VideoMambaModel` + the decoder kept
- `vision_encoder.*` (video_mm `UMT_VIDEOMAMBA`, 5M / 17M / 25M)        -> `VideoMambaModel` of the vision tower

Key map (official -> ours; `videomamba.` is the base-model prefix of the classification models, absent in
`VideoMambaModel` folders):

    patch_embed.proj.{weight,bias}     -> videomamba.embeddings.patch_embeddings.projection.{weight,bias}
                                          (image models: Conv2d [D, C, p, p] -> Conv3d [D, C, 1, p, p])
    cls_token                          -> videomamba.embeddings.cls_token
    pos_embed                          -> videomamba.embeddings.position_embeddings
    temporal_pos_embedding             -> videomamba.embeddings.temporal_position_embeddings
    layers.{i}.norm.*                  -> videomamba.layers.{i}.norm.*
    layers.{i}.mixer.*                 -> videomamba.layers.{i}.mixer.*   (same parameter names)
    norm_f.* (classification), norm.* (masked pretraining / multimodal) -> videomamba.norm_f.*
    head.*                             -> classifier.*

Nothing is dropped silently. Tensors that are not part of the converted model are either stored losslessly in the
folder -- `clip_decoder.safetensors` (the masked-alignment decoder, with its config numbers in `conversion_info.json`)
and `original_extras.safetensors` (`distill_head.*`, the multimodal `pool_norm.*` / `vision_proj.*`, and whatever
`--keep PREFIX` names) -- or dropped only where `--drop PREFIX` / `--vision-only` says so; every dropped key is listed
in `conversion_info.json` and the model card. Any other unknown key, and any missing key, stops the conversion with
the list. `--to-original` rebuilds the official state dict (same key names, order, dtypes and values) from a folder.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch


CONVERSION_INFO_NAME = "conversion_info.json"
CLIP_DECODER_NAME = "clip_decoder.safetensors"
EXTRAS_NAME = "original_extras.safetensors"
FORMAT_VERSION = 1

IMAGENET_DEFAULT_MEAN = [0.485, 0.456, 0.406]
IMAGENET_DEFAULT_STD = [0.229, 0.224, 0.225]
# DeiT / image_sm evaluation: resize the short side to image_size / 0.875 (bicubic), center crop image_size.
IMAGE_EVAL_CROP_RATIO = 0.875

MULTIMODAL_PREFIX = "vision_encoder."
# Outside the vision tower of a multimodal (video-text) checkpoint: the text side and the frozen CLIP teacher.
MULTIMODAL_TEXT_SIDE = ("text_encoder", "text_proj", "itm_head", "temp", "clip_teacher")
# Small vision-side tensors that are not part of VideoMambaModel but belong to the official model: kept by default.
DEFAULT_KEPT_EXTRAS = ("distill_head", "pool_norm", "vision_proj")
CLIP_DECODER_PREFIX = "clip_decoder"

DATASETS = {
    "in1k": "ImageNet-1K",
    "k400": "Kinetics-400",
    "ssv2": "Something-Something V2",
    "breakfast": "Breakfast",
    "coin": "COIN",
    "lvu": "LVU",
    "5M": "CC3M + WebVid2M (5M video-text pairs)",
    "17M": "CC3M + CC12M + COCO + VG + SBU + WebVid2M (17M)",
    "25M": "CC3M + CC12M + COCO + VG + SBU + WebVid10M (25M)",
}

# The official model zoo (videomamba/{image_sm,video_sm,video_mm}/MODEL_ZOO.md of OpenGVLab/VideoMamba): file ->
# (task, frames, resolution, reported top-1 or None, test views, note). docs/convert.md renders this table.
OFFICIAL_CHECKPOINTS = {
    # ImageNet-1K (image_sm); VideoMamba-M and -B are trained with self-distillation.
    "videomamba_t16_in1k_res224.pth": ("image-classification", 1, 224, 76.9, "1 crop", ""),
    "videomamba_s16_in1k_res224.pth": ("image-classification", 1, 224, 81.2, "1 crop", ""),
    "videomamba_m16_in1k_res224.pth": ("image-classification", 1, 224, 82.8, "1 crop", "self-distilled"),
    "videomamba_b16_in1k_res224.pth": (
        "image-classification", 1, 224, 82.7, "1 crop", "self-distilled; model zoo only",
    ),
    "videomamba_t16_in1k_res224to448.pth": ("image-classification", 1, 448, 79.3, "1 crop", ""),
    "videomamba_t16_in1k_res224to448to576.pth": ("image-classification", 1, 576, 79.6, "1 crop", ""),
    "videomamba_s16_in1k_res224to448.pth": ("image-classification", 1, 448, 83.2, "1 crop", ""),
    "videomamba_s16_in1k_res224to448to576.pth": ("image-classification", 1, 576, 83.5, "1 crop", ""),
    "videomamba_m16_in1k_res224to448.pth": ("image-classification", 1, 448, 83.8, "1 crop", ""),
    "videomamba_m16_in1k_res224to448to576.pth": ("image-classification", 1, 576, 84.0, "1 crop", ""),
    # Kinetics-400 (video_sm), ImageNet-1K initialisation.
    "videomamba_t16_k400_f8_res224.pth": ("video-classification", 8, 224, 76.9, "8x3x4", ""),
    "videomamba_t16_k400_f16_res224.pth": ("video-classification", 16, 224, 78.1, "16x3x4", ""),
    "videomamba_t16_k400_f32_res224.pth": ("video-classification", 32, 224, 78.8, "32x3x4", ""),
    "videomamba_t16_k400_f64_res224.pth": ("video-classification", 64, 224, 79.6, "64x3x4", ""),
    "videomamba_t16_k400_f64_res224to384.pth": ("video-classification", 64, 384, 80.3, "64x3x4", ""),
    "videomamba_s16_k400_f8_res224.pth": ("video-classification", 8, 224, 79.3, "8x3x4", ""),
    "videomamba_s16_k400_f16_res224.pth": ("video-classification", 16, 224, 80.8, "16x3x4", ""),
    "videomamba_s16_k400_f32_res224.pth": ("video-classification", 32, 224, 81.5, "32x3x4", ""),
    "videomamba_s16_k400_f64_res224.pth": ("video-classification", 64, 224, 81.8, "64x3x4", ""),
    "videomamba_s16_k400_f64_res224to384.pth": ("video-classification", 64, 384, 82.7, "64x3x4", ""),
    "videomamba_m16_k400_f8_res224.pth": ("video-classification", 8, 224, 80.6, "8x3x4", ""),
    "videomamba_m16_k400_f16_res224.pth": (
        "video-classification", 16, 224, 81.9, "16x3x4",
        "the model zoo also links this file for the masked-pretrained 16-frame row (83.4): which weights it holds is "
        "unverified",
    ),
    "videomamba_m16_k400_f32_res224.pth": ("video-classification", 32, 224, 82.4, "32x3x4", ""),
    "videomamba_m16_k400_f64_res224.pth": ("video-classification", 64, 224, 82.8, "64x3x4", ""),
    "videomamba_m16_k400_f64_res224to384.pth": ("video-classification", 64, 384, 83.3, "64x3x4", ""),
    # Kinetics-400, masked-alignment pretraining then fine-tuning.
    "videomamba_m16_k400_mask_ft_f8_res224.pth": ("video-classification", 8, 224, 82.0, "8x3x4", "masked pretrained"),
    "videomamba_m16_k400_mask_ft_f32_res224.pth": (
        "video-classification", 32, 224, 83.9, "32x3x4", "masked pretrained",
    ),
    "videomamba_m16_k400_mask_ft_f64_res224.pth": (
        "video-classification", 64, 224, 84.3, "64x3x4", "masked pretrained",
    ),
    "videomamba_m16_k400_mask_ft_f64_res224to384.pth": (
        "video-classification", 64, 384, 85.0, "64x3x4", "masked pretrained",
    ),
    # Something-Something V2.
    "videomamba_t16_ssv2_f8_res224.pth": ("video-classification", 8, 224, 65.1, "8x3x4", ""),
    "videomamba_t16_ssv2_f16_res224.pth": ("video-classification", 16, 224, 66.0, "16x3x4", ""),
    "videomamba_t16_ssv2_f16_res224to288.pth": ("video-classification", 16, 288, 66.2, "16x3x4", ""),
    "videomamba_s16_ssv2_f8_res224.pth": ("video-classification", 8, 224, 66.6, "8x3x4", ""),
    "videomamba_s16_ssv2_f16_res224.pth": ("video-classification", 16, 224, 67.7, "16x3x4", ""),
    "videomamba_s16_ssv2_f16_res224to288.pth": ("video-classification", 16, 288, 68.1, "16x3x4", ""),
    "videomamba_m16_ssv2_f8_res224.pth": ("video-classification", 8, 224, 67.3, "8x3x4", ""),
    "videomamba_m16_ssv2_f16_res224.pth": (
        "video-classification", 16, 224, 68.3, "16x3x4",
        "the model zoo also links this file for the masked-pretrained 16-frame row (71.0): which weights it holds is "
        "unverified",
    ),
    "videomamba_m16_ssv2_f16_res224to288.pth": ("video-classification", 16, 288, 68.4, "16x3x4", ""),
    "videomamba_m16_ssv2_mask_ft_f8_res224.pth": ("video-classification", 8, 224, 70.2, "8x3x4", "masked pretrained"),
    "videomamba_m16_ssv2_mask_ft_f16_res224to288.pth": (
        "video-classification", 16, 288, 71.4, "16x3x4", "masked pretrained",
    ),
    # Breakfast and COIN (long-term), Kinetics-400 initialisation.
    "videomamba_t16_breakfast_f32_res224.pth": ("video-classification", 32, 224, 94.3, "32x3x4", ""),
    "videomamba_t16_breakfast_f64_res224.pth": ("video-classification", 64, 224, 94.3, "64x3x4", ""),
    "videomamba_s16_breakfast_f32_res224.pth": ("video-classification", 32, 224, 95.3, "32x3x4", ""),
    "videomamba_s16_breakfast_f64_res224.pth": ("video-classification", 64, 224, 97.4, "64x3x4", ""),
    "videomamba_m16_breakfast_f32_res224.pth": ("video-classification", 32, 224, 94.8, "32x3x4", ""),
    "videomamba_m16_breakfast_f64_res224.pth": ("video-classification", 64, 224, 95.8, "64x3x4", ""),
    "videomamba_m16_breakfast_mask_ft_f32_res224.pth": (
        "video-classification", 32, 224, 97.9, "32x3x4", "masked pretrained",
    ),
    "videomamba_m16_breakfast_mask_ft_f64_res224.pth": (
        "video-classification", 64, 224, 96.9, "64x3x4", "masked pretrained",
    ),
    "videomamba_t16_coin_f32_res224.pth": ("video-classification", 32, 224, 86.2, "32x3x10", ""),
    "videomamba_t16_coin_f64_res224.pth": ("video-classification", 64, 224, 87.0, "64x3x10", ""),
    "videomamba_s16_coin_f32_res224.pth": ("video-classification", 32, 224, 88.4, "32x3x10", ""),
    "videomamba_s16_coin_f64_res224.pth": ("video-classification", 64, 224, 88.7, "64x3x10", ""),
    "videomamba_m16_coin_f32_res224.pth": ("video-classification", 32, 224, 88.3, "32x3x10", ""),
    "videomamba_m16_coin_f64_res224.pth": ("video-classification", 64, 224, 89.5, "64x3x10", ""),
    "videomamba_m16_coin_mask_ft_f32_res224.pth": (
        "video-classification", 32, 224, 89.6, "32x3x10", "masked pretrained",
    ),
    "videomamba_m16_coin_mask_ft_f64_res224.pth": (
        "video-classification", 64, 224, 90.4, "64x3x10", "masked pretrained",
    ),
    # Masked-alignment pretraining (no classifier; top-1 is that of the fine-tuned models above).
    "videomamba_m16_k400_mask_pt_f8_res224.pth": ("masked-pretraining", 8, 224, None, "", "K400, 800 epochs"),
    "videomamba_m16_ssv2_mask_pt_f8_res224.pth": ("masked-pretraining", 8, 224, None, "", "SSv2, 200 epochs"),
    # Video-text pretraining (video_mm): zero-shot retrieval, no top-1.
    "videomamba_m16_5M_f8_res224.pth": ("video-text", 8, 224, None, "", "MSRVTT zero-shot T2V R@1 32.0"),
    "videomamba_m16_17M_f8_res224.pth": ("video-text", 8, 224, None, "", "MSRVTT zero-shot T2V R@1 34.7"),
    "videomamba_m16_25M_f8_res224.pth": ("video-text", 8, 224, None, "", "MSRVTT zero-shot T2V R@1 35.6"),
}

_FILENAME_PATTERN = re.compile(
    r"videomamba_(?P<size>[tsmb])(?P<patch>\d+)_(?P<data>in1k|k400|ssv2|breakfast|coin|lvu|\d+M)"
    r"(?P<mask>_mask_(?:pt|ft))?(?:_f(?P<frames>\d+))?_res(?P<res>[\dto]+)"
)
_SIZE_NAMES = {"t": "VideoMamba-Ti", "s": "VideoMamba-S", "m": "VideoMamba-M", "b": "VideoMamba-B"}


class ConversionError(ValueError):
    """A checkpoint or folder that cannot be converted as asked; the message names the problem and the fix."""


# ----------------------------------------------------------------------------------------------------------------
# Reading the official checkpoint
# ----------------------------------------------------------------------------------------------------------------


def _matches(key: str, prefixes) -> bool:
    """`key` is `prefix` itself or lies under it (`prefix.`); a trailing dot in `prefix` is optional. `temp` matches
    `temp` but not `temporal_pos_embedding`."""
    for prefix in prefixes:
        prefix = prefix.rstrip(".")
        if key == prefix or key.startswith(prefix + "."):
            return True
    return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_load_weights_only(path: Path):
    """`torch.load(weights_only=True)`, also accepting the `argparse.Namespace` the research code stores as `args`."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    try:
        if safe_globals is not None:
            with safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals([argparse.Namespace])
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError for non-checkpoint files, ...
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"Could not read {path} with torch.load(weights_only=True): {first_line}\nThe file holds Python objects "
            "beyond tensors (or is no PyTorch checkpoint). If you trust it, re-save only its state dict (the tensors "
            "under its 'model' key) with torch.save in the environment that wrote it, and convert that file."
        ) from error


def load_official_checkpoint(path, model_key: str | None = None):
    """Read an official checkpoint.

    Returns:
        `(state_dict, source)`: the flat `{name: tensor}` dict, and a description of the wrapping
        (`wrapper_key`, `key_prefix_stripped`, `ignored_entries`) that `--to-original` uses to restore it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"Checkpoint {path} does not exist.")
    obj = _torch_load_weights_only(path)
    if not isinstance(obj, dict):
        raise ConversionError(f"{path} holds a {type(obj).__name__}, not a state dict or a dict wrapping one.")

    wrapper_key = None
    if model_key is not None:
        if model_key not in obj:
            raise ConversionError(f"{path} has no entry {model_key!r}; its entries are {sorted(map(str, obj))}.")
        wrapper_key = model_key
    elif not all(torch.is_tensor(value) for value in obj.values()):
        for candidate in ("model", "module", "state_dict"):
            if isinstance(obj.get(candidate), dict):
                wrapper_key = candidate
                break
        else:
            raise ConversionError(
                f"{path} is neither a state dict nor a dict with a 'model' / 'module' entry; its entries are "
                f"{sorted(map(str, obj))}. Name the entry holding the weights with --model-key."
            )
    state_dict = obj[wrapper_key] if wrapper_key is not None else obj
    if not isinstance(state_dict, dict):
        raise ConversionError(f"Entry {wrapper_key!r} of {path} is a {type(state_dict).__name__}, not a state dict.")
    not_tensors = sorted(str(key) for key, value in state_dict.items() if not torch.is_tensor(value))
    if not_tensors:
        raise ConversionError(f"These entries of the state dict are not tensors: {not_tensors}.")

    key_prefix = None
    if state_dict and all(key.startswith("module.") for key in state_dict):  # saved from a DistributedDataParallel
        key_prefix = "module."
        state_dict = {key[len(key_prefix):]: value for key, value in state_dict.items()}
    ignored = sorted(str(key) for key in obj if key != wrapper_key) if wrapper_key is not None else []
    source = {"wrapper_key": wrapper_key, "key_prefix_stripped": key_prefix, "ignored_entries": ignored}
    return dict(state_dict), source


# ----------------------------------------------------------------------------------------------------------------
# Layout detection and config inference
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class OfficialLayout:
    """Where the VideoMamba backbone sits in an official state dict, and how its names differ between models."""

    kind: str  # "image-classification" | "video-classification" | "masked-pretraining" | "video-text" | "backbone"
    prefix: str = ""  # "vision_encoder." for the video-text checkpoints
    final_norm: str = "norm_f"  # "norm" in the masked-pretraining and video-text models
    image_patch_embed: bool = False  # Conv2d patch embedding (image_sm)
    has_head: bool = False

    def to_dict(self):
        return {
            "kind": self.kind, "prefix": self.prefix, "final_norm": self.final_norm,
            "patch_embed": "conv2d" if self.image_patch_embed else "conv3d", "has_head": self.has_head,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(
            kind=data["kind"], prefix=data.get("prefix", ""), final_norm=data.get("final_norm", "norm_f"),
            image_patch_embed=data.get("patch_embed") == "conv2d", has_head=bool(data.get("has_head")),
        )


def detect_layout(state_dict) -> OfficialLayout:
    prefix = MULTIMODAL_PREFIX if any(key.startswith(MULTIMODAL_PREFIX) for key in state_dict) else ""
    proj = f"{prefix}patch_embed.proj.weight"
    if proj not in state_dict:
        examples = sorted(state_dict)[:8]
        raise ConversionError(
            f"This is not an official VideoMamba checkpoint: there is no {proj!r}. First keys: {examples}."
        )
    has_norm_f = f"{prefix}norm_f.weight" in state_dict
    has_norm = f"{prefix}norm.weight" in state_dict
    if has_norm_f and has_norm:
        raise ConversionError(f"The checkpoint has both {prefix}norm_f.* and {prefix}norm.*: which is the final norm?")
    final_norm = "norm" if has_norm else "norm_f"
    image = state_dict[proj].ndim == 4
    has_head = f"{prefix}head.weight" in state_dict
    if prefix:
        kind = "video-text"
    elif any(_matches(key, [CLIP_DECODER_PREFIX]) for key in state_dict) or (has_norm and not has_head):
        kind = "masked-pretraining"
    elif has_head:
        kind = "image-classification" if image else "video-classification"
    else:
        kind = "backbone"
    return OfficialLayout(kind=kind, prefix=prefix, final_norm=final_norm, image_patch_embed=image, has_head=has_head)


def _need(state_dict, key):
    if key not in state_dict:
        raise ConversionError(f"Missing key {key!r}, needed to infer the model's shape.")
    return state_dict[key]


def infer_config_kwargs(state_dict, layout: OfficialLayout) -> dict:
    """VideoMambaConfig arguments read off the tensor shapes (at the checkpoint's own geometry)."""
    p = layout.prefix
    proj = _need(state_dict, f"{p}patch_embed.proj.weight")
    hidden = proj.shape[0]
    if proj.ndim == 4:
        num_channels, patch_h, patch_w = proj.shape[1:]
        tubelet = 1
    elif proj.ndim == 5:
        num_channels, tubelet, patch_h, patch_w = proj.shape[1:]
    else:
        raise ConversionError(f"{p}patch_embed.proj.weight has shape {tuple(proj.shape)}; expected 4 or 5 dims.")
    if patch_h != patch_w:
        raise ConversionError(f"Non-square patches ({patch_h}x{patch_w}) are not supported.")

    pos = _need(state_dict, f"{p}pos_embed")
    grid = math.isqrt(pos.shape[1] - 1)
    if grid * grid != pos.shape[1] - 1:
        raise ConversionError(f"{p}pos_embed has {pos.shape[1] - 1} patch positions, not a square grid.")
    temporal = state_dict.get(f"{p}temporal_pos_embedding")
    if layout.image_patch_embed:
        if temporal is not None:
            raise ConversionError("An image (Conv2d) patch embedding with a temporal position table is not supported.")
        num_frames = 1
    elif temporal is None:
        raise ConversionError(
            f"Missing key {p + 'temporal_pos_embedding'!r}: a video (Conv3d) checkpoint needs its temporal table."
        )
    else:
        num_frames = temporal.shape[1] * tubelet
        if temporal.shape[1] == 1:
            raise ConversionError("A temporal position table of length 1 is not supported (use an image model).")

    layer_pattern = re.compile(rf"{re.escape(p)}layers\.(\d+)\.")
    layer_ids = sorted({int(m.group(1)) for key in state_dict if (m := layer_pattern.match(key))})
    if not layer_ids:
        raise ConversionError(f"The checkpoint has no {p}layers.* keys.")
    mixer = f"{p}layers.0.mixer."
    in_proj = _need(state_dict, mixer + "in_proj.weight")
    intermediate = in_proj.shape[0] // 2
    expand = intermediate // hidden if intermediate % hidden == 0 else intermediate / hidden
    if f"{mixer}conv1d_b.weight" not in state_dict:
        raise ConversionError(
            f"{mixer}conv1d_b.weight is missing: only bidirectional (bimamba) checkpoints are supported."
        )
    kwargs = dict(
        image_size=grid * patch_h,
        patch_size=patch_h,
        tubelet_size=tubelet,
        num_frames=num_frames,
        num_channels=num_channels,
        hidden_size=hidden,
        num_hidden_layers=layer_ids[-1] + 1,
        state_size=_need(state_dict, mixer + "A_log").shape[1],
        expand=expand,
        conv_kernel=_need(state_dict, mixer + "conv1d.weight").shape[-1],
        time_step_rank=_need(state_dict, mixer + "dt_proj.weight").shape[1],
        use_conv_bias=f"{mixer}conv1d.bias" in state_dict,
        use_bias=f"{mixer}in_proj.bias" in state_dict,
        rms_norm=f"{p}layers.0.norm.bias" not in state_dict,
        residual_in_fp32=True,
    )
    if layout.has_head:
        kwargs["num_labels"] = state_dict[f"{p}head.weight"].shape[0]
    return kwargs


# ----------------------------------------------------------------------------------------------------------------
# Key map
# ----------------------------------------------------------------------------------------------------------------

_EMBEDDING_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.temporal_position_embeddings": "temporal_pos_embedding",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
}


def our_to_official(key: str, layout: OfficialLayout) -> str:
    """Our parameter name (of any of the model classes) -> the official name under `layout`."""
    if key.startswith("classifier."):
        return layout.prefix + "head." + key[len("classifier."):]
    key = key.removeprefix("videomamba.")
    if key in _EMBEDDING_NAMES:
        return layout.prefix + _EMBEDDING_NAMES[key]
    if key.startswith("layers."):
        return layout.prefix + key
    if key.startswith("norm_f."):
        return layout.prefix + layout.final_norm + key[len("norm_f"):]
    raise ConversionError(f"No official name is known for parameter {key!r}.")


def _to_ours(tensor: torch.Tensor, official_key: str, layout: OfficialLayout, target_shape) -> torch.Tensor:
    if layout.image_patch_embed and official_key == layout.prefix + "patch_embed.proj.weight":
        tensor = tensor.unsqueeze(2)  # Conv2d [D, C, p, p] -> Conv3d [D, C, 1, p, p]
    if tuple(tensor.shape) != tuple(target_shape):
        raise ConversionError(
            f"{official_key} has shape {tuple(tensor.shape)} but the inferred model expects {tuple(target_shape)}; "
            "the checkpoint's layers disagree in size."
        )
    return tensor


def _to_official(tensor: torch.Tensor, official_key: str, layout: OfficialLayout) -> torch.Tensor:
    if layout.image_patch_embed and official_key == layout.prefix + "patch_embed.proj.weight":
        if tensor.ndim != 5 or tensor.shape[2] != 1:
            raise ConversionError(
                f"Cannot write a Conv2d patch embedding from a Conv3d of shape {tuple(tensor.shape)}."
            )
        tensor = tensor.squeeze(2)
    return tensor


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------

TASK_TO_CLASS = {
    "image-classification": "VideoMambaForImageClassification",
    "video-classification": "VideoMambaForVideoClassification",
    "backbone": "VideoMambaModel",
}


def read_labels(path) -> list[str]:
    """Class names in label-index order from a `.txt` (one per line), `.json` (a list, `{index: name}` or
    `{name: index}`) or `.csv` file (columns `id,name`, as Kinetics' label file, or `index,label`)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, list):
            labels = [str(x) for x in data]
        elif isinstance(data, dict):
            if all(str(k).lstrip("-").isdigit() for k in data):
                pairs = {int(k): str(v) for k, v in data.items()}
            elif all(isinstance(v, int) for v in data.values()):
                pairs = {int(v): str(k) for k, v in data.items()}
            else:
                raise ConversionError(f"{path}: a JSON label dict must map index -> name or name -> index.")
            if sorted(pairs) != list(range(len(pairs))):
                raise ConversionError(f"{path}: label indices must be 0..{len(pairs) - 1} without gaps.")
            labels = [pairs[i] for i in range(len(pairs))]
        else:
            raise ConversionError(f"{path}: expected a JSON list or dict of labels.")
    elif path.suffix == ".csv":
        rows = [row for row in csv.reader(text.splitlines()) if row]
        header = [cell.strip().lower() for cell in rows[0]]
        if len(header) >= 2 and header[0] in ("id", "index", "idx") and header[1] in ("name", "label", "class"):
            rows = rows[1:]
        pairs = {}
        for row in rows:
            if len(row) < 2 or not row[0].strip().isdigit():
                raise ConversionError(f"{path}: every row must be 'index,name'; got {row}.")
            pairs[int(row[0])] = row[1].strip()
        if sorted(pairs) != list(range(len(pairs))):
            raise ConversionError(f"{path}: label indices must be 0..{len(pairs) - 1} without gaps.")
        labels = [pairs[i] for i in range(len(pairs))]
    else:
        labels = [line.strip() for line in text.splitlines()]
        while labels and not labels[-1]:
            labels.pop()
        if any(not label for label in labels):
            raise ConversionError(f"{path}: empty line {labels.index('') + 1}; give one label per line.")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise ConversionError(f"{path}: duplicate label names {duplicates[:10]}.")
    return labels


def describe_source(name: str) -> dict:
    """What the official file name says (size, data, frames, resolution) and the model zoo's numbers."""
    info = {"file": name}
    match = _FILENAME_PATTERN.search(name)
    if match:
        info["size"] = _SIZE_NAMES.get(match.group("size"))
        info["dataset"] = DATASETS.get(match.group("data"), match.group("data"))
        info["masked"] = bool(match.group("mask"))
    if name in OFFICIAL_CHECKPOINTS:
        task, frames, resolution, top1, views, note = OFFICIAL_CHECKPOINTS[name]
        info.update(task=task, frames=frames, resolution=resolution, top1=top1, views=views, note=note)
    return info


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _resolve_dtype(state_dict, dtype: str) -> torch.dtype:
    if dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
            raise ConversionError(f"--dtype {dtype!r} is not a floating point torch dtype.")
        return resolved
    dtypes = {t.dtype for t in state_dict.values() if t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


@dataclass
class _Plan:
    model_tensors: dict = field(default_factory=dict)  # our key -> tensor
    key_map: dict = field(default_factory=dict)  # official key -> our key (checkpoint order)
    clip_decoder: dict = field(default_factory=dict)  # name relative to the backbone -> tensor
    extras: dict = field(default_factory=dict)  # official key -> tensor
    dropped: dict = field(default_factory=dict)  # official key -> shape
    missing_left_at_init: list = field(default_factory=list)


def _processor_kwargs(config, image: bool) -> dict:
    size = config.image_size
    if image:
        return dict(
            do_resize=True, size={"shortest_edge": int(size / IMAGE_EVAL_CROP_RATIO)}, resample=3,
            do_center_crop=True, crop_size={"height": size, "width": size}, do_rescale=True,
            rescale_factor=1 / 255, do_normalize=True, image_mean=IMAGENET_DEFAULT_MEAN,
            image_std=IMAGENET_DEFAULT_STD, do_convert_rgb=True,
        )
    return dict(
        do_resize=True, size={"shortest_edge": size}, resample=2, do_center_crop=True,
        crop_size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD, do_convert_rgb=True,
        num_frames=config.num_frames,
    )


def _video_processor_class():
    """`VideoMambaVideoProcessor` once the package has it, else None (the plain JSON is written instead)."""
    import videomamba

    return getattr(videomamba, "VideoMambaVideoProcessor", None)


def write_processor_config(folder: Path, config, image: bool):
    """Image models: a stock `CLIPImageProcessor` (`preprocessor_config.json`) doing the official evaluation transform
    (short side to size / 0.875 bicubic, center crop, ImageNet mean / std). Video models: the video processor config
    (`video_preprocessor_config.json`, standard transformers keys) -- the official evaluation transform is short side
    to the model size (bilinear), center crop, ImageNet mean / std."""
    kwargs = _processor_kwargs(config, image)
    if image:
        from transformers import CLIPImageProcessor

        CLIPImageProcessor(**kwargs).save_pretrained(folder)
        return
    processor_class = _video_processor_class()
    if processor_class is not None:
        processor_class(**kwargs).save_pretrained(folder)
        return
    data = {"video_processor_type": "VideoMambaVideoProcessor", **kwargs}
    (folder / "video_preprocessor_config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _model_card(config, info: dict, model_class: str, record: dict, labels_given: bool) -> str:
    source = info["source"]
    described = describe_source(source["file"])
    task = {"VideoMambaForVideoClassification": "video-classification",
            "VideoMambaForImageClassification": "image-classification"}.get(model_class)
    front = ["---", "license: apache-2.0", "library_name: transformers"]
    if task:
        front.append(f"pipeline_tag: {task}")
    front += ["tags:", "- videomamba", "- mamba", "- state-space-model", "- video"]
    dataset_tags = {"Kinetics-400": "kinetics-400", "ImageNet-1K": "imagenet-1k",
                    "Something-Something V2": "something-something-v2"}
    if described.get("dataset") in dataset_tags:
        front += ["datasets:", f"- {dataset_tags[described['dataset']]}"]
    front.append("---")

    title = described.get("size") or "VideoMamba"
    lines = [f"# {title} ({source['file']}), converted", ""]
    conv_note = (
        "; the image model's Conv2d patch embedding is stored as the equal Conv3d of temporal size 1"
        if record["layout"]["patch_embed"] == "conv2d" else ""
    )
    lines.append(
        f"This folder holds the official VideoMamba checkpoint `{source['file']}` (OpenGVLab/VideoMamba, "
        "https://huggingface.co/OpenGVLab/VideoMamba, Apache-2.0) converted by `videomamba-convert` to "
        f"`{model_class}` of the transformers-native `videomamba` package. The weights are the official values, "
        f"unchanged (renamed{conv_note})."
    )
    lines += ["", "| | |", "|---|---|", f"| source file | `{source['file']}` |", f"| sha256 | `{source['sha256']}` |"]
    for name, key in (("model", "size"), ("training data", "dataset")):
        if described.get(key):
            lines.append(f"| {name} | {described[key]} |")
    lines.append(f"| converted as | `{model_class}` ({record['layout']['kind']} checkpoint) |")
    lines.append(f"| input | {config.num_frames} frame(s) of {config.image_size}x{config.image_size} |")
    lines.append(f"| size | {config.num_hidden_layers} blocks x width {config.hidden_size} |")
    if getattr(config, "num_labels", None) and model_class != "VideoMambaModel":
        lines.append(f"| classes | {config.num_labels}{'' if labels_given else ' (names not given: LABEL_i)'} |")
    if described.get("top1") is not None:
        lines.append(f"| reported top-1 | {described['top1']} ({described['views']} views; official model zoo) |")
    if described.get("note"):
        lines.append(f"| note | {described['note']} |")
    lines.append("")
    if record.get("resized"):
        lines += [
            "The position tables were resized at conversion ("
            + ", ".join(f"{k}: {v[0]} -> {v[1]}" for k, v in record["resized"].items())
            + "; temporal linear, spatial bicubic, as the official fine-tuning code does). The model is therefore no "
            "longer the official model at its native geometry: fine-tune before use.",
            "",
        ]
    kept = [name for name in (CLIP_DECODER_NAME, EXTRAS_NAME) if record["extras"].get(name)]
    if kept:
        text = (
            "Tensors of the official model that `" + model_class + "` does not use are kept unchanged, under their "
            "official names, in " + ", ".join(f"`{k}`" for k in kept) + " (listed in `conversion_info.json`)."
        )
        if record.get("clip_decoder"):
            text += (
                " `clip_decoder.safetensors` holds the masked-alignment decoder (`clip_decoder.{k}.head` Linear, "
                "`clip_decoder.{k}.norm` LayerNorm) for further masked pretraining; its settings are under "
                "`clip_decoder` in `conversion_info.json`."
            )
        lines += [text, ""]
    if record["dropped"]["keys"]:
        lines += [
            "Dropped at conversion (asked for with "
            + ", ".join(f"`{prefix}`" for prefix in record["dropped"]["prefixes"]) + "): "
            f"{len(record['dropped']['keys'])} tensors, listed in `conversion_info.json`.",
            "",
        ]
    if record.get("missing_left_at_init"):
        lines += [
            "Missing from the checkpoint and left at their initialisation (allowed with `--allow-missing`): "
            + ", ".join(f"`{k}`" for k in record["missing_left_at_init"]) + ".",
            "",
        ]
    auto = {"VideoMambaForVideoClassification": "AutoModelForVideoClassification",
            "VideoMambaForImageClassification": "AutoModelForImageClassification"}.get(model_class, "AutoModel")
    lines += [
        "## Use",
        "",
        "```python",
        "import videomamba  # registers VideoMamba; without the package, pass trust_remote_code=True",
        f"from transformers import {auto}",
        f'model = {auto}.from_pretrained("path/to/this/folder")',
        "```",
        "",
    ]
    if task:
        lines += [
            "```python",
            "from transformers import pipeline",
            f'classifier = pipeline("{task}", model="path/to/this/folder")',
            "```",
            "",
        ]
    lines += [
        "Back to the research code's format: `videomamba-convert --to-original path/to/this/folder out.pth`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        "@inproceedings{li2024videomamba,",
        "  title={VideoMamba: State Space Model for Efficient Video Understanding},",
        "  author={Li, Kunchang and Li, Xinhao and Wang, Yi and He, Yinan and Wang, Yali and Wang, Limin and "
        "Qiao, Yu},",
        "  booktitle={European Conference on Computer Vision (ECCV)},",
        "  year={2024}",
        "}",
        "```",
        "",
        "License: Apache-2.0, as the official checkpoints and code.",
        "",
    ]
    return "\n".join(front) + "\n\n" + "\n".join(lines)


def _save_tensors(path: Path, tensors: dict, metadata: dict):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path), metadata=metadata)


def _replace_dir(tmp: Path, output: Path, overwrite: bool):
    """Move the finished `tmp` folder to `output` (atomically where `output` does not exist)."""
    if output.exists():
        if not overwrite:
            raise ConversionError(f"{output} exists; pass --overwrite to replace it.")
        backup = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, backup)
        os.replace(tmp, output)
        if backup.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink()
    else:
        os.replace(tmp, output)


def convert_checkpoint(
    checkpoint,
    output_dir,
    *,
    labels=None,
    task: str = "auto",
    num_frames: int | None = None,
    image_size: int | None = None,
    num_labels: int | None = None,
    norm_eps: float | None = None,
    model_key: str | None = None,
    drop=(),
    keep=(),
    allow_missing=(),
    vision_only: bool = False,
    dtype: str = "auto",
    overwrite: bool = False,
    source_name: str | None = None,
    clip_norm_type: str = "l2",
    clip_student_return_interval: float = 1,
    verbose: bool = True,
) -> Path:
    """Convert one official checkpoint into a `save_pretrained` folder. See the module docstring and `--help`."""
    from . import (
        VideoMambaConfig,
        VideoMambaForImageClassification,
        VideoMambaForVideoClassification,
        VideoMambaModel,
    )

    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise ConversionError(f"{output_dir} exists; pass --overwrite to replace it.")
    state_dict, source = load_official_checkpoint(checkpoint, model_key)
    layout = detect_layout(state_dict)
    p = layout.prefix

    drop, keep = list(drop), list(keep)
    if vision_only:
        if not p:
            raise ConversionError("--vision-only is for video-text checkpoints (vision_encoder.*); this is not one.")
        drop += [prefix for prefix in MULTIMODAL_TEXT_SIDE if prefix not in drop]

    # ---- the model class
    if task == "auto":
        task = {"image-classification": "image-classification",
                "video-classification": "video-classification"}.get(layout.kind, "backbone")
    if task not in TASK_TO_CLASS:
        raise ConversionError(f"--task must be one of auto, {', '.join(TASK_TO_CLASS)}; got {task!r}.")
    if task != "backbone" and not layout.has_head:
        raise ConversionError(
            f"--task {task} needs a classifier, but this {layout.kind} checkpoint has no {p}head.*. Convert it as "
            "a backbone (the default) and fine-tune a classifier on it."
        )
    if task == "backbone" and layout.has_head and not _matches(p + "head.weight", drop + keep):
        raise ConversionError(
            f"--task backbone would leave the checkpoint's classifier ({p}head.*) unused; add --drop {p}head to "
            f"drop it (or --keep {p}head to store it aside), or convert with --task auto."
        )
    if task == "image-classification" and not layout.image_patch_embed and num_frames != 1:
        raise ConversionError("--task image-classification of a video checkpoint needs --num-frames 1.")
    if task == "video-classification" and layout.image_patch_embed and not num_frames:
        raise ConversionError(
            "Converting an image checkpoint to a video classifier needs --num-frames (the temporal table starts at "
            "zero, as the official fine-tuning initialisation)."
        )

    config_kwargs = infer_config_kwargs(state_dict, layout)
    if num_labels is not None and num_labels != config_kwargs.get("num_labels"):
        raise ConversionError(
            f"--num-labels {num_labels} disagrees with the checkpoint's classifier, which has "
            f"{config_kwargs.get('num_labels', 0)} outputs."
        )
    label_names = read_labels(labels) if labels else None
    if label_names is not None:
        if task == "backbone":
            raise ConversionError("--labels was given but the converted model has no classifier.")
        if len(label_names) != config_kwargs["num_labels"]:
            raise ConversionError(
                f"{labels} has {len(label_names)} labels but the classifier has {config_kwargs['num_labels']} outputs."
            )
        config_kwargs["id2label"] = dict(enumerate(label_names))
        config_kwargs["label2id"] = {name: i for i, name in enumerate(label_names)}
    if task != "backbone" and config_kwargs["num_labels"] == 1:
        config_kwargs["problem_type"] = "regression"  # LVU's regression heads (nb_classes=1)
    if task == "backbone":
        config_kwargs.pop("num_labels", None)
    if norm_eps is not None:
        config_kwargs["norm_eps"] = norm_eps
    config = VideoMambaConfig(**config_kwargs, scan_backend="auto")

    model_class = {"image-classification": VideoMambaForImageClassification,
                   "video-classification": VideoMambaForVideoClassification,
                   "backbone": VideoMambaModel}[task]
    target_dtype = _resolve_dtype(state_dict, dtype)
    model = model_class(config).to(target_dtype).eval()
    targets = model.state_dict()

    # ---- sort every checkpoint key into: model / clip decoder / kept extra / dropped / unknown
    plan = _Plan()
    default_kept = [p + name for name in DEFAULT_KEPT_EXTRAS] + list(DEFAULT_KEPT_EXTRAS)
    official_to_ours = {our_to_official(key, layout): key for key in targets}
    unknown = []
    for key, tensor in state_dict.items():
        if key in official_to_ours:
            ours = official_to_ours[key]
            plan.model_tensors[ours] = _to_ours(tensor, key, layout, targets[ours].shape)
            plan.key_map[key] = ours
        elif _matches(key, drop):
            plan.dropped[key] = list(tensor.shape)
        elif _matches(key, [p + CLIP_DECODER_PREFIX]):
            plan.clip_decoder[key[len(p):]] = tensor
        elif _matches(key, keep) or _matches(key, default_kept):
            plan.extras[key] = tensor
        else:
            unknown.append(key)
    missing = [key for key in official_to_ours if key not in state_dict]
    not_allowed = [key for key in missing if not _matches(key, allow_missing)]
    plan.missing_left_at_init = [key for key in missing if key not in not_allowed]
    problems = []
    if unknown:
        problems.append(_key_listing("keys the converted model does not use", unknown, state_dict))
        if p and any(_matches(key, MULTIMODAL_TEXT_SIDE) for key in unknown):
            problems.append(
                "This is a video-text checkpoint; the video-text model is not in this package yet. Pass --vision-only "
                "to convert the vision tower and drop the text side and the CLIP teacher ("
                + ", ".join(MULTIMODAL_TEXT_SIDE) + "; every dropped key is listed in conversion_info.json), or "
                "--keep PREFIX to store them losslessly in original_extras.safetensors."
            )
        else:
            problems.append("Allow them with --drop PREFIX (dropped, and listed) or --keep PREFIX (stored losslessly).")
    if not_allowed:
        problems.append(_key_listing("keys the converted model needs that the checkpoint lacks", not_allowed, None))
        problems.append("The checkpoint is incomplete or not of this layout; --allow-missing PREFIX leaves them at "
                        "their initialisation.")
    if problems:
        raise ConversionError(f"Cannot convert {checkpoint.name}:\n" + "\n".join(problems))

    # ---- load: strict over everything except the allowed-missing keys
    result = model.load_state_dict(plan.model_tensors, strict=False)
    allowed_ours = {official_to_ours[key] for key in plan.missing_left_at_init}
    if set(result.missing_keys) != allowed_ours or result.unexpected_keys:
        raise ConversionError(f"Internal key-map error: {result}")  # cannot happen if the map above is complete

    resized = {}
    if num_frames is not None and num_frames != config.num_frames:
        resized["num_frames"] = [config.num_frames, num_frames]
    if image_size is not None and image_size != config.image_size:
        resized["image_size"] = [config.image_size, image_size]
    if resized:
        try:
            model.resize_position_embeddings(num_frames=num_frames, image_size=image_size)
        except ValueError as error:
            raise ConversionError(f"Cannot resize the position tables: {error}") from error

    sha = _sha256(checkpoint)
    name = source_name or checkpoint.name
    original_dtypes = {key: _dtype_name(state_dict[key].dtype) for key in plan.key_map
                       if state_dict[key].dtype != target_dtype}
    record = {
        "format_version": FORMAT_VERSION,
        "source": {"file": name, "sha256": sha, "size_bytes": checkpoint.stat().st_size, **source},
        "layout": layout.to_dict(),
        "converted_to": model_class.__name__,
        "key_order": list(state_dict),
        "key_map": plan.key_map,
        "original_dtypes": original_dtypes,
        "extras": {CLIP_DECODER_NAME: list(plan.clip_decoder), EXTRAS_NAME: list(plan.extras)},
        "dropped": {"prefixes": sorted(set(drop)), "keys": plan.dropped},
        "missing_left_at_init": plan.missing_left_at_init,
        "resized": resized,
    }
    if plan.clip_decoder:
        record["clip_decoder"] = _clip_decoder_settings(plan.clip_decoder, config, clip_norm_type,
                                                        clip_student_return_interval, layout)

    # ---- write everything into a temp folder next to the output, then move it in place
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        model.save_pretrained(tmp)
        metadata = {"format": "pt", "source": name}
        if plan.clip_decoder:
            _save_tensors(tmp / CLIP_DECODER_NAME, plan.clip_decoder, metadata)
        if plan.extras:
            _save_tensors(tmp / EXTRAS_NAME, plan.extras, metadata)
        write_processor_config(tmp, model.config, image=model.config.num_frames == 1)
        (tmp / CONVERSION_INFO_NAME).write_text(json.dumps(record, indent=2) + "\n")
        info = {"source": record["source"]}
        (tmp / "README.md").write_text(
            _model_card(model.config, info, model_class.__name__, record, label_names is not None)
        )
        _replace_dir(tmp, output_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if verbose:
        print(f"Converted {name} ({layout.kind}) -> {output_dir} as {model_class.__name__}: "
              f"{len(plan.key_map)} tensors mapped", end="")
        if plan.clip_decoder:
            print(f", {len(plan.clip_decoder)} clip-decoder tensors kept in {CLIP_DECODER_NAME}", end="")
        if plan.extras:
            print(f", {len(plan.extras)} kept in {EXTRAS_NAME}", end="")
        if plan.dropped:
            print(f", {len(plan.dropped)} dropped ({', '.join(sorted(set(drop)))})", end="")
        print(".")
        if source["ignored_entries"]:
            print(f"Not weights, not converted: checkpoint entries {source['ignored_entries']}.")
        if resized:
            print(f"Position tables resized: {resized}.")
    return output_dir


def _clip_decoder_settings(tensors, config, norm_type, return_interval, layout) -> dict:
    """The official `Linear_Decoder` settings; the sizes come from the tensors, the rest from the research code's
    defaults (overridable with --clip-norm-type / --clip-student-return-interval)."""
    ids = sorted({int(m.group(1)) for key in tensors if (m := re.match(r"clip_decoder\.(\d+)\.", key))})
    head = tensors.get("clip_decoder.0.head.weight")
    return {
        "clip_return_layer": len(ids),
        "clip_decoder_embed_dim": int(head.shape[1]) if head is not None else None,
        "clip_output_dim": int(head.shape[0]) if head is not None else None,
        "clip_norm_type": norm_type if not layout.prefix else None,
        "clip_student_return_interval": return_interval,
        "clip_pos_embed": (
            "not stored by the official code: the sinusoid table of "
            f"num_spatial_patches * num_frames / tubelet_size + 1 = "
            f"{config.num_spatial_patches * config.num_frames // config.tubelet_size + 1} positions"
        ),
        "student_layers": (
            "official return_index = [depth - int(i * clip_student_return_interval) - 1 for i in "
            "range(clip_return_layer)]; with the fused add-norm the features for index depth - 1 are the residual "
            "stream entering the last block (VideoMambaModel hidden_states[depth - 1]), the others the shared final "
            "norm of the stream after block r (norm_f(hidden_states[r + 1]))"
        ),
    }


def _key_listing(title, keys, state_dict, limit=60) -> str:
    groups = {}
    for key in keys:
        depth = 2 if key.startswith(MULTIMODAL_PREFIX) else 1
        groups.setdefault(".".join(key.split(".")[:depth]), []).append(key)
    lines = [f"{len(keys)} {title}:"]
    shown = 0
    for group, members in groups.items():
        lines.append(f"  {group}.* ({len(members)} keys)" if len(members) > 1 or members[0] != group else f"  {group}")
        for key in members:
            if shown >= limit:
                break
            shape = f" {list(state_dict[key].shape)}" if state_dict is not None else ""
            lines.append(f"    {key}{shape}")
            shown += 1
    if shown < len(keys):
        lines.append(f"  ... and {len(keys) - shown} more")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Back to the official format
# ----------------------------------------------------------------------------------------------------------------


def _read_folder_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        tensors = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            tensors.update(load_file(str(folder / shard)))
        return tensors
    raise ConversionError(f"{folder} has no model.safetensors (or index); save it with save_pretrained first.")


def original_state_dict_from_folder(folder) -> tuple[dict, dict]:
    """The official state dict of a converted (or trained) folder, and the conversion record (`{}` if none).

    Folders from `videomamba-convert` come back exactly as read: same keys in the same order, same dtypes and values,
    with the kept `clip_decoder` / extra tensors. Other folders are written in the classification models' names
    (`norm_f`, `head`; a Conv2d patch embedding for `num_frames == 1`).
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"{folder} has no config.json; is it a save_pretrained folder?")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != "videomamba":
        raise ConversionError(f"{folder} holds a {config.get('model_type')!r} model, not videomamba.")
    info_path = folder / CONVERSION_INFO_NAME
    record = json.loads(info_path.read_text()) if info_path.is_file() else {}
    ours = _read_folder_tensors(folder)

    if record:
        layout = OfficialLayout.from_dict(record["layout"])
    else:
        has_head = any(key.startswith("classifier.") for key in ours)
        image = config.get("num_frames", 8) == 1
        kind = ("image-classification" if image else "video-classification") if has_head else "backbone"
        layout = OfficialLayout(kind=kind, image_patch_embed=image, has_head=has_head)

    official = {}
    for key, tensor in ours.items():
        name = our_to_official(key, layout)
        official[name] = _to_official(tensor, name, layout)
    if record:
        for name, dtype in record.get("original_dtypes", {}).items():
            if name in official:
                official[name] = official[name].to(getattr(torch, dtype))
        from safetensors.torch import load_file

        for file_name, prefix in ((CLIP_DECODER_NAME, layout.prefix), (EXTRAS_NAME, "")):
            expected = record.get("extras", {}).get(file_name) or []
            if not expected:
                continue
            path = folder / file_name
            if not path.is_file():
                raise ConversionError(f"{folder} lacks {file_name}, which conversion_info.json lists.")
            for name, tensor in load_file(str(path)).items():
                official[prefix + name] = tensor
        order = [key for key in record.get("key_order", []) if key in official]
        official = {key: official[key] for key in order + [key for key in official if key not in set(order)]}
        if record["source"].get("key_prefix_stripped"):
            prefix = record["source"]["key_prefix_stripped"]
            official = {prefix + key: value for key, value in official.items()}
    return official, record


def convert_to_original(folder, output_path, overwrite: bool = False, verbose: bool = True) -> Path:
    """Write the folder's weights as an official `.pth` (`torch.save`), wrapped as the source was."""
    output_path = Path(output_path)
    if output_path.exists() and not overwrite:
        raise ConversionError(f"{output_path} exists; pass --overwrite to replace it.")
    state_dict, record = original_state_dict_from_folder(folder)
    wrapper = record.get("source", {}).get("wrapper_key") if record else None
    payload = {wrapper: state_dict} if wrapper else state_dict
    output_path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{output_path.name}.tmp-", dir=output_path.parent)
    os.close(handle)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, output_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if verbose:
        print(f"Wrote {len(state_dict)} tensors in the official names to {output_path}"
              + (f" (wrapped in {wrapper!r})" if wrapper else "") + ".")
        if record and record["dropped"]["keys"]:
            print(f"Not restorable: {len(record['dropped']['keys'])} tensors dropped at conversion "
                  f"({', '.join(record['dropped']['prefixes'])}).")
        if record and record["source"].get("ignored_entries"):
            print(f"Not restored: non-weight entries {record['source']['ignored_entries']} of the source file.")
        if record and record.get("resized"):
            print(f"The position tables are the resized ones ({record['resized']}), not the source's.")
    return output_path


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videomamba-convert",
        description="Convert an official VideoMamba checkpoint (OpenGVLab/VideoMamba .pth) into a transformers "
        "save_pretrained folder, or (--to-original) a converted folder back into an official .pth.",
        epilog="Examples:\n"
        "  videomamba-convert videomamba_m16_k400_f16_res224.pth ./m16-k400-f16 --labels kinetics400.txt\n"
        "  videomamba-convert videomamba_t16_in1k_res224.pth ./t16-in1k --labels imagenet1k.txt\n"
        "  videomamba-convert videomamba_m16_k400_mask_pt_f8_res224.pth ./m16-mask-pt\n"
        "  videomamba-convert videomamba_m16_25M_f8_res224.pth ./m16-25M-vision --vision-only\n"
        "  videomamba-convert --to-original ./m16-k400-f16 ./videomamba_m16_k400_f16_res224.pth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="official .pth checkpoint (or, with --to-original, a converted folder)")
    parser.add_argument("output", help="output folder (or, with --to-original, the .pth file to write)")
    parser.add_argument("--to-original", action="store_true", help="convert a folder back to the official format")
    parser.add_argument("--labels", help="class names: .txt (one per line), .json (list or dict) or .csv (id,name)")
    parser.add_argument("--task", default="auto", choices=["auto", *TASK_TO_CLASS],
                        help="model class to convert to (default: from the checkpoint's layout)")
    parser.add_argument("--num-frames", type=int, help="frames of the converted model (default: from the temporal "
                        "table); another value resizes the table (linear), an image checkpoint inflates to video")
    parser.add_argument("--image-size", type=int, help="resolution of the converted model (default: from pos_embed); "
                        "another value resizes the spatial table (bicubic)")
    parser.add_argument("--num-labels", type=int, help="check the classifier has this many outputs")
    parser.add_argument("--norm-eps", type=float, help="epsilon of the norms (official: 1e-5)")
    parser.add_argument("--model-key", help="checkpoint entry holding the weights (default: 'model', then 'module', "
                        "or the whole file); e.g. model_ema")
    parser.add_argument("--drop", action="append", default=[], metavar="PREFIX",
                        help="drop checkpoint keys under PREFIX (listed in conversion_info.json); repeatable")
    parser.add_argument("--keep", action="append", default=[], metavar="PREFIX",
                        help="store checkpoint keys under PREFIX unchanged in original_extras.safetensors; repeatable")
    parser.add_argument("--allow-missing", action="append", default=[], metavar="PREFIX",
                        help="official keys under PREFIX may be missing (left at initialisation); repeatable")
    parser.add_argument("--vision-only", action="store_true",
                        help="video-text checkpoints: convert the vision tower, drop "
                        + ", ".join(MULTIMODAL_TEXT_SIDE))
    parser.add_argument("--dtype", default="auto", help="dtype of the saved weights (default: the checkpoint's)")
    parser.add_argument("--source-name", help="source file name for the model card (default: the file's name)")
    parser.add_argument("--clip-norm-type", default="l2", help="masked pretraining: the decoder's output norm")
    parser.add_argument("--clip-student-return-interval", type=float, default=1,
                        help="masked pretraining: interval of the aligned student layers")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.to_original:
            convert_to_original(args.source, args.output, overwrite=args.overwrite)
        else:
            convert_checkpoint(
                args.source, args.output, labels=args.labels, task=args.task, num_frames=args.num_frames,
                image_size=args.image_size, num_labels=args.num_labels, norm_eps=args.norm_eps,
                model_key=args.model_key, drop=args.drop, keep=args.keep, allow_missing=args.allow_missing,
                vision_only=args.vision_only, dtype=args.dtype, overwrite=args.overwrite,
                source_name=args.source_name, clip_norm_type=args.clip_norm_type,
                clip_student_return_interval=args.clip_student_return_interval,
            )
    except ConversionError as error:
        print(f"videomamba-convert: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
