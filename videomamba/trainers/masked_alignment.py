# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Masked alignment pretraining (Li et al., 2024, section 3.4; UMT's unmasked teacher): the student sees ~20% of a
clip's tokens and aligns its features at those positions with a frozen CLIP image encoder's tokens.

Per batch:

    targets, attention = CLIPTeacher(x)                 # (K, B, 1 + T*N, D) unit tokens; (B, T, N) cls attention
    mask = mask_generator(attention or batch size)      # (B, T*N), True = masked; cls always visible
    loss = mean over visible tokens (and K layers) of 2 - 2 <student_k(x[~mask]), targets_k[~mask]>

The teacher runs on the whole clip, frame by frame, as in the official engine; its targets at the student's visible
positions are the supervision.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from ..masking import AttentionMaskGenerator, MaskGenerator, make_mask_generator, mask_grid_size
from ..modeling_videomamba_pretraining import VideoMambaForMaskedAlignment
from ._common import RecipeTrainerMixin


class CLIPTeacher(nn.Module):
    r"""A frozen transformers CLIP image encoder applied frame by frame, giving token targets for alignment.

    For each returned layer (the last `num_layers`, `layer_interval` apart; shallowest first) and each clip:
    the layer's output tokens of every frame (before CLIP's `post_layernorm`, as the official teacher with
    `--clip_return_cls` does), the cls token averaged over the frames and put first, the patch tokens in the student's
    order (frame by frame, row by row), all projected with CLIP's visual projection and L2-normalised.

    Args:
        clip_model: a `CLIPVisionModelWithProjection` or `CLIPModel` (whose `visual_projection` is used), or a
            `CLIPVisionModel` / `CLIPVisionTransformer` (then pass `projection`, or get the un-projected width).
        num_layers: how many of the last layers to return (the student's `alignment_num_layers`).
        layer_interval: distance between returned layers.
        projection: a `nn.Linear` used instead of the model's own projection.
        image_size: frames are resized (bicubic) to this size before CLIP; default the CLIP config's `image_size`.
        dtype: run CLIP in this dtype (e.g. `torch.bfloat16`); targets are float32 either way.
        apply_post_layernorm: apply CLIP's `post_layernorm` to the tokens before the projection (the official teacher
            does so only without `--clip_return_cls`, which the VideoMamba scripts set; default False).
        input_normalization, clip_normalization: `(mean, std)` pairs; when both are given the frames are
            re-normalised from the student's statistics to CLIP's. By default CLIP sees the student's pixel values
            unchanged, as in the official code.

    `forward(pixel_values, return_attention=False)`: `pixel_values` `(batch, frames, channels, height, width)`;
    returns `targets` `(num_layers, batch, 1 + frames * patches, output_dim)` and, with `return_attention`, also
    `attention` `(batch, frames, patches)`: the last layer's cls-to-patch attention averaged over heads (what attention
    masking samples from).
    """

    def __init__(
        self,
        clip_model: nn.Module,
        num_layers: int = 1,
        layer_interval: float = 1,
        projection: nn.Module | None = None,
        image_size: int | None = None,
        dtype: torch.dtype | None = None,
        apply_post_layernorm: bool = False,
        input_normalization=None,
        clip_normalization=None,
    ):
        super().__init__()
        vision = getattr(clip_model, "vision_model", clip_model)
        if not (hasattr(vision, "embeddings") and hasattr(vision, "encoder")):
            raise TypeError(
                "clip_model must be a transformers CLIP vision model (CLIPVisionModelWithProjection, CLIPModel, "
                f"CLIPVisionModel or CLIPVisionTransformer), got {type(clip_model).__name__}."
            )
        if projection is None:
            projection = getattr(clip_model, "visual_projection", None)
        self.vision_model = vision
        self.visual_projection = projection
        config = vision.config
        self.patch_size = config.patch_size
        self.image_size = int(image_size or config.image_size)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not divisible by CLIP's patch_size={self.patch_size}.")
        depth = config.num_hidden_layers
        self.layer_indices = sorted(depth - 1 - int(i * layer_interval) for i in range(num_layers))
        if num_layers < 1 or self.layer_indices[0] < 0 or len(set(self.layer_indices)) != num_layers:
            raise ValueError(f"num_layers={num_layers} layers {layer_interval} apart do not fit CLIP's {depth} layers.")
        self.num_layers = num_layers
        self.output_dim = projection.out_features if projection is not None else config.hidden_size
        self.apply_post_layernorm = apply_post_layernorm
        self.renormalize = None
        if (input_normalization is None) != (clip_normalization is None):
            raise ValueError("Pass both input_normalization and clip_normalization, or neither.")
        if input_normalization is not None:
            (in_mean, in_std), (clip_mean, clip_std) = input_normalization, clip_normalization
            self.renormalize = tuple(
                torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (in_mean, in_std, clip_mean, clip_std)
            )
        self.requires_grad_(False)
        if dtype is not None:
            self.to(dtype=dtype)
        self.eval()

    @property
    def patches_per_frame(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def train(self, mode: bool = True):
        """The teacher stays in eval mode."""
        return super().train(False)

    def _frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.ndim != 5:
            raise ValueError(
                f"CLIPTeacher takes clips (batch, frames, channels, height, width); got {tuple(pixel_values.shape)}."
            )
        batch, frames, channels, height, width = pixel_values.shape
        frames_ = pixel_values.reshape(batch * frames, channels, height, width)
        if self.renormalize is not None:
            in_mean, in_std, clip_mean, clip_std = (t.to(frames_.device) for t in self.renormalize)
            frames_ = ((frames_.float() * in_std + in_mean) - clip_mean) / clip_std
        if (height, width) != (self.image_size, self.image_size):
            frames_ = F.interpolate(
                frames_.float(), size=(self.image_size, self.image_size), mode="bicubic", align_corners=False
            )
        dtype = self.vision_model.embeddings.patch_embedding.weight.dtype
        return frames_.to(dtype)

    def cls_attention(self, layer_input: torch.Tensor) -> torch.Tensor:
        """The last layer's attention of the cls query on the patches, averaged over heads: `(frames, patches)`.
        Computed from the layer's input (`layer_norm1`, `q_proj`, `k_proj`), so it works with any attention
        implementation."""
        layer = self.vision_model.encoder.layers[-1]
        attention = layer.self_attn
        hidden = layer.layer_norm1(layer_input)
        num_frames, length, _ = hidden.shape
        heads = attention.num_heads
        query = attention.q_proj(hidden[:, :1]).view(num_frames, 1, heads, -1).transpose(1, 2)
        keys = attention.k_proj(hidden).view(num_frames, length, heads, -1).transpose(1, 2)
        scores = torch.matmul(query.float(), keys.float().transpose(-1, -2)) * attention.scale
        return scores.softmax(dim=-1).mean(dim=1)[:, 0, 1:]

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor, return_attention: bool = False):
        batch, num_frames = pixel_values.shape[:2]
        outputs = self.vision_model(
            pixel_values=self._frames(pixel_values), output_hidden_states=True, return_dict=True
        )
        hidden_states = outputs.hidden_states  # [i]: input of layer i; [i + 1]: output of layer i
        targets = []
        for index in self.layer_indices:
            tokens = hidden_states[index + 1]
            if self.apply_post_layernorm:
                tokens = self.vision_model.post_layernorm(tokens)
            width = tokens.shape[-1]
            cls_token = tokens[:, :1].reshape(batch, num_frames, 1, width).float().mean(dim=1)
            patches = tokens[:, 1:].reshape(batch, -1, width)
            tokens = torch.cat([cls_token.to(patches.dtype), patches], dim=1)
            if self.visual_projection is not None:
                tokens = self.visual_projection(tokens.to(self.visual_projection.weight.dtype))
            targets.append(F.normalize(tokens.float(), dim=-1))
        targets = torch.stack(targets)
        if not return_attention:
            return targets
        attention = self.cls_attention(hidden_states[-2]).reshape(batch, num_frames, -1)
        return targets, attention


class MaskedAlignmentTrainer(RecipeTrainerMixin, Trainer):
    r"""`transformers.Trainer` for masked alignment pretraining. `accelerate launch` gives it DDP / FSDP / mixed
    precision.

    Args:
        model: a `VideoMambaForMaskedAlignment`.
        args: `TrainingArguments`. If `ddp_find_unused_parameters` is unset and the model has parameters the loss
            does not reach (the official `alignment_input`), it is set to True.
        teacher: a `CLIPTeacher`, or a transformers CLIP model that is wrapped in one (returning as many layers as the
            student aligns). Its token width must be the student's `alignment_output_dim`.
        mask_generator: a `videomamba.masking` generator for the student's token grid; default attention masking at
            ratio 0.8 seeded with `args.seed` (the paper's setting).
        **kwargs: the rest of `Trainer`'s arguments.

    Batches are dicts with `pixel_values` `(batch, frames, channels, height, width)` (other keys are ignored).
    Evaluation reports the alignment loss with masks from a copy of the generator re-seeded identically at every
    evaluation, so evaluations are comparable. `trainer.save_model()` writes the backbone as a `VideoMambaModel`
    folder (what fine-tuning loads); the checkpoints hold the whole pretraining model (decoders included).
    """

    recipe_state_attributes = ("mask_generator",)

    def __init__(
        self,
        model=None,
        args=None,
        *,
        teacher: nn.Module,
        mask_generator: MaskGenerator | None = None,
        **kwargs,
    ):
        if not isinstance(model, VideoMambaForMaskedAlignment):
            raise TypeError(f"model must be a VideoMambaForMaskedAlignment, got {type(model).__name__}.")
        config = model.config
        if teacher is None:
            raise ValueError("MaskedAlignmentTrainer needs a teacher (a CLIPTeacher or a transformers CLIP model).")
        if not isinstance(teacher, CLIPTeacher):
            teacher = CLIPTeacher(
                teacher, num_layers=config.alignment_num_layers, layer_interval=config.alignment_layer_interval
            )
        if teacher.output_dim != config.alignment_output_dim:
            raise ValueError(
                f"The teacher's tokens are {teacher.output_dim}-dimensional but the student aligns to "
                f"alignment_output_dim={config.alignment_output_dim}: set config.alignment_output_dim="
                f"{teacher.output_dim} (CLIP ViT-B/16: 512) or use another teacher."
            )
        if teacher.num_layers != config.alignment_num_layers:
            raise ValueError(
                f"The teacher returns {teacher.num_layers} layers but the student aligns alignment_num_layers="
                f"{config.alignment_num_layers}."
            )
        if config.tubelet_size != 1:
            raise ValueError(
                "Masked alignment needs tubelet_size=1: the CLIP teacher gives one token per frame and patch."
            )
        if mask_generator is None:
            seed = args.seed if args is not None else 42
            mask_generator = make_mask_generator("attention", mask_grid_size(config), mask_ratio=0.8, seed=seed)
        if not isinstance(mask_generator, MaskGenerator):
            raise TypeError(f"mask_generator must be a videomamba.masking.MaskGenerator, got {type(mask_generator)}.")
        if args is not None and args.ddp_find_unused_parameters is None and model.unused_parameter_names():
            args.ddp_find_unused_parameters = True
        self.teacher = teacher
        self.mask_generator = mask_generator
        self._eval_mask_generator = copy.deepcopy(mask_generator)
        self._eval_seed = mask_generator.seed
        super().__init__(model=model, args=args, **kwargs)
        self.teacher.to(self.args.device)
        self._setup_recipe()

    def _check_geometry(self, pixel_values: torch.Tensor, generator: MaskGenerator):
        config = self.accelerator.unwrap_model(self.model).config
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values must be (batch, frames, channels, height, width); got {tuple(pixel_values.shape)}."
            )
        frames, height, width = pixel_values.shape[1], pixel_values.shape[-2], pixel_values.shape[-1]
        grid = (frames // config.tubelet_size, height // config.patch_size, width // config.patch_size)
        if tuple(generator.input_size) != grid:
            raise ValueError(
                f"The mask generator makes masks for a {generator.input_size} token grid ({generator.num_patches} "
                f"tokens) but these clips give {grid} ({grid[0] * grid[1] * grid[2]} tokens): build it with "
                "input_size=mask_grid_size(config, num_frames=..., image_size=...)."
            )
        if self.teacher.patches_per_frame != grid[1] * grid[2]:
            raise ValueError(
                f"The CLIP teacher sees {self.teacher.patches_per_frame} patches per frame (image_size="
                f"{self.teacher.image_size}, patch_size={self.teacher.patch_size}) but the student "
                f"{grid[1] * grid[2]}; "
                "choose the teacher's image_size so that the patch grids agree."
            )

    def make_mask(self, pixel_values: torch.Tensor, attention: torch.Tensor | None, generator: MaskGenerator):
        """`(batch, num_patches)` bool on the clips' device (True = masked)."""
        if isinstance(generator, AttentionMaskGenerator):
            mask = generator(attention)
        else:
            mask = generator(pixel_values.shape[0])
        return mask.to(pixel_values.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pixel_values = inputs["pixel_values"]
        generator = self.mask_generator if model.training else self._eval_mask_generator
        self._check_geometry(pixel_values, generator)
        need_attention = isinstance(generator, AttentionMaskGenerator)
        teacher_out = self.teacher(pixel_values, return_attention=need_attention)
        targets, attention = teacher_out if need_attention else (teacher_out, None)
        bool_masked_pos = self.make_mask(pixel_values, attention, generator)
        outputs = model(
            pixel_values=pixel_values, bool_masked_pos=bool_masked_pos, alignment_targets=targets, return_dict=True
        )
        loss = outputs.loss
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: the alignment loss only (no logits)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        """`Trainer.evaluate`, with the evaluation masks drawn from the same seed every time."""
        self._eval_mask_generator.manual_seed(self._eval_seed)
        return super().evaluate(*args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Checkpoints (`_internal_call`) hold the whole pretraining model; the final model is the backbone alone,
        a `VideoMambaModel` folder."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        unwrapped = self.accelerator.unwrap_model(self.model)
        self._save_final_model(
            output_dir, lambda folder, state_dict: unwrapped.save_backbone(folder, state_dict=state_dict)
        )


__all__ = ["CLIPTeacher", "MaskedAlignmentTrainer"]
