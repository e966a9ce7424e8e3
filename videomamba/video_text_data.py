# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Data for video-text pretraining and retrieval: caption files, datasets, a collator and a media-grouped sampler.

Data layout: a folder of videos (or images) plus a captions file, either

- JSON (MSRVTT / UMT style): `[{"video": "video7010.mp4", "caption": "a man is singing"}, ...]`, where `caption` may
  also be a list of captions of that video, and `image` replaces `video` for image-text data; or
- CSV with a header: a media column (`video`, `video_id`, `vid_key`, `image` or `path`) and a caption column
  (`caption`, `sentence`, `text` or `title`), as MSRVTT's `MSRVTT_JSFUSION_test.csv`.

A media name without an extension is looked up on disk with the usual video/image extensions.
"""

import csv
import json
import random
import zlib
from pathlib import Path

import numpy as np
import torch

from .video_io import VIDEO_EXTENSIONS, get_num_frames, read_video_frames, sample_uniform_indices


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_MEDIA_KEYS = ("video", "video_id", "vid_key", "image", "path", "filename")
_CAPTION_KEYS = ("caption", "captions", "sentence", "text", "title")


def _pick(record: dict, keys, what: str, source) -> tuple[str, object]:
    for key in keys:
        if key in record and record[key] not in (None, ""):
            return key, record[key]
    raise ValueError(f"{source}: a record has none of the {what} keys {keys}: {dict(list(record.items())[:4])}.")


def read_caption_file(path) -> list[dict]:
    """Read a JSON or CSV captions file into records `{"media": name, "caption": str, "media_type": "video" |
    "image"}`, one per caption (a video with a list of captions gives several records)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Captions file {path} does not exist.")
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    elif path.suffix.lower() in (".json", ".jsonl"):
        text = path.read_text()
        if path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
            if isinstance(rows, dict):
                rows = rows.get("annotations") or rows.get("sentences") or rows.get("data")
    else:
        raise ValueError(f"Captions file {path} must be .json, .jsonl or .csv.")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: expected a non-empty list of records.")
    records = []
    for row in rows:
        media_key, media = _pick(row, _MEDIA_KEYS, "media", path)
        _, captions = _pick(row, _CAPTION_KEYS, "caption", path)
        media_type = "image" if media_key == "image" else "video"
        for caption in captions if isinstance(captions, list) else [captions]:
            records.append({"media": str(media), "caption": str(caption).strip(), "media_type": media_type})
    return records


def resolve_media_path(root, name: str, media_type: str = "video") -> Path:
    """`root / name`, or `root / (name + extension)` for the first extension that exists."""
    path = Path(root) / name
    if path.exists():
        return path
    for extension in VIDEO_EXTENSIONS if media_type == "video" else IMAGE_EXTENSIONS:
        candidate = path.with_name(path.name + extension)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{media_type} {name!r} not found under {root} (tried the usual extensions too).")


def load_video_frames(path, num_frames: int, random_offset: bool = False, rng=None) -> np.ndarray:
    """Decode `num_frames` frames `(num_frames, height, width, 3)` uint8 of the video at `path`: one per equal segment,
    its middle (evaluation) or a random frame of it (`random_offset`, training; UMT's `rand` sampling). Short videos
    repeat frames. `rng`: a `numpy.random.Generator`; by default one seeded from torch's generator, so the draws follow
    the run's seed (and differ per data-loader worker and epoch)."""
    total = get_num_frames(str(path))
    if random_offset and rng is None:
        rng = np.random.default_rng(int(torch.randint(2**62, (1,))))
    indices = sample_uniform_indices(total, num_frames, rng=rng if random_offset else None)
    frames = np.asarray(read_video_frames(str(path), indices))
    return frames if frames.flags.writeable else frames.copy()


def load_image(path) -> np.ndarray:
    """`(1, height, width, 3)` uint8: an image as a one-frame video."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image.convert("RGB"))[None]  # a writable copy


class VideoTextDataset(torch.utils.data.Dataset):
    """Caption records over a media folder. Items: `{"frames": (T, H, W, 3) uint8, "caption": str, "video_id": int,
    "media_type": str}`; images give one frame. `video_id` numbers the distinct media files (offset by
    `video_id_offset`), so several captions of one video are positives of each other in the contrastive loss.

    Args:
        records: from `read_caption_file`.
        root: the media folder.
        num_frames: frames sampled per video (segment-wise; random within segments when `train`, middles else).
        train: random frame offsets.
        check_files: resolve every file now (clear errors early) instead of at first access.
    """

    def __init__(self, records, root, num_frames: int, train: bool = False, video_id_offset: int = 0,
                 check_files: bool = True):
        if not records:
            raise ValueError("No caption records.")
        self.records = list(records)
        self.root = Path(root)
        self.num_frames = num_frames
        self.train = train
        names = list(dict.fromkeys(r["media"] for r in self.records))
        self.media_names = names
        self._media_index = {name: i for i, name in enumerate(names)}
        self.video_id_offset = video_id_offset
        self._paths = {}
        if check_files:
            for record in self.records:
                self._path(record)

    def _path(self, record) -> Path:
        name = record["media"]
        if name not in self._paths:
            self._paths[name] = resolve_media_path(self.root, name, record["media_type"])
        return self._paths[name]

    def __len__(self):
        return len(self.records)

    @property
    def media_types(self) -> list[str]:
        return [record["media_type"] for record in self.records]

    def __getitem__(self, index):
        record = self.records[index]
        path = self._path(record)
        if record["media_type"] == "image":
            frames = load_image(path)
        else:
            frames = load_video_frames(path, self.num_frames, random_offset=self.train)
        return {
            "frames": frames,
            "caption": record["caption"],
            "video_id": self.video_id_offset + self._media_index[record["media"]],
            "media_type": record["media_type"],
        }


class VideoTextCollator:
    """Batches dataset items with a [`VideoMambaProcessor`]: `pixel_values`, `input_ids`, `attention_mask` (and
    `token_type_ids`) and `video_ids`; with `with_text=False` only `pixel_values` (retrieval galleries). The frames are
    already sampled by the dataset, so the video processor is told not to sample again. A batch must hold one kind of
    media (see `MediaGroupedBatchSampler`).

    With `group_identical_captions`, `video_ids` come from the caption text (a stable hash), so pairs with the same
    caption are positives of each other in the contrastive loss and never negatives for matching: right for templated
    captions (the demo's), where identical captions describe different videos.
    """

    def __init__(self, processor, max_length: int | None = None, with_text: bool = True,
                 group_identical_captions: bool = False):
        self.processor = processor
        self.max_length = max_length
        self.with_text = with_text
        self.group_identical_captions = group_identical_captions

    def __call__(self, features):
        kinds = {feature.get("media_type", "video") for feature in features}
        if len(kinds) > 1:
            raise ValueError(
                "A batch mixes images and videos; sample batches with MediaGroupedBatchSampler (the pretraining "
                "trainer does)."
            )
        kwargs = {"max_length": self.max_length} if self.max_length and self.with_text else {}
        batch = self.processor(
            text=[feature["caption"] for feature in features] if self.with_text else None,
            videos=[feature["frames"] for feature in features],
            return_tensors="pt",
            do_sample_frames=False,
            **kwargs,
        )
        if self.with_text:
            if self.group_identical_captions:
                ids = [zlib.crc32(feature["caption"].encode("utf-8")) for feature in features]
            else:
                ids = [feature["video_id"] for feature in features]
            batch["video_ids"] = torch.tensor(ids, dtype=torch.long)
        return batch


class _EpochSetter:
    def __init__(self, owner):
        self._owner = owner

    def set_epoch(self, epoch: int):
        self._owner.set_epoch(epoch)


class MediaGroupedBatchSampler:
    """Batches of one media type (all images or all videos), shuffled together so image-text and video-text batches
    mix in proportion to their counts (UMT's mixed loader).

    With `num_processes > 1`, batches come in runs of `num_processes` of the same type, so that the processes of a
    data-parallel step (accelerate hands batch `i` to process `i % num_processes`) all see the same media type, and
    gathered embeddings have one shape. The order depends only on `seed` and the epoch (`set_epoch`), so training
    resumes where it stopped.
    """

    def __init__(self, media_types, batch_size: int, num_processes: int = 1, shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.media_types = list(media_types)
        self.batch_size = batch_size
        self.num_processes = max(1, num_processes)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.sampler = _EpochSetter(self)  # accelerate forwards set_epoch through `.sampler`
        if len(self) == 0:
            counts = {kind: self.media_types.count(kind) for kind in set(self.media_types)}
            raise ValueError(
                f"No complete batch: {counts} examples for batch_size={batch_size} x {self.num_processes} processes."
            )

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def _runs(self):
        rng = random.Random(self.seed + self.epoch)
        runs = []
        for kind in sorted(set(self.media_types)):
            indices = [i for i, media in enumerate(self.media_types) if media == kind]
            if self.shuffle:
                rng.shuffle(indices)
            batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
            if batches and len(batches[-1]) < self.batch_size and (self.drop_last or self.num_processes > 1):
                batches.pop()
            usable = len(batches) - len(batches) % self.num_processes
            runs += [batches[i : i + self.num_processes] for i in range(0, usable, self.num_processes)]
        if self.shuffle:
            rng.shuffle(runs)
        return runs

    def __iter__(self):
        for run in self._runs():
            yield from run
        self.epoch += 1

    def __len__(self):
        return sum(len(run) for run in self._runs())


def build_retrieval_set(records, merge_duplicate_captions: bool = False):
    """Gallery and queries for retrieval from caption records.

    Returns `(media_names, texts, text_to_videos)`: the distinct media in order of appearance, the captions, and for
    each caption the list of matching media indices. With `merge_duplicate_captions`, identical captions become one
    query that matches every medium they describe (fair scoring for templated captions such as the demo's).
    """
    media_names = list(dict.fromkeys(r["media"] for r in records))
    index = {name: i for i, name in enumerate(media_names)}
    texts, text_to_videos = [], []
    positions = {}
    for record in records:
        caption, video = record["caption"], index[record["media"]]
        if merge_duplicate_captions and caption in positions:
            targets = text_to_videos[positions[caption]]
            if video not in targets:
                targets.append(video)
            continue
        positions[caption] = len(texts)
        texts.append(caption)
        text_to_videos.append([video])
    return media_names, texts, text_to_videos


def make_demo_image_captions(root, num_images: int = 200, frame_size: int = 64, seed: int = 0):
    """Write still digit images `root/images/<i>.png` with captions "a picture of the digit 3" to
    `root/captions_images.json` (`[{"image": ..., "caption": ...}]`), the image-text half of the offline demo."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from .demo_data import render_moving_digit

    root = Path(root)
    captions_file = root / "captions_images.json"
    if captions_file.exists() and len(json.loads(captions_file.read_text())) == num_images:
        return captions_file
    digits = load_digits()
    rng = np.random.default_rng(seed + 1)
    records = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        index = int(rng.integers(len(digits.images)))
        frame = render_moving_digit(digits.images[index], "left", 1, frame_size, rng)[0]
        relative = f"images/image_{i:05d}.png"
        Image.fromarray(frame).save(root / relative)
        records.append({"image": relative, "caption": f"a picture of the digit {int(digits.target[index])}"})
    captions_file.write_text(json.dumps(records, indent=1))
    return captions_file


__all__ = [
    "read_caption_file",
    "resolve_media_path",
    "load_video_frames",
    "load_image",
    "VideoTextDataset",
    "VideoTextCollator",
    "MediaGroupedBatchSampler",
    "build_retrieval_set",
    "make_demo_image_captions",
]
