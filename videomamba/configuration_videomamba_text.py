# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Configuration of the VideoMamba video-text model (UMT-style: VideoMamba vision encoder + BERT text/fusion encoder)."""

from transformers import BertConfig, PretrainedConfig

from .configuration_videomamba import VideoMambaConfig


class VideoMambaTextConfig(PretrainedConfig):
    r"""
    Configuration of [`VideoMambaForVideoTextRetrieval`]: a VideoMamba vision encoder and a BERT text encoder whose last
    layers cross-attend to the video tokens (the multimodal model of the VideoMamba paper, section 4.4, built like
    UMT). The defaults follow the paper: BERT-base with cross-attention from layer 9 of 12, a 512-d shared space and a
    learnable temperature starting at 0.07.

    Args:
        vision_config (`dict` or [`VideoMambaConfig`], *optional*): the vision encoder (defaults to VideoMamba-Ti at
            224x224, 8 frames).
        text_config (`dict` or [`BertConfig`], *optional*): the text encoder (defaults to BERT-base). Keep
            `add_cross_attention=False` and `is_decoder=False` here: the fusion layers get their cross-attention from
            `fusion_layer`, and all self-attention is bidirectional.
        fusion_layer (`int`, defaults to 9): the first BERT layer with cross-attention to the video tokens. Layers
            `[0, fusion_layer)` encode text alone (their `[CLS]` output gives the text embedding for contrastive
            learning); layers `[fusion_layer, num_hidden_layers)` add cross-attention and serve video-text matching
            and masked language modelling. Must lie in `[1, text_config.num_hidden_layers]` (equal: no fusion layers,
            so no matching, MLM or re-ranking).
        projection_dim (`int`, defaults to 512): width of the shared video-text embedding space.
        temperature_init_value (`float`, defaults to 0.07): initial value of the learnable softmax temperature.
        min_temperature, max_temperature (`float`, defaults to 0.001 and 0.5): the temperature is clamped to this
            range (in the forward pass, and in place by the pretraining trainer).
        pool_per_frame (`bool`, defaults to `True`): pool `cls + mean(patches)` per frame, giving one embedding per
            frame (`(batch, frames, projection_dim)`); the video-text similarity is then the mean over frames of the
            per-frame cosine similarities (UMT's `keep_temporal`). With `False`, or when patches are masked (the
            student during unmasked-token alignment), one embedding per video.
        alignment_hidden_size (`int`, *optional*): width of the CLIP teacher's per-token targets for unmasked token
            alignment. When set, the model gets an alignment decoder (linear + LayerNorm) from the VideoMamba residual
            stream to this width; `None` disables the alignment loss.
        alignment_layer (`int`, defaults to -2): which entry of the VideoMamba `hidden_states` is aligned with the
            teacher. `hidden_states[i]` is the residual stream entering block `i` and `hidden_states[-1]` the one
            entering the final norm; `-2` (the stream entering the last block) is what the official UMT-VideoMamba
            code aligns.
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal initialisation of the heads.
        tie_word_embeddings (`bool`, defaults to `True`): tie the MLM decoder to BERT's word embeddings.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from videomamba import VideoMambaConfig, VideoMambaTextConfig, VideoMambaForVideoTextRetrieval
    >>> config = VideoMambaTextConfig(
    ...     vision_config=VideoMambaConfig.from_preset("middle", num_frames=8),
    ...     text_config=BertConfig(),  # BERT-base
    ...     fusion_layer=9,
    ... )
    >>> model = VideoMambaForVideoTextRetrieval(config)
    ```
    """

    model_type = "videomamba_text"
    sub_configs = {"vision_config": VideoMambaConfig, "text_config": BertConfig}

    def __init__(
        self,
        vision_config=None,
        text_config=None,
        fusion_layer=9,
        projection_dim=512,
        temperature_init_value=0.07,
        min_temperature=0.001,
        max_temperature=0.5,
        pool_per_frame=True,
        alignment_hidden_size=None,
        alignment_layer=-2,
        initializer_range=0.02,
        tie_word_embeddings=True,
        **kwargs,
    ):
        if vision_config is None:
            vision_config = VideoMambaConfig()
        elif isinstance(vision_config, dict):
            vision_config = VideoMambaConfig(**{k: v for k, v in vision_config.items() if k != "model_type"})
        if text_config is None:
            text_config = BertConfig()
        elif isinstance(text_config, dict):
            text_config = BertConfig(**{k: v for k, v in text_config.items() if k != "model_type"})
        if not isinstance(vision_config, VideoMambaConfig):
            raise TypeError(f"vision_config must be a VideoMambaConfig or a dict, got {type(vision_config).__name__}.")
        if not isinstance(text_config, BertConfig):
            raise TypeError(
                f"text_config must be a BertConfig or a dict, got {type(text_config).__name__}. Other text encoders "
                "are not supported: the fusion layers are BERT layers."
            )
        if getattr(text_config, "is_decoder", False) or getattr(text_config, "add_cross_attention", False):
            raise ValueError(
                "text_config must be a plain (bidirectional, no cross-attention) BertConfig: set is_decoder=False and "
                "add_cross_attention=False. The layers from `fusion_layer` on get their cross-attention automatically."
            )
        num_text_layers = text_config.num_hidden_layers
        if not 1 <= fusion_layer <= num_text_layers:
            raise ValueError(
                f"fusion_layer must lie in [1, {num_text_layers}] (the text encoder has {num_text_layers} layers); "
                f"got {fusion_layer}."
            )
        if not 0 < min_temperature <= temperature_init_value <= max_temperature:
            raise ValueError(
                "Need 0 < min_temperature <= temperature_init_value <= max_temperature; got "
                f"{min_temperature}, {temperature_init_value}, {max_temperature}."
            )
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be positive, got {projection_dim}.")
        num_hidden_states = vision_config.num_hidden_layers + 1
        if not -num_hidden_states <= alignment_layer < num_hidden_states:
            raise ValueError(
                f"alignment_layer={alignment_layer} is out of range for {num_hidden_states} VideoMamba hidden states."
            )
        self.vision_config = vision_config
        self.text_config = text_config
        self.fusion_layer = fusion_layer
        self.projection_dim = projection_dim
        self.temperature_init_value = temperature_init_value
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature
        self.pool_per_frame = pool_per_frame
        self.alignment_hidden_size = alignment_hidden_size
        self.alignment_layer = alignment_layer
        self.initializer_range = initializer_range
        self.tie_word_embeddings = tie_word_embeddings
        super().__init__(**kwargs)

    @property
    def num_fusion_layers(self) -> int:
        return self.text_config.num_hidden_layers - self.fusion_layer

    def to_dict(self):
        output = super().to_dict()
        for key in ("vision_config", "text_config"):
            value = output.get(key)
            if isinstance(value, PretrainedConfig):
                output[key] = value.to_dict()
        return output


__all__ = ["VideoMambaTextConfig"]
