#!/usr/bin/env python
# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Short real runs of both pretraining recipes on the built-in demo data, with loss curves for the docs.

    python benchmarks/gpu_recipes.py                # on one GPU (about 5 minutes on an H100); writes docs/*.png
    python benchmarks/gpu_recipes.py --smoke        # CPU check of the whole pipeline with tiny models (minutes)

Stages (each a real `accelerate launch` of the example scripts, except the teacher):

1. the demo videos (moving digits, 4 direction classes, 192 training and 64 validation clips of 64x64);
2. a VideoMamba-Ti teacher trained as a plain classifier (`transformers.Trainer`) on them (45 epochs, capped at
   `--teacher_seconds`, 100 s: the better the teacher, the more the distillation curve says);
3. self-distillation: VideoMamba-S learns from that teacher (`examples/run_distillation.py`);
4. masked alignment: VideoMamba-S pretrained against CLIP ViT-B/16 with attention masking at ratio 0.8
   (`examples/run_masked_pretraining.py`). The machine has no internet, so the CLIP teacher is built from its config
   with RANDOM weights (`--clip_random_init`): the curve shows the recipe working (the student learns to predict the
   teacher's tokens at masked-out positions), not CLIP's semantics.

Frames stay at the demo's 64x64 (4x4 patches a frame, 8 frames: 129 tokens); the demo classes are directions, so
horizontal flips are off and random crops keep at least half the frame. The runs are about a hundred steps each, with
the learning rates raised for so short a schedule; the paper's settings are the scripts' defaults (docs/recipes.md).

Outputs: `docs/recipes_distillation_loss.png`, `docs/recipes_masked_alignment_loss.png` and
`docs/recipes_gpu_results.json` (times, steps per second, final losses, accuracies, versions, scan backend).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(EXAMPLES))


def log(message):
    print(f"[gpu_recipes {time.strftime('%H:%M:%S')}] {message}", flush=True)


def accelerate_launch(script, arguments, mixed_precision, cpu, log_path):
    """Run `accelerate launch` on one process; returns the wall time. The output goes to `log_path` and the tail of
    it to stdout on failure."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
    ]
    if cpu:
        command.append("--cpu")
    command += [str(script)] + [str(a) for a in arguments]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("HF_HUB_OFFLINE", "1")
    log(" ".join(command[2:]))
    start = time.perf_counter()
    with open(log_path, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = Path(log_path).read_text()[-6000:]
        raise RuntimeError(f"{script.name} failed (exit {result.returncode}); log {log_path}:\n{tail}")
    return seconds


def history(output_dir):
    state = json.loads((Path(output_dir) / "trainer_state.json").read_text())
    return state["log_history"]


def series(entries, key):
    points = [(e["step"], e[key]) for e in entries if key in e and "step" in e]
    return [p[0] for p in points], [p[1] for p in points]


def train_teacher(data_dir, output_dir, settings, cpu):
    """VideoMamba-Ti as a plain classifier on the demo data (the distillation teacher)."""
    from recipe_utils import build_video_datasets
    from run_distillation import compute_metrics
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from videomamba import VideoMambaConfig, VideoMambaForVideoClassification

    train_dataset, eval_dataset, class_names, processor = build_video_datasets(
        data_dir, settings["num_frames"], settings["image_size"], "train", "val", hflip_prob=0.0, min_crop_scale=0.5
    )
    config = VideoMambaConfig.from_preset(
        settings["teacher_preset"], num_frames=settings["num_frames"], image_size=settings["image_size"],
        num_labels=len(class_names), id2label=dict(enumerate(class_names)),
        label2id={n: i for i, n in enumerate(class_names)}, drop_path_rate=0.1, **settings["overrides"],
    )
    torch.manual_seed(0)
    model = VideoMambaForVideoClassification(config)
    args = TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=settings["teacher_epochs"],
        per_device_train_batch_size=settings["batch_size"], per_device_eval_batch_size=settings["batch_size"],
        learning_rate=settings["teacher_lr"], weight_decay=0.05, lr_scheduler_type="cosine", warmup_steps=0.1,
        bf16=not cpu, use_cpu=cpu, eval_strategy="epoch", save_strategy="no", logging_steps=2, report_to=[],
        dataloader_num_workers=settings["workers"], remove_unused_columns=False, seed=0, disable_tqdm=True,
    )
    class TimeBudget(TrainerCallback):
        """Stop after `teacher_seconds` of training (the schedule is sized for the epochs; the cap keeps the total
        time bounded on slow set-ups)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start > settings["teacher_seconds"]:
                control.should_training_stop = True

    trainer = Trainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=processor,
        compute_metrics=compute_metrics, callbacks=[TimeBudget()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate()
    trainer.save_model()
    trainer.save_state()
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return seconds, metrics


def plot_distillation(entries, teacher_accuracy, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    curves = (
        ("loss", "total"), ("loss_cls", "classification (mixup targets)"), ("loss_distill", "distillation (2 - 2 cos)"),
    )
    for key, label in curves:
        steps, values = series(entries, key)
        left.plot(steps, values, label=label)
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.set_title("Self-distillation: VideoMamba-Ti teacher -> VideoMamba-S")
    left.legend()
    steps, accuracy = series(entries, "eval_accuracy")
    right.plot(steps, accuracy, marker="o", label="student (distilled)")
    if teacher_accuracy is not None:
        right.axhline(teacher_accuracy, color="gray", linestyle="--", label="teacher")
    right.set_xlabel("step")
    right.set_ylabel("validation accuracy (4 classes)")
    right.set_ylim(0, 1.02)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_masked(entries, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.5, 4))
    steps, values = series(entries, "loss")
    axis.plot(steps, values, label="training (new masks every step)")
    steps, values = series(entries, "eval_loss")
    axis.plot(steps, values, marker="o", label="validation (fixed masks)")
    axis.set_xlabel("step")
    axis.set_ylabel("alignment loss: mean(2 - 2 cos) over visible tokens")
    axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="/tmp/videomamba_gpu_recipes")
    parser.add_argument("--docs_dir", default=None, help="Where the PNGs and JSON go (default docs/; smoke: work_dir).")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models and data: checks the pipeline only.")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs per stage (default 15: 90 steps; smoke 2).")
    parser.add_argument("--teacher_seconds", type=float, default=100.0,
                        help="Time cap of the teacher's training (it runs 3x the epochs of the other stages).")
    parser.add_argument("--student_preset", default="small")
    parser.add_argument("--masked_preset", default="small")
    args = parser.parse_args()

    cpu = args.smoke or not torch.cuda.is_available()
    if cpu and not args.smoke:
        log("No CUDA device: running on the CPU (slow); use --smoke for a quick pipeline check.")
    work = Path(args.work_dir)
    docs = Path(args.docs_dir or (work / "docs" if args.smoke else ROOT / "docs"))
    work.mkdir(parents=True, exist_ok=True)
    docs.mkdir(parents=True, exist_ok=True)
    epochs = args.epochs or (2 if args.smoke else 15)
    settings = dict(
        num_frames=8, image_size=64, batch_size=4 if args.smoke else 32, workers=0 if args.smoke else 6,
        teacher_preset="tiny", teacher_epochs=epochs if args.smoke else 3 * epochs, teacher_lr=1e-3,
        teacher_seconds=args.teacher_seconds,
        overrides=dict(hidden_size=32, num_hidden_layers=2, state_size=8, scan_backend="torch") if args.smoke else {},
    )
    mixed_precision = "no" if cpu else "bf16"
    precision_flags = [] if cpu else ["--bf16"]
    model_overrides = ["--config_overrides", "hidden_size=32,num_hidden_layers=2,state_size=8", "--scan_backend",
                       "torch"] if args.smoke else []
    results = {
        "device": torch.cuda.get_device_name(0) if not cpu else "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "settings": {k: v for k, v in settings.items() if k != "overrides"},
    }
    import transformers

    from videomamba import is_mamba_ssm_available, is_triton_scan_available
    from videomamba.demo_data import make_demo_videos

    results["transformers"] = transformers.__version__
    results["scan_backend"] = (
        "triton" if is_triton_scan_available() else "mamba_ssm" if is_mamba_ssm_available() else "torch"
    )
    total_start = time.perf_counter()

    log("1/4 demo videos")
    start = time.perf_counter()
    demo_kwargs = dict(num_train_per_class=4, num_val_per_class=2) if args.smoke else {}
    data_dir = make_demo_videos(work / ("demo_smoke" if args.smoke else "demo"), **demo_kwargs)
    results["demo_data_seconds"] = round(time.perf_counter() - start, 1)

    log("2/4 teacher (VideoMamba-Ti classifier)")
    teacher_dir = work / "teacher_tiny"
    seconds, teacher_metrics = train_teacher(data_dir, teacher_dir, settings, cpu)
    teacher_steps = history(teacher_dir)[-1]["step"] if history(teacher_dir) else None
    results["teacher"] = {
        "preset": "tiny", "train_seconds": round(seconds, 1), "steps": teacher_steps,
        "eval_accuracy": teacher_metrics.get("eval_accuracy"), "eval_loss": teacher_metrics.get("eval_loss"),
    }
    log(f"teacher: {results['teacher']}")

    common = [
        "--data_dir", data_dir, "--num_frames", settings["num_frames"], "--image_size", settings["image_size"],
        "--num_train_epochs", epochs, "--per_device_train_batch_size", settings["batch_size"],
        "--per_device_eval_batch_size", settings["batch_size"], "--dataloader_num_workers", settings["workers"],
        "--logging_steps", 2, "--eval_strategy", "epoch", "--save_strategy", "no",
        "--seed", 0, "--disable_tqdm", "true", "--hflip_prob", 0.0, "--min_crop_scale", 0.5, *precision_flags,
        *model_overrides,
    ]
    if cpu:
        common += ["--use_cpu"]

    log("3/4 self-distillation (VideoMamba-S from the Ti teacher)")
    distill_dir = work / "distill_small"
    seconds = accelerate_launch(
        EXAMPLES / "run_distillation.py",
        common + [
            "--teacher_model_name_or_path", teacher_dir, "--student_preset", args.student_preset,
            "--output_dir", distill_dir, "--learning_rate", 5e-4, "--warmup_steps", 0.1, "--drop_path_rate", 0.1,
            "--mixup", 0.8, "--cutmix", 1.0, "--label_smoothing", 0.1, "--distillation_weight", 1.0,
        ],
        mixed_precision, cpu, work / "distillation.log",
    )
    entries = history(distill_dir)
    train_entries = [e for e in entries if "loss" in e]
    eval_entries = [e for e in entries if "eval_accuracy" in e]
    results["distillation"] = {
        "student_preset": args.student_preset, "launch_seconds": round(seconds, 1),
        "steps": train_entries[-1]["step"],
        "train_runtime": next((e["train_runtime"] for e in entries if "train_runtime" in e), None),
        "steps_per_second": next((e["train_steps_per_second"] for e in entries if "train_steps_per_second" in e), None),
        "first_loss": train_entries[0]["loss"], "last_loss": train_entries[-1]["loss"],
        "first_loss_distill": train_entries[0].get("loss_distill"),
        "last_loss_distill": train_entries[-1].get("loss_distill"),
        "eval_accuracy": eval_entries[-1]["eval_accuracy"] if eval_entries else None,
        "best_eval_accuracy": max((e["eval_accuracy"] for e in eval_entries), default=None),
    }
    from transformers import AutoModelForVideoClassification

    reloaded = AutoModelForVideoClassification.from_pretrained(distill_dir)
    results["distillation"]["final_folder_loads_as"] = type(reloaded).__name__
    results["distillation"]["final_folder_has_head"] = any("distill_head" in k for k in reloaded.state_dict())
    del reloaded
    plot_distillation(entries, results["teacher"]["eval_accuracy"], docs / "recipes_distillation_loss.png")
    log(f"distillation: {results['distillation']}")

    log("4/4 masked alignment (VideoMamba-S, CLIP ViT-B/16 teacher with random weights)")
    masked_dir = work / "mask_pt_small"
    seconds = accelerate_launch(
        EXAMPLES / "run_masked_pretraining.py",
        common + [
            "--clip_random_init", "--preset", args.masked_preset, "--output_dir", masked_dir,
            "--learning_rate", 1.5e-4 * 4, "--warmup_steps", 0.1, "--drop_path_rate", 0.1,
            "--mask_type", "attention", "--mask_ratio", 0.8,
        ],
        mixed_precision, cpu, work / "masked_pretraining.log",
    )
    entries = history(masked_dir)
    train_entries = [e for e in entries if "loss" in e]
    eval_entries = [e for e in entries if "eval_loss" in e]
    results["masked_alignment"] = {
        "student_preset": args.masked_preset, "teacher": "CLIP ViT-B/16 config, random weights (no internet)",
        "mask": "attention, ratio 0.8", "launch_seconds": round(seconds, 1), "steps": train_entries[-1]["step"],
        "train_runtime": next((e["train_runtime"] for e in entries if "train_runtime" in e), None),
        "steps_per_second": next((e["train_steps_per_second"] for e in entries if "train_steps_per_second" in e), None),
        "first_loss": train_entries[0]["loss"], "last_loss": train_entries[-1]["loss"],
        "first_eval_loss": eval_entries[0]["eval_loss"] if eval_entries else None,
        "last_eval_loss": eval_entries[-1]["eval_loss"] if eval_entries else None,
    }
    from videomamba import VideoMambaForVideoClassification, VideoMambaModel

    results["masked_alignment"]["final_folder_loads_as"] = type(VideoMambaModel.from_pretrained(masked_dir)).__name__
    VideoMambaForVideoClassification.from_pretrained(masked_dir, num_labels=4)  # what fine-tuning does
    plot_masked(
        entries, docs / "recipes_masked_alignment_loss.png",
        f"Masked alignment: VideoMamba-{args.masked_preset.capitalize()[0]}, attention masks 0.8",
    )
    log(f"masked alignment: {results['masked_alignment']}")

    results["total_seconds"] = round(time.perf_counter() - total_start, 1)
    name = "recipes_gpu_results_smoke.json" if args.smoke else "recipes_gpu_results.json"
    (docs / name).write_text(json.dumps(results, indent=1, default=lambda v: float(v) if np.isscalar(v) else str(v)))
    log(f"done in {results['total_seconds']} s; wrote {docs / name} and the PNGs in {docs}")


if __name__ == "__main__":
    main()
