# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""VideoMamba for transformers.

Importing this package registers VideoMamba with transformers' Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForVideoClassification`, `AutoModelForImageClassification`, `AutoVideoProcessor`; the video-text model with
`AutoModel` and `AutoProcessor`), and marks the classes so that every `save_pretrained` folder also loads with
`trust_remote_code=True` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForVideoClassification,
    AutoProcessor,
    AutoVideoProcessor,
)

from .configuration_videomamba import VIDEOMAMBA_PRESETS, VideoMambaConfig
from .configuration_videomamba_text import VideoMambaTextConfig
from .cuda_graphs import CUDAGraphRunner
from .modeling_videomamba import (
    VideoMambaForImageClassification,
    VideoMambaForVideoClassification,
    VideoMambaModel,
    VideoMambaPreTrainedModel,
    is_mamba_ssm_available,
    is_triton_scan_available,
)
from .modeling_videomamba_pretraining import VideoMambaForDistillation, VideoMambaForMaskedAlignment
from .modeling_videomamba_text import VideoMambaForVideoTextRetrieval, VideoMambaTextPreTrainedModel
from .processing_videomamba import VideoMambaProcessor, build_wordpiece_tokenizer
from .video_processing_videomamba import VideoMambaVideoProcessor, average_view_logits


__version__ = "0.1.0"

AUTO_MODEL_CLASSES = {
    "AutoModel": VideoMambaModel,
    "AutoModelForVideoClassification": VideoMambaForVideoClassification,
    "AutoModelForImageClassification": VideoMambaForImageClassification,
}

AutoConfig.register("videomamba", VideoMambaConfig, exist_ok=True)
for _auto, _model in zip(
    (AutoModel, AutoModelForVideoClassification, AutoModelForImageClassification), AUTO_MODEL_CLASSES.values()
):
    _auto.register(VideoMambaConfig, _model, exist_ok=True)

AutoVideoProcessor.register(VideoMambaConfig, video_processor_class=VideoMambaVideoProcessor, exist_ok=True)

VideoMambaConfig.register_for_auto_class()
VideoMambaVideoProcessor.register_for_auto_class("AutoVideoProcessor")
for _auto_name, _model in AUTO_MODEL_CLASSES.items():
    _model.register_for_auto_class(_auto_name)

# Video-text model (UMT-style VideoMamba + BERT) and its processor.
AutoConfig.register("videomamba_text", VideoMambaTextConfig, exist_ok=True)
AutoModel.register(VideoMambaTextConfig, VideoMambaForVideoTextRetrieval, exist_ok=True)
AutoProcessor.register(VideoMambaTextConfig, VideoMambaProcessor, exist_ok=True)
VideoMambaTextConfig.register_for_auto_class()
VideoMambaForVideoTextRetrieval.register_for_auto_class("AutoModel")
VideoMambaProcessor.register_for_auto_class("AutoProcessor")


__all__ = [
    "VIDEOMAMBA_PRESETS",
    "VideoMambaConfig",
    "VideoMambaModel",
    "VideoMambaPreTrainedModel",
    "VideoMambaForVideoClassification",
    "VideoMambaForImageClassification",
    "VideoMambaForDistillation",
    "VideoMambaForMaskedAlignment",
    "VideoMambaVideoProcessor",
    "average_view_logits",
    "CUDAGraphRunner",
    "is_mamba_ssm_available",
    "is_triton_scan_available",
    "VideoMambaTextConfig",
    "VideoMambaTextPreTrainedModel",
    "VideoMambaForVideoTextRetrieval",
    "VideoMambaProcessor",
    "build_wordpiece_tokenizer",
]
