# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""PyTorch VideoMamba video-text model (the multimodal model of the VideoMamba paper, section 4.4, built like UMT).

A VideoMamba encodes the video; `cls + mean(patches)` (per frame, or per video) goes through a LayerNorm and a linear
projection into a shared space. A BERT encodes the caption: its first `fusion_layer` layers see the text alone and the
`[CLS]` output, projected, is the text embedding; its remaining layers add cross-attention to the video's patch tokens
and serve video-text matching (a 2-way head on `[CLS]`) and masked language modelling (BERT's MLM head).

Pretraining objectives (all in `VideoMambaForVideoTextRetrieval.forward`, weighted by `loss_weights`):
- `vtc`: symmetric video-text contrastive loss over the batch gathered from all processes, with a learnable temperature.
- `vtm`: video-text matching on the positive pairs and on one hard negative per video and per caption, sampled from the
  softmax of the similarities.
- `mlm`: masked language modelling with cross-attention to the video.
- `uta`: unmasked token alignment: the visible tokens of a masked student video regress a CLIP teacher's normalised
  per-token features (cosine distance).
"""

import copy
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import ModelOutput
from transformers.models.bert.modeling_bert import BertLayer, BertLMPredictionHead, BertOnlyMLMHead

from .configuration_videomamba import VideoMambaConfig
from .configuration_videomamba_text import VideoMambaTextConfig
from .modeling_videomamba import VideoMambaModel


LOSS_NAMES = ("vtc", "vtm", "mlm", "uta")


# --- distributed gathering --------------------------------------------------------------------------------------------
def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_gather_variable(tensor: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
    """All-gather `tensor` along dim 0 from every process, allowing a different batch size per process."""
    world_size = dist.get_world_size()
    local_size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes = [int(size.item()) for size in sizes]
    padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded.contiguous())
    return [part[:size] for part, size in zip(gathered, sizes)], sizes


class _GatherWithGradient(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this process's slice of the gradient summed over processes, so
    that a loss computed identically on every process gets its exact gradient after DDP averages the gradients."""

    @staticmethod
    def forward(ctx, tensor):
        parts, sizes = _all_gather_variable(tensor)
        rank = dist.get_rank()
        ctx.start, ctx.size = sum(sizes[:rank]), sizes[rank]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output):
        grad_output = grad_output.contiguous()
        dist.all_reduce(grad_output)
        return grad_output[ctx.start : ctx.start + ctx.size]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (batch first) from all processes; gradients flow back to each process's own rows. Without
    an initialised process group this returns `tensor` unchanged."""
    if not _is_distributed():
        return tensor
    return _GatherWithGradient.apply(tensor)


def gather_without_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (batch first) from all processes, without gradient (e.g. video ids)."""
    if not _is_distributed():
        return tensor
    parts, _ = _all_gather_variable(tensor.detach())
    return torch.cat(parts, dim=0)


# --- losses -----------------------------------------------------------------------------------------------------------
def video_text_similarity(video_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Cosine similarity in float32.

    Args:
        video_embeds: `(num_videos, dim)`, or `(num_videos, frames, dim)` for per-frame embeddings: the similarity is
            then the mean over frames of the per-frame cosine similarities.
        text_embeds: `(num_texts, dim)`.
    Returns:
        `(num_videos, num_texts)`.
    """
    if text_embeds.ndim != 2 or video_embeds.ndim not in (2, 3):
        raise ValueError(
            "video_embeds must be (videos, dim) or (videos, frames, dim) and text_embeds (texts, dim); got shapes "
            f"{tuple(video_embeds.shape)} and {tuple(text_embeds.shape)}."
        )
    video_embeds = F.normalize(video_embeds.float(), dim=-1)
    text_embeds = F.normalize(text_embeds.float(), dim=-1)
    if video_embeds.ndim == 3:
        return torch.einsum("vfd,td->vft", video_embeds, text_embeds).mean(1)
    return video_embeds @ text_embeds.t()


def positive_pair_mask(num: int, video_ids: torch.Tensor | None, device) -> torch.Tensor:
    """`(num, num)` bool, True where video `i` and caption `j` belong together: the diagonal, or equal `video_ids`
    (several captions of one video in a batch)."""
    if video_ids is None:
        return torch.eye(num, dtype=torch.bool, device=device)
    video_ids = video_ids.view(-1)
    if video_ids.shape[0] != num:
        raise ValueError(f"video_ids has {video_ids.shape[0]} entries for a batch of {num} pairs.")
    return video_ids[:, None] == video_ids[None, :]


def video_text_contrastive_loss(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    temperature: torch.Tensor | float,
    video_ids: torch.Tensor | None = None,
    gather: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE between the videos and the captions of a batch (gathered from all processes when `gather`).

    Video `i` and caption `i` are a positive pair; with `video_ids`, every pair with the same id is a positive and the
    target distribution of a row spreads evenly over its positives. The loss is the mean of the video-to-text and the
    text-to-video cross entropies of `similarity / temperature`.

    Args:
        video_embeds: `(batch, dim)` or `(batch, frames, dim)` (see `video_text_similarity`).
        text_embeds: `(batch, dim)`.
        temperature: scalar tensor or float.
        video_ids: `(batch,)` integer ids, optional.
    """
    if video_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"The contrastive loss needs paired inputs: got {video_embeds.shape[0]} videos and {text_embeds.shape[0]} "
            "captions."
        )
    if gather:
        video_embeds = gather_with_grad(video_embeds)
        text_embeds = gather_with_grad(text_embeds)
        if video_ids is not None:
            video_ids = gather_without_grad(video_ids.view(-1))
    logits = video_text_similarity(video_embeds, text_embeds) / temperature
    targets = positive_pair_mask(logits.shape[0], video_ids, logits.device).float()
    targets = targets / targets.sum(1, keepdim=True)
    loss_v2t = -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(logits.t(), dim=1) * targets.t()).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


def sample_matching_negatives(
    similarity: torch.Tensor,
    video_ids: torch.Tensor | None = None,
    hard: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative per caption and one per video for video-text matching.

    Args:
        similarity: `(batch, batch)` video-text similarity logits (rows videos, columns captions).
        video_ids: `(batch,)`, optional: pairs with equal ids are positives and never drawn as negatives.
        hard: draw negatives with probability `softmax(similarity)` over the non-positives (hard negatives), else
            uniformly over the non-positives.
    Returns:
        `(negative_video_for_text, negative_text_for_video)`, each `(batch,)` indices into the batch.
    """
    batch = similarity.shape[0]
    positives = positive_pair_mask(batch, video_ids, similarity.device)
    with torch.no_grad():
        similarity = similarity.float()
        if hard:
            weights_v2t = F.softmax(similarity, dim=1)
            weights_t2v = F.softmax(similarity.t(), dim=1)
        else:
            weights_v2t = torch.ones_like(similarity)
            weights_t2v = torch.ones_like(similarity)
        weights_v2t = torch.nan_to_num(weights_v2t.masked_fill(positives, 0), nan=0.0)
        weights_t2v = torch.nan_to_num(weights_t2v.masked_fill(positives.t(), 0), nan=0.0)
        # A row whose softmax underflowed to zero on every negative falls back to uniform negatives.
        for weights, allowed in ((weights_v2t, ~positives), (weights_t2v, ~positives.t())):
            empty = weights.sum(1) <= 0
            if empty.any():
                weights[empty] = allowed[empty].float()
        if (weights_v2t.sum(1) <= 0).any() or (weights_t2v.sum(1) <= 0).any():
            raise ValueError(
                "Video-text matching needs at least one negative for every pair, i.e. at least two different videos "
                "in each batch (check video_ids and the batch size), or disable it with loss weight vtm=0."
            )
        negative_video_for_text = torch.multinomial(weights_t2v, 1, generator=generator).squeeze(1)
        negative_text_for_video = torch.multinomial(weights_v2t, 1, generator=generator).squeeze(1)
    return negative_video_for_text, negative_text_for_video


def masked_language_modeling_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over the positions whose label is not -100 (zero, with a gradient, when there are none)."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"MLM logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}.")
    if not (labels != -100).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def unmasked_token_alignment_loss(student: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of `2 - 2 cos(student, target)` (the squared distance of the L2-normalised vectors).

    Args:
        student: `(batch, tokens, dim)` predictions of the alignment decoder.
        targets: `(batch, tokens, dim)` teacher features (normalised here again, so any scale is accepted).
    """
    if student.shape != targets.shape:
        raise ValueError(
            f"Alignment targets of shape {tuple(targets.shape)} do not match the student's {tuple(student.shape)} "
            "(batch, 1 + visible tokens, alignment_hidden_size): the teacher must return the cls token first and then "
            "the tokens the student keeps, and config.alignment_hidden_size must be the teacher's width."
        )
    student = F.normalize(student.float(), dim=-1)
    targets = F.normalize(targets.float(), dim=-1)
    return (2 - 2 * (student * targets).sum(-1)).mean()


def sinusoid_position_embeddings(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sine-cosine embeddings `(..., dim)` of integer `positions` (Transformer style: sine on even channels,
    cosine on odd channels, frequencies `10000^(-2 floor(j / 2) / dim)`)."""
    exponent = 2 * (torch.arange(dim, device=positions.device) // 2).float() / dim
    angles = positions.float()[..., None] / torch.pow(10000.0, exponent)
    even = (torch.arange(dim, device=positions.device) % 2) == 0
    return torch.where(even, torch.sin(angles), torch.cos(angles))


# --- modules ----------------------------------------------------------------------------------------------------------
class VideoMambaTextFusionLayer(BertLayer):
    """A BERT layer with bidirectional self-attention, cross-attention to the video tokens and the feed-forward block
    (transformers' `BertLayer` built with `add_cross_attention=True`).

    The cross-attention's key and value projections read the VideoMamba width (`vision_hidden_size`), so video tokens
    enter without an extra projection. Parameter names are BERT's, so a BERT checkpoint loads into the self-attention
    and feed-forward weights; `crossattention.*` is new.
    """

    def __init__(self, config: BertConfig, vision_hidden_size: int, layer_idx: int):
        fusion_config = copy.deepcopy(config)
        fusion_config.is_decoder = True  # BertLayer only builds cross-attention for decoders ...
        fusion_config.add_cross_attention = True
        super().__init__(fusion_config, layer_idx=layer_idx)
        self.attention.self.is_causal = False  # ... but the self-attention here stays bidirectional.
        # Follow the live text config (attention implementation switches included).
        self.attention.self.config = config
        self.crossattention.self.config = config
        cross = self.crossattention.self
        cross.key = nn.Linear(vision_hidden_size, cross.all_head_size)
        cross.value = nn.Linear(vision_hidden_size, cross.all_head_size)


class VideoMambaTextAlignmentDecoder(nn.Module):
    """Linear + LayerNorm from the VideoMamba residual stream to the teacher's width (UMT's CLIP decoder)."""

    def __init__(self, hidden_size: int, output_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, output_size)
        self.norm = nn.LayerNorm(output_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dense(hidden_states))


@dataclass
class VideoMambaVideoEncoding(ModelOutput):
    """Video side of [`VideoMambaForVideoTextRetrieval`].

    Args:
        video_embeds: `(batch, projection_dim)`, or `(batch, frames, projection_dim)` with per-frame pooling.
        video_tokens: `(batch, patches, vision_hidden)` final-norm patch tokens (no cls), the keys and values of
            the fusion layers' cross-attention.
        hidden_states: the VideoMamba residual streams (only when requested).
    """

    video_embeds: torch.Tensor | None = None
    video_tokens: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class VideoMambaTextEncoding(ModelOutput):
    """Text side of [`VideoMambaForVideoTextRetrieval`].

    Args:
        text_embeds: `(batch, projection_dim)` projected `[CLS]` of the text-only layers.
        text_hidden_states: `(batch, length, text_hidden)` output of the text-only layers (input of the fusion layers).
        attention_mask: `(batch, length)` the padding mask used.
    """

    text_embeds: torch.Tensor | None = None
    text_hidden_states: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


@dataclass
class VideoMambaTextOutput(ModelOutput):
    """Output of [`VideoMambaForVideoTextRetrieval`].

    Args:
        loss: weighted sum of the computed losses (when any loss is requested).
        loss_vtc, loss_vtm, loss_mlm, loss_uta: the unweighted losses that were computed.
        logits_per_video: `(num_videos, num_texts)` similarity / temperature.
        logits_per_text: `(num_texts, num_videos)`.
        video_embeds: `(num_videos, projection_dim)` or `(num_videos, frames, projection_dim)`.
        text_embeds: `(num_texts, projection_dim)`.
    """

    loss: torch.Tensor | None = None
    loss_vtc: torch.Tensor | None = None
    loss_vtm: torch.Tensor | None = None
    loss_mlm: torch.Tensor | None = None
    loss_uta: torch.Tensor | None = None
    logits_per_video: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None


class VideoMambaTextPreTrainedModel(PreTrainedModel):
    config_class = VideoMambaTextConfig
    config: VideoMambaTextConfig
    base_model_prefix = "videomamba_text"
    main_input_name = "pixel_values"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["VideoMambaBlock", "BertEmbeddings", "BertLayer", "VideoMambaTextFusionLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        """Heads and projections: truncated normal (std `initializer_range`) with zero bias; norms: ones and zeros.
        The VideoMamba and BERT sub-models initialise themselves."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, BertLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, VideoMambaForVideoTextRetrieval):
            init.constant_(module.temperature, self.config.temperature_init_value)


class VideoMambaForVideoTextRetrieval(VideoMambaTextPreTrainedModel):
    """VideoMamba + BERT video-text model with contrastive, matching, MLM and alignment objectives.

    Example:

    ```python
    >>> import torch
    >>> from transformers import BertConfig
    >>> from videomamba import VideoMambaConfig, VideoMambaTextConfig, VideoMambaForVideoTextRetrieval
    >>> config = VideoMambaTextConfig(
    ...     vision_config=VideoMambaConfig(num_frames=8),
    ...     text_config=BertConfig(num_hidden_layers=4),
    ...     fusion_layer=2,
    ... )
    >>> model = VideoMambaForVideoTextRetrieval(config).eval()
    >>> videos = torch.randn(2, 8, 3, 224, 224)
    >>> input_ids = torch.randint(1000, 2000, (3, 12))
    >>> out = model(pixel_values=videos, input_ids=input_ids)
    >>> out.logits_per_text.shape  # (texts, videos)
    torch.Size([3, 2])
    ```
    """

    _tied_weights_keys = {
        "mlm_head.predictions.decoder.weight": "text_model.embeddings.word_embeddings.weight",
        "mlm_head.predictions.decoder.bias": "mlm_head.predictions.bias",
    }

    def __init__(self, config: VideoMambaTextConfig):
        super().__init__(config)
        vision_config, text_config = config.vision_config, config.text_config
        self.vision_model = VideoMambaModel(vision_config)
        self.text_model = BertModel(text_config, add_pooling_layer=False)
        layers = self.text_model.encoder.layer
        for index in range(config.fusion_layer, text_config.num_hidden_layers):
            layers[index] = VideoMambaTextFusionLayer(self.text_model.config, vision_config.hidden_size, index)

        self.pool_norm = nn.LayerNorm(vision_config.hidden_size)
        self.vision_projection = nn.Linear(vision_config.hidden_size, config.projection_dim)
        self.text_projection = nn.Linear(text_config.hidden_size, config.projection_dim)
        self.temperature = nn.Parameter(torch.tensor(float(config.temperature_init_value)))
        self.matching_head = nn.Linear(text_config.hidden_size, 2)
        self.mlm_head = BertOnlyMLMHead(text_config)
        if config.alignment_hidden_size:
            self.alignment_decoder = VideoMambaTextAlignmentDecoder(
                vision_config.hidden_size, config.alignment_hidden_size
            )
        else:
            self.alignment_decoder = None
        self.post_init()

    # --- transformers plumbing ------------------------------------------------------------------------------------
    def get_input_embeddings(self):
        return self.text_model.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.text_model.embeddings.word_embeddings = value

    def get_output_embeddings(self):
        return self.mlm_head.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.mlm_head.predictions.decoder = new_embeddings
        self.mlm_head.predictions.bias = new_embeddings.bias

    @property
    def text_layers(self) -> nn.ModuleList:
        return self.text_model.encoder.layer[: self.config.fusion_layer]

    @property
    def fusion_layers(self) -> nn.ModuleList:
        return self.text_model.encoder.layer[self.config.fusion_layer :]

    def get_temperature(self) -> torch.Tensor:
        """The temperature clamped to `[min_temperature, max_temperature]`."""
        return self.temperature.clamp(self.config.min_temperature, self.config.max_temperature)

    @torch.no_grad()
    def clamp_temperature_(self):
        """Clamp the temperature parameter in place (the pretraining trainer does this before every step)."""
        self.temperature.clamp_(self.config.min_temperature, self.config.max_temperature)

    # --- encoders -------------------------------------------------------------------------------------------------
    def encode_video(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool = False,
    ) -> VideoMambaVideoEncoding:
        """
        Args:
            pixel_values: `(batch, frames, channels, height, width)` (or `(batch, channels, height, width)` images).
                Single-frame inputs to a multi-frame model (image-text data) get the temporal position table
                interpolated to one position.
            bool_masked_pos: `(batch, num_patches)` True for patches the student drops (unmasked token alignment);
                pooling is then per video.
        """
        if pixel_values.ndim == 4:
            pixel_values = pixel_values.unsqueeze(1)
        vision_config = self.config.vision_config
        if pixel_values.ndim == 5 and pixel_values.shape[1] == 1 and vision_config.num_frames > 1:
            interpolate_pos_encoding = True
        outputs = self.vision_model(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        tokens = outputs.last_hidden_state
        cls_token, patches = tokens[:, :1], tokens[:, 1:]
        frames = pixel_values.shape[1] // vision_config.tubelet_size
        if self.config.pool_per_frame and bool_masked_pos is None and frames > 1:
            batch, length, hidden = patches.shape
            pooled = cls_token + patches.reshape(batch, frames, length // frames, hidden).mean(2)
        else:
            pooled = cls_token + patches.mean(1, keepdim=True)
        video_embeds = self.vision_projection(self.pool_norm(pooled))
        if video_embeds.shape[1] == 1:
            video_embeds = video_embeds[:, 0]
        return VideoMambaVideoEncoding(
            video_embeds=video_embeds, video_tokens=patches, hidden_states=outputs.hidden_states
        )

    def _text_attention_mask(self, hidden_states, attention_mask):
        return create_bidirectional_mask(
            config=self.text_model.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )

    def encode_text(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> VideoMambaTextEncoding:
        """Runs BERT's embeddings and text-only layers. `input_ids`, `attention_mask`: `(batch, length)`."""
        if input_ids is None:
            raise ValueError("input_ids are required to encode text (use the processor's tokenizer).")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden_states = self.text_model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = self._text_attention_mask(hidden_states, attention_mask)
        for layer in self.text_layers:
            hidden_states = layer(hidden_states, mask)
        text_embeds = self.text_projection(hidden_states[:, 0])
        return VideoMambaTextEncoding(
            text_embeds=text_embeds, text_hidden_states=hidden_states, attention_mask=attention_mask
        )

    def fuse(
        self,
        text_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        video_tokens: torch.Tensor,
    ) -> torch.Tensor:
        """Runs the fusion layers: text self-attention + cross-attention to `video_tokens`.

        Args:
            text_hidden_states: `(batch, length, text_hidden)` from `encode_text`.
            attention_mask: `(batch, length)` text padding mask.
            video_tokens: `(batch, patches, vision_hidden)` from `encode_video`, one video per caption.
        Returns:
            `(batch, length, text_hidden)`.
        """
        if self.config.num_fusion_layers == 0:
            raise ValueError(
                "This model has no fusion layers (fusion_layer == text num_hidden_layers), so video-text matching, "
                "MLM and re-ranking are unavailable."
            )
        if text_hidden_states.shape[0] != video_tokens.shape[0]:
            raise ValueError(
                f"fuse() pairs each caption with one video: got {text_hidden_states.shape[0]} captions and "
                f"{video_tokens.shape[0]} videos."
            )
        video_tokens = video_tokens.to(text_hidden_states.dtype)
        mask = self._text_attention_mask(text_hidden_states, attention_mask)
        hidden_states = text_hidden_states
        for layer in self.fusion_layers:
            hidden_states = layer(hidden_states, mask, video_tokens)
        return hidden_states

    def matching_logits(
        self, video_tokens: torch.Tensor, text_hidden_states: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Video-text matching logits `(batch, 2)` (index 1 = match) for caption `i` with video `i`."""
        fused = self.fuse(text_hidden_states, attention_mask, video_tokens)
        return self.matching_head(fused[:, 0])

    def get_video_features(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False
    ) -> torch.Tensor:
        """Projected video embeddings: `(batch, projection_dim)`, or `(batch, frames, projection_dim)` with
        `config.pool_per_frame` (compare them with `video_text_similarity`, which averages over frames)."""
        return self.encode_video(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding).video_embeds

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Projected text embeddings `(batch, projection_dim)`."""
        return self.encode_text(input_ids, attention_mask, token_type_ids).text_embeds

    def similarity_logits(self, video_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """`(num_videos, num_texts)` cosine similarity / temperature."""
        return video_text_similarity(video_embeds, text_embeds) / self.get_temperature()

    # --- losses that need the model -------------------------------------------------------------------------------
    def _matching_loss(self, video, text, video_ids):
        similarity = video_text_similarity(video.video_embeds, text.text_embeds).detach()
        negative_video, negative_text = sample_matching_negatives(
            similarity / self.get_temperature().detach(), video_ids
        )
        video_tokens = torch.cat([video.video_tokens, video.video_tokens[negative_video], video.video_tokens])
        text_hidden = torch.cat(
            [text.text_hidden_states, text.text_hidden_states, text.text_hidden_states[negative_text]]
        )
        mask = torch.cat([text.attention_mask, text.attention_mask, text.attention_mask[negative_text]])
        logits = self.matching_logits(video_tokens, text_hidden, mask)
        batch = video.video_tokens.shape[0]
        labels = torch.zeros(3 * batch, dtype=torch.long, device=logits.device)
        labels[:batch] = 1
        return F.cross_entropy(logits.float(), labels)

    def _alignment_loss(self, video, bool_masked_pos, alignment_targets):
        if self.alignment_decoder is None:
            raise ValueError(
                "Unmasked token alignment needs config.alignment_hidden_size (the teacher's width) to build the "
                "alignment decoder."
            )
        student = video.hidden_states[self.config.alignment_layer]
        batch, length, hidden = student.shape
        if bool_masked_pos is None:
            positions = torch.arange(length, device=student.device).expand(batch, length)
        else:
            visible = (~bool_masked_pos.bool()).nonzero()[:, 1].view(batch, length - 1) + 1
            positions = torch.cat([visible.new_zeros(batch, 1), visible], dim=1)
        student = student + sinusoid_position_embeddings(positions, hidden).to(student.dtype)
        predictions = self.alignment_decoder(student.to(self.alignment_decoder.dense.weight.dtype))
        return unmasked_token_alignment_loss(predictions, alignment_targets)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        video_ids: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        mlm_input_ids: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        alignment_targets: torch.Tensor | None = None,
        return_loss: bool | None = None,
        loss_weights: dict[str, float] | None = None,
        gather_contrastive: bool = True,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VideoMambaTextOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_videos, frames, channels, height, width)`): videos (a
                single frame for images).
            input_ids, attention_mask, token_type_ids (`(num_texts, length)`): tokenised captions.
            video_ids (`torch.LongTensor` of shape `(batch,)`, *optional*): pairs with the same id are positives of
                each other (several captions of one video in a batch).
            bool_masked_pos (`(batch, num_patches)`, *optional*): patches the student drops (alignment pretraining);
                the masked student then serves all losses, as in UMT.
            mlm_input_ids, mlm_labels (`(batch, length)`, *optional*): masked captions and their labels (-100 where
                not masked) for the MLM loss.
            alignment_targets (`(batch, 1 + visible_patches, alignment_hidden_size)`, *optional*): teacher features
                of the cls token and of the tokens the student keeps.
            return_loss (`bool`): compute the losses. Without `loss_weights`, these are `vtc` and `vtm`, plus `mlm`
                when `mlm_labels` is given and `uta` when `alignment_targets` is given, each with weight 1.
            loss_weights (`dict`, *optional*): `{"vtc": w, "vtm": w, "mlm": w, "uta": w}`; losses with weight 0 (or
                missing) are skipped. Giving it implies `return_loss=True`.
            gather_contrastive (`bool`): gather embeddings from all processes for the contrastive loss.

        Returns:
            [`VideoMambaTextOutput`]. Without losses, any numbers of videos and captions are accepted (a CLIP-style
            similarity matrix); with losses, videos and captions must be paired one to one.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values is None or input_ids is None:
            raise ValueError("VideoMambaForVideoTextRetrieval needs both pixel_values and input_ids.")
        weights = self._resolve_loss_weights(return_loss, loss_weights, mlm_labels, alignment_targets)
        if weights and pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"Got {pixel_values.shape[0]} videos and {input_ids.shape[0]} captions. Training losses need one "
                "caption per video (repeat a video for each of its captions and pass video_ids); for a similarity "
                "matrix over unequal sets call the model without losses, or use get_video_features/get_text_features."
            )
        if weights.get("mlm") and (mlm_input_ids is None or mlm_labels is None):
            raise ValueError("The MLM loss needs mlm_input_ids and mlm_labels (see the trainer's mask_tokens_for_mlm).")
        if weights.get("mlm") and mlm_input_ids.shape != input_ids.shape:
            raise ValueError(
                f"mlm_input_ids {tuple(mlm_input_ids.shape)} must have the shape of input_ids {tuple(input_ids.shape)}."
            )
        if weights.get("uta") and alignment_targets is None:
            raise ValueError("The alignment loss (uta) needs alignment_targets from a teacher.")

        video = self.encode_video(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=bool(weights.get("uta")),
        )
        text = self.encode_text(input_ids, attention_mask, token_type_ids)
        temperature = self.get_temperature()
        logits_per_video = video_text_similarity(video.video_embeds, text.text_embeds) / temperature

        losses = {}
        if weights.get("vtc"):
            losses["vtc"] = video_text_contrastive_loss(
                video.video_embeds, text.text_embeds, temperature, video_ids, gather=gather_contrastive
            )
        if weights.get("vtm"):
            losses["vtm"] = self._matching_loss(video, text, video_ids)
        if weights.get("mlm"):
            masked = self.encode_text(mlm_input_ids, text.attention_mask, token_type_ids)
            fused = self.fuse(masked.text_hidden_states, text.attention_mask, video.video_tokens)
            losses["mlm"] = masked_language_modeling_loss(self.mlm_head(fused), mlm_labels)
        if weights.get("uta"):
            losses["uta"] = self._alignment_loss(video, bool_masked_pos, alignment_targets)
        loss = sum(weights[name] * value for name, value in losses.items()) if losses else None

        output = VideoMambaTextOutput(
            loss=loss,
            loss_vtc=losses.get("vtc"),
            loss_vtm=losses.get("vtm"),
            loss_mlm=losses.get("mlm"),
            loss_uta=losses.get("uta"),
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_video.t(),
            video_embeds=video.video_embeds,
            text_embeds=text.text_embeds,
        )
        return output if return_dict else output.to_tuple()

    @staticmethod
    def _resolve_loss_weights(return_loss, loss_weights, mlm_labels, alignment_targets) -> dict[str, float]:
        if loss_weights is not None:
            unknown = set(loss_weights) - set(LOSS_NAMES)
            if unknown:
                raise ValueError(f"Unknown loss names {sorted(unknown)}; choose from {LOSS_NAMES}.")
            return {name: float(weight) for name, weight in loss_weights.items() if weight}
        if not return_loss:
            return {}
        weights = {"vtc": 1.0, "vtm": 1.0}
        if mlm_labels is not None:
            weights["mlm"] = 1.0
        if alignment_targets is not None:
            weights["uta"] = 1.0
        return weights

    # --- building from pretrained parts ---------------------------------------------------------------------------
    def load_text_encoder(self, pretrained_model_name_or_path, **kwargs):
        """Load a BERT checkpoint (a folder on disk or a Hub id) into the text encoder: all of BERT's layers (the
        fusion layers' self-attention and feed-forward included) and, when the checkpoint has one, its MLM head. The
        cross-attention weights keep their initialisation. Returns the names of the parameters left as they were."""
        bert = BertForMaskedLM.from_pretrained(pretrained_model_name_or_path, **kwargs)
        ours, theirs = self.config.text_config, bert.config
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
            if getattr(ours, key) != getattr(theirs, key):
                raise ValueError(
                    f"The text checkpoint has {key}={getattr(theirs, key)} but this model's text_config has "
                    f"{getattr(ours, key)}; build the model with text_config=BertConfig.from_pretrained(...)."
                )
        state = {k: v for k, v in bert.bert.state_dict().items() if not k.startswith("pooler.")}
        missing, unexpected = self.text_model.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"Unexpected text-encoder weights: {unexpected[:5]} ...")
        not_cross = [name for name in missing if ".crossattention." not in name]
        if not_cross:
            raise ValueError(f"The text checkpoint lacks weights: {not_cross[:5]} ...")
        self.mlm_head.load_state_dict(bert.cls.state_dict(), strict=False)
        self.tie_weights()
        return [f"text_model.{name}" for name in missing]

    def load_vision_encoder(self, pretrained_model_name_or_path, **kwargs):
        """Load a VideoMamba checkpoint (a `VideoMambaModel` or a classification model's folder) into the vision
        encoder, resizing its position tables to this model's frames and image size."""
        vision_config = self.config.vision_config
        backbone = VideoMambaModel.from_pretrained(
            pretrained_model_name_or_path,
            num_frames=vision_config.num_frames,
            image_size=vision_config.image_size,
            **kwargs,
        )
        self.vision_model.load_state_dict(backbone.state_dict())


__all__ = [
    "VideoMambaTextPreTrainedModel",
    "VideoMambaForVideoTextRetrieval",
    "VideoMambaTextFusionLayer",
    "VideoMambaTextOutput",
    "VideoMambaVideoEncoding",
    "VideoMambaTextEncoding",
    "video_text_similarity",
    "video_text_contrastive_loss",
    "sample_matching_negatives",
    "masked_language_modeling_loss",
    "unmasked_token_alignment_loss",
    "gather_with_grad",
    "gather_without_grad",
]
