"""Shared fixtures: tiny VideoMamba configs, seeded RNG, GPU marker handling. No network is used anywhere."""

import os

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def tiny_config(**overrides):
    """A VideoMamba small enough for CPU tests: 2 blocks, width 32, 32x32 frames of 16x16 patches (4 per frame)."""
    from videomamba import VideoMambaConfig

    kwargs = dict(
        image_size=32, patch_size=16, num_frames=4, hidden_size=32, num_hidden_layers=2, state_size=8,
        num_labels=5, scan_backend="torch",
    )
    kwargs.update(overrides)
    return VideoMambaConfig(**kwargs)


@pytest.fixture
def config():
    return tiny_config()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
