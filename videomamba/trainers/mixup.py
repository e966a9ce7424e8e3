# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Mixup and CutMix for clip batches, with label-smoothed soft targets.

The semantics of timm's `Mixup` in its default per-batch mode, which the official recipes use (mixup alpha 0.8,
cutmix alpha 1.0, probability 1.0, switch probability 0.5, label smoothing 0.1), for `(batch, frames, channels,
height, width)` clips or `(batch, channels, height, width)` images. One `lam ~ Beta(alpha, alpha)` per batch; every
sample is mixed with the sample at the mirrored batch position (`batch.flip(0)`):

- mixup: `x = lam * x + (1 - lam) * x.flip(0)`;
- cutmix: a box of area `(1 - lam) * H * W` (centre uniform, clipped at the borders) is pasted from `x.flip(0)` into
  every frame, and `lam` is corrected to the box actually pasted (`1 - box_area / (H * W)`);
- targets: `lam * smooth(y) + (1 - lam) * smooth(y.flip(0))` with `smooth(y) = (1 - s) * one_hot(y) + s / classes`.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """`(batch,)` class indices -> `(batch, num_classes)` float32 targets with `1 - s + s / C` on the class and
    `s / C` elsewhere."""
    off = smoothing / num_classes
    return F.one_hot(labels.long(), num_classes).float() * (1.0 - smoothing) + off


class VideoMixup:
    """Batch-wise mixup / cutmix with soft targets, drawing from its own seeded `numpy` generator.

    Args:
        num_classes: number of classes.
        mixup_alpha: Beta parameter of mixup (0 disables mixup).
        cutmix_alpha: Beta parameter of cutmix (0 disables cutmix).
        prob: probability of mixing a batch at all.
        switch_prob: with both enabled, probability of cutmix instead of mixup.
        label_smoothing: smoothing of the targets.
        seed: seed of the generator (`state_dict()` / `load_state_dict()` carry its state through checkpoints).

    Call: `mixed_pixel_values, soft_targets = mixup(pixel_values, labels)` with class-index `labels` `(batch,)`;
    `soft_targets` is `(batch, num_classes)` float32. The input is not modified.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        seed: int = 0,
    ):
        if num_classes < 2:
            raise ValueError(f"Mixup needs at least 2 classes, got num_classes={num_classes}.")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.num_classes = num_classes
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> "VideoMixup":
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        return self

    def state_dict(self) -> dict:
        return {"seed": self.seed, "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.rng.bit_generator.state = state["bit_generator"]

    def _draw(self):
        """`(lam, use_cutmix)` for one batch."""
        enabled = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        if not enabled or self.rng.random() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(self.rng.random() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(self.rng.beta(alpha, alpha)), use_cutmix

    def _box(self, height: int, width: int, lam: float):
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(self.rng.integers(0, height)), int(self.rng.integers(0, width))
        y0, y1 = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
        x0, x1 = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
        return y0, y1, x0, x1

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor):
        if labels.ndim != 1 or labels.dtype.is_floating_point:
            raise ValueError(
                f"VideoMixup takes class indices of shape (batch,), got {tuple(labels.shape)} {labels.dtype}; "
                "do not mix a batch twice."
            )
        lam, use_cutmix = self._draw()
        mixed = pixel_values
        if lam < 1.0:
            if use_cutmix:
                height, width = pixel_values.shape[-2:]
                y0, y1, x0, x1 = self._box(height, width, lam)
                mixed = pixel_values.clone()
                mixed[..., y0:y1, x0:x1] = pixel_values.flip(0)[..., y0:y1, x0:x1]
                lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
            else:
                mixed = pixel_values * lam + pixel_values.flip(0) * (1.0 - lam)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing).to(pixel_values.device)
        targets = targets * lam + targets.flip(0) * (1.0 - lam)
        return mixed, targets

    def __repr__(self) -> str:
        return (
            f"VideoMixup(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, cutmix_alpha="
            f"{self.cutmix_alpha}, prob={self.prob}, switch_prob={self.switch_prob}, label_smoothing="
            f"{self.label_smoothing}, seed={self.seed})"
        )


__all__ = ["VideoMixup", "smooth_one_hot"]
