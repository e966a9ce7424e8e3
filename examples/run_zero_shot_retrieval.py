# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Zero-shot text-to-video and video-to-text retrieval with a VideoMamba video-text model.

Reports R@1/5/10, median and mean rank in both directions; `--rerank_k K` also re-ranks each query's top-K candidates
with the video-text matching head (UMT's evaluation, `k_test`). Runs on one device or many (`accelerate launch`):
videos are split between processes and the features gathered.

    accelerate launch examples/run_zero_shot_retrieval.py --model_name_or_path runs/umt-videomamba/final \\
        --video_dir data/msrvtt/videos --captions data/msrvtt/MSRVTT_JSFUSION_test.csv --rerank_k 128 --bf16

The model folder holds the model and its processor (what `run_video_text_pretraining.py` saves in `final/`).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from accelerate import Accelerator


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomamba import VideoMambaForVideoTextRetrieval, VideoMambaProcessor  # noqa: E402
from videomamba.trainers.video_text import evaluate_retrieval  # noqa: E402
from videomamba.video_text_data import (  # noqa: E402
    VideoTextCollator,
    VideoTextDataset,
    build_retrieval_set,
    read_caption_file,
)


logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True, help="Folder with the model and its processor.")
    parser.add_argument("--video_dir", help="Folder of the videos (or images) the captions refer to.")
    parser.add_argument("--captions", help="MSRVTT-style JSON or CSV captions file.")
    parser.add_argument("--demo_data_dir", help="Use (writing once) the offline demo's validation videos.")
    parser.add_argument("--num_frames", type=int, default=None, help="Default: the model's num_frames.")
    parser.add_argument("--batch_size", type=int, default=16, help="Videos per batch and process.")
    parser.add_argument("--text_batch_size", type=int, default=128)
    parser.add_argument("--max_text_length", type=int, default=None, help="Default: the processor's.")
    parser.add_argument("--rerank_k", type=int, default=0, help="Re-rank the top-k with the matching head.")
    parser.add_argument("--merge_duplicate_captions", action="store_true",
                        help="Identical captions form one query that matches all their videos.")
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--bf16", action="store_true", help="Run in bfloat16 autocast.")
    parser.add_argument("--output_file", help="Write the metrics here as JSON.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    accelerator = Accelerator(mixed_precision="bf16" if args.bf16 else "no")
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    if args.demo_data_dir:
        from videomamba.demo_data import make_demo_videos

        root = make_demo_videos(args.demo_data_dir)
        args.video_dir = args.video_dir or str(root)
        args.captions = args.captions or str(root / "captions_val.json")
        args.merge_duplicate_captions = True
    if not (args.video_dir and args.captions):
        raise SystemExit("Pass --video_dir and --captions (or --demo_data_dir).")

    model = VideoMambaForVideoTextRetrieval.from_pretrained(args.model_name_or_path).eval().to(accelerator.device)
    processor = VideoMambaProcessor.from_pretrained(args.model_name_or_path)
    num_frames = args.num_frames or model.config.vision_config.num_frames
    max_length = args.max_text_length or processor.max_text_length

    records = read_caption_file(args.captions)
    names, texts, text_to_videos = build_retrieval_set(records, merge_duplicate_captions=args.merge_duplicate_captions)
    kinds = {record["media"]: record["media_type"] for record in records}
    gallery = VideoTextDataset(
        [{"media": name, "caption": "", "media_type": kinds[name]} for name in names], args.video_dir, num_frames
    )
    loader = torch.utils.data.DataLoader(
        gallery, batch_size=args.batch_size, num_workers=args.num_workers,
        collate_fn=VideoTextCollator(processor, with_text=False),
    )
    loader = accelerator.prepare(loader)
    logger.info(f"{len(names)} videos, {len(texts)} queries, {accelerator.num_processes} process(es)")
    with accelerator.autocast():
        metrics = evaluate_retrieval(
            model, processor.tokenizer, loader, texts, text_to_videos, rerank_k=args.rerank_k,
            max_length=max_length, text_batch_size=args.text_batch_size, accelerator=accelerator,
        )
    metrics = {key: round(value, 3) for key, value in metrics.items()}
    if accelerator.is_main_process:
        print(json.dumps(metrics, indent=1))
        if args.output_file:
            Path(args.output_file).write_text(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
