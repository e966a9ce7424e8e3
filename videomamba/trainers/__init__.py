# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""VideoMamba's pretraining recipes as `transformers.Trainer` subclasses (run them with `accelerate launch`).

- `DistillationTrainer`: self-distillation from a smaller trained VideoMamba (paper section 3.3).
- `MaskedAlignmentTrainer` with `CLIPTeacher`: masked pretraining by token alignment to CLIP (paper section 3.4).
- `VideoMixup`: batch mixup / cutmix with soft targets.
- `VideoTextPretrainingTrainer`: UMT-style video-text pretraining (VTC, VTM, MLM, UTA; paper section 4.4).

The mask generators are in `videomamba.masking`, the training-time models in
`videomamba.modeling_videomamba_pretraining`.
"""

from .distillation import DistillationTrainer, soft_cross_entropy, teacher_backbone
from .masked_alignment import CLIPTeacher, MaskedAlignmentTrainer
from .mixup import VideoMixup, smooth_one_hot
from .video_text import VideoTextPretrainingTrainer


__all__ = [
    "DistillationTrainer",
    "MaskedAlignmentTrainer",
    "CLIPTeacher",
    "VideoMixup",
    "VideoTextPretrainingTrainer",
    "smooth_one_hot",
    "soft_cross_entropy",
    "teacher_backbone",
]
