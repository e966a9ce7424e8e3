# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Video-text pretraining (UMT-style: VTC + VTM + MLM + UTA) and zero-shot retrieval evaluation.

- `VideoTextPretrainingTrainer`: a `transformers.Trainer` for [`VideoMambaForVideoTextRetrieval`]. Per step it masks
  the captions for MLM, optionally asks a frozen CLIP teacher (`videomamba.trainers.CLIPTeacher`) for per-token
  targets and masks the student's video tokens (`videomamba.masking`), calls the model for the weighted losses, and
  logs every loss (`loss_vtc`, `loss_vtm`, `loss_mlm`, `loss_uta`), the temperature and the weights. Training batches
  are grouped by media type, so image-text and video-text data mix. Checkpoints are atomic and carry the mask
  streams (the shared `RecipeTrainerMixin`).
- `mask_tokens_for_mlm`, `MLMMasker`, `call_teacher`: the pieces the trainer uses.
- `retrieval_metrics`, `evaluate_retrieval`: R@1/5/10, median and mean rank in both directions, with optional
  re-ranking of the top-k candidates by the matching head.
"""

import inspect
import logging

import numpy as np
import torch
from transformers import Trainer

from ..masking import AttentionMaskGenerator, MaskGenerator, make_mask_generator, mask_grid_size
from ..modeling_videomamba_text import LOSS_NAMES, video_text_similarity
from ..video_text_data import MediaGroupedBatchSampler
from ._common import RecipeTrainerMixin
from .masked_alignment import CLIPTeacher


logger = logging.getLogger(__name__)


# --- masked language modelling ----------------------------------------------------------------------------------------
def mask_tokens_for_mlm(
    input_ids: torch.Tensor,
    tokenizer,
    probability: float = 0.5,
    vocab_size: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: each non-special token is selected with `probability` (0.5 in the paper); a selected token becomes
    `[MASK]` 80% of the time, a random token 10%, and stays 10%. Padding, `[CLS]` and `[SEP]` are never selected.

    Args:
        input_ids: `(batch, length)`.
        tokenizer: provides `mask_token_id`, `all_special_ids` and its length.
        vocab_size: random replacements are drawn from `[0, vocab_size)` (default: the tokenizer's length).
    Returns:
        `(masked_input_ids, labels)`, labels `-100` where not selected.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"MLM probability must lie in [0, 1], got {probability}.")
    if tokenizer.mask_token_id is None:
        raise ValueError("The tokenizer has no [MASK] token; MLM needs one (BERT tokenizers have it).")
    vocab_size = vocab_size or len(tokenizer)
    device = input_ids.device

    def bernoulli(p):
        return torch.rand(input_ids.shape, generator=generator, device="cpu").lt(p).to(device)

    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for token_id in set(tokenizer.all_special_ids) | {tokenizer.pad_token_id}:
        if token_id is not None:
            special |= input_ids == token_id
    selected = bernoulli(probability) & ~special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    masked = input_ids.clone()
    replace = bernoulli(0.8) & selected
    masked[replace] = tokenizer.mask_token_id
    randomize = bernoulli(0.5) & selected & ~replace
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device="cpu").to(device)
    masked[randomize] = random_ids[randomize]
    return masked, labels


class MLMMasker:
    """`mask_tokens_for_mlm` with its own seeded random stream, saved in checkpoints (so a resumed run masks the
    captions as an uninterrupted one would)."""

    def __init__(self, probability: float = 0.5, seed: int = 0):
        self.probability = probability
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def manual_seed(self, seed: int) -> "MLMMasker":
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)
        return self

    def state_dict(self) -> dict:
        return {"seed": self.seed, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["rng_state"])

    def __call__(self, input_ids, tokenizer, vocab_size=None):
        return mask_tokens_for_mlm(input_ids, tokenizer, self.probability, vocab_size, generator=self.generator)


# --- unmasked token alignment -----------------------------------------------------------------------------------------
def call_teacher(teacher, pixel_values: torch.Tensor, return_attention: bool = True):
    """Run a teacher and normalise its answer to `(targets (batch, 1 + patches, dim), attention or None)`.

    Accepted teachers: `teacher(pixel_values[, return_attention=...])` returning a tensor `targets`, a tuple
    `(targets, attention)`, or an object with `.targets` / `.attention`. `targets` may carry a leading layer axis of
    size 1 (`(1, batch, tokens, dim)`, the shared `CLIPTeacher` layout); alignment here uses one layer.
    """
    forward = getattr(teacher, "forward", teacher)
    try:
        accepts = "return_attention" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        accepts = False
    result = teacher(pixel_values, return_attention=return_attention) if accepts else teacher(pixel_values)
    if isinstance(result, torch.Tensor):
        targets, attention = result, None
    elif isinstance(result, (tuple, list)):
        targets, attention = result[0], (result[1] if len(result) > 1 else None)
    else:
        targets, attention = getattr(result, "targets", None), getattr(result, "attention", None)
    if targets is None:
        raise ValueError(f"The teacher returned {type(result).__name__}, not targets (see call_teacher).")
    if targets.ndim == 4:
        if targets.shape[0] != 1:
            raise ValueError(
                f"The teacher returned {targets.shape[0]} layers of targets; video-text alignment uses one (build the "
                "teacher with num_layers=1)."
            )
        targets = targets[0]
    if targets.ndim != 3:
        raise ValueError(f"Teacher targets must be (batch, 1 + patches, dim); got shape {tuple(targets.shape)}.")
    return targets, attention


def select_visible_targets(targets: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
    """`(batch, 1 + patches, dim)` teacher features -> `(batch, 1 + visible, dim)`: the cls token and the patches the
    student keeps, in order."""
    batch, length, dim = targets.shape
    if bool_masked_pos.shape != (batch, length - 1):
        raise ValueError(
            f"The teacher gave {length - 1} patch tokens but the mask covers {tuple(bool_masked_pos.shape)}; the "
            "teacher must return (batch, 1 + frames * patches, dim) on the student's patch grid."
        )
    visible = targets[:, 1:][~bool_masked_pos.bool()].reshape(batch, -1, dim)
    return torch.cat([targets[:, :1], visible], dim=1)


# --- trainer ----------------------------------------------------------------------------------------------------------
def _media_types(dataset) -> list[str]:
    if hasattr(dataset, "media_types"):
        return list(dataset.media_types)
    if isinstance(dataset, torch.utils.data.ConcatDataset):
        return [kind for part in dataset.datasets for kind in _media_types(part)]
    return ["video"] * len(dataset)


class VideoTextPretrainingTrainer(RecipeTrainerMixin, Trainer):
    """`Trainer` for video-text pretraining of [`VideoMambaForVideoTextRetrieval`] with four weighted losses.

    Args (besides `Trainer`'s):
        loss_weights (`dict`): weights of `vtc`, `vtm`, `mlm`, `uta` (0 disables one). Default: 1 for each; `uta`
            only with a teacher.
        mlm_probability (`float`, defaults to 0.5): share of caption tokens selected for MLM (the paper's 50%).
        teacher (*optional*): frozen teacher for unmasked token alignment: a `CLIPTeacher` (a transformers CLIP
            vision model is wrapped in one), or any callable `teacher(pixel_values[, return_attention=...])` giving
            normalised per-token targets `(batch, 1 + frames * patches, dim)` (cls first; a leading layer axis of
            size 1 is accepted) and, for attention masks, its cls attention `(batch, frames, patches)`.
        video_mask_generator, image_mask_generator (`videomamba.masking.MaskGenerator`, *optional*): the student's
            masks when a teacher is used, for video and for image (one-frame) batches. Default: `mask_type` masking
            of `video_mask_ratio` (0.8) / `image_mask_ratio` (0.5) of the patches on the model's token grid, seeded
            with `args.seed` (UMT's settings). As in UMT, the masked student then serves all four losses.
        mask_type (`str`, defaults to `"attention"`): for the default generators (see `videomamba.masking`).

    The `processing_class` must be a [`VideoMambaProcessor`] or a tokenizer (MLM needs `[MASK]`). Training batches
    hold one media type each (`MediaGroupedBatchSampler`) and are always full (`drop_last`), since the matching loss
    needs at least two pairs. Checkpoints are written atomically and carry the MLM and mask streams; `save_model()`
    writes the model and the processor.
    """

    recipe_state_attributes = ("mlm_masker", "video_mask_generator", "image_mask_generator")

    def __init__(
        self,
        model=None,
        args=None,
        *,
        loss_weights: dict[str, float] | None = None,
        mlm_probability: float = 0.5,
        teacher=None,
        video_mask_generator: MaskGenerator | None = None,
        image_mask_generator: MaskGenerator | None = None,
        mask_type: str = "attention",
        video_mask_ratio: float = 0.8,
        image_mask_ratio: float = 0.5,
        **kwargs,
    ):
        weights = {"vtc": 1.0, "vtm": 1.0, "mlm": 1.0, "uta": 1.0 if teacher is not None else 0.0}
        if loss_weights:
            unknown = set(loss_weights) - set(LOSS_NAMES)
            if unknown:
                raise ValueError(f"Unknown loss names {sorted(unknown)}; choose from {LOSS_NAMES}.")
            weights.update({name: float(value) for name, value in loss_weights.items()})
        if not any(weights.values()):
            raise ValueError("All loss weights are zero.")
        seed = args.seed if args is not None else 42
        if weights["uta"]:
            if teacher is None:
                raise ValueError("loss weight uta > 0 needs a teacher (e.g. CLIPTeacher), or set uta=0.")
            if getattr(model, "alignment_decoder", None) is None:
                raise ValueError(
                    "loss weight uta > 0 needs a model built with config.alignment_hidden_size = the teacher's width."
                )
            if not isinstance(teacher, CLIPTeacher) and hasattr(teacher, "vision_model"):
                teacher = CLIPTeacher(teacher)  # a transformers CLIP model
            vision_config = model.config.vision_config
            if vision_config.tubelet_size != 1:
                raise ValueError(
                    "Token alignment needs tubelet_size=1: the teacher gives one token per frame and patch."
                )
            width = getattr(teacher, "output_dim", None)
            if width is not None and width != model.config.alignment_hidden_size:
                raise ValueError(
                    f"The teacher's tokens are {width}-dimensional but config.alignment_hidden_size="
                    f"{model.config.alignment_hidden_size}."
                )
            if video_mask_generator is None:
                video_mask_generator = make_mask_generator(
                    mask_type, mask_grid_size(vision_config), mask_ratio=video_mask_ratio, seed=seed
                )
            if image_mask_generator is None:
                image_mask_generator = make_mask_generator(
                    mask_type, mask_grid_size(vision_config, num_frames=1), mask_ratio=image_mask_ratio, seed=seed + 1
                )
            for generator in (video_mask_generator, image_mask_generator):
                if not isinstance(generator, MaskGenerator):
                    raise TypeError(f"Mask generators must be videomamba.masking generators, got {type(generator)}.")
        if args is not None and args.ddp_find_unused_parameters is None:
            unused = not weights["vtm"] or not weights["mlm"]
            unused |= not weights["uta"] and getattr(model, "alignment_decoder", None) is not None
            if unused:  # modules of disabled losses get no gradient: DDP must be told
                args.ddp_find_unused_parameters = True
        self.loss_weights = weights
        self.teacher = teacher
        self.mlm_masker = MLMMasker(mlm_probability, seed=seed + 2)
        self.video_mask_generator = video_mask_generator
        self.image_mask_generator = image_mask_generator
        super().__init__(model=model, args=args, **kwargs)
        if weights["mlm"] and self._tokenizer() is None:
            raise ValueError("The MLM loss needs the tokenizer: pass processing_class=processor (or a tokenizer).")
        if self.teacher is not None and hasattr(self.teacher, "to"):
            self.teacher.to(self.args.device)
        self._weights_logged = False
        self._setup_recipe()
        logger.info("Video-text pretraining loss weights: %s", weights)

    def _tokenizer(self):
        processing = self.processing_class
        return getattr(processing, "tokenizer", processing)

    # --- data -----------------------------------------------------------------------------------------------------
    def get_train_dataloader(self):
        """Batches of one media type, mixed; full batches only; resumable (the order depends on seed and epoch)."""
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        sampler = MediaGroupedBatchSampler(
            _media_types(self.train_dataset),
            batch_size=self._train_batch_size,
            num_processes=self.args.world_size,
            shuffle=True,
            drop_last=True,
            seed=self.args.seed,
        )
        params = {
            "batch_sampler": sampler,
            "collate_fn": self.data_collator,
            "num_workers": self.args.dataloader_num_workers,
            "pin_memory": self.args.dataloader_pin_memory,
        }
        if self.args.dataloader_num_workers > 0:
            params["persistent_workers"] = self.args.dataloader_persistent_workers
            if self.args.dataloader_prefetch_factor is not None:
                params["prefetch_factor"] = self.args.dataloader_prefetch_factor
        return self.accelerator.prepare(torch.utils.data.DataLoader(self.train_dataset, **params))

    # --- losses ---------------------------------------------------------------------------------------------------
    def alignment_inputs(self, pixel_values: torch.Tensor, model) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's patch mask `(batch, patches)` and the teacher's targets of the visible tokens `(batch, 1 +
        visible, dim)` for one batch."""
        if pixel_values.ndim == 4:
            pixel_values = pixel_values.unsqueeze(1)
        vision_config = model.config.vision_config
        frames, height, width = pixel_values.shape[1], pixel_values.shape[-2], pixel_values.shape[-1]
        generator = self.image_mask_generator if frames == 1 else self.video_mask_generator
        patch = vision_config.patch_size
        grid = (frames // vision_config.tubelet_size, height // patch, width // patch)
        if tuple(generator.input_size) != grid:
            raise ValueError(
                f"The {'image' if frames == 1 else 'video'} mask generator makes masks for a {generator.input_size} "
                f"token grid but this batch gives {grid}: build it with input_size=mask_grid_size(vision_config, "
                "num_frames=..., image_size=...)."
            )
        need_attention = isinstance(generator, AttentionMaskGenerator)
        with torch.no_grad(), self.accelerator.autocast():
            targets, attention = call_teacher(self.teacher, pixel_values, return_attention=need_attention)
        if need_attention:
            if attention is None:
                raise ValueError("Attention masking needs the teacher's cls attention; use another mask_type.")
            bool_masked_pos = generator(attention)
        else:
            bool_masked_pos = generator(pixel_values.shape[0])
        bool_masked_pos = bool_masked_pos.to(pixel_values.device)
        return bool_masked_pos, select_visible_targets(targets, bool_masked_pos)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        if model.training:
            unwrapped.clamp_temperature_()
        inputs = dict(inputs)
        pixel_values, input_ids = inputs.get("pixel_values"), inputs.get("input_ids")
        if pixel_values is None or input_ids is None:
            raise ValueError("Video-text batches need pixel_values and input_ids (use VideoTextCollator).")
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"The batch holds {pixel_values.shape[0]} videos but {input_ids.shape[0]} captions; pretraining needs "
                "one caption per video (repeat a video per caption and give video_ids)."
            )
        extra = {}
        if self.loss_weights["mlm"]:
            extra["mlm_input_ids"], extra["mlm_labels"] = self.mlm_masker(
                input_ids, self._tokenizer(), vocab_size=unwrapped.config.text_config.vocab_size
            )
        if self.loss_weights["uta"]:
            extra["bool_masked_pos"], extra["alignment_targets"] = self.alignment_inputs(pixel_values, unwrapped)
        outputs = model(**inputs, **extra, loss_weights=self.loss_weights, return_dict=True)
        if model.training:
            values = {
                f"loss_{name}": getattr(outputs, f"loss_{name}")
                for name in LOSS_NAMES
                if getattr(outputs, f"loss_{name}") is not None
            }
            self._record_metrics(**values, temperature=unwrapped.get_temperature())
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs, *args, **kwargs):
        """The mean of each loss and of the temperature since the last log (over processes too) and, once, the loss
        weights."""
        if "loss" in logs and not self._weights_logged:
            logs.update({f"weight_{name}": weight for name, weight in self.loss_weights.items()})
            self._weights_logged = True
        return super().log(logs, *args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Checkpoints as the Trainer writes them; the final model (with the processor) staged and moved in place."""
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        unwrapped = self.accelerator.unwrap_model(self.model)
        self._save_final_model(
            output_dir, lambda folder, state_dict: unwrapped.save_pretrained(folder, state_dict=state_dict)
        )


# --- retrieval --------------------------------------------------------------------------------------------------------
def _best_gt_ranks(scores: np.ndarray, ground_truth: list[list[int]]) -> np.ndarray:
    """1-based rank of the best-scored ground-truth item of each row; ties with other items count against it."""
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for row, targets in enumerate(ground_truth):
        if len(targets) == 0:
            raise ValueError(f"Query {row} has no ground-truth item.")
        targets = np.asarray(targets)
        best = scores[row, targets].max()
        others = np.ones(scores.shape[1], dtype=bool)
        others[targets] = False
        ranks[row] = 1 + int((scores[row, others] >= best).sum())
    return ranks


def _rank_metrics(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_r1": 100.0 * float((ranks <= 1).mean()),
        f"{prefix}_r5": 100.0 * float((ranks <= 5).mean()),
        f"{prefix}_r10": 100.0 * float((ranks <= 10).mean()),
        f"{prefix}_medr": float(np.median(ranks)),
        f"{prefix}_meanr": float(ranks.mean()),
    }


def retrieval_metrics(text_to_video_scores, text_to_videos, video_to_text_scores=None) -> dict[str, float]:
    """Recall@1/5/10 (percent), median and mean rank (1-based) for text-to-video (`t2v_*`) and video-to-text
    (`v2t_*`) retrieval.

    Args:
        text_to_video_scores: `(num_texts, num_videos)` scores (higher = better).
        text_to_videos: for each text, its matching video index or list of indices.
        video_to_text_scores: `(num_videos, num_texts)`; default: the transpose of `text_to_video_scores`.
    A query's rank is that of its best-scored match; ties with non-matching items count against it.
    """
    t2v = np.asarray(torch.as_tensor(text_to_video_scores).float().cpu())
    v2t = t2v.T if video_to_text_scores is None else np.asarray(torch.as_tensor(video_to_text_scores).float().cpu())
    num_texts, num_videos = t2v.shape
    if v2t.shape != (num_videos, num_texts):
        raise ValueError(f"video_to_text_scores must be ({num_videos}, {num_texts}), got {v2t.shape}.")
    text_to_videos = [[int(t)] if np.isscalar(t) else [int(i) for i in t] for t in text_to_videos]
    if len(text_to_videos) != num_texts:
        raise ValueError(f"{len(text_to_videos)} ground-truth entries for {num_texts} texts.")
    video_to_texts = [[] for _ in range(num_videos)]
    for text, videos in enumerate(text_to_videos):
        for video in videos:
            if not 0 <= video < num_videos:
                raise ValueError(f"Text {text} points to video {video}, outside [0, {num_videos}).")
            video_to_texts[video].append(text)
    metrics = _rank_metrics(_best_gt_ranks(t2v, text_to_videos), "t2v")
    covered = [i for i, texts in enumerate(video_to_texts) if texts]
    metrics.update(_rank_metrics(_best_gt_ranks(v2t[covered], [video_to_texts[i] for i in covered]), "v2t"))
    return metrics


@torch.no_grad()
def extract_text_features(model, tokenizer, texts, batch_size: int = 128, max_length: int = 32, device=None):
    """Text embeddings `(num_texts, dim)` and, for re-ranking, the text-only layers' states and masks (on CPU)."""
    device = device or next(model.parameters()).device
    embeds, states, masks = [], [], []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            list(texts[start : start + batch_size]), padding="max_length", truncation=True, max_length=max_length,
            return_tensors="pt",
        )
        out = model.encode_text(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))
        embeds.append(out.text_embeds.float())
        states.append(out.text_hidden_states.cpu())
        masks.append(out.attention_mask.cpu())
    return torch.cat(embeds), torch.cat(states), torch.cat(masks)


@torch.no_grad()
def extract_video_features(model, video_batches, keep_tokens: bool = False, device=None, accelerator=None):
    """Video embeddings (and, for re-ranking, patch tokens on CPU) for an iterable of `pixel_values` batches (or of
    dicts holding them). With `accelerator`, the batches are this process's shard and the result is gathered."""
    device = device or next(model.parameters()).device
    embeds, tokens = [], []
    for batch in video_batches:
        pixel_values = batch["pixel_values"] if isinstance(batch, dict) or hasattr(batch, "keys") else batch
        out = model.encode_video(pixel_values.to(device))
        video_embeds, video_tokens = out.video_embeds.float(), out.video_tokens
        if accelerator is not None:
            video_embeds = accelerator.gather_for_metrics(video_embeds)
            video_tokens = accelerator.gather_for_metrics(video_tokens) if keep_tokens else None
        embeds.append(video_embeds)
        if keep_tokens:
            tokens.append(video_tokens.cpu())
    return torch.cat(embeds), (torch.cat(tokens) if keep_tokens else None)


@torch.no_grad()
def rerank_with_matching(model, similarity, text_states, text_masks, video_tokens, k: int = 16,
                         batch_size: int = 64, accelerator=None):
    """Re-score the top-`k` candidates of every query with the matching head.

    Args:
        similarity: `(num_texts, num_videos)` dual-encoder scores.
        text_states, text_masks: from `extract_text_features`; video_tokens: from `extract_video_features`.
    Returns:
        `(text_to_video_scores, video_to_text_scores)`: the top-`k` candidates of each query are ordered by the
        matching log-odds and placed above all other items, which keep their dual-encoder order.
    """
    device = next(model.parameters()).device
    num_texts, num_videos = similarity.shape
    similarity = similarity.float().cpu()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)

    def matching_scores(pairs):
        scores = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            texts = torch.tensor([t for t, _ in chunk])
            videos = torch.tensor([v for _, v in chunk])
            logits = model.matching_logits(
                video_tokens[videos].to(device), text_states[texts].to(device), text_masks[texts].to(device)
            ).float()
            scores.append((logits[:, 1] - logits[:, 0]).cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

    def rerank(scores, k_eff, queries_are_texts):
        top = scores.topk(k_eff, dim=1).indices
        queries = list(range(rank, scores.shape[0], world))  # this process's share of the queries
        pairs = [(q, int(c)) if queries_are_texts else (int(c), q) for q in queries for c in top[q]]
        matched = torch.zeros_like(scores)
        if pairs:
            rows = torch.tensor([q for q in queries for _ in range(k_eff)])
            matched[rows, top[queries].reshape(-1)] = matching_scores(pairs)
        if accelerator is not None:
            matched = accelerator.reduce(matched.to(device), reduction="sum").cpu()
        filled = torch.zeros_like(scores, dtype=torch.bool)
        filled.scatter_(1, top, True)
        lowest = matched[filled].min()
        base = scores - scores.max() - 1.0  # every other item stays below the re-ranked ones, in dual order
        return torch.where(filled, matched - lowest, base)

    t2v = rerank(similarity, min(k, num_videos), True)
    v2t = rerank(similarity.t().contiguous(), min(k, num_texts), False)
    return t2v, v2t


@torch.no_grad()
def evaluate_retrieval(model, tokenizer, video_batches, texts, text_to_videos, rerank_k: int = 0,
                       max_length: int = 32, text_batch_size: int = 128, accelerator=None) -> dict[str, float]:
    """Zero-shot retrieval: embed the videos and the texts, score by cosine similarity (mean over frames for
    per-frame embeddings), and report `retrieval_metrics`; with `rerank_k > 0` also the metrics after re-ranking the
    top-`rerank_k` of each query with the matching head (keys prefixed `rerank_`)."""
    was_training = model.training
    model.eval()
    video_embeds, video_tokens = extract_video_features(
        model, video_batches, keep_tokens=rerank_k > 0, accelerator=accelerator
    )
    text_embeds, text_states, text_masks = extract_text_features(
        model, tokenizer, texts, batch_size=text_batch_size, max_length=max_length
    )
    similarity = video_text_similarity(video_embeds, text_embeds).t()  # (texts, videos)
    metrics = retrieval_metrics(similarity, text_to_videos)
    if rerank_k > 0:
        t2v, v2t = rerank_with_matching(
            model, similarity, text_states, text_masks, video_tokens, k=rerank_k, accelerator=accelerator
        )
        reranked = retrieval_metrics(t2v, text_to_videos, v2t)
        metrics.update({f"rerank_{key}": value for key, value in reranked.items()})
    model.train(was_training)
    return metrics


__all__ = [
    "VideoTextPretrainingTrainer",
    "MLMMasker",
    "mask_tokens_for_mlm",
    "select_visible_targets",
    "call_teacher",
    "retrieval_metrics",
    "extract_text_features",
    "extract_video_features",
    "rerank_with_matching",
    "evaluate_retrieval",
]
