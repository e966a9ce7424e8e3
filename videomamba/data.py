# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Video classification data: sample lists from folders or list files, a clip dataset, and a collate function.

Two layouts are read by `load_video_samples`:

- a `datasets` video folder: `root/<split>/<class name>/<video>` (the layout of `datasets.load_dataset("videofolder",
  data_dir=root)`: class names sorted alphabetically give the label indices; a `val` folder is the `validation`
  split). `root/<class name>/<video>` without split folders is one split.
- a list file, as the official recipes use: one `<path> <label index>` per line (separated by spaces, a comma or a
  tab), paths relative to `video_root` (default: the list file's folder). Class names come from `labels_file`, or
  `labels.txt` beside the list file (one name per line, in label order), else the label indices.

A `datasets.Dataset` with a video column (paths, or `Video(decode=False)` dicts) and a label column is accepted too.
"""

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .video_io import (
    VIDEO_EXTENSIONS,
    get_num_frames,
    read_video_frames,
    sample_frame_indices,
    sample_multiview_indices,
)


logger = logging.getLogger(__name__)

_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "val", "valid", "dev"),
    "val": ("validation", "val", "valid", "dev"),
    "test": ("test", "testing"),
}


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _folder_samples(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"{folder} has no class subfolders: a video folder holds one subfolder of videos per class "
            "(<class name>/<video>.mp4)."
        )
    class_names = [p.name for p in class_dirs]
    samples = []
    for label, class_dir in enumerate(class_dirs):
        videos = sorted(p for p in class_dir.rglob("*") if _is_video(p))
        samples.extend((str(p), label) for p in videos)
    if not samples:
        raise ValueError(f"No videos ({', '.join(VIDEO_EXTENSIONS)}) found in the class folders of {folder}.")
    return samples, class_names


def _find_split_dir(root: Path, split: str) -> Path | None:
    for name in _SPLIT_ALIASES.get(split, (split,)):
        candidate = root / name
        if candidate.is_dir():
            return candidate
    return None


def read_labels_file(path) -> list[str]:
    """Class names, one per line in label order (blank lines ignored)."""
    names = [line.strip() for line in Path(path).read_text().splitlines()]
    return [name for name in names if name]


def _parse_list_file(list_file: Path, video_root: Path) -> list[tuple[str, int]]:
    samples = []
    for number, raw in enumerate(list_file.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for separator in ("\t", ",", None):
            parts = line.rsplit(separator, 1) if separator else line.rsplit(None, 1)
            if len(parts) == 2:
                break
        if len(parts) != 2:
            raise ValueError(f"{list_file}, line {number}: expected '<path> <label index>', got {raw!r}.")
        path, label = parts[0].strip(), parts[1].strip()
        try:
            label = int(label)
        except ValueError:
            raise ValueError(
                f"{list_file}, line {number}: the label {label!r} is not an integer index ('<path> <label index>')."
            ) from None
        if label < 0:
            raise ValueError(f"{list_file}, line {number}: negative label {label}.")
        full = Path(path) if os.path.isabs(path) else video_root / path
        samples.append((str(full), label))
    if not samples:
        raise ValueError(f"The list file {list_file} has no samples.")
    return samples


def _dataset_samples(dataset, video_column=None, label_column=None):
    columns = dataset.column_names
    video_column = video_column or next((c for c in ("video", "path", "file", "filename") if c in columns), None)
    label_column = label_column or next((c for c in ("label", "labels") if c in columns), None)
    if video_column is None or label_column is None:
        raise ValueError(f"Cannot find the video and label columns among {columns}; pass video_column/label_column.")
    feature = dataset.features.get(video_column)
    if getattr(feature, "decode", False):
        import datasets

        dataset = dataset.cast_column(video_column, datasets.Video(decode=False))
    samples = []
    for video, label in zip(dataset[video_column], dataset[label_column]):
        path = video.get("path") if isinstance(video, dict) else video
        if path is None:
            raise ValueError("A video in the dataset has no file path (only bytes); save the videos to files first.")
        samples.append((str(path), int(label)))
    label_feature = dataset.features.get(label_column)
    names = list(getattr(label_feature, "names", None) or [])
    if not names:
        names = [str(i) for i in range(max(label for _, label in samples) + 1)]
    return samples, names


def load_video_samples(
    data_dir_or_list_file,
    split: str = "train",
    video_root=None,
    labels_file=None,
    check_files: bool = True,
    video_column: str | None = None,
    label_column: str | None = None,
) -> tuple[list[tuple[str, int]], list[str]]:
    """Video paths and labels of one split, and the class names.

    Args:
        data_dir_or_list_file: a video folder (`root/<split>/<class>/<video>` or `root/<class>/<video>`), a list file
            (`<path> <label index>` per line), or a `datasets.Dataset` / `DatasetDict`.
        split: the split folder (or `DatasetDict` key) to read: `"train"`, `"validation"` (`"val"`) or `"test"`.
        video_root: folder that relative paths in a list file start from (default: the list file's folder).
        labels_file: class names, one per line (list files only; default `labels.txt` beside the list file).
        check_files: raise if listed videos do not exist (naming the first few missing ones).

    Returns:
        `(samples, class_names)`: `samples` is a list of `(path, label index)`; `class_names[i]` names label `i`.
    """
    if not isinstance(data_dir_or_list_file, (str, os.PathLike)):
        dataset = data_dir_or_list_file
        if not hasattr(dataset, "column_names") or isinstance(dataset.column_names, dict):
            keys = [name for name in _SPLIT_ALIASES.get(split, (split,)) if name in dataset]
            if not keys:
                raise ValueError(f"The DatasetDict has no split {split!r} (splits: {list(dataset.keys())}).")
            dataset = dataset[keys[0]]
        samples, class_names = _dataset_samples(dataset, video_column, label_column)
    else:
        path = Path(data_dir_or_list_file)
        if not path.exists():
            raise FileNotFoundError(f"Data path not found: {path}")
        if path.is_dir():
            split_dir = _find_split_dir(path, split)
            if split_dir is None:
                has_split_dirs = any(_find_split_dir(path, s) for s in ("train", "validation", "test"))
                if has_split_dirs:
                    found = sorted(p.name for p in path.iterdir() if p.is_dir())
                    raise ValueError(f"{path} has no {split!r} split folder (folders: {found}).")
                split_dir = path
            samples, class_names = _folder_samples(split_dir)
            if split_dir != path:
                # Label indices must not depend on which classes happen to have videos in this split.
                all_classes = set(class_names)
                for other in ("train", "validation", "test"):
                    other_dir = _find_split_dir(path, other)
                    if other_dir is not None:
                        all_classes |= {
                            p.name for p in other_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                        }
                if all_classes != set(class_names):
                    class_names = sorted(all_classes)
                    index = {name: i for i, name in enumerate(class_names)}
                    samples = [(p, index[Path(p).relative_to(split_dir).parts[0]]) for p, _ in samples]
        else:
            root = Path(video_root) if video_root is not None else path.parent
            samples = _parse_list_file(path, root)
            labels_path = Path(labels_file) if labels_file is not None else path.parent / "labels.txt"
            num_labels = max(label for _, label in samples) + 1
            if labels_path.is_file():
                class_names = read_labels_file(labels_path)
                if len(class_names) < num_labels:
                    raise ValueError(
                        f"{labels_path} names {len(class_names)} classes but {path} uses label {num_labels - 1}."
                    )
            elif labels_file is not None:
                raise FileNotFoundError(f"Labels file not found: {labels_path}")
            else:
                class_names = [str(i) for i in range(num_labels)]
    if check_files:
        missing = [p for p, _ in samples if not os.path.isfile(p)]
        if missing:
            shown = ", ".join(missing[:3])
            raise FileNotFoundError(f"{len(missing)} of {len(samples)} videos do not exist, e.g. {shown}.")
    return samples, class_names


class VideoClipDataset(Dataset):
    """Clips of labelled videos for training or evaluation.

    Items are `{"pixel_values": FloatTensor (num_frames, 3, height, width), "labels": int}`; in evaluation with
    several views (`num_clips * num_crops > 1`) `pixel_values` is `(num_views, num_frames, 3, height, width)`.

    Args:
        samples: `(path, label)` pairs, e.g. from `load_video_samples`.
        processor_or_transform: a `VideoMambaVideoProcessor` -- its frame sampling and evaluation transform
            (short-side resize, center crop / multi-view crops, normalisation) are used, and for training its
            `train_transform()` (random resized crop + flip, same for every frame) unless `transform` is given -- or
            any callable taking a uint8 clip `(num_frames, 3, H, W)` and returning a float clip.
        num_frames: frames per clip (default: the processor's).
        train: random frame sampling and the training transform; otherwise deterministic evaluation views.
        transform: a clip transform replacing the default one for this mode.
        sampling, frame_stride, short_video: frame sampling (default: the processor's, else uniform / 4 / repeat).
        num_clips, num_crops: evaluation views per video (default: the processor's; 1 x 1 for plain callables).
        skip_bad_videos: replace a video that cannot be decoded by another sample (with a warning) instead of
            raising; the official loaders do this for the few broken files of large datasets.
        seek_threshold: see `read_video_frames` (default: the processor's).

    Training-time randomness (frame offsets, crops, flips) comes from torch's generator, which DataLoader seeds per
    worker and `accelerate.utils.set_seed` / `transformers.set_seed` seed globally.
    """

    def __init__(
        self,
        samples,
        processor_or_transform,
        num_frames: int | None = None,
        train: bool = False,
        transform=None,
        sampling: str | None = None,
        frame_stride: int | None = None,
        short_video: str | None = None,
        num_clips: int | None = None,
        num_crops: int | None = None,
        skip_bad_videos: bool = False,
        seek_threshold: int | None = None,
    ):
        self.samples = list(samples)
        if not self.samples:
            raise ValueError("VideoClipDataset got no samples.")
        self.train = train
        self.skip_bad_videos = skip_bad_videos
        is_processor = hasattr(processor_or_transform, "preprocess") and hasattr(processor_or_transform, "crop_size")
        self.processor = processor_or_transform if is_processor else None

        def default(value, name, fallback):
            if value is not None:
                return value
            return getattr(self.processor, name, fallback) if self.processor is not None else fallback

        self.num_frames = int(default(num_frames, "num_frames", None) or 0)
        if self.num_frames < 1:
            raise ValueError("num_frames must be given (or set on the processor).")
        self.sampling = default(sampling, "sampling", "uniform")
        self.frame_stride = int(default(frame_stride, "frame_stride", 4))
        self.short_video = default(short_video, "short_video", "repeat")
        self.seek_threshold = default(seek_threshold, "seek_threshold", 64)
        self.num_clips = 1 if train else int(default(num_clips, "num_clips", 1))
        self.num_crops = 1 if train else int(default(num_crops, "num_crops", 1))
        if transform is not None:
            self.transform = transform
        elif self.processor is None:
            if not callable(processor_or_transform):
                raise TypeError(
                    "processor_or_transform must be a VideoMambaVideoProcessor or a callable clip transform, got "
                    f"{type(processor_or_transform).__name__}."
                )
            self.transform = processor_or_transform
        else:
            # Training: the processor's augmentation; evaluation: the processor itself (resize, crops, normalise).
            self.transform = self.processor.train_transform() if train else None
        if self.transform is not None and self.num_crops > 1:
            raise ValueError("num_crops > 1 needs the processor's evaluation path: do not pass a transform.")
        self._warned = set()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def _rng(self) -> np.random.Generator:
        # torch's generator is seeded per DataLoader worker and by accelerate's set_seed: derive numpy's from it.
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def _frame_indices(self, total: int) -> np.ndarray:
        if self.train:
            return sample_frame_indices(
                total, self.num_frames, self.sampling, self.frame_stride, rng=self._rng(), short_video=self.short_video
            )[None]
        return sample_multiview_indices(
            total, self.num_frames, self.num_clips, self.sampling, self.frame_stride, self.short_video
        )

    def load_clip(self, index: int) -> torch.Tensor:
        """Decoded, transformed `pixel_values` of sample `index` (raises on unreadable videos)."""
        path, _ = self.samples[index]
        indices = self._frame_indices(get_num_frames(path))
        frames = read_video_frames(path, indices.reshape(-1), seek_threshold=self.seek_threshold)
        clips = torch.from_numpy(frames).permute(0, 3, 1, 2).reshape(*indices.shape, 3, *frames.shape[1:3])
        if self.transform is not None:
            views = [self.transform(clip) for clip in clips]
        else:
            processed = self.processor(
                [clip for clip in clips], do_sample_frames=False, num_clips=1, num_crops=self.num_crops,
                input_data_format="channels_first",
            )["pixel_values"]
            views = []
            for item in processed:
                views.extend(item if item.ndim == 5 else [item])
        return views[0] if len(views) == 1 else torch.stack(views)

    def __getitem__(self, index: int) -> dict:
        path, label = self.samples[index]
        try:
            pixel_values = self.load_clip(index)
        except (ValueError, FileNotFoundError) as err:
            if not self.skip_bad_videos:
                raise
            if path not in self._warned:
                self._warned.add(path)
                warnings.warn(f"Skipping unreadable video {path}: {err}", stacklevel=2)
            replacement = int(torch.randint(0, len(self.samples), (1,)).item())
            if len(self._warned) >= len(self.samples):
                raise ValueError("No video of the dataset could be read.") from err
            return self[replacement]
        return {"pixel_values": pixel_values, "labels": int(label)}


def collate_video_batch(examples: list[dict]) -> dict:
    """Stack `VideoClipDataset` items: `pixel_values` `(batch, [views,] frames, 3, H, W)`, `labels` `(batch,)`."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    labels = torch.tensor([int(example["labels"]) for example in examples], dtype=torch.long)
    return {"pixel_values": pixel_values, "labels": labels}


__all__ = ["VideoClipDataset", "collate_video_batch", "load_video_samples", "read_labels_file"]
