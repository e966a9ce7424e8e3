# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Video-text pretraining of VideoMamba + BERT (the paper's section 4.4, UMT-style) with zero-shot retrieval before and
after.

Losses: video-text contrastive (gathered over processes), video-text matching with hard negatives, masked language
modelling and, with a CLIP teacher, unmasked token alignment; image-text and video-text batches mix.

Offline demo (generated moving-digit videos and digit images, a WordPiece tokenizer trained on their captions, models
from configs):

    accelerate launch examples/run_video_text_pretraining.py --demo_data_dir /tmp/vm_demo \\
        --output_dir /tmp/vm_videotext --max_steps 200 --per_device_train_batch_size 16 --learning_rate 3e-4

Your data: a folder of videos and a captions file (MSRVTT-style JSON `[{"video": ..., "caption": ...}]` or CSV):

    accelerate launch examples/run_video_text_pretraining.py \\
        --video_dir data/webvid/videos --train_captions data/webvid/train.json \\
        --image_dir data/cc3m/images --image_captions data/cc3m/train.json \\
        --eval_video_dir data/msrvtt/videos --eval_captions data/msrvtt/test_1k.json \\
        --vision_model_name_or_path ckpt/videomamba-m-k400 --text_model_name_or_path ckpt/bert-base-uncased \\
        --teacher_model_name_or_path ckpt/clip-vit-base-patch16 \\
        --output_dir runs/umt-videomamba --bf16 --per_device_train_batch_size 64 --num_train_epochs 10
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import BertConfig, HfArgumentParser, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomamba import (  # noqa: E402
    VideoMambaConfig,
    VideoMambaForVideoTextRetrieval,
    VideoMambaProcessor,
    VideoMambaTextConfig,
    VideoMambaVideoProcessor,
    build_wordpiece_tokenizer,
)
from videomamba.trainers import CLIPTeacher, VideoTextPretrainingTrainer  # noqa: E402
from videomamba.trainers.video_text import evaluate_retrieval  # noqa: E402
from videomamba.video_text_data import (  # noqa: E402
    VideoTextCollator,
    VideoTextDataset,
    build_retrieval_set,
    make_demo_image_captions,
    read_caption_file,
)


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved VideoMambaForVideoTextRetrieval folder to continue from."}
    )
    vision_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A VideoMamba checkpoint folder for the vision encoder (e.g. K400 weights)."}
    )
    vision_preset: str = field(default="tiny", metadata={"help": "tiny / small / middle, when building from config."})
    vision_num_layers: int | None = field(default=None, metadata={"help": "Override the preset's depth."})
    vision_hidden_size: int | None = field(default=None, metadata={"help": "Override the preset's width."})
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A BERT folder on disk (weights + tokenizer) for the text encoder."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "A tokenizer folder; default: the text model's, else one trained locally."}
    )
    text_hidden_size: int = field(default=256, metadata={"help": "BERT width when building from config."})
    text_num_layers: int = field(default=4, metadata={"help": "BERT depth when building from config."})
    text_num_heads: int = field(default=4)
    fusion_layer: int | None = field(
        default=None, metadata={"help": "First cross-attention layer (default: 3/4 of the depth, 9 of 12 for BERT-base)."}
    )
    projection_dim: int = field(default=512)
    pool_per_frame: bool = field(default=True, metadata={"help": "Per-frame embeddings (UMT's keep_temporal)."})
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A CLIP folder (CLIPVisionModelWithProjection) as the alignment teacher."}
    )
    teacher_from_config: bool = field(
        default=False, metadata={"help": "A small randomly initialised CLIP teacher (exercises UTA offline)."}
    )
    vtc_weight: float = 1.0
    vtm_weight: float = 1.0
    mlm_weight: float = 1.0
    uta_weight: float = field(default=1.0, metadata={"help": "Used only with a teacher."})
    mlm_probability: float = 0.5
    video_mask_ratio: float = 0.8
    image_mask_ratio: float = 0.5
    mask_type: str = field(
        default="attention", metadata={"help": "Student masks (videomamba.masking): attention, random, tube, ..."}
    )


@dataclass
class DataArguments:
    demo_data_dir: str | None = field(
        default=None, metadata={"help": "Write (once) and use the offline demo videos, images and captions here."}
    )
    video_dir: str | None = None
    train_captions: str | None = field(default=None, metadata={"help": "JSON or CSV captions of the training videos."})
    image_dir: str | None = None
    image_captions: str | None = field(default=None, metadata={"help": "JSON or CSV captions of training images."})
    eval_video_dir: str | None = None
    eval_captions: str | None = field(default=None, metadata={"help": "Zero-shot retrieval set (before / after)."})
    merge_duplicate_captions: bool = field(
        default=False, metadata={"help": "Identical eval captions form one query matching all their videos."}
    )
    group_identical_captions: bool = field(
        default=False, metadata={"help": "Training pairs with identical captions are positives of each other."}
    )
    num_frames: int = 8
    image_size: int = 224
    max_text_length: int = 32
    rerank_k: int = field(default=0, metadata={"help": "Re-rank the top-k with the matching head at evaluation."})
    eval_batch_size: int = 16


def resolve_data(data_args: DataArguments):
    if data_args.demo_data_dir:
        from videomamba.demo_data import make_demo_videos

        root = make_demo_videos(data_args.demo_data_dir)
        make_demo_image_captions(root)
        data_args.video_dir = data_args.video_dir or str(root)
        data_args.train_captions = data_args.train_captions or str(root / "captions_train.json")
        data_args.image_dir = data_args.image_dir or str(root)
        data_args.image_captions = data_args.image_captions or str(root / "captions_images.json")
        data_args.eval_video_dir = data_args.eval_video_dir or str(root)
        data_args.eval_captions = data_args.eval_captions or str(root / "captions_val.json")
        data_args.merge_duplicate_captions = True  # the demo's captions are templates
        data_args.group_identical_captions = True
    if not (data_args.video_dir and data_args.train_captions):
        raise ValueError("Pass --video_dir and --train_captions (or --demo_data_dir).")


def build_tokenizer(model_args, data_args, train_records, output_dir):
    from transformers import AutoTokenizer

    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path or model_args.text_model_name_or_path
    if source:
        return AutoTokenizer.from_pretrained(source)
    texts = [record["caption"] for record in train_records]
    logger.info(f"No tokenizer given: training a WordPiece tokenizer on {len(texts)} captions.")
    return build_wordpiece_tokenizer(texts, vocab_size=2000, model_max_length=data_args.max_text_length)


def build_model(model_args, data_args, vocab_size):
    if model_args.model_name_or_path:
        return VideoMambaForVideoTextRetrieval.from_pretrained(model_args.model_name_or_path)
    if model_args.vision_model_name_or_path:
        vision_config = VideoMambaConfig.from_pretrained(model_args.vision_model_name_or_path)
        vision_config.num_frames, vision_config.image_size = data_args.num_frames, data_args.image_size
    else:
        # From scratch: Mamba's step-size initialisation (0.001-0.1, slow forgetting) rather than the official one
        # (~0.7), as the classification demo measured (the pooled features then see the whole clip).
        overrides = {"num_frames": data_args.num_frames, "image_size": data_args.image_size, "use_mamba_dt_init": True}
        if model_args.vision_num_layers:
            overrides["num_hidden_layers"] = model_args.vision_num_layers
        if model_args.vision_hidden_size:
            overrides["hidden_size"] = model_args.vision_hidden_size
        vision_config = VideoMambaConfig.from_preset(model_args.vision_preset, **overrides)
    if model_args.text_model_name_or_path:
        text_config = BertConfig.from_pretrained(model_args.text_model_name_or_path)
    else:
        text_config = BertConfig(
            vocab_size=vocab_size, hidden_size=model_args.text_hidden_size,
            num_hidden_layers=model_args.text_num_layers, num_attention_heads=model_args.text_num_heads,
            intermediate_size=4 * model_args.text_hidden_size, max_position_embeddings=max(64, data_args.max_text_length),
            # From scratch, BERT's std of 0.02 maps every caption to nearly the same [CLS] and the contrastive loss
            # stalls; 1 / sqrt(width) lets the captions differ from the start.
            initializer_range=model_args.text_hidden_size**-0.5,
        )
    fusion_layer = model_args.fusion_layer or max(1, (3 * text_config.num_hidden_layers) // 4)
    teacher_width = None
    if model_args.teacher_model_name_or_path:
        from transformers import CLIPVisionConfig

        teacher_width = CLIPVisionConfig.from_pretrained(model_args.teacher_model_name_or_path).projection_dim
    elif model_args.teacher_from_config:
        teacher_width = 128
    config = VideoMambaTextConfig(
        vision_config=vision_config, text_config=text_config, fusion_layer=fusion_layer,
        projection_dim=model_args.projection_dim, pool_per_frame=model_args.pool_per_frame,
        alignment_hidden_size=teacher_width,
    )
    model = VideoMambaForVideoTextRetrieval(config)
    if model_args.vision_model_name_or_path:
        model.load_vision_encoder(model_args.vision_model_name_or_path)
    if model_args.text_model_name_or_path:
        model.load_text_encoder(model_args.text_model_name_or_path)
    return model


def build_teacher(model_args, image_size, patch_size):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if model_args.teacher_model_name_or_path:
        clip = CLIPVisionModelWithProjection.from_pretrained(model_args.teacher_model_name_or_path)
        # The teacher's patch grid must match the student's: frames are resized to grid * CLIP's patch size.
        return CLIPTeacher(clip, image_size=(image_size // patch_size) * clip.config.patch_size)
    if model_args.teacher_from_config:
        config = CLIPVisionConfig(
            hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            image_size=image_size, patch_size=patch_size, projection_dim=128,
        )
        return CLIPTeacher(CLIPVisionModelWithProjection(config))
    return None


def retrieval_loader(data_dir, captions_file, processor, num_frames, batch_size, merge):
    records = read_caption_file(captions_file)
    names, texts, text_to_videos = build_retrieval_set(records, merge_duplicate_captions=merge)
    kinds = {r["media"]: r["media_type"] for r in records}
    gallery = VideoTextDataset(
        [{"media": name, "caption": "", "media_type": kinds[name]} for name in names], data_dir, num_frames
    )
    loader = torch.utils.data.DataLoader(
        gallery, batch_size=batch_size, collate_fn=VideoTextCollator(processor, with_text=False)
    )
    return loader, texts, text_to_videos


def run_retrieval(model, processor, data_args, accelerator, tag):
    loader, texts, text_to_videos = retrieval_loader(
        data_args.eval_video_dir, data_args.eval_captions, processor, data_args.num_frames,
        data_args.eval_batch_size, data_args.merge_duplicate_captions,
    )
    loader = accelerator.prepare(loader)
    with accelerator.autocast():
        metrics = evaluate_retrieval(
            accelerator.unwrap_model(model), processor.tokenizer, loader, texts, text_to_videos,
            rerank_k=data_args.rerank_k, max_length=data_args.max_text_length, accelerator=accelerator,
        )
    metrics = {f"{tag}_{key}": round(value, 3) for key, value in metrics.items()}
    if accelerator.is_main_process:
        logger.info(f"zero-shot retrieval ({tag}): " + json.dumps(metrics))
    return metrics


def main():
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    training_args.remove_unused_columns = False
    resolve_data(data_args)

    train_records = read_caption_file(data_args.train_captions)
    tokenizer = build_tokenizer(model_args, data_args, train_records, training_args.output_dir)
    model = build_model(model_args, data_args, len(tokenizer))
    vision_config = model.config.vision_config
    num_frames, image_size = vision_config.num_frames, vision_config.image_size
    video_processor = VideoMambaVideoProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        num_frames=num_frames,
    )
    processor = VideoMambaProcessor(video_processor, tokenizer, max_text_length=data_args.max_text_length)

    datasets = [VideoTextDataset(train_records, data_args.video_dir, num_frames, train=True)]
    if data_args.image_captions:
        offset = len(datasets[0].media_names)
        datasets.append(
            VideoTextDataset(
                read_caption_file(data_args.image_captions), data_args.image_dir or data_args.video_dir, 1,
                train=True, video_id_offset=offset,
            )
        )
    train_dataset = torch.utils.data.ConcatDataset(datasets) if len(datasets) > 1 else datasets[0]

    teacher = build_teacher(model_args, image_size, vision_config.patch_size)
    weights = {
        "vtc": model_args.vtc_weight, "vtm": model_args.vtm_weight, "mlm": model_args.mlm_weight,
        "uta": model_args.uta_weight if teacher is not None else 0.0,
    }
    trainer = VideoTextPretrainingTrainer(
        model=model, args=training_args, train_dataset=train_dataset,
        data_collator=VideoTextCollator(processor, group_identical_captions=data_args.group_identical_captions),
        processing_class=processor, teacher=teacher,
        loss_weights=weights, mlm_probability=model_args.mlm_probability,
        video_mask_ratio=model_args.video_mask_ratio, image_mask_ratio=model_args.image_mask_ratio,
        mask_type=model_args.mask_type,
    )
    accelerator = trainer.accelerator
    results = {}
    if data_args.eval_captions:
        model.to(accelerator.device)
        results.update(run_retrieval(model, processor, data_args, accelerator, "before"))

    resume = training_args.resume_from_checkpoint
    if resume is None and os.path.isdir(training_args.output_dir):
        resume = get_last_checkpoint(training_args.output_dir)
    train_result = trainer.train(resume_from_checkpoint=resume)
    results.update({f"train_{k}": v for k, v in train_result.metrics.items()})

    if data_args.eval_captions:
        results.update(run_retrieval(trainer.model, processor, data_args, accelerator, "after"))
    trainer.save_model(str(Path(training_args.output_dir) / "final"))  # model + processor, staged then moved
    if accelerator.is_main_process:
        (Path(training_args.output_dir) / "retrieval_results.json").write_text(json.dumps(results, indent=1))
        print(json.dumps(results, indent=1))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
