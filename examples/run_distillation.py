#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Self-distillation of a VideoMamba classifier from a smaller trained VideoMamba (paper section 3.3).

Launch with accelerate (DDP, FSDP and mixed precision come from its config or flags):

    # the built-in demo data (moving digits, 4 classes), a tiny teacher folder, a small student
    accelerate launch examples/run_distillation.py --demo_data_dir /tmp/videomamba_demo \
        --teacher_model_name_or_path ./teacher_tiny --student_preset small --image_size 64 --num_frames 8 \
        --hflip_prob 0 --min_crop_scale 0.5 --output_dir ./distilled_small --num_train_epochs 10 \
        --per_device_train_batch_size 32 --bf16

    # a video folder (root/train/<class>/*.mp4, root/val/<class>/*.mp4, or train.txt / val.txt list files)
    accelerate launch --multi_gpu --num_processes 8 examples/run_distillation.py --data_dir /data/k400 \
        --teacher_model_name_or_path ./videomamba_s16_k400 --student_preset middle --num_frames 16 \
        --output_dir ./videomamba_m16_k400_distilled --bf16

The paper's recipe (VideoMamba-M distilled from VideoMamba-S, ImageNet-1K, official `exp_distill/.../run224.sh`):
AdamW, learning rate 5e-4 per 512 samples of total batch (pass `--learning_rate 5e-4 --lr_reference_batch_size
512`), cosine schedule with 20 warmup epochs of 300 (`--warmup_steps 0.0667`), weight decay 0.05, drop path 0.5,
gradient clipping 5.0, label smoothing 0.1, mixup 0.8, cutmix 1.0, distillation weight 1, bf16. These are this
script's defaults (drop path, clipping, schedule), except the learning rate scaling, which is opt-in.

The teacher is any trained VideoMamba folder (backbone or classifier) that tokenises clips like the student (same
patch and tubelet size); it is frozen. The output folder holds the student classifier (no distillation head), which
loads in `AutoModelForVideoClassification`; `checkpoint-*` folders hold the head too, and a rerun with the same
`--output_dir` resumes from the last one.
"""

import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import transformers
from transformers import AutoModel, HfArgumentParser, TrainingArguments, set_seed

from videomamba import VideoMambaConfig, VideoMambaForImageClassification, VideoMambaForVideoClassification
from videomamba.trainers import DistillationTrainer, VideoMixup


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recipe_utils import (  # noqa: E402
    build_video_datasets,
    parse_config_overrides,
    resolve_data_dir,
    resolve_dtype,
    resolve_resume,
    scale_learning_rate,
)


logger = logging.getLogger(__name__)


@dataclass
class DistillationArguments:
    # data
    data_dir: str | None = field(
        default=None, metadata={"help": "Video folder (class subfolders per split) or its root with list files."}
    )
    demo_data_dir: str | None = field(
        default=None, metadata={"help": "Write the built-in demo videos here (if not there yet) and train on them."}
    )
    train_split: str = field(default="train")
    eval_split: str | None = field(default="val", metadata={"help": "Split to evaluate on; empty to skip."})
    num_frames: int = field(default=8, metadata={"help": "Frames per clip."})
    image_size: int = field(default=224, metadata={"help": "Frame size after resize and crop."})
    hflip_prob: float = field(
        default=0.5, metadata={"help": "Horizontal flip probability in training (0 for direction-defined classes)."}
    )
    min_crop_scale: float = field(default=0.08, metadata={"help": "Smallest area fraction of the random crop."})
    # teacher
    teacher_model_name_or_path: str = field(
        default=None, metadata={"help": "Trained VideoMamba teacher (folder or Hub id), e.g. VideoMamba-S."}
    )
    teacher_dtype: str = field(
        default="auto", metadata={"help": "float32, bfloat16, float16, or auto (bf16/fp16 with --bf16/--fp16)."}
    )
    # student
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Initialise the student from this folder instead of from scratch."}
    )
    student_preset: str = field(default="middle", metadata={"help": "tiny, small or middle (from scratch)."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config changes for a model from scratch, e.g. 'num_hidden_layers=12,hidden_size=256'."},
    )
    drop_path_rate: float = field(default=0.5, metadata={"help": "Student stochastic depth (paper, M: 0.5)."})
    scan_backend: str = field(default="auto", metadata={"help": "auto, torch, mamba_ssm or triton."})
    # recipe
    distillation_weight: float = field(default=1.0, metadata={"help": "Weight of the token distillation loss."})
    label_smoothing: float = field(default=0.1)
    mixup: float = field(default=0.8, metadata={"help": "Mixup alpha (0 disables)."})
    cutmix: float = field(default=1.0, metadata={"help": "CutMix alpha (0 disables)."})
    mixup_prob: float = field(default=1.0)
    mixup_switch_prob: float = field(default=0.5)
    lr_reference_batch_size: int | None = field(
        default=None,
        metadata={"help": "If set, learning_rate is per this many samples and is scaled to the total batch."},
    )


def compute_metrics(eval_prediction):
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    metrics = {"accuracy": float((logits.argmax(-1) == labels).mean())}
    if logits.shape[-1] > 5:
        top5 = np.argsort(-logits, axis=-1)[:, :5]
        metrics["top5_accuracy"] = float((top5 == labels[:, None]).any(-1).mean())
    return metrics


def main(argv=None):
    parser = HfArgumentParser((DistillationArguments, TrainingArguments))
    parser.set_defaults(
        learning_rate=5e-4, weight_decay=0.05, max_grad_norm=5.0, lr_scheduler_type="cosine", warmup_steps=20 / 300,
        num_train_epochs=300, eval_strategy="epoch", save_strategy="epoch", save_total_limit=2, logging_steps=10,
        remove_unused_columns=False, dataloader_num_workers=4, report_to="none",
    )
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not args.teacher_model_name_or_path:
        raise ValueError("--teacher_model_name_or_path is required (a trained, smaller VideoMamba).")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    data_dir = resolve_data_dir(args)
    train_dataset, eval_dataset, class_names, processor = build_video_datasets(
        data_dir, args.num_frames, args.image_size, args.train_split, args.eval_split, args.hflip_prob,
        args.min_crop_scale,
    )
    if eval_dataset is None:
        training_args.eval_strategy = "no"
    id2label = dict(enumerate(class_names))
    label2id = {name: i for i, name in id2label.items()}

    teacher = AutoModel.from_pretrained(args.teacher_model_name_or_path)
    student_class = VideoMambaForImageClassification if args.num_frames == 1 else VideoMambaForVideoClassification
    overrides = dict(
        num_labels=len(class_names), id2label=id2label, label2id=label2id, drop_path_rate=args.drop_path_rate,
        scan_backend=args.scan_backend,
    )
    if args.student_model_name_or_path:
        student = student_class.from_pretrained(
            args.student_model_name_or_path, num_frames=args.num_frames, image_size=args.image_size,
            ignore_mismatched_sizes=True, **overrides,
        )
    else:
        config = VideoMambaConfig.from_preset(
            args.student_preset, num_frames=args.num_frames, image_size=args.image_size,
            patch_size=teacher.config.patch_size, tubelet_size=teacher.config.tubelet_size,
            **{**overrides, **parse_config_overrides(args.config_overrides)},
        )
        student = student_class(config)

    scale_learning_rate(training_args, args.lr_reference_batch_size)

    mixup = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup = VideoMixup(
            len(class_names), mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob,
            switch_prob=args.mixup_switch_prob, label_smoothing=args.label_smoothing, seed=training_args.seed,
        )
    trainer = DistillationTrainer(
        model=student,
        args=training_args,
        teacher_model=teacher,
        distillation_weight=args.distillation_weight,
        label_smoothing=args.label_smoothing,
        mixup=mixup,
        teacher_dtype=resolve_dtype(args.teacher_dtype, training_args),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        compute_metrics=compute_metrics,
    )
    result = trainer.train(resume_from_checkpoint=resolve_resume(training_args))
    trainer.save_model()  # the student classifier, without the distillation head
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    if eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return trainer


if __name__ == "__main__":
    main(sys.argv[1:])
