# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Self-distillation (Li et al., 2024, section 3.3): a trained smaller VideoMamba guides a larger one.

Per batch (after optional mixup / cutmix, which the teacher sees too):

    teacher_tokens = normalize(teacher(x).last_hidden_state)                      # (B, L, D_t), no gradient
    student_tokens = normalize(distill_head(student(x).last_hidden_state))       # (B, L, D_t)
    loss = cross_entropy(logits, targets) + weight * mean(2 - 2 * <student_tokens, teacher_tokens>)

`targets` are class indices with label smoothing, or the soft targets of mixup / cutmix. The official recipe
(VideoMamba-M from VideoMamba-S on ImageNet) uses weight 1, smoothing 0.1, mixup 0.8 / cutmix 1.0.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer
from transformers.modeling_outputs import ImageClassifierOutput

from ..modeling_videomamba import VideoMambaForVideoClassification, VideoMambaModel
from ..modeling_videomamba_pretraining import VideoMambaForDistillation, alignment_loss
from ._common import RecipeTrainerMixin
from .mixup import VideoMixup


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross entropy (float32, batch mean) for class indices `(batch,)` (with label smoothing) or soft targets
    `(batch, num_classes)` (used as given)."""
    logits = logits.float()
    if targets.ndim == 2 and targets.dtype.is_floating_point:
        if targets.shape != logits.shape:
            raise ValueError(f"soft targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}.")
        return torch.sum(-targets.float() * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, targets.view(-1).long(), label_smoothing=label_smoothing)


def teacher_backbone(teacher: nn.Module) -> VideoMambaModel:
    """The `VideoMambaModel` of a teacher given as a backbone or a classification model."""
    if isinstance(teacher, VideoMambaModel):
        return teacher
    backbone = getattr(teacher, "videomamba", None)
    if isinstance(backbone, VideoMambaModel):
        return backbone
    raise TypeError(
        "teacher_model must be a VideoMambaModel or a VideoMamba classification model (trained), got "
        f"{type(teacher).__name__}."
    )


class DistillationTrainer(RecipeTrainerMixin, Trainer):
    r"""`transformers.Trainer` for self-distillation. `accelerate launch` gives it DDP / FSDP / mixed precision.

    Args:
        model: the student, a `VideoMambaForVideoClassification` / `VideoMambaForImageClassification` (wrapped here in
            a `VideoMambaForDistillation` that shares its modules and adds the distillation head), or a
            `VideoMambaForDistillation` (e.g. reloaded with its head).
        args: `TrainingArguments`.
        teacher_model: a trained VideoMamba (backbone or classifier) of any width, at any precision; it is frozen and
            kept in eval mode. It must tokenise the clips like the student (same patch size and tubelet).
        distillation_weight: weight of the token distillation term (official: 1.0).
        label_smoothing: for class-index targets without mixup (official: 0.1).
        mixup: a `VideoMixup` (its own label smoothing then applies), or None.
        teacher_dtype: cast the teacher to this dtype (e.g. `torch.bfloat16`); None keeps it.
        **kwargs: the rest of `Trainer`'s arguments (`train_dataset`, `eval_dataset`, `data_collator`,
            `compute_metrics`, `callbacks`, ...).

    Batches are dicts with `pixel_values` `(batch, frames, channels, height, width)` and `labels` `(batch,)`.
    Evaluation reports the plain cross entropy of the student (no teacher, no smoothing) and passes its logits to
    `compute_metrics`. `trainer.save_model()` writes the student classifier without the distillation head; the
    checkpoints keep the head so that `train(resume_from_checkpoint=...)` resumes exactly.

    Logged: `loss`, `loss_cls`, `loss_distill`.
    """

    recipe_state_attributes = ("mixup",)

    def __init__(
        self,
        model=None,
        args=None,
        *,
        teacher_model: nn.Module,
        distillation_weight: float = 1.0,
        label_smoothing: float = 0.1,
        mixup: VideoMixup | None = None,
        teacher_dtype: torch.dtype | None = None,
        **kwargs,
    ):
        if teacher_model is None:
            raise ValueError("DistillationTrainer needs a teacher_model.")
        self.teacher = teacher_backbone(teacher_model)
        teacher_width = self.teacher.config.hidden_size
        if isinstance(model, VideoMambaForDistillation):
            head_width = model.config.distillation_hidden_size
            if head_width != teacher_width:
                raise ValueError(
                    f"The student's distillation head outputs {head_width} features but the teacher is "
                    f"{teacher_width} wide: build the student with VideoMambaForDistillation.from_student(student, "
                    f"{teacher_width}) or use a teacher of width {head_width}."
                )
        elif isinstance(model, VideoMambaForVideoClassification):
            model = VideoMambaForDistillation.from_student(model, teacher_width)
        else:
            raise TypeError(
                "The student (model) must be a VideoMambaForVideoClassification, VideoMambaForImageClassification or "
                f"VideoMambaForDistillation, got {type(model).__name__}."
            )
        teacher_config, student_config = self.teacher.config, model.config
        for key in ("patch_size", "tubelet_size"):
            if getattr(teacher_config, key) != getattr(student_config, key):
                raise ValueError(
                    f"Teacher and student must tokenise clips alike, but teacher {key}={getattr(teacher_config, key)} "
                    f"and student {key}={getattr(student_config, key)}."
                )
        if mixup is not None and mixup.num_classes != student_config.num_labels:
            raise ValueError(
                f"mixup makes targets over {mixup.num_classes} classes but the student has num_labels="
                f"{student_config.num_labels}."
            )
        self.distillation_weight = float(distillation_weight)
        self.label_smoothing = float(label_smoothing)
        self.mixup = mixup
        self.teacher.eval()
        self.teacher.requires_grad_(False)
        if teacher_dtype is not None:
            self.teacher.to(dtype=teacher_dtype)
        super().__init__(model=model, args=args, **kwargs)
        self.teacher.to(self.args.device)
        self._setup_recipe()

    @torch.no_grad()
    def teacher_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(batch, length, teacher_width)` L2-normalised float32 tokens of the teacher after its final norm."""
        self.teacher.eval()
        tokens = self.teacher(pixel_values, return_dict=True).last_hidden_state
        return F.normalize(tokens.float(), dim=-1)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pixel_values = inputs["pixel_values"]
        labels = inputs.get("labels")
        if not model.training:
            # Evaluation: the student alone, plain cross entropy.
            outputs = model(pixel_values=pixel_values, output_distillation_features=False, return_dict=True)
            loss = soft_cross_entropy(outputs.logits, labels) if labels is not None else None
            outputs = ImageClassifierOutput(loss=loss, logits=outputs.logits)
            return (loss, outputs) if return_outputs else loss
        if labels is None:
            raise ValueError("DistillationTrainer needs `labels` in every training batch.")
        targets = labels
        if self.mixup is not None:
            pixel_values, targets = self.mixup(pixel_values, labels)
        teacher_tokens = self.teacher_tokens(pixel_values)
        outputs = model(pixel_values=pixel_values, output_distillation_features=True, return_dict=True)
        student_tokens = outputs.distillation_features
        if student_tokens.shape != teacher_tokens.shape:
            raise ValueError(
                f"The teacher gives tokens of shape {tuple(teacher_tokens.shape)} and the student "
                f"{tuple(student_tokens.shape)}; they must see the same clips with the same patch grid."
            )
        loss_cls = soft_cross_entropy(outputs.logits, targets, self.label_smoothing)
        loss_distill = alignment_loss(student_tokens, teacher_tokens)
        loss = loss_cls + self.distillation_weight * loss_distill
        self._record_metrics(loss_cls=loss_cls, loss_distill=loss_distill)
        return (loss, outputs) if return_outputs else loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Checkpoints (`_internal_call`) keep the distillation head; the final model is the plain student."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        if _internal_call:
            unwrapped.save_distillation_head = True
            try:
                return super().save_model(output_dir, _internal_call=True)
            finally:
                unwrapped.save_distillation_head = False
        unwrapped.save_distillation_head = False
        self._save_final_model(
            output_dir, lambda folder, state_dict: unwrapped.save_pretrained(folder, state_dict=state_dict)
        )

    @property
    def student(self) -> VideoMambaForVideoClassification:
        """The student classifier (sharing the trained weights)."""
        return self.accelerator.unwrap_model(self.model).classification_model()


__all__ = ["DistillationTrainer", "soft_cross_entropy", "teacher_backbone"]
