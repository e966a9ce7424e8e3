# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Helpers shared by `run_distillation.py` and `run_masked_pretraining.py` (data, resuming, learning rate)."""

import logging
import os

import torch
from transformers.trainer_utils import get_last_checkpoint


logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_data_dir(args) -> str:
    """`--demo_data_dir` (written on first use) or `--data_dir`."""
    if args.demo_data_dir:
        from videomamba.demo_data import make_demo_videos

        return str(make_demo_videos(args.demo_data_dir))
    if not args.data_dir:
        raise ValueError("Pass --data_dir (a video folder) or --demo_data_dir (the built-in demo videos).")
    return args.data_dir


def build_video_datasets(
    data_dir: str,
    num_frames: int,
    image_size: int,
    train_split: str,
    eval_split: str | None,
    hflip_prob: float = 0.5,
    min_crop_scale: float = 0.08,
):
    """Training and evaluation clip datasets, the class names and the video processor, through the package's video
    data layer (`videomamba.data`): a folder with class subfolders per split, or list files. Training clips get the
    processor's augmentation (random resized crop with scale `(min_crop_scale, 1)`, horizontal flips with
    `hflip_prob`: set it to 0 where classes depend on left/right, as in the demo data and Something-Something)."""
    from videomamba.data import VideoClipDataset, load_video_samples
    from videomamba import VideoMambaVideoProcessor

    processor = VideoMambaVideoProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        num_frames=num_frames,
    )
    train_samples, class_names = load_video_samples(data_dir, split=train_split)
    transform = None
    if hasattr(processor, "train_transform"):
        transform = processor.train_transform(scale=(min_crop_scale, 1.0), hflip_prob=hflip_prob)
    train_dataset = VideoClipDataset(train_samples, processor, num_frames, train=True, transform=transform)
    eval_dataset = None
    if eval_split:
        try:
            eval_samples, _ = load_video_samples(data_dir, split=eval_split)
        except (FileNotFoundError, ValueError) as error:
            logger.warning(f"No evaluation split {eval_split!r} ({error}); training without evaluation.")
        else:
            eval_dataset = VideoClipDataset(eval_samples, processor, num_frames, train=False)
    return train_dataset, eval_dataset, class_names, processor


def resolve_resume(training_args) -> str | None:
    """`--resume_from_checkpoint`, else the last complete checkpoint in `--output_dir` (if any)."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last is not None:
            logger.info(f"Resuming from {last} (pass another --output_dir to start afresh).")
        return last
    return None


def resolve_dtype(name: str, training_args):
    """`auto`: bf16 / fp16 when training in it, else the model's own dtype (None)."""
    if name == "auto":
        return torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} or auto, got {name!r}.")
    return DTYPES[name]


def scale_learning_rate(training_args, reference_batch_size: int | None) -> None:
    """The official linear rule: `lr = learning_rate * total_batch / reference_batch_size` (no-op when None)."""
    if not reference_batch_size:
        return
    total = (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    training_args.learning_rate *= total / reference_batch_size
    logger.info(f"Learning rate scaled to the total batch of {total}: {training_args.learning_rate:.3g}")


def parse_config_overrides(text: str | None) -> dict:
    """`"num_hidden_layers=12,hidden_size=256"` -> `{"num_hidden_layers": 12, "hidden_size": 256}` (ints, floats,
    booleans and strings)."""
    overrides = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"config_overrides items are key=value, got {item!r}.")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        else:
            value = {"true": True, "false": False}.get(value.lower(), value)
        overrides[key.strip()] = value
    return overrides
