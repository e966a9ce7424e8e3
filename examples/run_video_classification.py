#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Fine-tune VideoMamba for video classification with 🤗 Accelerate, without the Trainer.

    accelerate launch examples/run_video_classification.py                      # built-in demo, runs on a CPU
    accelerate launch examples/run_video_classification.py \\
        --data_dir path/to/videos --model_name_or_path path/to/videomamba --num_frames 8 --output_dir out

Data: a `datasets` video folder (`--data_dir` with `train/<class>/*.mp4` and `val/<class>/*.mp4`), or list files of
the official recipes (`--train_file`, `--validation_file`: "<path> <label index>" per line, `--video_root`,
`--labels_file`). With no data arguments the built-in demo data (moving digits, 4 motion-direction classes) is written
first with `videomamba.demo_data.make_demo_videos` and a small VideoMamba is trained on it.

Model: from scratch (`--model_preset tiny|small|middle|demo`, `--config_overrides`), from a saved VideoMamba folder
(`--model_name_or_path`), or from an image checkpoint, whose position tables are inflated to `--num_frames` (a new head
is made when the label count differs).

Recipe: AdamW with warmup + cosine decay, layer-wise lr decay (`--layer_decay`), no weight decay on the position / cls /
temporal embeddings, `A_log`, `D`, norms and biases; random resized crop (+ flip) on clips; uniform segment sampling
(`--sampling dense` for strided clips); evaluation top-1 / top-5 every epoch, and multi-view (`--eval_num_clips 4
--eval_num_crops 3` as for Kinetics-400) at the end. Checkpoints every N steps (`--checkpointing_steps`, resumable with
`--resume_from_checkpoint`), TensorBoard (`--with_tracking`), and at the end `save_pretrained` of model + video
processor with a model card.
"""

import argparse
import json
import logging
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler


try:
    import videomamba
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import videomamba

from videomamba import (
    VideoMambaConfig,
    VideoMambaForVideoClassification,
    VideoMambaVideoProcessor,
    average_view_logits,
)
from videomamba.data import VideoClipDataset, collate_video_batch, load_video_samples
from videomamba.training_utils import (
    atomic_directory,
    model_card,
    move_files_into,
    param_groups,
    topk_correct,
)


logger = get_logger(__name__)

# A VideoMamba small enough to learn the demo on two CPU cores in a few minutes: 8 frames of 32x32 (the 64x64 videos
# downscaled) in 16x16 patches (4 patches a frame, 33 tokens), 4 bidirectional Mamba blocks of width 64, state size 8.
# Mamba's dt initialisation (steps of 0.001-0.1, slow decays) instead of the official VideoMamba one (dt_proj bias 0,
# steps of ~0.7, so a state loses half or more per token): the cls token, first in the sequence and read by the backward
# scan, then hears every frame from the start. From scratch it learned the demo faster (validation top-1 100% after
# 360 steps; 92% after 450 with the official init, same data and seed).
DEMO_MODEL = {"hidden_size": 64, "num_hidden_layers": 4, "patch_size": 16, "state_size": 8, "use_mamba_dt_init": True}

# Defaults that differ between the CPU demo and real data (flags left unset take these).
DEMO_DEFAULTS = {
    "model_preset": "demo",
    "num_frames": 8,
    "image_size": 32,
    "per_device_train_batch_size": 16,
    "learning_rate": 1e-3,  # learns faster here than 5e-4 or 2e-3; 4e-3 stalls
    "weight_decay": 0.05,
    "num_train_epochs": 15,  # 450 steps; in-memory runs of this setup reached 98-100% top-1 after 300 (4 seeds)
    "warmup_ratio": 0.1,
    "drop_path_rate": 0.0,
    "hflip_prob": 0.0,  # the classes are motion directions: a flip turns "left" into "right"
    "train_crop_scale_min": 0.5,
    "output_dir": "videomamba-demo",
}
GENERAL_DEFAULTS = {
    "num_frames": 8,
    "image_size": 224,
    "per_device_train_batch_size": 8,
    "learning_rate": 2e-4,
    "weight_decay": 0.05,
    "num_train_epochs": 10,
    "warmup_ratio": 0.1,
    "drop_path_rate": 0.1,
    "hflip_prob": 0.5,
    "train_crop_scale_min": 0.08,
    "output_dir": "videomamba-finetuned",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Fine-tune VideoMamba on a video classification dataset (runs the built-in demo without data).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data (none: the built-in demo data)")
    data.add_argument("--data_dir", type=str, default=None,
                      help="A video folder: <data_dir>/train/<class>/*.mp4 and <data_dir>/val/<class>/*.mp4.")
    data.add_argument("--train_file", type=str, default=None, help="A list file: '<path> <label index>' per line.")
    data.add_argument("--validation_file", type=str, default=None, help="The validation list file.")
    data.add_argument("--video_root", type=str, default=None,
                      help="Folder that the list files' relative paths start from (default: the list file's folder).")
    data.add_argument("--labels_file", type=str, default=None,
                      help="Class names, one per line in label order (default: labels.txt beside the list file).")
    data.add_argument("--demo_dir", type=str, default="videomamba_demo_data",
                      help="Where the demo data is written (and reused) when no data is given.")
    data.add_argument("--demo_videos_per_class", type=int, default=120,
                      help="Demo training videos per class (a quarter as many, at most 24, for validation). From "
                           "scratch, VideoMamba needs a few hundred videos to learn motion rather than memorise digits.")
    data.add_argument("--max_train_samples", type=int, default=None, help="Truncate the training set (debugging).")
    data.add_argument("--max_eval_samples", type=int, default=None, help="Truncate the validation set (debugging).")
    data.add_argument("--skip_bad_videos", action="store_true",
                      help="Replace videos that cannot be decoded by other samples (with a warning) instead of failing.")
    data.add_argument("--num_workers", type=int, default=None,
                      help="DataLoader worker processes (default: CPU count - 1, at most 8).")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", type=str, default=None,
                       help="A saved VideoMamba folder (video or image model) to fine-tune.")
    model.add_argument("--model_preset", type=str, default=None, choices=["tiny", "small", "middle", "demo"],
                       help="Train from scratch at a preset size (the demo's default is 'demo', 4 x 96).")
    model.add_argument("--config_overrides", type=str, default=None,
                       help="Config values for a model trained from scratch, e.g. 'hidden_size=128,num_hidden_layers=6'.")
    model.add_argument("--num_frames", type=int, default=None, help="Frames per clip (T).")
    model.add_argument("--image_size", type=int, default=None, help="Crop size fed to the model.")
    model.add_argument("--sampling", type=str, default="uniform", choices=["uniform", "dense"],
                       help="Frame sampling: one frame per segment (uniform) or frames --frame_stride apart (dense).")
    model.add_argument("--frame_stride", type=int, default=4, help="Frame stride of dense sampling.")
    model.add_argument("--drop_path_rate", type=float, default=None, help="Stochastic depth rate.")
    model.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for activation memory.")

    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", type=str, default=None, help="Where checkpoints and the final model go.")
    train.add_argument("--per_device_train_batch_size", type=int, default=None)
    train.add_argument("--per_device_eval_batch_size", type=int, default=None, help="Default: the training batch size.")
    train.add_argument("--learning_rate", type=float, default=None, help="Peak learning rate (of the head).")
    train.add_argument("--weight_decay", type=float, default=None)
    train.add_argument("--layer_decay", type=float, default=None,
                       help="Layer-wise lr decay (default 0.75 when fine-tuning a checkpoint, 1.0 from scratch).")
    train.add_argument("--lr_scheduler_type", type=str, default="cosine",
                       help="A transformers scheduler name (cosine, linear, constant_with_warmup, ...).")
    train.add_argument("--warmup_ratio", type=float, default=None, help="Warmup as a fraction of the training steps.")
    train.add_argument("--num_warmup_steps", type=int, default=None, help="Warmup steps (overrides --warmup_ratio).")
    train.add_argument("--num_train_epochs", type=int, default=None)
    train.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping (0 disables it).")
    train.add_argument("--label_smoothing", type=float, default=0.0)
    train.add_argument("--train_crop_scale_min", type=float, default=None,
                       help="Smallest area fraction of the random resized crop.")
    train.add_argument("--hflip_prob", type=float, default=None, help="Horizontal flip probability.")
    train.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"],
                       help="Overrides the `accelerate launch` / `accelerate config` setting.")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--cpu", action="store_true", help="Train on the CPU even when a GPU is available.")

    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval_num_clips", type=int, default=1,
                            help="Temporal views of the final evaluation (4 for Kinetics-400, 2 for SSv2).")
    evaluation.add_argument("--eval_num_crops", type=int, default=1,
                            help="Spatial views of the final evaluation (3 in the recipes).")
    evaluation.add_argument("--eval_every_epochs", type=int, default=1, help="Single-view validation every N epochs.")

    saving = parser.add_argument_group("checkpoints and logging")
    saving.add_argument("--checkpointing_steps", type=str, default=None,
                        help="Save a resumable checkpoint every N optimizer steps, or 'epoch'.")
    saving.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep only the newest N checkpoints.")
    saving.add_argument("--resume_from_checkpoint", type=str, default=None,
                        help="A checkpoint folder (step_N / epoch_N) or 'latest' (the newest in --output_dir).")
    saving.add_argument("--with_tracking", action="store_true", help="Log metrics to the trackers of --report_to.")
    saving.add_argument("--report_to", type=str, default="tensorboard", help="tensorboard, wandb, all, ...")
    saving.add_argument("--logging_steps", type=int, default=10, help="Log the training loss every N steps.")
    saving.add_argument("--model_name", type=str, default=None, help="Name of the model in the model card.")
    args = parser.parse_args(argv)

    args.demo = not (args.data_dir or args.train_file)
    if args.train_file and not args.validation_file:
        parser.error("--train_file needs --validation_file.")
    if args.model_name_or_path and args.model_preset:
        parser.error("Pass either --model_name_or_path (fine-tune) or --model_preset (from scratch), not both.")
    if not (args.demo or args.model_name_or_path or args.model_preset):
        parser.error("Pass --model_name_or_path (a saved VideoMamba) or --model_preset (tiny, small, middle, demo).")
    defaults = DEMO_DEFAULTS if args.demo else GENERAL_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key, None) is None and not (key in ("num_frames", "image_size") and args.model_name_or_path):
            setattr(args, key, value)
    if args.per_device_eval_batch_size is None:
        args.per_device_eval_batch_size = args.per_device_train_batch_size
    if args.checkpointing_steps is not None and args.checkpointing_steps != "epoch":
        if not args.checkpointing_steps.isdigit() or int(args.checkpointing_steps) < 1:
            parser.error("--checkpointing_steps must be a positive integer or 'epoch'.")
        args.checkpointing_steps = int(args.checkpointing_steps)
    if args.num_workers is None:
        args.num_workers = max(0, min(8, (os.cpu_count() or 1) - 1))
    return args


def tune_cpu_allocator():
    """Keep freed memory in the process instead of handing it back to the OS after every op (glibc `mallopt`).

    The pure PyTorch selective scan, the CPU path, allocates (batch, length, channels, state) temporaries; glibc
    returns them to the kernel and the next op faults the pages in again, which costs about a fifth of the CPU time of
    a training step. No effect on other C libraries or platforms.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: trim the heap only above 1 GiB of free memory
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: serve blocks up to 32 MiB from the (reused) heap
    except (OSError, AttributeError):
        pass


def limit_cpu_threads(num_workers):
    """Leave the DataLoader workers their cores: at most `cpu_count - num_workers` intra-op threads (at least one).

    PyTorch starts one thread per core; with busy workers beside them the cores are oversubscribed, and OpenMP threads
    spinning at a barrier while a peer waits for a core slow a step of small ops (the CPU scan) down many times over:
    on 2 shared cores the demo model trained at 5 clips/s with 2 threads and 1 worker, at 60-90 with 1 thread. An
    explicit `OMP_NUM_THREADS` is left alone.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, min(torch.get_num_threads(), available - num_workers))
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
        logger.info(f"Using {threads} CPU thread(s) for the model, leaving {num_workers} core(s) to data workers.")


# ----------------------------------------------------------------------------------------------------------------------
# Data and model
# ----------------------------------------------------------------------------------------------------------------------


def load_data(args, accelerator):
    """`(train_samples, eval_samples, class_names, dataset_name)`."""
    if args.demo:
        from videomamba.demo_data import make_demo_videos

        with accelerator.main_process_first():
            if accelerator.is_main_process:
                logger.info(f"No data given: writing the built-in demo videos to {args.demo_dir} (reused if present).")
            start = time.perf_counter()
            make_demo_videos(
                args.demo_dir,
                num_train_per_class=args.demo_videos_per_class,
                num_val_per_class=max(1, min(24, args.demo_videos_per_class // 4)),
            )
            if accelerator.is_main_process:
                logger.info(f"Demo data ready in {time.perf_counter() - start:.1f}s.")
        train_samples, class_names = load_video_samples(Path(args.demo_dir) / "train.txt")
        eval_samples, _ = load_video_samples(Path(args.demo_dir) / "val.txt")
        name = "videomamba demo (moving digits)"
    elif args.data_dir:
        train_samples, class_names = load_video_samples(args.data_dir, split="train")
        eval_samples, eval_names = load_video_samples(args.data_dir, split="validation")
        if eval_names != class_names:
            raise ValueError(f"Train classes {class_names} and validation classes {eval_names} differ.")
        name = Path(args.data_dir).resolve().name
    else:
        train_samples, class_names = load_video_samples(args.train_file, video_root=args.video_root,
                                                        labels_file=args.labels_file)
        eval_samples, eval_names = load_video_samples(args.validation_file, video_root=args.video_root,
                                                      labels_file=args.labels_file)
        if len(eval_names) > len(class_names):
            class_names = eval_names
        name = Path(args.train_file).resolve().parent.name
    generator = torch.Generator().manual_seed(args.seed)
    if args.max_train_samples is not None:
        order = torch.randperm(len(train_samples), generator=generator)[: args.max_train_samples]
        train_samples = [train_samples[i] for i in order.tolist()]
    if args.max_eval_samples is not None:
        order = torch.randperm(len(eval_samples), generator=generator)[: args.max_eval_samples]
        eval_samples = [eval_samples[i] for i in order.tolist()]
    return train_samples, eval_samples, class_names, name


def parse_config_overrides(text):
    overrides = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--config_overrides takes key=value pairs, got {item!r}.")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return overrides


def build_model(args, class_names):
    """The model, whether it was initialised from a checkpoint, and a one-line description of its origin."""
    id2label = dict(enumerate(class_names))
    label2id = {name: i for i, name in id2label.items()}
    if args.model_name_or_path:
        saved = VideoMambaConfig.from_pretrained(args.model_name_or_path)
        if args.num_frames is None:
            args.num_frames = saved.num_frames if saved.num_frames > 1 else 8
        if args.image_size is None:
            args.image_size = saved.image_size
        same_head = saved.num_labels == len(class_names) and [saved.id2label[i] for i in range(saved.num_labels)] == [
            id2label[i] for i in range(len(class_names))
        ]
        model = VideoMambaForVideoClassification.from_pretrained(
            args.model_name_or_path,
            num_frames=args.num_frames,
            image_size=args.image_size,
            num_labels=len(class_names),
            id2label=id2label,
            label2id=label2id,
            drop_path_rate=args.drop_path_rate,
            ignore_mismatched_sizes=True,
        )
        if not same_head and saved.num_labels == len(class_names):
            # Same number of classes under other names: the old head means something else, start it afresh.
            torch.nn.init.trunc_normal_(model.classifier.weight, std=model.config.initializer_range)
            torch.nn.init.zeros_(model.classifier.bias)
        kind = "image" if saved.num_frames == 1 else "video"
        origin = (
            f"fine-tuned from the {kind} checkpoint {args.model_name_or_path} ({saved.num_frames} -> {args.num_frames} "
            f"frames, {saved.image_size} -> {args.image_size} px, head {'kept' if same_head else 'new'})"
        )
        return model, True, origin
    preset = args.model_preset
    kwargs = dict(
        num_frames=args.num_frames,
        image_size=args.image_size,
        num_labels=len(class_names),
        id2label=id2label,
        label2id=label2id,
        drop_path_rate=args.drop_path_rate,
    )
    kwargs.update(parse_config_overrides(args.config_overrides))
    if preset == "demo":
        config = VideoMambaConfig(**{**DEMO_MODEL, **kwargs})
    else:
        config = VideoMambaConfig.from_preset(preset, **kwargs)
    origin = f"trained from scratch ({preset}: {config.num_hidden_layers} x {config.hidden_size})"
    return VideoMambaForVideoClassification(config), False, origin


def build_processor(args):
    processor = None
    if args.model_name_or_path and (Path(args.model_name_or_path) / "video_preprocessor_config.json").is_file():
        processor = VideoMambaVideoProcessor.from_pretrained(args.model_name_or_path)
    processor = processor or VideoMambaVideoProcessor()
    processor.num_frames = args.num_frames
    processor.size = {"shortest_edge": args.image_size}
    processor.crop_size = {"height": args.image_size, "width": args.image_size}
    processor.sampling = args.sampling
    processor.frame_stride = args.frame_stride
    processor.num_clips = processor.num_crops = 1
    return processor


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation and checkpoints
# ----------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, dataloader, accelerator, desc="eval"):
    """Top-1 / top-5 / loss over `dataloader`; multi-view batches `(B, V, T, C, H, W)` average the views' softmax."""
    model.eval()
    totals = {"top1": 0, "top5": 0, "loss": 0.0, "count": 0}
    for batch in tqdm(dataloader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        pixel_values, labels = batch["pixel_values"], batch["labels"]
        if pixel_values.ndim == 6:
            num_views = pixel_values.shape[1]
            logits = model(pixel_values=pixel_values.flatten(0, 1)).logits.float()
            probs = average_view_logits(logits, num_views, softmax=True)
        else:
            probs = model(pixel_values=pixel_values).logits.float().softmax(-1)
        probs, labels = accelerator.gather_for_metrics((probs, labels))
        correct = topk_correct(probs, labels, ks=(1, 5))
        totals["top1"] += correct[1]
        totals["top5"] += correct[5]
        totals["loss"] += float(F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum"))
        totals["count"] += labels.shape[0]
    count = max(totals["count"], 1)
    return {"top1": totals["top1"] / count, "top5": totals["top5"] / count, "loss": totals["loss"] / count,
            "num_samples": totals["count"]}


_CHECKPOINT_RE = re.compile(r"^(step|epoch)_(\d+)$")


def list_checkpoints(output_dir):
    """Complete checkpoint folders in `output_dir`, oldest first (temporary `.tmp-*` folders are ignored)."""
    found = []
    for path in Path(output_dir).glob("*"):
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir() and (path / "training_state.json").is_file():
            state = json.loads((path / "training_state.json").read_text())
            found.append((state["completed_steps"], path.stat().st_mtime, path))
    return [path for *_, path in sorted(found)]


def save_checkpoint(accelerator, args, name, state):
    """`accelerator.save_state` into `output_dir/name`, written under a temporary name and renamed when complete."""
    final = Path(args.output_dir) / name
    accelerator.wait_for_everyone()
    tmp = Path(args.output_dir) / f".tmp-{name}"
    if accelerator.is_main_process and tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "training_state.json").write_text(json.dumps(state, indent=1))
        with atomic_directory(final) as target:
            move_files_into(tmp, target)
        if args.checkpoints_total_limit:
            import shutil

            for old in list_checkpoints(args.output_dir)[: -args.checkpoints_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info(f"Saved checkpoint {final}")
    accelerator.wait_for_everyone()


def resolve_checkpoint(args):
    if args.resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(args.output_dir)
        if not checkpoints:
            logger.warning(f"--resume_from_checkpoint latest: no checkpoint in {args.output_dir}, starting afresh.")
            return None
        return checkpoints[-1]
    path = Path(args.resume_from_checkpoint)
    if not (path / "training_state.json").is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint of this script (no training_state.json).")
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    accelerator_kwargs = {}
    if args.with_tracking:
        accelerator_kwargs["log_with"] = args.report_to
        accelerator_kwargs["project_dir"] = args.output_dir
    if args.mixed_precision is not None:
        accelerator_kwargs["mixed_precision"] = args.mixed_precision
    accelerator = Accelerator(
        cpu=args.cpu,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        **accelerator_kwargs,
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.device.type == "cpu":
        torch.set_flush_denormal(True)  # the scan's decays underflow into slow denormal floats on CPUs
        tune_cpu_allocator()
        limit_cpu_threads(args.num_workers)
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()

    train_samples, eval_samples, class_names, dataset_name = load_data(args, accelerator)
    model, from_checkpoint, origin = build_model(args, class_names)
    processor = build_processor(args)
    if args.layer_decay is None:
        args.layer_decay = 0.75 if from_checkpoint else 1.0
    if args.gradient_checkpointing:
        # transformers >= 5.2x names it activation_checkpointing_enable (gradient_checkpointing_enable is deprecated)
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    num_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model: VideoMamba {model.config.num_hidden_layers} x {model.config.hidden_size} "
                f"({num_params / 1e6:.2f}M parameters), {origin}.")
    logger.info(f"Data: {len(train_samples)} training / {len(eval_samples)} validation videos, "
                f"{len(class_names)} classes; clips of {args.num_frames} frames at {args.image_size}px.")

    train_transform = processor.train_transform(scale=(args.train_crop_scale_min, 1.0), hflip_prob=args.hflip_prob)
    # Seeded per (seed, epoch, sample): augmentation is reproducible and resumes exactly, with any worker count.
    train_dataset = VideoClipDataset(train_samples, processor, train=True, transform=train_transform,
                                     skip_bad_videos=args.skip_bad_videos, seed=args.seed)
    eval_dataset = VideoClipDataset(eval_samples, processor, train=False, num_clips=1, num_crops=1,
                                    skip_bad_videos=args.skip_bad_videos)
    loader_kwargs = dict(num_workers=args.num_workers, collate_fn=collate_video_batch,
                         pin_memory=accelerator.device.type == "cuda")
    # A generator of its own: making a DataLoader iterator draws from it, not from the global RNG that checkpoints
    # restore (model randomness such as drop path stays identical after resuming). Workers are not persistent so
    # that they see the dataset's epoch.
    train_dataloader = DataLoader(train_dataset, batch_size=args.per_device_train_batch_size, shuffle=True,
                                  generator=torch.Generator().manual_seed(args.seed), **loader_kwargs)
    eval_dataloader = DataLoader(eval_dataset, batch_size=args.per_device_eval_batch_size,
                                 persistent_workers=args.num_workers > 0, **loader_kwargs)

    groups = param_groups(model, args.learning_rate, args.weight_decay, args.layer_decay)
    for group in groups:
        group.pop("param_names")
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.999))

    # Steps are counted after `prepare`, which shards the data across processes.
    overrode_max_train_steps = args.max_train_steps is None
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    if overrode_max_train_steps:
        args.max_train_steps = args.num_train_epochs * steps_per_epoch
    warmup = args.num_warmup_steps
    if warmup is None:
        warmup = int(round(args.warmup_ratio * args.max_train_steps))
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=warmup * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, train_dataloader, eval_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, lr_scheduler
    )
    steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    if overrode_max_train_steps:
        args.max_train_steps = args.num_train_epochs * steps_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / steps_per_epoch)

    if args.with_tracking:
        config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers("run_video_classification", config)

    total_batch_size = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Num examples = {len(train_dataset)}, num epochs = {args.num_train_epochs}, "
                f"total batch size = {total_batch_size}, optimization steps = {args.max_train_steps}")
    logger.info(f"  lr = {args.learning_rate} (layer decay {args.layer_decay}), weight decay = {args.weight_decay}, "
                f"warmup = {warmup} steps, {args.lr_scheduler_type} schedule, mixed precision = "
                f"{accelerator.mixed_precision}")

    completed_steps, starting_epoch, resume_batches, resumed_from = 0, 0, 0, None
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(args)
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint))
            state = json.loads((checkpoint / "training_state.json").read_text())
            completed_steps = resumed_from = state["completed_steps"]
            starting_epoch = state["epoch"]
            resume_batches = state["batches_into_epoch"]
            if resume_batches >= len(train_dataloader):
                starting_epoch, resume_batches = starting_epoch + 1, 0
            logger.info(f"Resumed from {checkpoint}: step {completed_steps}, epoch {starting_epoch}, "
                        f"batch {resume_batches}.")

    progress_bar = tqdm(range(args.max_train_steps), initial=completed_steps, desc="train",
                        disable=not accelerator.is_local_main_process)
    history = []
    eval_metrics = {}
    train_time, train_clips = 0.0, 0
    steady_time, steady_clips, warm_steps = 0.0, 0, 5
    running_loss, running_count = 0.0, 0
    on_cuda = accelerator.device.type == "cuda"
    if on_cuda:  # long clips: report the training step's peak memory and its share per frame
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    static_memory, train_peak_memory = None, 0  # static: weights + optimizer state, measured after the first step
    for epoch in range(starting_epoch, args.num_train_epochs):
        model.train()
        train_dataloader.set_epoch(epoch)
        train_dataset.set_epoch(epoch)
        active_dataloader = train_dataloader
        batches_done = 0
        if epoch == starting_epoch and resume_batches:
            active_dataloader = accelerator.skip_first_batches(train_dataloader, resume_batches)
            batches_done = resume_batches
        step_start = time.perf_counter()
        for batch in active_dataloader:
            with accelerator.accumulate(model):
                outputs = model(pixel_values=batch["pixel_values"])
                loss = F.cross_entropy(outputs.logits.float(), batch["labels"], label_smoothing=args.label_smoothing)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            batches_done += 1
            if on_cuda:
                train_peak_memory = max(train_peak_memory, torch.cuda.max_memory_allocated(accelerator.device))
                if static_memory is None and accelerator.sync_gradients:
                    static_memory = torch.cuda.memory_allocated(accelerator.device)
            running_loss += loss.detach().float().item()
            running_count += 1
            clips = batch["pixel_values"].shape[0] * accelerator.num_processes
            elapsed = time.perf_counter() - step_start
            train_time += elapsed
            train_clips += clips
            if completed_steps >= warm_steps:
                steady_time += elapsed
                steady_clips += clips
            if accelerator.sync_gradients:
                completed_steps += 1
                progress_bar.update(1)
                progress_bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr_scheduler.get_last_lr()[-1]:.2e}",
                                         epoch=epoch)
                if completed_steps % args.logging_steps == 0 or completed_steps == args.max_train_steps:
                    train_loss = running_loss / max(running_count, 1)
                    history.append({"step": completed_steps, "epoch": epoch, "train_loss": train_loss})
                    if args.with_tracking:
                        accelerator.log({"train/loss": train_loss, "train/lr": lr_scheduler.get_last_lr()[-1],
                                         "train/clips_per_second": clips / max(elapsed, 1e-9)}, step=completed_steps)
                    running_loss, running_count = 0.0, 0
                if isinstance(args.checkpointing_steps, int) and completed_steps % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, args, f"step_{completed_steps}", {
                        "completed_steps": completed_steps, "epoch": epoch, "batches_into_epoch": batches_done})
            if completed_steps >= args.max_train_steps:
                break
            step_start = time.perf_counter()

        last_epoch = epoch == args.num_train_epochs - 1 or completed_steps >= args.max_train_steps
        if (epoch + 1) % args.eval_every_epochs == 0 or last_epoch:
            eval_metrics = evaluate(model, eval_dataloader, accelerator, desc=f"eval epoch {epoch}")
            logger.info(f"epoch {epoch}: validation top-1 {100 * eval_metrics['top1']:.1f}%, top-5 "
                        f"{100 * eval_metrics['top5']:.1f}%, loss {eval_metrics['loss']:.3f} "
                        f"(step {completed_steps}, {train_clips / max(train_time, 1e-9):.1f} training clips/s)")
            history.append({"step": completed_steps, "epoch": epoch,
                            **{f"eval_{k}": v for k, v in eval_metrics.items() if k != "num_samples"}})
            if args.with_tracking:
                accelerator.log({f"eval/{k}": v for k, v in eval_metrics.items()}, step=completed_steps)
            model.train()
        if args.checkpointing_steps == "epoch":
            save_checkpoint(accelerator, args, f"epoch_{epoch}", {
                "completed_steps": completed_steps, "epoch": epoch, "batches_into_epoch": len(train_dataloader)})
        if completed_steps >= args.max_train_steps:
            break
    progress_bar.close()

    results = {
        "eval_top1": eval_metrics.get("top1"),
        "eval_top5": eval_metrics.get("top5"),
        "eval_loss": eval_metrics.get("loss"),
        "eval_num_samples": eval_metrics.get("num_samples"),
    }
    num_views = args.eval_num_clips * args.eval_num_crops
    if num_views > 1:
        multiview_dataset = VideoClipDataset(eval_samples, processor, train=False, num_clips=args.eval_num_clips,
                                             num_crops=args.eval_num_crops, skip_bad_videos=args.skip_bad_videos)
        multiview_batch = max(1, args.per_device_eval_batch_size // num_views)
        multiview_dataloader = accelerator.prepare(DataLoader(multiview_dataset, batch_size=multiview_batch,
                                                              **loader_kwargs))
        views = evaluate(model, multiview_dataloader, accelerator,
                         desc=f"eval {args.eval_num_clips}x{args.eval_num_crops} views")
        results.update({"eval_multiview_top1": views["top1"], "eval_multiview_top5": views["top5"],
                        "eval_multiview_loss": views["loss"], "eval_views": f"{args.eval_num_clips}x{args.eval_num_crops}"})
        logger.info(f"{args.eval_num_clips} x {args.eval_num_crops} views: top-1 {100 * views['top1']:.1f}%, "
                    f"top-5 {100 * views['top5']:.1f}%")
    results.update({
        "train_clips_per_second": train_clips / train_time if train_time else None,
        "train_clips_per_second_steady": steady_clips / steady_time if steady_time else None,
        "train_steps": completed_steps,
        "train_steps_this_run": completed_steps - (resumed_from or 0),
        "resumed_from_step": resumed_from,
        "train_runtime_seconds": train_time,
        "wall_time_seconds": time.perf_counter() - wall_start,
        "num_classes": len(class_names),
        "chance_top1": 1 / len(class_names),
    })
    if on_cuda and train_peak_memory and static_memory is not None:
        # activations of one training step per frame of one clip (peak minus what was resident before training)
        frames_per_step = args.per_device_train_batch_size * args.num_frames
        results.update({
            "train_peak_gpu_memory_gib": train_peak_memory / 2**30,
            "train_activation_memory_per_frame_mib": (train_peak_memory - static_memory) / frames_per_step / 2**20,
        })
    if args.with_tracking:
        accelerator.end_training()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        hyperparameters = {
            "origin": origin, "num_frames": args.num_frames, "image_size": args.image_size, "sampling": args.sampling,
            "learning_rate": args.learning_rate, "layer_decay": args.layer_decay, "weight_decay": args.weight_decay,
            "lr_scheduler": args.lr_scheduler_type, "warmup_steps": warmup, "train_batch_size": total_batch_size,
            "epochs": args.num_train_epochs, "steps": completed_steps, "mixed_precision": accelerator.mixed_precision,
            "seed": args.seed,
        }
        name = args.model_name or Path(args.output_dir).resolve().name
        with atomic_directory(Path(args.output_dir) / ".final-model") as staging:
            unwrapped.save_pretrained(staging, safe_serialization=True)
            processor.save_pretrained(staging)
            card = model_card(name, results, dataset_name, class_names, hyperparameters,
                              base_model=args.model_name_or_path)
            (staging / "README.md").write_text(card)
            (staging / "all_results.json").write_text(json.dumps(results, indent=1))
            (staging / "training_history.json").write_text(json.dumps(history, indent=1))
        move_files_into(Path(args.output_dir) / ".final-model", args.output_dir)
        top1 = results["eval_top1"]
        summary = [
            "",
            f"Validation top-1 accuracy: {100 * top1:.1f}% (chance {100 / len(class_names):.1f}%), "
            f"top-5 {100 * results['eval_top5']:.1f}%, on {results['eval_num_samples']} videos.",
        ]
        if num_views > 1:
            summary.append(f"Multi-view ({results['eval_views']}) top-1: {100 * results['eval_multiview_top1']:.1f}%.")
        summary += [
            f"Training: {completed_steps} steps, {results['train_clips_per_second']:.1f} clips/s; wall time "
            f"{results['wall_time_seconds']:.0f}s on {platform.machine()} ({accelerator.device}).",
        ]
        if "train_peak_gpu_memory_gib" in results:
            summary.append(
                f"Peak GPU memory of a training step: {results['train_peak_gpu_memory_gib']:.2f} GiB "
                f"({results['train_activation_memory_per_frame_mib']:.1f} MiB of activations per frame, "
                f"{args.per_device_train_batch_size} x {args.num_frames} frames a step"
                f"{', gradient checkpointing' if args.gradient_checkpointing else ''}).")
        summary += [
            f"Saved model, video processor and model card to {Path(args.output_dir).resolve()}",
            f"Try it:  python -c \"import videomamba; from transformers import pipeline; "
            f"print(pipeline('video-classification', model='{args.output_dir}')('<video.mp4>'))\"",
        ]
        print("\n".join(summary), flush=True)
    accelerator.wait_for_everyone()
    return results


if __name__ == "__main__":
    main()
