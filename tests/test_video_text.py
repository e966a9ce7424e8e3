"""Video-text model, losses, trainer, retrieval metrics, processor and data (CPU, tiny configs, no network)."""

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModel,
    AutoProcessor,
    BertConfig,
    BertForMaskedLM,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    TrainingArguments,
)

from videomamba import (
    VideoMambaForVideoTextRetrieval,
    VideoMambaProcessor,
    VideoMambaTextConfig,
    build_wordpiece_tokenizer,
)
from videomamba.modeling_videomamba_text import (
    gather_with_grad,
    gather_without_grad,
    masked_language_modeling_loss,
    sample_matching_negatives,
    unmasked_token_alignment_loss,
    video_text_contrastive_loss,
    video_text_similarity,
)
from videomamba.masking import make_mask_generator
from videomamba.trainers import CLIPTeacher
from videomamba.trainers.video_text import (
    MLMMasker,
    VideoTextPretrainingTrainer,
    call_teacher,
    evaluate_retrieval,
    mask_tokens_for_mlm,
    rerank_with_matching,
    retrieval_metrics,
    select_visible_targets,
)
from videomamba.video_text_data import (
    MediaGroupedBatchSampler,
    VideoTextCollator,
    build_retrieval_set,
    read_caption_file,
)

from .conftest import tiny_config


CAPTIONS = [
    f"the digit {d} {verb}"
    for d in range(10)
    for verb in ("moves to the left", "moves to the right", "moves up", "moves down")
] + [f"a picture of the digit {d}" for d in range(10)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_wordpiece_tokenizer(CAPTIONS, vocab_size=200)


def make_video_processor():
    from videomamba import VideoMambaVideoProcessor

    return VideoMambaVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=4)


@pytest.fixture(scope="module")
def processor(tokenizer):
    return VideoMambaProcessor(make_video_processor(), tokenizer, max_text_length=12)


def text_config(vocab_size, **overrides):
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def make_config(vocab_size=200, **overrides):
    kwargs = dict(
        vision_config=tiny_config(num_labels=2),
        text_config=text_config(vocab_size),
        fusion_layer=2,
        projection_dim=16,
        alignment_hidden_size=12,
    )
    kwargs.update(overrides)
    return VideoMambaTextConfig(**kwargs)


@pytest.fixture
def model(tokenizer):
    return VideoMambaForVideoTextRetrieval(make_config(len(tokenizer))).eval()


def encode(tokenizer, texts, length=12):
    return tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")


def videos(batch=3, frames=4, size=32):
    return torch.randn(batch, frames, 3, size, size)


# --- losses against hand computations ---------------------------------------------------------------------------------
def hand_contrastive(video, text, temperature, video_ids=None):
    """Explicit loops: similarity = mean over frames of cosines; soft targets over positives."""
    video = video if video.ndim == 3 else video[:, None]
    n = video.shape[0]
    sim = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            cosines = [F.cosine_similarity(video[i, f], text[j], dim=0).item() for f in range(video.shape[1])]
            sim[i][j] = sum(cosines) / len(cosines) / temperature
    ids = list(range(n)) if video_ids is None else video_ids

    def direction(matrix):
        total = 0.0
        for i in range(n):
            positives = [j for j in range(n) if ids[i] == ids[j]]
            log_norm = math.log(sum(math.exp(v) for v in matrix[i]))
            total += -sum(matrix[i][j] - log_norm for j in positives) / len(positives)
        return total / n

    transposed = [[sim[j][i] for j in range(n)] for i in range(n)]
    return (direction(sim) + direction(transposed)) / 2


@pytest.mark.parametrize("per_frame", [False, True])
def test_contrastive_loss_matches_hand_computation(per_frame):
    video = torch.randn(4, 3, 8) if per_frame else torch.randn(4, 8)
    text = torch.randn(4, 8)
    loss = video_text_contrastive_loss(video, text, 0.1)
    assert loss.item() == pytest.approx(hand_contrastive(video, text, 0.1), rel=1e-5)
    ids = [0, 1, 0, 2]
    loss = video_text_contrastive_loss(video, text, 0.1, video_ids=torch.tensor(ids))
    assert loss.item() == pytest.approx(hand_contrastive(video, text, 0.1, ids), rel=1e-5)


def test_contrastive_gather_path_with_one_process(tmp_path):
    import torch.distributed as dist

    video = torch.randn(3, 2, 8, requires_grad=True)
    text = torch.randn(3, 8, requires_grad=True)
    reference = video_text_contrastive_loss(video, text, 0.07, gather=False)
    reference_grads = torch.autograd.grad(reference, [video, text])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        assert torch.equal(gather_with_grad(text), text)
        assert torch.equal(gather_without_grad(torch.tensor([4, 5])), torch.tensor([4, 5]))
        loss = video_text_contrastive_loss(video, text, 0.07, gather=True)
        grads = torch.autograd.grad(loss, [video, text])
    finally:
        dist.destroy_process_group()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    for grad, expected in zip(grads, reference_grads):
        torch.testing.assert_close(grad, expected)


def test_unmasked_token_alignment_loss_matches_hand_computation():
    a = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]])
    b = torch.tensor([[[5.0, 0.0], [0.0, -1.0], [0.0, 1.0]]])
    # cosines 1, -1, 0 -> distances 0, 4, 2 -> mean 2
    assert unmasked_token_alignment_loss(a, b).item() == pytest.approx(2.0)
    x, y = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    expected = (2 - 2 * F.cosine_similarity(x, y, dim=-1)).mean()
    assert unmasked_token_alignment_loss(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="cls token first"):
        unmasked_token_alignment_loss(x, y[:, :4])


def test_mlm_loss_matches_hand_computation():
    logits = torch.randn(2, 4, 6, requires_grad=True)
    labels = torch.tensor([[-100, 3, -100, 0], [5, -100, -100, -100]])
    positions = [(0, 1, 3), (0, 3, 0), (1, 0, 5)]
    expected = -sum(F.log_softmax(logits[b, t], -1)[c] for b, t, c in positions) / len(positions)
    assert masked_language_modeling_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    none = masked_language_modeling_loss(logits, torch.full((2, 4), -100))
    assert none.item() == 0.0 and none.requires_grad


def test_mlm_masking_statistics(tokenizer):
    encoded = encode(tokenizer, CAPTIONS * 40, length=12)
    ids = encoded["input_ids"]
    generator = torch.Generator().manual_seed(0)
    masked, labels = mask_tokens_for_mlm(ids, tokenizer, probability=0.5, generator=generator)
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    selected = labels != -100
    assert not (selected & special).any(), "special tokens must never be selected"
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    assert selected.sum() / (~special).sum() == pytest.approx(0.5, abs=0.03)
    as_mask = (masked == tokenizer.mask_token_id) & selected
    assert as_mask.sum() / selected.sum() == pytest.approx(0.8, abs=0.03)
    changed = (masked != ids) & selected & ~as_mask
    kept = (masked == ids) & selected
    assert changed.sum() / selected.sum() == pytest.approx(0.1, abs=0.03)
    assert kept.sum() / selected.sum() == pytest.approx(0.1, abs=0.03)


def test_matching_negatives_exclude_positives_and_follow_similarity():
    similarity = torch.full((4, 4), -5.0)
    similarity.fill_diagonal_(10.0)
    hardest = [2, 3, 0, 1]
    for row, column in enumerate(hardest):
        similarity[row, column] = 8.0  # video `row` and caption `column` look alike
    generator = torch.Generator().manual_seed(0)
    neg_video, neg_text = sample_matching_negatives(similarity, generator=generator)
    assert neg_text.tolist() == hardest  # hardest caption for each video
    assert neg_video.tolist() == [hardest.index(t) for t in range(4)]  # hardest video for each caption
    ids = torch.tensor([0, 0, 1, 1])
    for _ in range(20):
        neg_video, neg_text = sample_matching_negatives(torch.randn(4, 4), ids, hard=False, generator=generator)
        assert (ids[neg_video] != ids).all() and (ids[neg_text] != ids).all()
    with pytest.raises(ValueError, match="at least two different videos"):
        sample_matching_negatives(torch.randn(3, 3), torch.tensor([1, 1, 1]))


def test_matching_loss_matches_hand_computation(model, tokenizer):
    pixel_values = videos(3)
    encoded = encode(tokenizer, ["the digit 1 moves up", "the digit 2 moves down", "a picture of the digit 7"])
    with torch.no_grad():
        video = model.encode_video(pixel_values)
        text = model.encode_text(encoded["input_ids"], encoded["attention_mask"])
        torch.manual_seed(3)
        loss = model._matching_loss(video, text, None)
        torch.manual_seed(3)
        similarity = video_text_similarity(video.video_embeds, text.text_embeds) / model.get_temperature()
        neg_video, neg_text = sample_matching_negatives(similarity, None)
        pairs = [(i, i, 1) for i in range(3)] + [(int(neg_video[i]), i, 0) for i in range(3)]
        pairs += [(i, int(neg_text[i]), 0) for i in range(3)]
        total = 0.0
        for v, t, label in pairs:
            logits = model.matching_logits(
                video.video_tokens[v : v + 1], text.text_hidden_states[t : t + 1], text.attention_mask[t : t + 1]
            )[0]
            total += -(logits[label] - torch.logsumexp(logits, 0)).item()
    assert (neg_video != torch.arange(3)).all() and (neg_text != torch.arange(3)).all()
    assert loss.item() == pytest.approx(total / len(pairs), rel=1e-4)


def test_forward_losses_match_their_parts(model, tokenizer):
    pixel_values = videos(3)
    encoded = encode(tokenizer, ["the digit 1 moves up", "the digit 2 moves down", "the digit 3 moves up"])
    mlm_ids, mlm_labels = mask_tokens_for_mlm(encoded["input_ids"], tokenizer, 0.5)
    mask = make_mask_generator("tube", (4, 2, 2), mask_ratio=0.5)(3)
    targets = torch.randn(3, 1 + 8, 12)
    out = model(
        pixel_values=pixel_values, **encoded, mlm_input_ids=mlm_ids, mlm_labels=mlm_labels, bool_masked_pos=mask,
        alignment_targets=targets, loss_weights={"vtc": 0.5, "vtm": 0.0, "mlm": 2.0, "uta": 1.5},
    )
    assert out.loss_vtm is None
    assert out.loss.item() == pytest.approx(
        0.5 * out.loss_vtc.item() + 2.0 * out.loss_mlm.item() + 1.5 * out.loss_uta.item(), rel=1e-5
    )
    with torch.no_grad():
        video = model.encode_video(pixel_values, bool_masked_pos=mask)
        text = model.encode_text(encoded["input_ids"], encoded["attention_mask"])
        vtc = video_text_contrastive_loss(video.video_embeds, text.text_embeds, model.get_temperature())
        masked = model.encode_text(mlm_ids, encoded["attention_mask"])
        logits = model.mlm_head(model.fuse(masked.text_hidden_states, encoded["attention_mask"], video.video_tokens))
    assert video.video_embeds.shape == (3, 16), "a masked student pools per video"
    assert out.loss_vtc.item() == pytest.approx(vtc.item(), rel=1e-5)
    assert out.loss_mlm.item() == pytest.approx(masked_language_modeling_loss(logits, mlm_labels).item(), rel=1e-5)


# --- model API ----------------------------------------------------------------------------------------------------------
def test_clip_style_api_and_shapes(model, tokenizer):
    pixel_values = videos(2)
    encoded = encode(tokenizer, ["the digit 1 moves up", "the digit 2 moves down", "a picture of the digit 7"])
    with torch.no_grad():
        out = model(pixel_values=pixel_values, **encoded)
        video_embeds = model.get_video_features(pixel_values)
        text_embeds = model.get_text_features(encoded["input_ids"], encoded["attention_mask"])
    assert video_embeds.shape == (2, 4, 16)  # per-frame pooling: 4 frames
    assert text_embeds.shape == (3, 16)
    assert out.logits_per_video.shape == (2, 3) and out.logits_per_text.shape == (3, 2)
    torch.testing.assert_close(out.logits_per_video, model.similarity_logits(video_embeds, text_embeds))
    manual = torch.stack(
        [torch.stack([F.cosine_similarity(video_embeds[v], text_embeds[t][None]).mean() for t in range(3)])
         for v in range(2)]
    ) / 0.07
    torch.testing.assert_close(out.logits_per_video, manual, rtol=1e-4, atol=1e-4)
    # Images: 4-D input or one frame, through the video model.
    image_embeds = model.get_video_features(torch.randn(2, 3, 32, 32))
    assert image_embeds.shape == (2, 16)
    per_video = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer), pool_per_frame=False)).eval()
    assert per_video.get_video_features(pixel_values).shape == (2, 16)


def test_initialisation_of_the_composite_model(tokenizer):
    model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer)))
    mixer = model.vision_model.layers[0].mixer
    expected = torch.log(torch.arange(1, 9, dtype=torch.float)).repeat(mixer.A_log.shape[0], 1)
    torch.testing.assert_close(mixer.A_log.data, expected)  # VideoMamba's own initialisation
    assert model.vision_model.embeddings.cls_token.abs().max() == 0
    assert model.temperature.item() == pytest.approx(0.07)
    key = model.text_model.encoder.layer[2].crossattention.self.key
    assert key.weight.std().item() == pytest.approx(0.02, rel=0.25) and key.bias.abs().max() == 0  # BERT's init
    assert model.vision_projection.weight.std().item() == pytest.approx(0.02, rel=0.25)
    assert model.mlm_head.predictions.decoder.bias is model.mlm_head.predictions.bias
    assert model.mlm_head.predictions.bias.abs().max() == 0


def test_padding_does_not_change_text_features(model, tokenizer):
    short = encode(tokenizer, ["the digit 4 moves up"], length=8)
    long = encode(tokenizer, ["the digit 4 moves up"], length=16)
    with torch.no_grad():
        a = model.get_text_features(short["input_ids"], short["attention_mask"])
        b = model.get_text_features(long["input_ids"], long["attention_mask"])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fusion_layers_cross_attend_to_video_width(model):
    layers = model.text_model.encoder.layer
    assert not hasattr(layers[0], "crossattention") and not hasattr(layers[1], "crossattention")
    cross = layers[2].crossattention.self
    assert cross.key.in_features == 32 and cross.value.in_features == 32  # VideoMamba width, BERT width is 24
    assert layers[2].attention.self.is_causal is False
    # The matching output depends on the video.
    tokens = torch.randn(1, 16, 32)
    hidden = torch.randn(1, 5, 24)
    mask = torch.ones(1, 5, dtype=torch.long)
    with torch.no_grad():
        a = model.matching_logits(tokens, hidden, mask)
        b = model.matching_logits(tokens + 1.0, hidden, mask)
    assert not torch.allclose(a, b)


def test_mismatched_batch_sizes_give_clear_errors(model, tokenizer, processor):
    encoded = encode(tokenizer, ["the digit 1 moves up"] * 3)
    with pytest.raises(ValueError, match="Got 2 videos and 3 captions"):
        model(pixel_values=videos(2), **encoded, return_loss=True)
    with pytest.raises(ValueError, match="2 captions and 3 videos"):
        processor(text=["a", "b"], videos=[np.zeros((4, 32, 32, 3), np.uint8)] * 3)
    with pytest.raises(ValueError, match="pairs each caption with one video"):
        model.fuse(torch.randn(2, 5, 24), torch.ones(2, 5), torch.randn(3, 16, 32))
    with pytest.raises(ValueError, match="needs both pixel_values and input_ids"):
        model(pixel_values=videos(2))
    with pytest.raises(ValueError, match="mlm_input_ids and mlm_labels"):
        model(pixel_values=videos(3), **encoded, loss_weights={"mlm": 1.0})
    with pytest.raises(ValueError, match="Unknown loss names"):
        model(pixel_values=videos(3), **encoded, loss_weights={"itc": 1.0})


def test_config_validation():
    with pytest.raises(ValueError, match="fusion_layer must lie in"):
        make_config(fusion_layer=4)
    with pytest.raises(ValueError, match="plain"):
        make_config(text_config=text_config(50, is_decoder=True, add_cross_attention=True))
    with pytest.raises(ValueError, match="temperature"):
        make_config(temperature_init_value=0.9)


# --- save / load --------------------------------------------------------------------------------------------------------
def test_save_and_load_model_and_processor(model, processor, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "processor_config.json").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "videomamba_text" and config["text_config"]["num_hidden_layers"] == 3

    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is VideoMambaForVideoTextRetrieval
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded_processor) is VideoMambaProcessor and loaded_processor.max_text_length == 12
    assert loaded.mlm_head.predictions.decoder.weight is loaded.text_model.embeddings.word_embeddings.weight

    frames = [np.random.randint(0, 255, (4, 40, 40, 3), dtype=np.uint8) for _ in range(2)]
    captions = ["the digit 3 moves to the left", "a picture of the digit 9"]
    batch, batch2 = processor(text=captions, videos=frames), loaded_processor(text=captions, videos=frames)
    for key in batch:
        torch.testing.assert_close(batch[key], batch2[key])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits_per_video, loaded(**batch2).logits_per_video)
        for name in ("temperature",):
            torch.testing.assert_close(getattr(model, name), getattr(loaded, name))


def test_text_encoder_loads_from_a_bert_folder(tokenizer, tmp_path):
    bert = BertForMaskedLM(text_config(len(tokenizer)))
    with torch.no_grad():
        bert.cls.predictions.transform.dense.weight.normal_()
    bert.save_pretrained(tmp_path / "bert")
    model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer)))
    cross_before = model.text_model.encoder.layer[2].crossattention.self.key.weight.clone()
    untouched = model.load_text_encoder(tmp_path / "bert")
    assert untouched and all(".crossattention." in name for name in untouched)
    theirs = bert.bert.state_dict()
    for name, value in model.text_model.state_dict().items():
        if ".crossattention." not in name:
            torch.testing.assert_close(value, theirs[name], msg=name)
    torch.testing.assert_close(model.text_model.encoder.layer[2].crossattention.self.key.weight, cross_before)
    torch.testing.assert_close(
        model.mlm_head.predictions.transform.dense.weight, bert.cls.predictions.transform.dense.weight
    )
    bigger = BertForMaskedLM(text_config(len(tokenizer), hidden_size=32))
    bigger.save_pretrained(tmp_path / "bigger")
    with pytest.raises(ValueError, match="hidden_size=32"):
        model.load_text_encoder(tmp_path / "bigger")


def test_vision_encoder_loads_from_a_videomamba_folder(tokenizer, tmp_path):
    from videomamba import VideoMambaForVideoClassification

    classifier = VideoMambaForVideoClassification(tiny_config(num_frames=8, num_labels=3))
    with torch.no_grad():
        classifier.videomamba.embeddings.temporal_position_embeddings.normal_()
    classifier.save_pretrained(tmp_path / "k400")
    model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer)))  # 4 frames
    model.load_vision_encoder(tmp_path / "k400")
    theirs = classifier.videomamba.state_dict()
    for name, value in model.vision_model.state_dict().items():
        if name != "embeddings.temporal_position_embeddings":
            torch.testing.assert_close(value, theirs[name], msg=name)
    assert model.vision_model.embeddings.temporal_position_embeddings.shape == (1, 4, 32)  # resized 8 -> 4 frames


# --- alignment masks and teacher ----------------------------------------------------------------------------------------
def test_select_visible_targets_and_teacher_outputs():
    targets = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    visible = select_visible_targets(targets, mask)
    assert visible[..., 0].tolist() == [[0, 2, 4], [5, 6, 7]]
    assert call_teacher(lambda x: targets, None)[0] is targets
    stacked, attention = call_teacher(lambda x, return_attention=False: (targets[None], "a"), None)
    assert torch.equal(stacked, targets) and attention == "a"
    with pytest.raises(ValueError, match="num_layers=1"):
        call_teacher(lambda x: torch.zeros(2, 2, 5, 1), None)


def tiny_teacher():
    config = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=16, projection_dim=12,
    )
    return CLIPTeacher(CLIPVisionModelWithProjection(config))


def test_trainer_uses_the_shared_teacher_and_masks(tokenizer, processor, tmp_path):
    model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer)))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, seed=3)
    trainer = VideoTextPretrainingTrainer(
        model=model, args=args, processing_class=processor, teacher=tiny_teacher(), video_mask_ratio=0.5,
        image_mask_ratio=0.25,
    )
    assert trainer.video_mask_generator.input_size == (4, 2, 2) and trainer.image_mask_generator.input_size == (1, 2, 2)
    mask, targets = trainer.alignment_inputs(videos(2), model)
    assert mask.shape == (2, 16) and (mask.sum(1) == 8).all()
    assert targets.shape == (2, 1 + 8, 12)
    mask, targets = trainer.alignment_inputs(torch.randn(2, 1, 3, 32, 32), model)
    assert mask.shape == (2, 4) and (mask.sum(1) == 1).all() and targets.shape == (2, 1 + 3, 12)
    with pytest.raises(ValueError, match="token grid"):
        trainer.alignment_inputs(torch.randn(2, 2, 3, 32, 32), model)
    masker = MLMMasker(0.5, seed=7)
    ids = encode(tokenizer, CAPTIONS[:8])["input_ids"]
    state = masker.state_dict()
    first = masker(ids, tokenizer)
    masker.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first, masker(ids, tokenizer))), "the MLM stream resumes exactly"


# --- retrieval ----------------------------------------------------------------------------------------------------------
def test_retrieval_metrics_on_a_known_matrix():
    # 4 texts x 3 videos; text 3 matches videos 0 and 2.
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.2],  # gt 0 -> rank 1
            [0.8, 0.3, 0.5],  # gt 1 -> rank 3
            [0.1, 0.7, 0.7],  # gt 2 -> tie with video 1 counts against: rank 2
            [0.2, 0.9, 0.4],  # gt {0, 2} -> best is 2 at rank 2
        ]
    )
    metrics = retrieval_metrics(scores, [0, 1, 2, [0, 2]])
    assert metrics["t2v_r1"] == pytest.approx(25.0)
    assert metrics["t2v_r5"] == pytest.approx(100.0)
    assert metrics["t2v_medr"] == pytest.approx(2.0)
    assert metrics["t2v_meanr"] == pytest.approx((1 + 3 + 2 + 2) / 4)
    # Video -> text: video 0 (texts {0, 3}: 0.9 best -> rank 1), video 1 (text 1: 0.3 among 0.1,0.3,0.7,0.9 ->
    # rank 3), video 2 (texts {2, 3}: best 0.7, others 0.2, 0.5 -> rank 1).
    assert metrics["v2t_r1"] == pytest.approx(200 / 3)
    assert metrics["v2t_meanr"] == pytest.approx(5 / 3)
    assert metrics["v2t_medr"] == pytest.approx(1.0)
    constant = retrieval_metrics(torch.zeros(3, 3), [0, 1, 2])
    assert constant["t2v_r1"] == 0.0 and constant["t2v_meanr"] == 3.0


def test_rerank_orders_top_k_by_matching_head(model, tokenizer):
    texts = ["the digit 1 moves up", "the digit 2 moves down", "a picture of the digit 7"]
    encoded = encode(tokenizer, texts)
    with torch.no_grad():
        video = model.encode_video(videos(4))
        text = model.encode_text(encoded["input_ids"], encoded["attention_mask"])
        similarity = video_text_similarity(video.video_embeds, text.text_embeds).t()
        t2v, v2t = rerank_with_matching(
            model, similarity, text.text_hidden_states, text.attention_mask, video.video_tokens, k=2
        )
        for q in range(3):
            top = similarity[q].topk(2).indices
            logits = model.matching_logits(
                video.video_tokens[top], text.text_hidden_states[[q, q]], text.attention_mask[[q, q]]
            )
            log_odds = logits[:, 1] - logits[:, 0]
            order = top[log_odds.argsort(descending=True)]
            assert t2v[q].argsort(descending=True)[:2].tolist() == order.tolist()
            rest = [v for v in similarity[q].argsort(descending=True).tolist() if v not in top.tolist()]
            assert t2v[q].argsort(descending=True)[2:].tolist() == rest
    assert v2t.shape == (4, 3)


def test_evaluate_retrieval_end_to_end(model, tokenizer):
    texts = ["the digit 1 moves up", "the digit 2 moves down", "a picture of the digit 7"]
    batches = [videos(2), videos(1)]
    metrics = evaluate_retrieval(model, tokenizer, batches, texts, [0, 1, [1, 2]], rerank_k=2, max_length=12)
    for prefix in ("", "rerank_"):
        for key in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr", "t2v_meanr", "v2t_r1", "v2t_meanr"):
            assert f"{prefix}{key}" in metrics
    assert metrics["t2v_r5"] == 100.0 and 1.0 <= metrics["t2v_meanr"] <= 3.0


# --- data -------------------------------------------------------------------------------------------------------------
def test_caption_files_and_retrieval_sets(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([
        {"video": "v0.mp4", "caption": "one"}, {"video": "v1.mp4", "caption": ["two", "one"]},
        {"image": "i0.png", "caption": "three"},
    ]))
    records = read_caption_file(tmp_path / "a.json")
    assert [(r["media"], r["caption"], r["media_type"]) for r in records] == [
        ("v0.mp4", "one", "video"), ("v1.mp4", "two", "video"), ("v1.mp4", "one", "video"),
        ("i0.png", "three", "image"),
    ]
    (tmp_path / "b.csv").write_text("key,vid_key,video_id,sentence\nret0,msr7,video7,a man sings\n")
    assert read_caption_file(tmp_path / "b.csv") == [
        {"media": "video7", "caption": "a man sings", "media_type": "video"}
    ]
    names, texts, gt = build_retrieval_set(records[:3])
    assert names == ["v0.mp4", "v1.mp4"] and texts == ["one", "two", "one"] and gt == [[0], [1], [1]]
    names, texts, gt = build_retrieval_set(records[:3], merge_duplicate_captions=True)
    assert texts == ["one", "two"] and gt == [[0, 1], [1]]
    with pytest.raises(ValueError, match="caption keys"):
        (tmp_path / "c.json").write_text(json.dumps([{"video": "x"}]))
        read_caption_file(tmp_path / "c.json")


def test_video_frames_come_one_per_segment(tmp_path):
    from videomamba.demo_data import write_mp4
    from videomamba.video_text_data import load_video_frames

    frames = np.stack([np.full((32, 32, 3), 12 * t, dtype=np.uint8) for t in range(16)])
    write_mp4(tmp_path / "ramp.mp4", frames)
    middle = load_video_frames(tmp_path / "ramp.mp4", 4)[:, 16, 16, 0].astype(int)
    assert np.abs(middle - 12 * np.array([2, 6, 10, 14])).max() <= 3  # segment middles (H.264 is lossy)
    for seed in range(5):
        picked = load_video_frames(tmp_path / "ramp.mp4", 4, random_offset=True, rng=np.random.default_rng(seed))
        segment = np.round(picked[:, 16, 16, 0] / 12).astype(int) // 4
        assert segment.tolist() == [0, 1, 2, 3]


def test_media_grouped_batch_sampler():
    media = ["video"] * 10 + ["image"] * 7
    sampler = MediaGroupedBatchSampler(media, batch_size=2, num_processes=2, seed=1)
    sampler.set_epoch(0)
    first = list(sampler)
    assert len(first) == len(sampler) == 4 + 2  # 5 video batches -> 2 runs of 2; 3 image batches -> 1 run
    for run in range(0, len(first), 2):
        kinds = {media[i] for batch in first[run : run + 2] for i in batch}
        assert len(kinds) == 1, "both processes of a step see the same media type"
    assert all(len(batch) == 2 for batch in first)
    sampler.set_epoch(0)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    with pytest.raises(ValueError, match="No complete batch"):
        MediaGroupedBatchSampler(["video"], batch_size=2)


def test_wordpiece_tokenizer_offline(tokenizer, tmp_path):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the digit 3 moves sideways")["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "[UNK]" not in tokens
    assert tokenizer.pad_token_id == 0 and tokenizer.mask_token_id is not None
    saved = build_wordpiece_tokenizer(CAPTIONS, vocab_size=200, save_directory=tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("the digit 3")["input_ids"] == saved("the digit 3")["input_ids"]


# --- trainer ------------------------------------------------------------------------------------------------------------
class InMemoryVideoText(torch.utils.data.Dataset):
    """Videos whose content encodes their caption: a bright square whose position depends on the digit."""

    def __init__(self, num=16, frames=4, seed=0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(num):
            digit = i % 8
            video = rng.integers(0, 40, size=(frames, 32, 32, 3), dtype=np.uint8)
            y, x = divmod(digit, 4)
            video[:, 16 * y : 16 * y + 16, 8 * x : 8 * x + 8] = 255
            self.items.append(
                {"frames": video, "caption": f"the digit {digit} moves up", "video_id": i, "media_type": "video"}
            )
        # A few images too: image-text batches mix with video-text ones.
        for i in range(4):
            image = rng.integers(0, 40, size=(1, 32, 32, 3), dtype=np.uint8)
            image[:, :16, :16] = 255
            self.items.append(
                {"frames": image, "caption": "a picture of the digit 0", "video_id": 100 + i, "media_type": "image"}
            )

    def __len__(self):
        return len(self.items)

    @property
    def media_types(self):
        return [item["media_type"] for item in self.items]

    def __getitem__(self, index):
        return self.items[index]


def fixed_batch_loss(model, trainer, batch, seed=123):
    model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
    return loss.item()


def test_trainer_steps_lower_the_loss_and_log_every_loss(tokenizer, processor, tmp_path):
    torch.manual_seed(0)
    model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer)))
    dataset = InMemoryVideoText()
    collator = VideoTextCollator(processor)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=2e-3, max_steps=8,
        logging_steps=4, save_strategy="no", report_to=[], remove_unused_columns=False, use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )
    trainer = VideoTextPretrainingTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=collator, processing_class=processor,
        teacher=tiny_teacher(), loss_weights={"vtc": 1.0, "vtm": 1.0, "mlm": 1.0, "uta": 0.5},
        video_mask_ratio=0.5, image_mask_ratio=0.25,
    )
    batch = collator([dataset[i] for i in range(8)])
    before = fixed_batch_loss(model, trainer, batch)
    trainer.train()
    after = fixed_batch_loss(model, trainer, batch)
    print(f'fixed-batch loss {before:.4f} -> {after:.4f}')
    assert after < before
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(f"loss_{name}" in logs[0] for name in ("vtc", "vtm", "mlm", "uta"))
    assert logs[0]["weight_uta"] == 0.5 and "temperature" in logs[-1]
    assert 0.001 <= model.temperature.item() <= 0.5


def test_contrastive_training_aligns_videos_with_their_captions_without_collapse(processor):
    """The failure this guards against: all video embeddings converging to one point, the contrastive loss stuck at
    log(batch) and retrieval at chance. 16 demo clips (4 digits x 2 directions x 2 draws; the two draws of a caption
    are positives), 200 AdamW steps on the contrastive loss alone must find the pairs."""
    from sklearn.datasets import load_digits

    from videomamba.demo_data import render_moving_digit

    digits, rng = load_digits(), np.random.default_rng(0)
    clips, captions = [], []
    for digit in (0, 1, 3, 7):
        for direction in ("left", "right"):
            for draw in range(2):
                image = digits.images[np.flatnonzero(digits.target == digit)[draw]]
                clips.append(render_moving_digit(image, direction, 4, 32, rng))
                captions.append(f"the digit {digit} moves to the {direction}")
    batch = processor(text=captions, videos=clips, return_tensors="pt", do_sample_frames=False)
    video_ids = torch.arange(16) // 2
    torch.manual_seed(0)
    config = make_config(
        len(processor.tokenizer), vision_config=tiny_config(use_mamba_dt_init=True), alignment_hidden_size=None,
        pool_per_frame=False,
    )
    model = VideoMambaForVideoTextRetrieval(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for _ in range(200):
        out = model(**batch, video_ids=video_ids, loss_weights={"vtc": 1.0}, return_dict=True)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        out = model(**batch, video_ids=video_ids, loss_weights={"vtc": 1.0}, return_dict=True)
        video = F.normalize(out.video_embeds, dim=-1)
    off_diagonal = (video @ video.t())[~torch.eye(16, dtype=torch.bool)]
    text_to_video_r1 = (video_ids[out.logits_per_text.argmax(1)] == video_ids).float().mean().item()
    print(f"loss {out.loss.item():.3f} (chance {math.log(16):.3f}, optimum {math.log(2):.3f}), t2v R@1 "
          f"{text_to_video_r1:.2f} (chance 0.125), mean video cosine {off_diagonal.mean().item():.3f}")
    assert out.loss.item() < 0.6 * math.log(16)
    assert text_to_video_r1 >= 0.5
    assert off_diagonal.mean().item() < 0.9


def test_trainer_rejects_bad_setups(tokenizer, processor, tmp_path):
    model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer), alignment_hidden_size=None))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="needs a teacher"):
        VideoTextPretrainingTrainer(model=model, args=args, processing_class=processor, loss_weights={"uta": 1.0})
    with pytest.raises(ValueError, match="alignment_hidden_size"):
        VideoTextPretrainingTrainer(model=model, args=args, processing_class=processor, teacher=tiny_teacher())
    with pytest.raises(ValueError, match="needs the tokenizer"):
        VideoTextPretrainingTrainer(model=model, args=args)
    trainer = VideoTextPretrainingTrainer(model=model, args=args, processing_class=processor)
    encoded = encode(tokenizer, ["the digit 1 moves up"] * 3)
    with pytest.raises(ValueError, match="2 videos but 3 captions"):
        trainer.compute_loss(model, {"pixel_values": videos(2), **encoded})


REMOTE_CODE_SCRIPT = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "videomamba" or name.startswith("videomamba."):
            raise ImportError("videomamba must not be importable here")
        return None

sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".")]
import torch
from transformers import AutoModel
folder, inputs_path = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
inputs = torch.load(inputs_path, weights_only=True)
with torch.no_grad():
    torch.save(model(**inputs).logits_per_video, inputs_path + ".logits")
print(type(model).__name__)
"""


def test_remote_code_loading_without_the_package(model, tokenizer, tmp_path):
    import subprocess
    import sys

    model.save_pretrained(tmp_path / "folder")
    saved = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert saved["auto_map"]["AutoModel"].endswith("VideoMambaForVideoTextRetrieval")
    inputs = {"pixel_values": videos(2), **encode(tokenizer, ["the digit 1 moves up", "a picture of the digit 2"])}
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    (tmp_path / "script.py").write_text(REMOTE_CODE_SCRIPT)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "folder"), str(tmp_path / "inputs.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VideoMambaForVideoTextRetrieval" in result.stdout
    with torch.no_grad():
        expected = model(**inputs).logits_per_video
    torch.testing.assert_close(torch.load(tmp_path / "inputs.pt.logits", weights_only=True), expected)


def test_collator_batches_and_groups_identical_captions(processor):
    dataset = InMemoryVideoText(num=4)
    features = [dataset[i] for i in (0, 1, 2, 3)]
    features[2] = {**features[2], "caption": features[0]["caption"]}
    batch = VideoTextCollator(processor)(features)
    assert batch["pixel_values"].shape == (4, 4, 3, 32, 32) and batch["input_ids"].shape == (4, 12)
    assert batch["video_ids"].tolist() == [0, 1, 2, 3]
    grouped = VideoTextCollator(processor, group_identical_captions=True)(features)["video_ids"].tolist()
    assert grouped[0] == grouped[2] and len(set(grouped)) == 3
    gallery = VideoTextCollator(processor, with_text=False)(features)
    assert set(gallery.keys()) == {"pixel_values"}
    with pytest.raises(ValueError, match="mixes images and videos"):
        VideoTextCollator(processor)([dataset[0], dataset[len(dataset) - 1]])


def _gather_worker(rank, world_size, init_file, video, text, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        rows = slice(rank * 2, rank * 2 + 2)
        local_video = video[rows].clone().requires_grad_(True)
        local_text = text[rows].clone().requires_grad_(True)
        loss = video_text_contrastive_loss(local_video, local_text, 0.1, gather=True)
        loss.backward()
        torch.save({"loss": loss.detach(), "video": local_video.grad, "text": local_text.grad}, f"{out_dir}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_contrastive_gather_across_two_processes_gives_the_global_batch_gradient(tmp_path):
    """Two gloo processes with two pairs each: every process sees the loss of all four pairs, and its gradient,
    averaged over the processes as DDP does, is the global-batch gradient."""
    video, text = torch.randn(4, 3, 8), torch.randn(4, 8)
    torch.multiprocessing.spawn(
        _gather_worker, args=(2, str(tmp_path / "pg"), video, text, str(tmp_path)), nprocs=2, join=True
    )
    full_video, full_text = video.clone().requires_grad_(True), text.clone().requires_grad_(True)
    full = video_text_contrastive_loss(full_video, full_text, 0.1, gather=False)
    full.backward()
    for rank in range(2):
        result = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert result["loss"].item() == pytest.approx(full.item(), rel=1e-6)
        rows = slice(rank * 2, rank * 2 + 2)
        torch.testing.assert_close(result["video"] / 2, full_video.grad[rows])
        torch.testing.assert_close(result["text"] / 2, full_text.grad[rows])


# --- examples on real MP4s ----------------------------------------------------------------------------------------------
def _load_example(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_tiny_video_folder(root, count, seed):
    from sklearn.datasets import load_digits

    from videomamba.demo_data import render_moving_digit, write_mp4

    digits = load_digits()
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        direction = ("left", "right", "up", "down")[i % 4]
        index = int(rng.integers(len(digits.images)))
        write_mp4(root / f"v{i}.mp4", render_moving_digit(digits.images[index], direction, 6, 32, rng))
        records.append({"video": f"v{i}", "caption": f"the digit {int(digits.target[index])} moves {direction}"})
    return records


def test_examples_pretrain_then_zero_shot_on_mp4s(tmp_path, monkeypatch):
    from videomamba.video_text_data import VideoTextDataset

    videos_dir = tmp_path / "videos"
    train = _write_tiny_video_folder(videos_dir, 8, seed=0)
    val = _write_tiny_video_folder(tmp_path / "val", 4, seed=1)
    (tmp_path / "train.json").write_text(json.dumps(train))
    with open(tmp_path / "val.csv", "w") as handle:  # MSRVTT-style CSV for the evaluation set
        handle.write("key,video_id,sentence\n" + "".join(f"k{i},{r['video']},{r['caption']}\n" for i, r in enumerate(val)))

    item = VideoTextDataset(read_caption_file(tmp_path / "train.json"), videos_dir, num_frames=4, train=True)[0]
    assert item["frames"].shape == (4, 32, 32, 3) and item["frames"].dtype == np.uint8

    out = tmp_path / "run"
    monkeypatch.setattr("sys.argv", [
        "run_video_text_pretraining.py", "--video_dir", str(videos_dir), "--train_captions", str(tmp_path / "train.json"),
        "--eval_video_dir", str(tmp_path / "val"), "--eval_captions", str(tmp_path / "val.csv"),
        "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4", "--image_size", "32",
        "--num_frames", "4", "--vision_num_layers", "2", "--vision_hidden_size", "32", "--text_hidden_size", "32",
        "--text_num_layers", "2", "--text_num_heads", "2", "--projection_dim", "16", "--max_text_length", "12",
        "--rerank_k", "2", "--use_cpu", "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--dataloader_num_workers", "0", "--eval_batch_size", "3", "--teacher_from_config",
        "--video_mask_ratio", "0.5",
    ])
    _load_example("run_video_text_pretraining").main()
    results = json.loads((out / "retrieval_results.json").read_text())
    assert {"before_t2v_r1", "after_t2v_r1", "after_rerank_v2t_meanr"} <= set(results)
    history = json.loads((out / "final" / "config.json").read_text())
    assert history["alignment_hidden_size"] == 128  # the config-built CLIP teacher's width: UTA was on
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "processor_config.json").exists()

    metrics = _load_example("run_zero_shot_retrieval").main([
        "--model_name_or_path", str(out / "final"), "--video_dir", str(tmp_path / "val"),
        "--captions", str(tmp_path / "val.csv"), "--rerank_k", "2", "--num_workers", "0", "--batch_size", "3",
    ])
    for key in ("t2v_r1", "t2v_meanr", "v2t_r1", "rerank_t2v_r1"):
        assert metrics[key] == pytest.approx(results[f"after_{key}"], abs=1e-3)


def test_training_resumes_from_a_checkpoint_exactly(tokenizer, processor, tmp_path):
    """Run 4 steps with checkpoints every 2; resuming from checkpoint-2 ends with the uninterrupted run's weights
    (data order, MLM masks, student masks and the random draws all continue)."""
    dataset = InMemoryVideoText(num=12)

    def trainer_for(output_dir, max_steps):
        torch.manual_seed(0)
        model = VideoMambaForVideoTextRetrieval(make_config(len(tokenizer)))
        args = TrainingArguments(
            output_dir=str(output_dir), per_device_train_batch_size=4, learning_rate=1e-3, max_steps=max_steps,
            save_steps=2, save_strategy="steps", report_to=[], remove_unused_columns=False, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True, seed=0, logging_steps=1,
        )
        return VideoTextPretrainingTrainer(
            model=model, args=args, train_dataset=dataset, data_collator=VideoTextCollator(processor),
            processing_class=processor, teacher=tiny_teacher(), loss_weights={"uta": 0.5}, video_mask_ratio=0.5,
            image_mask_ratio=0.25,
        )

    full = trainer_for(tmp_path / "full", 4)
    full.train()
    assert sorted(p.name for p in (tmp_path / "full").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-2", "checkpoint-4"
    ]
    assert not any(p.name.startswith(".staging") for p in (tmp_path / "full").iterdir())
    resumed = trainer_for(tmp_path / "resumed", 4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)
