# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning helpers shared by the example script, `transformers.Trainer` users and the benchmarks.

- `param_groups`: AdamW parameter groups with the VideoMamba recipe's settings -- no weight decay on the position,
  cls and temporal embeddings, the SSM parameters `A_log` / `D` (both directions), norms and biases, and layer-wise
  learning-rate decay (`lr * layer_decay ** (num_layers + 1 - layer_id)`: embeddings are layer 0, block `i` is layer
  `i + 1`, the final norm and head are layer `num_layers + 1`).
- `topk_correct`, `evaluate_logits`: top-1 / top-5 bookkeeping.
- `model_card`: a README.md with Hub metadata (pipeline tag, library, results).
- `atomic_directory`: write a folder under a temporary name and rename it into place when complete.
"""

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import torch


NO_WEIGHT_DECAY_NAMES = (
    "position_embeddings",
    "temporal_position_embeddings",
    "cls_token",
    "A_log",
    "A_b_log",
    "D",
    "D_b",
)


def is_no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """True for parameters the recipe keeps out of weight decay: 1-D tensors (norms, biases, `D`), biases, the
    position / cls / temporal embeddings and `A_log` (2-D)."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or leaf == "bias" or leaf in NO_WEIGHT_DECAY_NAMES


def layer_id(name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise lr decay: 0 for the embeddings, `i + 1` for block `i`, `num_layers + 1`
    for the final norm and the head."""
    parts = name.split(".")
    if "embeddings" in parts:
        return 0
    if "layers" in parts:
        position = parts.index("layers")
        if position + 1 < len(parts) and parts[position + 1].isdigit():
            return int(parts[position + 1]) + 1
    return num_layers + 1


def param_groups(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float = 0.05,
    layer_decay: float = 1.0,
    num_layers: int | None = None,
) -> list[dict]:
    """AdamW parameter groups: `{"params", "lr", "weight_decay", "lr_scale", "name"}` per (layer, decay) pair.

    `lr` is already `learning_rate * lr_scale`; schedulers built on `LambdaLR` (transformers' `get_scheduler`)
    multiply each group's own initial lr, so the scales survive warmup and decay.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}.")
    if num_layers is None:
        config = getattr(model, "config", None)
        num_layers = getattr(config, "num_hidden_layers", None)
        if num_layers is None:
            raise ValueError("Pass num_layers: the model has no config.num_hidden_layers.")
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_id(name, num_layers) if layer_decay < 1 else num_layers + 1
        no_decay = is_no_weight_decay(name, param)
        key = (depth, no_decay)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - depth)
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": learning_rate * scale,
                "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"layer_{depth}_{'no_decay' if no_decay else 'decay'}",
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model, learning_rate, weight_decay=0.05, layer_decay=1.0, betas=(0.9, 0.999), eps=1e-8):
    """`torch.optim.AdamW` over `param_groups(...)` (the group names stay in the groups for logging)."""
    groups = param_groups(model, learning_rate, weight_decay, layer_decay)
    for group in groups:
        group.pop("param_names")
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the top-k logits, for each k (k is capped at the label count)."""
    num_labels = logits.shape[-1]
    top = logits.topk(min(max(ks), num_labels), dim=-1).indices
    hits = top.eq(labels.view(-1, 1))
    return {k: int(hits[:, : min(k, num_labels)].any(dim=-1).sum()) for k in ks}


@contextlib.contextmanager
def atomic_directory(final_path):
    """Yield a temporary folder beside `final_path`; when the block succeeds, it replaces `final_path` (an existing
    folder there is moved aside first and then deleted), so readers never see a half-written folder."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_path.parent / f".tmp-{final_path.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final_path.exists():
        old = final_path.parent / f".old-{final_path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final_path, old)
    os.replace(tmp, final_path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def move_files_into(source_dir, target_dir) -> None:
    """Move every file of `source_dir` into `target_dir` (each by an atomic rename), then remove `source_dir`."""
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for item in Path(source_dir).iterdir():
        destination = target_dir / item.name
        if item.is_dir():
            if destination.exists():
                shutil.rmtree(destination)
            os.replace(item, destination)
        else:
            os.replace(item, destination)
    shutil.rmtree(source_dir, ignore_errors=True)


def model_card(
    model_name: str,
    results: dict,
    dataset_name: str,
    class_names: list[str],
    training_args: dict | None = None,
    base_model: str | None = None,
    dataset_type: str = "videofolder",
    extra_text: str = "",
) -> str:
    """README.md text: YAML front matter (`library_name: transformers`, `pipeline_tag: video-classification`,
    tags, `model-index` with the results) and a body with results, labels, hyperparameters and usage."""
    from huggingface_hub import EvalResult, ModelCardData

    metric_names = {
        "eval_top1": ("accuracy", "Top-1 accuracy"),
        "eval_top5": ("top_5_accuracy", "Top-5 accuracy"),
        "eval_multiview_top1": ("accuracy", "Top-1 accuracy (multi-view)"),
        "eval_multiview_top5": ("top_5_accuracy", "Top-5 accuracy (multi-view)"),
    }
    eval_results = [
        EvalResult(
            task_type="video-classification",
            task_name="Video Classification",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split="validation",
            metric_type=metric_type,
            metric_name=label,
            metric_value=round(float(results[key]), 4),
        )
        for key, (metric_type, label) in metric_names.items()
        if results.get(key) is not None
    ]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        tags=["videomamba", "mamba", "video-classification", "vision"],
        model_name=model_name,
        base_model=base_model if base_model and not os.path.exists(base_model) else None,
        eval_results=eval_results or None,
    )
    rows = "\n".join(
        f"| {label} | {100 * float(results[key]):.2f}% |"
        for key, (_, label) in metric_names.items()
        if results.get(key) is not None
    )
    hyper = ""
    if training_args:
        hyper = "\n".join(f"- {key}: {value}" for key, value in training_args.items())
        hyper = f"\n## Training hyperparameters\n\n{hyper}\n"
    labels = ", ".join(f"`{name}`" for name in class_names)
    body = f"""
# {model_name}

A VideoMamba video classifier (Li et al., *VideoMamba: State Space Model for Efficient Video Understanding*, ECCV
2024), fine-tuned on {dataset_name} with `examples/run_video_classification.py` of the `videomamba` package
(VideoMamba native to Hugging Face transformers).
{extra_text}
## Results (validation)

| Metric | Value |
|---|---|
{rows}

Labels ({len(class_names)}): {labels}
{hyper}
## Usage

```python
import videomamba  # registers VideoMamba with transformers (or pass trust_remote_code=True)
from transformers import pipeline

classifier = pipeline("video-classification", model="path/to/this/folder")
classifier("video.mp4", top_k=3)
```
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


__all__ = [
    "NO_WEIGHT_DECAY_NAMES",
    "atomic_directory",
    "build_optimizer",
    "is_no_weight_decay",
    "layer_id",
    "model_card",
    "move_files_into",
    "param_groups",
    "topk_correct",
]
