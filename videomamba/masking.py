# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Token masks for masked pretraining (Li et al., 2024, section 3.4 and table 5).

A mask covers the patch tokens of a clip, `frames x height x width` of them in the model's spatial-first order (all
patches of frame 0 row by row, then frame 1, ...). It is a `torch.bool` tensor of shape `(batch, num_patches)` with
True where a token is **masked** (dropped from the student's sequence), the convention of
`VideoMambaModel.forward(bool_masked_pos=...)`. The cls token is not part of the mask: it is always visible.

Every generator draws from its own `torch.Generator` seeded with `seed`, so the same seed gives the same sequence of
masks whatever else draws random numbers; `state_dict()` / `load_state_dict()` carry that state through checkpoints.
Masks are made on the CPU (cheap) and moved to the device by the caller. Each sample of a batch gets its own mask;
every sample masks exactly the same number of tokens, which the student needs to batch the visible tokens.

| name | official `--mask_type` | what is masked | masked tokens |
| --- | --- | --- | --- |
| `random` | `random` | any tokens of the clip | `floor(r * T * H * W)` |
| `tube` | `tube` | the same spatial positions in every frame | `T * floor(r * H * W)` |
| `clip_row` | `random_row` | whole rows, drawn among all `T * H` rows of the clip | `T * floor(r * H) * W` |
| `frame_row` | `tube_row` | whole rows, `floor(r * H)` drawn independently in every frame | `T * floor(r * H) * W` |
| `attention` | `attention` | per frame, the visible patches are drawn by the teacher's cls attention (*) | `T * floor(r * H * W)` |

(*) without replacement, with probability proportional to the teacher's last-layer cls-to-patch attention.

The paper's default (and the official scripts') is `attention` masking at ratio 0.8. `floor` is taken after adding
1e-9, so that ratios like 0.29 of 100 give 29 and not 28 through float rounding.
"""

import math

import torch


MASK_TYPES = ("random", "tube", "clip_row", "frame_row", "attention")
# Names of the official code's `--mask_type`.
OFFICIAL_MASK_TYPE_NAMES = {"random_row": "clip_row", "tube_row": "frame_row"}


def _floor(value: float) -> int:
    return int(math.floor(value + 1e-9))


class MaskGenerator:
    """Base class: a token grid `(frames, height, width)`, a mask ratio and a private seeded generator.

    Args:
        input_size: `(frames, height, width)` of the token grid (frames = clip frames // tubelet size, height and
            width in patches), or an int `n` for `(n, n, n)`.
        mask_ratio: fraction of tokens to mask, in `[0, 1)`.
        seed: seed of this generator's own `torch.Generator`.
    """

    mask_type: str = ""

    def __init__(self, input_size, mask_ratio: float = 0.8, seed: int = 0):
        if isinstance(input_size, int):
            input_size = (input_size,) * 3
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 3 or min(input_size) < 1:
            raise ValueError(f"input_size must be (frames, height, width) of positive ints, got {input_size}.")
        if not 0.0 <= float(mask_ratio) < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1) (some tokens must stay visible), got {mask_ratio}.")
        self.input_size = input_size
        self.frames, self.height, self.width = input_size
        self.mask_ratio = float(mask_ratio)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def num_patches(self) -> int:
        return self.frames * self.height * self.width

    @property
    def num_masked(self) -> int:
        """Masked tokens per sample (the same for every sample)."""
        raise NotImplementedError

    @property
    def num_visible(self) -> int:
        """Visible patch tokens per sample (the cls token not counted)."""
        return self.num_patches - self.num_masked

    def manual_seed(self, seed: int) -> "MaskGenerator":
        """Restart this generator's stream from `seed`."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)
        return self

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["rng_state"])

    def _check_batch_size(self, batch_size):
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")

    def _sample(self, batch_size: int) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, batch_size: int | None = None) -> torch.BoolTensor:
        """Masks of shape `(batch_size, num_patches)`, or `(num_patches,)` when `batch_size` is None."""
        self._check_batch_size(batch_size)
        mask = self._sample(1 if batch_size is None else batch_size)
        return mask[0] if batch_size is None else mask

    def _random_choice(self, batch: int, total: int, chosen: int) -> torch.Tensor:
        """`(batch, total)` bool with exactly `chosen` True per row, uniformly at random."""
        order = torch.rand(batch, total, generator=self.generator).argsort(dim=1)
        mask = torch.zeros(batch, total, dtype=torch.bool)
        mask.scatter_(1, order[:, :chosen], True)
        return mask

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, mask_ratio={self.mask_ratio}, seed={self.seed}, "
            f"masked={self.num_masked}/{self.num_patches})"
        )


class RandomMaskGenerator(MaskGenerator):
    """Masks `floor(r * T * H * W)` tokens chosen uniformly over the whole clip."""

    mask_type = "random"

    @property
    def num_masked(self) -> int:
        return _floor(self.mask_ratio * self.num_patches)

    def _sample(self, batch_size):
        return self._random_choice(batch_size, self.num_patches, self.num_masked)


class TubeMaskGenerator(MaskGenerator):
    """Masks the same `floor(r * H * W)` spatial positions in every frame (VideoMAE's tube masking)."""

    mask_type = "tube"

    @property
    def num_masked(self) -> int:
        return self.frames * _floor(self.mask_ratio * self.height * self.width)

    def _sample(self, batch_size):
        per_frame = self._random_choice(batch_size, self.height * self.width, self.num_masked // self.frames)
        return per_frame.unsqueeze(1).expand(-1, self.frames, -1).reshape(batch_size, self.num_patches)


class ClipRowMaskGenerator(MaskGenerator):
    """Masks whole rows: `T * floor(r * H)` rows drawn uniformly among all `T * H` rows of the clip, so a frame may
    lose more or fewer rows than another (the official `random_row`)."""

    mask_type = "clip_row"

    @property
    def num_masked_rows(self) -> int:
        return self.frames * _floor(self.mask_ratio * self.height)

    @property
    def num_masked(self) -> int:
        return self.num_masked_rows * self.width

    def _sample(self, batch_size):
        rows = self._random_choice(batch_size, self.frames * self.height, self.num_masked_rows)
        return rows.unsqueeze(-1).expand(-1, -1, self.width).reshape(batch_size, self.num_patches)


class FrameRowMaskGenerator(MaskGenerator):
    """Masks whole rows: `floor(r * H)` rows drawn independently in every frame (the official `tube_row`)."""

    mask_type = "frame_row"

    @property
    def num_masked(self) -> int:
        return self.frames * _floor(self.mask_ratio * self.height) * self.width

    def _sample(self, batch_size):
        rows_per_frame = _floor(self.mask_ratio * self.height)
        rows = self._random_choice(batch_size * self.frames, self.height, rows_per_frame)
        rows = rows.view(batch_size, self.frames, self.height, 1)
        return rows.expand(-1, -1, -1, self.width).reshape(batch_size, self.num_patches)


class AttentionMaskGenerator(MaskGenerator):
    """Attention masking (UMT's semantic masking, the paper's default): in every frame, keeps
    `H * W - floor(r * H * W)` patches drawn without replacement with probability proportional to a teacher's
    cls-to-patch attention, masks the rest.

    Call it with the attention: `generator(attention)` where `attention` is `(batch, frames, H * W)` (or
    `(batch * frames, H * W)`), non-negative, e.g. `CLIPTeacher(..., return_attention=True)`'s second output.
    """

    mask_type = "attention"

    @property
    def num_masked(self) -> int:
        return self.frames * _floor(self.mask_ratio * self.height * self.width)

    def __call__(self, attention: torch.Tensor) -> torch.BoolTensor:
        """`attention` `(batch, frames, H * W)` -> masks `(batch, frames * H * W)` on the attention's device."""
        if not torch.is_tensor(attention):
            raise TypeError(
                "AttentionMaskGenerator is called with the teacher's cls-to-patch attention, a tensor of shape "
                f"(batch, frames, patches); got {type(attention).__name__}."
            )
        per_frame = self.height * self.width
        if attention.ndim == 2 and attention.shape[0] % self.frames == 0:
            attention = attention.reshape(-1, self.frames, attention.shape[-1])
        if attention.ndim != 3 or attention.shape[1:] != (self.frames, per_frame):
            raise ValueError(
                f"attention must have shape (batch, frames, patches) = (batch, {self.frames}, {per_frame}) for this "
                f"generator's grid {self.input_size}; got {tuple(attention.shape)}."
            )
        batch = attention.shape[0]
        weights = attention.detach().float().cpu().reshape(batch * self.frames, per_frame)
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("attention must be finite and non-negative to be used as sampling weights.")
        # A floor keeps every patch drawable (softmax weights that underflowed to 0 in low precision would otherwise
        # leave too few candidates); a row without mass becomes uniform.
        weights = weights.clamp_min(1e-30)
        visible_per_frame = per_frame - _floor(self.mask_ratio * per_frame)
        keep = torch.multinomial(weights, visible_per_frame, replacement=False, generator=self.generator)
        mask = torch.ones(batch * self.frames, per_frame, dtype=torch.bool)
        mask.scatter_(1, keep, False)
        return mask.reshape(batch, self.num_patches).to(attention.device)


MASK_GENERATORS = {
    "random": RandomMaskGenerator,
    "tube": TubeMaskGenerator,
    "clip_row": ClipRowMaskGenerator,
    "frame_row": FrameRowMaskGenerator,
    "attention": AttentionMaskGenerator,
}


def mask_grid_size(config, num_frames: int | None = None, image_size: int | None = None) -> tuple[int, int, int]:
    """The token grid `(frames, height, width)` of a `VideoMambaConfig` (optionally at another frame count/size)."""
    num_frames = config.num_frames if num_frames is None else num_frames
    image_size = config.image_size if image_size is None else image_size
    grid = image_size // config.patch_size
    return (max(num_frames // config.tubelet_size, 1), grid, grid)


def make_mask_generator(mask_type: str, input_size, mask_ratio: float = 0.8, seed: int = 0) -> MaskGenerator:
    """Build a generator by name: one of `MASK_TYPES` (the official names `random_row` and `tube_row` are accepted
    for `clip_row` and `frame_row`). `input_size` is `(frames, height, width)` in tokens or a `VideoMambaConfig`."""
    name = OFFICIAL_MASK_TYPE_NAMES.get(mask_type, mask_type)
    if name not in MASK_GENERATORS:
        raise ValueError(f"Unknown mask_type {mask_type!r}; choose one of {MASK_TYPES}.")
    if hasattr(input_size, "patch_size"):
        input_size = mask_grid_size(input_size)
    return MASK_GENERATORS[name](input_size, mask_ratio=mask_ratio, seed=seed)


__all__ = [
    "MASK_TYPES",
    "MaskGenerator",
    "RandomMaskGenerator",
    "TubeMaskGenerator",
    "ClipRowMaskGenerator",
    "FrameRowMaskGenerator",
    "AttentionMaskGenerator",
    "make_mask_generator",
    "mask_grid_size",
]
