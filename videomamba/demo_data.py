# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Built-in demo data: real MP4 videos, made locally, whose classes need temporal understanding.

Each video shows one handwritten digit (scikit-learn's bundled `load_digits`, no download) moving across a noisy
canvas. The class is the direction of motion -- `left`, `right`, `up` or `down` -- so no single frame tells the class:
a model must compare frames. Every video also gets a caption ("the digit 3 moves to the left") for video-text demos.

Layout written by `make_demo_videos(root)`:

    root/train/<class>/<id>.mp4, root/val/<class>/<id>.mp4   (a `datasets` video folder: class subfolders)
    root/train.txt, root/val.txt                             ("<relative path> <label index>" per line)
    root/labels.txt                                          (class names in label-index order)
    root/captions_train.json, root/captions_val.json         (MSRVTT-style: [{"video": path, "caption": str}, ...])
"""

import json
from pathlib import Path

import numpy as np


DEMO_CLASSES = ("left", "right", "up", "down")
_DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
# Bumped when the rendering changes, so that a demo folder written by an older version is rewritten, not reused.
_DEMO_DATA_VERSION = 2
_CAPTION_VERBS = {"left": "moves to the left", "right": "moves to the right", "up": "moves up", "down": "moves down"}


def render_moving_digit(digit_image: np.ndarray, direction: str, num_frames: int, frame_size: int, rng) -> np.ndarray:
    """Frames `(num_frames, frame_size, frame_size, 3)` uint8 of `digit_image` (8x8, values 0..16) moving in
    `direction` at a constant speed across 90-100% of the free canvas (edge to edge, at a random offset across the
    motion), over low-amplitude noise."""
    scale = max(2, frame_size // 24)
    glyph = np.kron(digit_image / 16.0, np.ones((scale, scale)))  # (8 * scale, 8 * scale)
    size = glyph.shape[0]
    free = frame_size - size
    dy, dx = _DIRECTIONS[direction]
    # Nearly edge to edge: a small model trained from scratch learns the direction of a long motion in a few hundred
    # steps, while shorter paths (down to half the canvas) took it several times longer.
    travel = rng.uniform(0.9, 1.0) * free
    # Start so that the whole path stays inside the canvas.
    start = np.array([rng.uniform(0, free), rng.uniform(0, free)])
    for axis, step in ((0, dy), (1, dx)):
        if step > 0:
            start[axis] = rng.uniform(0, free - travel)
        elif step < 0:
            start[axis] = rng.uniform(travel, free)
    colour = rng.uniform(0.6, 1.0, size=3)
    background = rng.uniform(0.0, 0.25, size=3)
    frames = np.empty((num_frames, frame_size, frame_size, 3), dtype=np.uint8)
    for t in range(num_frames):
        progress = t / max(num_frames - 1, 1)
        y = int(round(start[0] + dy * travel * progress))
        x = int(round(start[1] + dx * travel * progress))
        canvas = np.broadcast_to(background, (frame_size, frame_size, 3)).copy()
        canvas += rng.normal(0, 0.03, size=canvas.shape)
        canvas[y : y + size, x : x + size] = np.maximum(
            canvas[y : y + size, x : x + size], glyph[..., None] * colour
        )
        frames[t] = np.clip(canvas * 255, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path, frames: np.ndarray, fps: int = 8, crf: int = 18, preset: str = "veryfast") -> None:
    """Write `(T, H, W, 3)` uint8 RGB frames as an H.264 MP4 with PyAV (H and W must be even).

    `crf` is x264's quality (lower is better; 18 is visually lossless) and `preset` its speed: `"veryfast"` encodes a
    small clip about three times faster than x264's default `"medium"` at the same quality and a similar size.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_demo_videos(
    root,
    num_train_per_class: int = 48,
    num_val_per_class: int = 16,
    num_frames: int = 16,
    frame_size: int = 64,
    fps: int = 8,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the demo dataset under `root` (see the module docstring) and return `root` as a `Path`.

    Train and validation videos use disjoint digit images. An existing complete dataset with the same settings is
    reused unless `overwrite`.
    """
    from sklearn.datasets import load_digits

    if frame_size % 2 or frame_size < 32:
        raise ValueError(f"frame_size must be even and at least 32, got {frame_size}.")
    root = Path(root)
    settings = dict(
        version=_DEMO_DATA_VERSION, num_train_per_class=num_train_per_class, num_val_per_class=num_val_per_class,
        num_frames=num_frames, frame_size=frame_size, fps=fps, seed=seed, classes=list(DEMO_CLASSES),
    )
    stamp = root / "demo_settings.json"
    if not overwrite and stamp.exists() and json.loads(stamp.read_text()) == settings:
        return root

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    split_at = len(order) // 2
    pools = {"train": order[:split_at], "val": order[split_at:]}
    counts = {"train": num_train_per_class, "val": num_val_per_class}
    (root / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
    for split, pool in pools.items():
        lines, captions = [], []
        picks = iter(rng.choice(pool, size=counts[split] * len(DEMO_CLASSES), replace=False))
        for label, direction in enumerate(DEMO_CLASSES):
            for i in range(counts[split]):
                index = int(next(picks))
                frames = render_moving_digit(digits.images[index], direction, num_frames, frame_size, rng)
                relative = f"{split}/{direction}/{split}_{direction}_{i:04d}.mp4"
                write_mp4(root / relative, frames, fps=fps)
                lines.append(f"{relative} {label}")
                digit = int(digits.target[index])
                captions.append({"video": relative, "caption": f"the digit {digit} {_CAPTION_VERBS[direction]}"})
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
        (root / f"captions_{split}.json").write_text(json.dumps(captions, indent=1))
    stamp.write_text(json.dumps(settings))
    return root


__all__ = ["DEMO_CLASSES", "make_demo_videos", "render_moving_digit", "write_mp4"]
