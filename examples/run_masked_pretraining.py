#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Masked alignment pretraining of VideoMamba with a CLIP teacher (paper section 3.4, UMT-style).

Launch with accelerate (DDP, FSDP and mixed precision come from its config or flags):

    # the built-in demo data with a randomly initialised CLIP ViT-B/16 (no download; a smoke run, not real features)
    accelerate launch examples/run_masked_pretraining.py --demo_data_dir /tmp/videomamba_demo --clip_random_init \
        --preset small --image_size 64 --num_frames 8 --min_crop_scale 0.5 --output_dir ./mask_pt_small \
        --num_train_epochs 10 --per_device_train_batch_size 32 --bf16

    # a video folder with the real teacher (a local copy of openai/clip-vit-base-patch16, or its Hub id)
    accelerate launch --multi_gpu --num_processes 8 examples/run_masked_pretraining.py --data_dir /data/k400 \
        --clip_model_name_or_path openai/clip-vit-base-patch16 --preset middle --num_frames 8 \
        --output_dir ./videomamba_m_mask_pt --bf16

The paper's recipe (VideoMamba-M on K400, official `exp/k400/videomamba_middle_mask/run_mask_pretrain.sh`): CLIP
ViT-B/16 teacher, attention masking at ratio 0.8, final-layer alignment, 800 epochs, AdamW with betas (0.9, 0.95),
learning rate 1.5e-4 per 256 samples of total batch (pass `--learning_rate 1.5e-4 --lr_reference_batch_size 256`),
cosine schedule with 40 warmup epochs (`--warmup_steps 0.05`), weight decay 0.05, drop path 0.4, no gradient
clipping, 8 frames at 224, bf16. These are this script's defaults, except the learning rate scaling, which is opt-in.

The output folder holds the pretrained backbone as a `VideoMambaModel` (what fine-tuning loads, e.g.
`VideoMambaForVideoClassification.from_pretrained(output_dir, num_labels=...)`); `checkpoint-*` folders hold the whole
pretraining model (alignment decoders included), and a rerun with the same `--output_dir` resumes from the last one.
"""

import logging
import os
import sys
from dataclasses import dataclass, field

import transformers
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, HfArgumentParser, TrainingArguments, set_seed

from videomamba import VideoMambaConfig
from videomamba.masking import MASK_TYPES, make_mask_generator, mask_grid_size
from videomamba.modeling_videomamba_pretraining import ALIGNMENT_INPUTS, VideoMambaForMaskedAlignment
from videomamba.trainers import CLIPTeacher, MaskedAlignmentTrainer


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
class MaskedPretrainingArguments:
    # data
    data_dir: str | None = field(default=None, metadata={"help": "Video folder (class subfolders or list files)."})
    demo_data_dir: str | None = field(default=None, metadata={"help": "Write and use the built-in demo videos."})
    train_split: str = field(default="train")
    eval_split: str | None = field(default="val", metadata={"help": "Split for the evaluation loss; empty to skip."})
    num_frames: int = field(default=8)
    image_size: int = field(default=224)
    hflip_prob: float = field(
        default=0.5, metadata={"help": "Horizontal flip probability in training (0 for direction-defined classes)."}
    )
    min_crop_scale: float = field(default=0.08, metadata={"help": "Smallest area fraction of the random crop."})
    # student
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue from a pretraining folder (decoders included) or start from a backbone folder."},
    )
    preset: str = field(default="middle", metadata={"help": "tiny, small or middle (from scratch)."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config changes for a model from scratch, e.g. 'num_hidden_layers=12,hidden_size=256'."},
    )
    drop_path_rate: float = field(default=0.4, metadata={"help": "Stochastic depth (paper, M: 0.4)."})
    alignment_input: str = field(
        default="residual_before_last_mixer", metadata={"help": f"One of {ALIGNMENT_INPUTS} (see docs/recipes.md)."}
    )
    alignment_num_layers: int = field(default=1, metadata={"help": "Aligned layers, counted from the last."})
    alignment_layer_interval: float = field(default=1)
    scan_backend: str = field(default="auto")
    # teacher
    clip_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A CLIP model (CLIPModel or CLIPVisionModelWithProjection folder / Hub id)."}
    )
    clip_random_init: bool = field(
        default=False, metadata={"help": "Build CLIP ViT-B/16 from its config with random weights (offline demos)."}
    )
    clip_image_size: int | None = field(
        default=None, metadata={"help": "Frame size for CLIP (default: --image_size; the patch grids must agree)."}
    )
    teacher_dtype: str = field(default="auto", metadata={"help": "float32, bfloat16, float16 or auto."})
    clip_return_interval: float = field(default=1, metadata={"help": "Teacher layer interval (with several layers)."})
    # masks
    mask_type: str = field(default="attention", metadata={"help": f"One of {MASK_TYPES}."})
    mask_ratio: float = field(default=0.8)
    mask_seed: int | None = field(default=None, metadata={"help": "Seed of the mask generator (default: --seed)."})
    lr_reference_batch_size: int | None = field(
        default=None,
        metadata={"help": "If set, learning_rate is per this many samples and is scaled to the total batch."},
    )


def clip_vit_b16_config(image_size: int) -> CLIPVisionConfig:
    """CLIP ViT-B/16's vision tower: 12 layers of width 768, 12 heads, projection to 512."""
    return CLIPVisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16,
        image_size=image_size, projection_dim=512, hidden_act="quick_gelu",
    )


def build_teacher(args, training_args) -> CLIPTeacher:
    image_size = args.clip_image_size or args.image_size
    if args.clip_random_init:
        logger.warning(
            "The CLIP teacher has RANDOM weights (--clip_random_init): the run exercises the recipe, it does not "
            "learn CLIP's features."
        )
        clip = CLIPVisionModelWithProjection(clip_vit_b16_config(image_size))
    elif args.clip_model_name_or_path:
        clip = CLIPVisionModelWithProjection.from_pretrained(args.clip_model_name_or_path)
    else:
        raise ValueError("Pass --clip_model_name_or_path (e.g. openai/clip-vit-base-patch16) or --clip_random_init.")
    dtype = resolve_dtype(args.teacher_dtype, training_args)
    return CLIPTeacher(
        clip, num_layers=args.alignment_num_layers, layer_interval=args.clip_return_interval, image_size=image_size,
        dtype=dtype,
    )


def main(argv=None):
    parser = HfArgumentParser((MaskedPretrainingArguments, TrainingArguments))
    parser.set_defaults(
        learning_rate=1.5e-4, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.05, max_grad_norm=0.0,
        lr_scheduler_type="cosine", warmup_steps=0.05, num_train_epochs=800, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=2, logging_steps=10, remove_unused_columns=False,
        dataloader_num_workers=4, report_to="none",
    )
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    data_dir = resolve_data_dir(args)
    train_dataset, eval_dataset, _, processor = build_video_datasets(
        data_dir, args.num_frames, args.image_size, args.train_split, args.eval_split, args.hflip_prob,
        args.min_crop_scale,
    )
    if eval_dataset is None:
        training_args.eval_strategy = "no"
    teacher = build_teacher(args, training_args)
    alignment = dict(
        alignment_output_dim=teacher.output_dim, alignment_num_layers=args.alignment_num_layers,
        alignment_layer_interval=args.alignment_layer_interval, alignment_input=args.alignment_input,
    )
    overrides = dict(drop_path_rate=args.drop_path_rate, scan_backend=args.scan_backend, **alignment)
    if args.model_name_or_path:
        # A pretraining folder continues (decoders included); a backbone folder starts with fresh decoders.
        config = VideoMambaConfig.from_pretrained(args.model_name_or_path)
        for key, value in overrides.items():
            setattr(config, key, value)
        config.num_frames, config.image_size = args.num_frames, args.image_size
        model = VideoMambaForMaskedAlignment.from_pretrained(args.model_name_or_path, config=config)
    else:
        config = VideoMambaConfig.from_preset(
            args.preset, num_frames=args.num_frames, image_size=args.image_size,
            **{**overrides, **parse_config_overrides(args.config_overrides)},
        )
        model = VideoMambaForMaskedAlignment(config)

    scale_learning_rate(training_args, args.lr_reference_batch_size)

    seed = training_args.seed if args.mask_seed is None else args.mask_seed
    mask_generator = make_mask_generator(
        args.mask_type, mask_grid_size(model.config), mask_ratio=args.mask_ratio, seed=seed
    )
    logger.info(f"Masks: {mask_generator}")
    trainer = MaskedAlignmentTrainer(
        model=model,
        args=training_args,
        teacher=teacher,
        mask_generator=mask_generator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
    )
    result = trainer.train(resume_from_checkpoint=resolve_resume(training_args))
    trainer.save_model()  # the backbone, a VideoMambaModel folder
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
