"""Mask generators: exact counts, structure, independence, seeding, and the attention sampler."""

import pytest
import torch

from videomamba.masking import (
    AttentionMaskGenerator,
    ClipRowMaskGenerator,
    FrameRowMaskGenerator,
    RandomMaskGenerator,
    TubeMaskGenerator,
    make_mask_generator,
    mask_grid_size,
)

from .conftest import tiny_config


GRID = (4, 6, 5)  # frames, height, width
UNIFORM_TYPES = ("random", "tube", "clip_row", "frame_row")


def _grid(mask, grid=GRID):
    return mask.reshape(mask.shape[0], *grid)


@pytest.mark.parametrize(
    "mask_type, ratio, expected",
    [
        ("random", 0.8, int(0.8 * 120)),  # 96 of 4*6*5 = 120
        ("random", 0.29, 34),  # floor(34.8)
        ("tube", 0.8, 4 * 24),  # floor(0.8 * 30) = 24 per frame
        ("clip_row", 0.5, 4 * 3 * 5),  # floor(0.5 * 6) = 3 rows per frame on average, 5 patches a row
        ("frame_row", 0.8, 4 * 4 * 5),  # floor(4.8) = 4 rows per frame
        ("attention", 0.8, 4 * 24),
    ],
)
def test_exact_number_masked(mask_type, ratio, expected):
    generator = make_mask_generator(mask_type, GRID, mask_ratio=ratio, seed=3)
    assert generator.num_masked == expected
    if mask_type == "attention":
        mask = generator(torch.rand(7, GRID[0], GRID[1] * GRID[2]))
    else:
        mask = generator(7)
    assert mask.dtype == torch.bool and mask.shape == (7, 120)
    assert mask.sum(1).tolist() == [expected] * 7  # every sample masks exactly the same number


def test_ratio_rounding_is_exact_for_decimal_ratios():
    # 0.29 * 100 is 28.999999999999996 in floating point; the intended count is 29.
    assert RandomMaskGenerator((1, 10, 10), mask_ratio=0.29).num_masked == 29
    assert RandomMaskGenerator((1, 10, 10), mask_ratio=0.0).num_masked == 0


def test_tube_mask_is_the_same_in_every_frame():
    mask = _grid(TubeMaskGenerator(GRID, 0.5, seed=0)(16))
    assert torch.equal(mask, mask[:, :1].expand_as(mask))
    assert not torch.equal(mask[0], mask[1])  # but differs between samples


@pytest.mark.parametrize("cls", [ClipRowMaskGenerator, FrameRowMaskGenerator])
def test_row_masks_mask_whole_rows(cls):
    mask = _grid(cls(GRID, 0.5, seed=1)(32))
    row_any, row_all = mask.any(-1), mask.all(-1)
    assert torch.equal(row_any, row_all)  # a row is either fully masked or fully visible


def test_frame_row_masks_each_frame_alike_in_count_but_independently():
    generator = FrameRowMaskGenerator(GRID, 0.5, seed=2)
    rows = _grid(generator(64)).all(-1)  # (batch, frames, height)
    assert (rows.sum(-1) == 3).all()  # floor(0.5 * 6) rows in every frame
    # Independence: frames do not share their rows (identical rows in all frames would be tube-like).
    same_as_first = (rows == rows[:, :1]).all(-1)  # (batch, frames)
    assert not same_as_first[:, 1:].all()
    # Over many draws, the row pattern of frame 1 given frame 0 varies.
    assert len({tuple(r[1].tolist()) for r in rows if tuple(r[0].tolist()) == tuple(rows[0, 0].tolist())}) > 1


def test_clip_row_masks_rows_over_the_whole_clip():
    generator = ClipRowMaskGenerator(GRID, 0.5, seed=4)
    rows = _grid(generator(200)).all(-1)  # (batch, frames, height)
    assert (rows.flatten(1).sum(-1) == 12).all()  # 4 frames * 3 rows in total
    per_frame = rows.sum(-1)
    assert (per_frame != 3).any()  # frames may lose more or fewer rows than 3 ...
    assert per_frame.max() > 3 and per_frame.min() < 3


@pytest.mark.parametrize("mask_type", UNIFORM_TYPES)
def test_same_seed_same_masks_and_state_resumes(mask_type):
    a = make_mask_generator(mask_type, GRID, 0.7, seed=11)
    b = make_mask_generator(mask_type, GRID, 0.7, seed=11)
    c = make_mask_generator(mask_type, GRID, 0.7, seed=12)
    first_a, first_b, first_c = a(8), b(8), c(8)
    assert torch.equal(first_a, first_b)
    assert not torch.equal(first_a, first_c)
    # Unaffected by the global RNG (each generator owns its stream).
    torch.manual_seed(123)
    state = a.state_dict()
    next_a = a(8)
    torch.manual_seed(999)
    assert torch.equal(next_a, b(8))
    assert not torch.equal(next_a, first_a)
    # A restored state replays the stream.
    fresh = make_mask_generator(mask_type, GRID, 0.7, seed=0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh(8), next_a)


def test_unbatched_call_and_uniform_coverage():
    generator = RandomMaskGenerator(GRID, 0.5, seed=5)
    assert generator().shape == (120,)
    frequency = generator(4000).float().mean(0)
    assert (frequency - 0.5).abs().max() < 0.05


def test_attention_masking_keeps_attended_patches_per_frame():
    frames, height, width = GRID
    patches = height * width
    generator = AttentionMaskGenerator(GRID, mask_ratio=0.8, seed=0)
    visible_per_frame = patches - int(0.8 * patches)  # 6
    # Attention concentrated on 10 known patches per frame (different ones in every frame).
    attention = torch.full((3, frames, patches), 1e-9)
    hot = torch.stack([torch.randperm(patches)[:10] for _ in range(3 * frames)]).view(3, frames, 10)
    attention.scatter_(2, hot, 1.0)
    mask = generator(attention).view(3, frames, patches)
    visible = ~mask
    assert (visible.sum(-1) == visible_per_frame).all()
    hot_mask = torch.zeros_like(visible).scatter_(2, hot, True)
    assert not (visible & ~hot_mask).any()  # every visible patch is an attended one
    # Sampling follows the weights: over many draws a patch with 4x the weight is visible more often.
    weights = torch.ones(1, frames, patches)
    weights[..., 0] = 4.0
    counts = torch.stack([~generator(weights)[0] for _ in range(400)]).float().mean(0).view(frames, patches)
    assert (counts[:, 0] > counts[:, 1:].mean(-1) * 2).all()


def test_attention_masking_seeded_and_validated():
    attention = torch.rand(2, GRID[0], GRID[1] * GRID[2])
    a = AttentionMaskGenerator(GRID, 0.8, seed=7)
    b = AttentionMaskGenerator(GRID, 0.8, seed=7)
    assert torch.equal(a(attention), b(attention))
    assert torch.equal(a(attention.view(-1, 30)), b(attention.view(-1, 30)))  # (batch * frames, patches) accepted
    with pytest.raises(ValueError, match=r"attention must have shape \(batch, frames, patches\)"):
        a(torch.rand(2, 3, 30))
    with pytest.raises(TypeError, match="teacher's cls-to-patch attention"):
        a(2)


def test_validation_and_factory():
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        RandomMaskGenerator(GRID, 1.0)
    with pytest.raises(ValueError, match="Unknown mask_type"):
        make_mask_generator("blocks", GRID)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TubeMaskGenerator(GRID)(0)
    # The official names map to ours.
    assert isinstance(make_mask_generator("random_row", GRID), ClipRowMaskGenerator)
    assert isinstance(make_mask_generator("tube_row", GRID), FrameRowMaskGenerator)
    config = tiny_config(num_frames=8, image_size=64)
    assert mask_grid_size(config) == (8, 4, 4)
    generator = make_mask_generator("tube", config)
    assert generator.input_size == (8, 4, 4) and generator.mask_ratio == 0.8


def test_masks_drive_the_backbone_with_the_cls_token_kept():
    from videomamba import VideoMambaModel

    config = tiny_config()  # 4 frames of 2x2 patches
    model = VideoMambaModel(config).eval()
    generator = make_mask_generator("random", config, mask_ratio=0.5, seed=0)
    pixel_values = torch.randn(3, 4, 3, 32, 32)
    mask = generator(3)
    embeddings = model.embeddings(pixel_values, mask)
    assert embeddings.shape[1] == 1 + generator.num_visible  # cls + visible patches
    cls_expected = model.embeddings.cls_token[0, 0] + model.embeddings.position_embeddings[0, 0]
    assert torch.allclose(embeddings[:, 0], cls_expected.expand(3, -1))
    full = model.embeddings(pixel_values)
    for b in range(3):
        assert torch.allclose(embeddings[b, 1:], full[b, 1:][~mask[b]])
    out = model(pixel_values, bool_masked_pos=mask)
    assert out.last_hidden_state.shape == (3, 1 + generator.num_visible, config.hidden_size)
