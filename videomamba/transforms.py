# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Clip transforms: the same spatial operation for every frame of a clip.

All transforms take and return a clip tensor `(frames, channels, height, width)`; geometric ones keep the dtype
(uint8 stays uint8, which is the cheap place to resize), `NormalizeVideo` turns it into normalised float32.

Training (`make_train_transform`): `RandomResizedCropVideo` (one random box, scale and aspect ratio for the whole clip)
-> `RandomHorizontalFlipVideo` (all frames or none) -> `NormalizeVideo`. Evaluation (`make_eval_transform`):
`ResizeShortSideVideo` -> `CenterCropVideo` -> `NormalizeVideo`, the validation transform of the official recipes.

Horizontal flips swap left and right: leave them off (`hflip_prob=0`) for classes defined by direction, as the
official Something-Something V2 recipe does (and the built-in demo data, whose classes are motion directions).

Randomness comes from `torch`'s generator (seeded per DataLoader worker), or from a `torch.Generator` passed in.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


def to_clip_tensor(frames) -> torch.Tensor:
    """`(T, H, W, C)` numpy/tensor frames (as decoded) -> `(T, C, H, W)` tensor of the same dtype."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4:
        raise ValueError(f"A clip must be 4-D (frames, height, width, channels); got shape {tuple(frames.shape)}.")
    return frames.permute(0, 3, 1, 2).contiguous()


def _check_clip(clip: torch.Tensor) -> None:
    if not isinstance(clip, torch.Tensor) or clip.ndim != 4:
        shape = tuple(clip.shape) if hasattr(clip, "shape") else type(clip).__name__
        raise ValueError(f"Clip transforms take a (frames, channels, height, width) tensor; got {shape}.")


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def resize_clip(
    clip: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear", output_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Resize every frame to `size = (height, width)` (antialiased for bilinear/bicubic).

    The result has the input's dtype (uint8 is rounded and clamped back), or `output_dtype` when given: resizing a
    uint8 clip straight to float32 skips that round trip when normalisation follows anyway.
    """
    _check_clip(clip)
    height, width = _pair(size)
    output_dtype = output_dtype or clip.dtype
    if (clip.shape[-2], clip.shape[-1]) == (height, width):
        return clip.to(output_dtype)
    mode = _INTERPOLATIONS.get(interpolation)
    if mode is None:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}.")
    out = clip if clip.is_floating_point() else clip.float()
    kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
    out = F.interpolate(out, size=(height, width), mode=mode, **kwargs)
    if not output_dtype.is_floating_point:
        info = torch.iinfo(output_dtype)
        out = out.round_().clamp_(info.min, info.max)
    return out.to(output_dtype)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The `(height, width)` with the shorter side equal to `short_side`, keeping the aspect ratio."""
    if height <= width:
        return short_side, max(1, int(round(width * short_side / height)))
    return max(1, int(round(height * short_side / width))), short_side


def resize_short_side(clip: torch.Tensor, short_side: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize so that the shorter side of every frame is `short_side` (aspect ratio kept)."""
    _check_clip(clip)
    return resize_clip(clip, short_side_size(clip.shape[-2], clip.shape[-1], short_side), interpolation)


def crop_clip(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return clip[..., top : top + height, left : left + width]


def center_crop(clip: torch.Tensor, size) -> torch.Tensor:
    """Central `size = (height, width)` window of every frame. Frames smaller than `size` raise a clear error."""
    _check_clip(clip)
    height, width = _pair(size)
    in_h, in_w = clip.shape[-2:]
    if in_h < height or in_w < width:
        raise ValueError(
            f"Cannot crop {height}x{width} from {in_h}x{in_w} frames: resize first (the short side must be at least "
            "the crop size)."
        )
    return crop_clip(clip, (in_h - height) // 2, (in_w - width) // 2, height, width)


def three_crop(clip: torch.Tensor, size, num_crops: int = 3) -> list[torch.Tensor]:
    """`num_crops` windows of `size` spread evenly along the longer side (1: center; 3: start, center, end), centred
    along the shorter side: the spatial views of multi-view testing."""
    _check_clip(clip)
    height, width = _pair(size)
    in_h, in_w = clip.shape[-2:]
    if in_h < height or in_w < width:
        raise ValueError(f"Cannot crop {height}x{width} from {in_h}x{in_w} frames: resize first.")
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}.")
    if num_crops == 1:
        return [center_crop(clip, (height, width))]
    crops = []
    along_height = in_h - height > in_w - width
    room = (in_h - height) if along_height else (in_w - width)
    for k in range(num_crops):
        offset = int(k * room / (num_crops - 1))
        if along_height:
            crops.append(crop_clip(clip, offset, (in_w - width) // 2, height, width))
        else:
            crops.append(crop_clip(clip, (in_h - height) // 2, offset, height, width))
    return crops


def normalize_clip(clip: torch.Tensor, mean, std, rescale_factor: float | None = 1 / 255) -> torch.Tensor:
    """`(clip * rescale_factor - mean) / std` per channel, as float32."""
    _check_clip(clip)
    out = clip.float()
    if rescale_factor is not None:
        out = out * rescale_factor
    if mean is not None and std is not None:
        mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        if mean.shape[1] not in (1, out.shape[1]):
            raise ValueError(f"mean/std have {mean.shape[1]} values but the clip has {out.shape[1]} channels.")
        out = (out - mean) / std
    return out


def _rand(generator) -> float:
    return float(torch.rand((), generator=generator))


class RandomResizedCropVideo:
    """A random crop of random area fraction `scale` and aspect ratio `ratio` (log-uniform), resized to `size`; the
    same box for every frame. Falls back to a central crop of the closest valid ratio after 10 failed draws."""

    def __init__(
        self,
        size,
        scale=(0.08, 1.0),
        ratio=(3 / 4, 4 / 3),
        interpolation="bilinear",
        generator=None,
        output_dtype=None,
    ):
        self.size = _pair(size)
        self.output_dtype = output_dtype
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}.")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}.")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation = interpolation
        self.generator = generator

    def get_params(self, height: int, width: int) -> tuple[int, int, int, int]:
        """`(top, left, crop_height, crop_width)`."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * (self.scale[0] + _rand(self.generator) * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_ratio[0] + _rand(self.generator) * (log_ratio[1] - log_ratio[0]))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(_rand(self.generator) * (height - crop_h + 1))
                left = int(_rand(self.generator) * (width - crop_w + 1))
                return top, left, crop_h, crop_w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            crop_w, crop_h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            crop_h, crop_w = height, int(round(height * self.ratio[1]))
        else:
            crop_h, crop_w = height, width
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        top, left, crop_h, crop_w = self.get_params(clip.shape[-2], clip.shape[-1])
        clip = crop_clip(clip, top, left, crop_h, crop_w)
        return resize_clip(clip, self.size, self.interpolation, self.output_dtype)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomHorizontalFlipVideo:
    """Mirror all frames of the clip with probability `p` (never only some of them)."""

    def __init__(self, p: float = 0.5, generator=None):
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}.")
        self.p = p
        self.generator = generator

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        if self.p > 0 and _rand(self.generator) < self.p:
            return clip.flip(-1)
        return clip

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class ResizeShortSideVideo:
    def __init__(self, short_side: int, interpolation: str = "bilinear"):
        self.short_side = int(short_side)
        self.interpolation = interpolation

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return resize_short_side(clip, self.short_side, self.interpolation)

    def __repr__(self):
        return f"{type(self).__name__}(short_side={self.short_side})"


class CenterCropVideo:
    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return center_crop(clip, self.size)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size})"


class NormalizeVideo:
    """uint8 (or float in [0, 255]) clip -> float32 `(clip * rescale_factor - mean) / std`."""

    def __init__(self, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, rescale_factor: float | None = 1 / 255):
        self.mean, self.std, self.rescale_factor = tuple(mean), tuple(std), rescale_factor

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return normalize_clip(clip, self.mean, self.std, self.rescale_factor)

    def __repr__(self):
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


class ComposeVideo:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            clip = transform(clip)
        return clip

    def __repr__(self):
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}])"


def make_train_transform(
    crop_size,
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
    hflip_prob: float = 0.5,
    rescale_factor: float | None = 1 / 255,
    interpolation: str = "bilinear",
    generator=None,
) -> ComposeVideo:
    """Random resized crop -> horizontal flip -> normalise, the spatial augmentation of the VideoMamba recipes
    (`scale=(0.08, 1)`, `ratio=(3/4, 4/3)`; flips off for Something-Something V2). uint8 clip in, float32 out."""
    # Resizing straight to float32 is cheaper than resizing uint8 and normalising after (and the same numbers).
    steps = [RandomResizedCropVideo(crop_size, scale, ratio, interpolation, generator, output_dtype=torch.float32)]
    if hflip_prob > 0:
        steps.append(RandomHorizontalFlipVideo(hflip_prob, generator))
    steps.append(NormalizeVideo(mean, std, rescale_factor))
    return ComposeVideo(steps)


def make_eval_transform(
    short_side: int,
    crop_size,
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    rescale_factor: float | None = 1 / 255,
    interpolation: str = "bilinear",
) -> ComposeVideo:
    """Short-side resize -> center crop -> normalise (single-view evaluation)."""
    return ComposeVideo(
        [
            ResizeShortSideVideo(short_side, interpolation),
            CenterCropVideo(crop_size),
            NormalizeVideo(mean, std, rescale_factor),
        ]
    )


__all__ = [
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "CenterCropVideo",
    "ComposeVideo",
    "NormalizeVideo",
    "RandomHorizontalFlipVideo",
    "RandomResizedCropVideo",
    "ResizeShortSideVideo",
    "center_crop",
    "crop_clip",
    "make_eval_transform",
    "make_train_transform",
    "normalize_clip",
    "resize_clip",
    "resize_short_side",
    "short_side_size",
    "three_crop",
    "to_clip_tensor",
]
