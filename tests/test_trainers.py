"""Recipe trainers on CPU with tiny models: losses against hand computations, training lowers the loss, checkpoints
save atomically and resume exactly, final folders load in the Auto classes, and bad set-ups fail clearly."""

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForImageClassification,
    AutoModelForVideoClassification,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from videomamba import VideoMambaForImageClassification, VideoMambaForVideoClassification, VideoMambaModel
from videomamba.masking import FrameRowMaskGenerator, TubeMaskGenerator, make_mask_generator
from videomamba.modeling_videomamba_pretraining import (
    VideoMambaForDistillation,
    VideoMambaForMaskedAlignment,
    alignment_loss,
    sinusoid_position_table,
)
from videomamba.trainers import CLIPTeacher, DistillationTrainer, MaskedAlignmentTrainer, VideoMixup

from .conftest import tiny_config


NUM_LABELS = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one intra-op thread (and the CPU is shared); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ClipDataset(torch.utils.data.Dataset):
    """In-memory clips `(frames, 3, 32, 32)` with labels."""

    def __init__(self, n=8, frames=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.pixel_values = torch.randn(n, frames, 3, 32, 32, generator=g)
        self.labels = torch.arange(n) % NUM_LABELS

    def __len__(self):
        return len(self.pixel_values)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": int(self.labels[i])}


def tiny_clip(projection_dim=24, layers=2, image_size=32):
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, image_size=image_size,
        patch_size=16, projection_dim=projection_dim,
    )
    torch.manual_seed(1)
    return CLIPVisionModelWithProjection(config).eval()


def training_args(output_dir, **overrides):
    kwargs = dict(
        output_dir=str(output_dir), per_device_train_batch_size=4, max_steps=6, learning_rate=3e-3,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0,
        disable_tqdm=True, dataloader_num_workers=0,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def teacher_and_student(seed=0):
    torch.manual_seed(seed)
    teacher = VideoMambaForVideoClassification(tiny_config(hidden_size=16)).eval()
    student = VideoMambaForVideoClassification(tiny_config())
    return teacher, student


def train_losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


# --- losses and the alignment model ----------------------------------------------------------------------------


def test_sinusoid_table_matches_the_formula():
    n, d = 7, 10
    expected = np.zeros((n, d))
    for p in range(n):
        for j in range(d):
            angle = p / np.power(10000, 2 * (j // 2) / d)
            expected[p, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    table = sinusoid_position_table(n, d)
    assert table.dtype == torch.float32
    assert torch.allclose(table, torch.tensor(expected, dtype=torch.float32), atol=1e-7)


def test_alignment_loss_is_mean_squared_distance_of_unit_vectors():
    p = F.normalize(torch.randn(2, 3, 5, 8), dim=-1)
    t = F.normalize(torch.randn(2, 3, 5, 8), dim=-1)
    hand = ((p - t) ** 2).sum(-1).mean()  # |p - t|^2 = 2 - 2 cos for unit vectors
    assert torch.allclose(alignment_loss(p, t), hand, atol=1e-6)
    assert alignment_loss(p, p).abs() < 1e-6
    assert torch.allclose(alignment_loss(p, -p), torch.tensor(4.0))


def _manual_decoder(decoder, x):
    x = F.linear(x, decoder.head.weight, decoder.head.bias)
    x = F.layer_norm(x, (x.shape[-1],), decoder.norm.weight, decoder.norm.bias, decoder.norm.eps)
    return x / x.norm(dim=-1, keepdim=True)


def test_masked_alignment_loss_matches_hand_computation():
    config = tiny_config(alignment_output_dim=24, num_hidden_layers=3)
    model = VideoMambaForMaskedAlignment(config).eval()
    pixel_values = torch.randn(2, 4, 3, 32, 32)
    mask = make_mask_generator("random", config, mask_ratio=0.5, seed=0)(2)  # 16 patches, 8 masked
    targets = F.normalize(torch.randn(1, 2, 17, 24), dim=-1)
    out = model(pixel_values, bool_masked_pos=mask, alignment_targets=targets)

    # By hand: the residual stream entering the last block (un-normalised), the official decoder input.
    streams = model.videomamba(pixel_values, bool_masked_pos=mask, output_hidden_states=True).hidden_states
    feature = streams[2]  # 3 blocks: the stream entering block 2
    table = sinusoid_position_table(17, config.hidden_size)
    preds, goal = [], []
    for b in range(2):
        keep = torch.cat([torch.tensor([True]), ~mask[b]])
        preds.append(_manual_decoder(model.clip_decoder[0], feature[b] + table[keep]))
        goal.append(targets[0, b][keep])
    preds, goal = torch.stack(preds), torch.stack(goal)
    assert out.predictions.shape == (1, 2, 9, 24)
    assert torch.allclose(out.predictions[0], preds, atol=1e-5)
    hand = (2 - 2 * (preds * goal).sum(-1)).mean()
    assert torch.allclose(out.loss, hand, atol=1e-5)
    # Targets already picked at the visible positions give the same loss.
    picked = torch.stack([targets[0, b][torch.cat([torch.tensor([True]), ~mask[b]])] for b in range(2)])
    assert torch.allclose(model(pixel_values, mask, picked.unsqueeze(0)).loss, out.loss, atol=1e-6)


def test_alignment_input_official_versus_last_hidden_state():
    pixel_values = torch.randn(2, 4, 3, 32, 32)
    mask = TubeMaskGenerator((4, 2, 2), 0.5, seed=0)(2)
    targets = F.normalize(torch.randn(1, 2, 17, 24), dim=-1)

    official = VideoMambaForMaskedAlignment(tiny_config(alignment_output_dim=24))
    official(pixel_values, mask, targets).loss.backward()
    no_grad = {n for n, p in official.named_parameters() if p.grad is None or not p.grad.any()}
    assert no_grad == set(official.unused_parameter_names())
    assert any(".layers.1.mixer." in n for n in no_grad) and "videomamba.norm_f.weight" in no_grad
    with torch.no_grad():  # the last mixer does not change what is aligned
        before = official(pixel_values, mask).predictions
        official.videomamba.layers[1].mixer.out_proj.weight.add_(1.0)
        assert torch.equal(official(pixel_values, mask).predictions, before)

    final = VideoMambaForMaskedAlignment(tiny_config(alignment_output_dim=24, alignment_input="last_hidden_state"))
    final.eval()
    final(pixel_values, mask, targets).loss.backward()
    assert final.unused_parameter_names() == []
    assert all(p.grad is not None for p in final.parameters())
    out = final(pixel_values, mask)
    table = sinusoid_position_table(17, 32)
    keep = torch.cat([torch.tensor([True]), ~mask[0]])
    expected = _manual_decoder(final.clip_decoder[0], out.last_hidden_state[0] + table[keep])
    assert torch.allclose(out.predictions[0, 0], expected, atol=1e-5)

    with pytest.raises(ValueError, match="alignment_input must be one of"):
        VideoMambaForMaskedAlignment(tiny_config(alignment_input="normed"))


def test_aligning_the_last_two_layers():
    config = tiny_config(alignment_output_dim=24, num_hidden_layers=3, alignment_num_layers=2)
    model = VideoMambaForMaskedAlignment(config).eval()
    assert model.aligned_layers == [1, 2] and len(model.clip_decoder) == 2
    pixel_values = torch.randn(1, 4, 3, 32, 32)
    out = model(pixel_values)
    streams = model.videomamba(pixel_values, output_hidden_states=True).hidden_states
    table = sinusoid_position_table(17, 32)
    # Layer 1: the final norm of the stream after block 1; layer 2 (last): the raw stream entering block 2.
    layer1 = _manual_decoder(model.clip_decoder[0], model.videomamba.norm_f(streams[2])[0] + table)
    layer2 = _manual_decoder(model.clip_decoder[1], streams[2][0] + table)
    assert torch.allclose(out.predictions[0, 0], layer1, atol=1e-5)
    assert torch.allclose(out.predictions[1, 0], layer2, atol=1e-5)
    with pytest.raises(ValueError, match="num_aligned_layers=2"):
        model(pixel_values, alignment_targets=F.normalize(torch.randn(1, 1, 17, 24), dim=-1))


def test_official_parameter_names():
    model = VideoMambaForMaskedAlignment(tiny_config(alignment_output_dim=24))
    decoder_keys = {k for k in model.state_dict() if k.startswith("clip_decoder.")}
    assert decoder_keys == {
        "clip_decoder.0.head.weight", "clip_decoder.0.head.bias", "clip_decoder.0.norm.weight",
        "clip_decoder.0.norm.bias",
    }
    assert not any("clip_pos_embed" in k for k in model.state_dict())  # a fixed table, not a weight
    _, student = teacher_and_student()
    distill = VideoMambaForDistillation.from_student(student, 16)
    head_keys = {k for k in distill.state_dict() if k.startswith("distill_head.")}
    assert head_keys == {"distill_head.0.weight", "distill_head.1.weight", "distill_head.1.bias"}


# --- CLIP teacher --------------------------------------------------------------------------------------------------


def test_clip_teacher_targets_match_per_frame_clip():
    clip = tiny_clip()
    teacher = CLIPTeacher(clip)
    pixel_values = torch.randn(2, 3, 3, 32, 32)
    targets, attention = teacher(pixel_values, return_attention=True)
    assert targets.shape == (1, 2, 1 + 3 * 4, 24) and attention.shape == (2, 3, 4)
    with torch.no_grad():
        for b in range(2):
            per_frame = [clip(pixel_values=pixel_values[b, t : t + 1]).last_hidden_state[0] for t in range(3)]
            cls_token = torch.stack([f[0] for f in per_frame]).mean(0)
            tokens = torch.cat([cls_token[None]] + [f[1:] for f in per_frame])  # cls, frame 0 patches, frame 1, ...
            expected = F.normalize(clip.visual_projection(tokens), dim=-1)
            assert torch.allclose(targets[0, b], expected, atol=1e-5)
        # Attention: the last layer's cls-to-patch attention averaged over heads, as eager attention reports it.
        clip.set_attn_implementation("eager")
        eager = clip(pixel_values=pixel_values.flatten(0, 1), output_attentions=True).attentions[-1]
        assert torch.allclose(attention.flatten(0, 1), eager.mean(1)[:, 0, 1:], atol=1e-5)


def test_clip_teacher_layers_resize_and_errors():
    clip = tiny_clip(layers=3)
    teacher = CLIPTeacher(clip, num_layers=2)
    assert teacher.layer_indices == [1, 2]
    pixel_values = torch.randn(1, 2, 3, 48, 48)  # resized to CLIP's 32
    targets = teacher(pixel_values)
    assert targets.shape == (2, 1, 1 + 2 * 4, 24)
    assert torch.allclose(targets.norm(dim=-1), torch.ones(2, 1, 9))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training
    with pytest.raises(TypeError, match="CLIP vision model"):
        CLIPTeacher(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="do not fit"):
        CLIPTeacher(clip, num_layers=4)


# --- distillation ---------------------------------------------------------------------------------------------


def test_distillation_loss_matches_hand_computation(tmp_path):
    teacher, student = teacher_and_student()
    trainer = DistillationTrainer(
        model=student, args=training_args(tmp_path), teacher_model=teacher, distillation_weight=0.7,
        label_smoothing=0.1, train_dataset=ClipDataset(),
    )
    model = trainer.model.train()
    model.videomamba.config.drop_path_rate = 0.0
    batch = {"pixel_values": torch.randn(3, 4, 3, 32, 32), "labels": torch.tensor([0, 3, 4])}
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, batch)

    with torch.no_grad():
        teacher_tokens = teacher.videomamba(batch["pixel_values"]).last_hidden_state
        out = student.videomamba(batch["pixel_values"])
        student_tokens = model.distill_head(out.last_hidden_state)
        logits = student.classifier(out.pooler_output)
    log_p = logits.log_softmax(-1)
    s, c = 0.1, NUM_LABELS
    ce = -((1 - s) * log_p[torch.arange(3), batch["labels"]] + s / c * log_p.sum(-1)).mean()
    cos = F.cosine_similarity(student_tokens, teacher_tokens, dim=-1)  # (3, 17)
    hand = ce + 0.7 * (2 - 2 * cos).mean()
    assert torch.allclose(loss, hand, atol=1e-5)

    # With mixup the targets are soft and the teacher sees the mixed clips.
    mixup = VideoMixup(NUM_LABELS, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=3)
    trainer.mixup = mixup
    loss = trainer.compute_loss(model, batch)
    replay = VideoMixup(NUM_LABELS, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=3)
    mixed, soft = replay(batch["pixel_values"], batch["labels"])
    with torch.no_grad():
        teacher_tokens = teacher.videomamba(mixed).last_hidden_state
        out = student.videomamba(mixed)
        cos = F.cosine_similarity(model.distill_head(out.last_hidden_state), teacher_tokens, dim=-1)
        ce = -(soft * student.classifier(out.pooler_output).log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(loss, ce + 0.7 * (2 - 2 * cos).mean(), atol=1e-5)


def test_mixup_and_cutmix_semantics():
    x = torch.randn(4, 2, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    mixup = VideoMixup(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, seed=0)
    mixed, targets = mixup(x, labels)
    lam = float(targets[0, 0])  # sample 0 (class 0) mixes with sample 3 (class 3)
    assert torch.allclose(targets.sum(-1), torch.ones(4))
    assert math.isclose(float(targets[0, 3]), 1 - lam, rel_tol=1e-5)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0), atol=1e-6)

    cutmix = VideoMixup(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, seed=1)
    mixed, targets = cutmix(x, labels)
    pasted = ~torch.isclose(mixed, x)  # where the flipped batch was pasted
    box = pasted[0, 0, 0]  # (8, 8): the same box in every frame and channel
    assert torch.equal(pasted, box.expand_as(pasted))
    assert torch.equal(mixed[..., box], x.flip(0)[..., box])
    lam = 1 - box.float().mean().item()
    on, off = 1 - 0.1 + 0.1 / 5, 0.1 / 5
    assert math.isclose(float(targets[0, 0]), on * lam + off * (1 - lam), rel_tol=1e-5)
    # Seeded: the same seed gives the same draws.
    again = VideoMixup(5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, seed=1)
    assert torch.equal(again(x, labels)[0], mixed)
    with pytest.raises(ValueError, match="class indices"):
        cutmix(x, targets)


def test_distillation_trainer_lowers_loss_and_saves_a_classifier(tmp_path):
    teacher, student = teacher_and_student()
    dataset = ClipDataset(n=4)
    trainer = DistillationTrainer(
        model=student, args=training_args(tmp_path, max_steps=8), teacher_model=teacher, train_dataset=dataset,
        eval_dataset=dataset,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"loss_cls", "loss_distill"} <= set(logs[0])
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert logs[-1]["loss_distill"] < logs[0]["loss_distill"]
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])

    trainer.save_model(tmp_path / "final")
    files = os.listdir(tmp_path / "final")
    assert not any(name.startswith(".staging") for name in files)
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config["architectures"] == ["VideoMambaForVideoClassification"]
    assert "distillation_hidden_size" not in config
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path / "final").eval()
    assert not any(k.startswith("distill_head") for k in loaded.state_dict())
    pixel_values = dataset.pixel_values[:2]
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values).logits, trainer.student.eval()(pixel_values).logits, atol=1e-5)


def test_image_student_saves_for_auto_image_classification(tmp_path):
    torch.manual_seed(0)
    student = VideoMambaForImageClassification(tiny_config(num_frames=1))
    distill = VideoMambaForDistillation.from_student(student, 16)
    assert distill.videomamba is student.videomamba and distill.classifier is student.classifier
    distill.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "VideoMambaForImageClassification"
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(images).logits, student.eval()(images).logits, atol=1e-6)
    # The head is kept when asked (checkpoints), and the wrapper reloads with it.
    distill.save_distillation_head = True
    distill.save_pretrained(tmp_path / "with_head")
    reloaded = VideoMambaForDistillation.from_pretrained(tmp_path / "with_head")
    assert torch.equal(reloaded.distill_head[1].weight, distill.distill_head[1].weight)


def test_distillation_resume_is_exact(tmp_path):
    def run(output_dir, resume=None, max_steps=6):
        teacher, student = teacher_and_student(seed=0)
        mixup = VideoMixup(NUM_LABELS, seed=5)
        trainer = DistillationTrainer(
            model=student, args=training_args(output_dir, max_steps=max_steps, save_strategy="steps", save_steps=3),
            teacher_model=teacher, train_dataset=ClipDataset(n=12), mixup=mixup,
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    assert sorted(os.listdir(tmp_path / "full")) == ["checkpoint-3", "checkpoint-6"]
    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "recipe_state_0.pt"} <= set(
        os.listdir(checkpoint)
    )
    resumed = run(tmp_path / "full", resume=str(checkpoint))
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert full.mixup.state_dict() == resumed.mixup.state_dict()  # the mixup stream continued where it stopped


# --- masked alignment -----------------------------------------------------------------------------------------


def masked_setup(output_dir, mask_generator=None, **args):
    torch.manual_seed(0)
    model = VideoMambaForMaskedAlignment(tiny_config(alignment_output_dim=24))
    trainer = MaskedAlignmentTrainer(
        model=model, args=training_args(output_dir, **args), teacher=tiny_clip(), mask_generator=mask_generator,
        train_dataset=ClipDataset(n=4), eval_dataset=ClipDataset(n=4, seed=1),
    )
    return trainer


def test_masked_trainer_lowers_loss_and_saves_the_backbone(tmp_path):
    trainer = masked_setup(tmp_path, max_steps=8)
    assert trainer.args.ddp_find_unused_parameters is True  # the official decoder input leaves the last block out
    assert isinstance(trainer.mask_generator, type(make_mask_generator("attention", (4, 2, 2))))
    first_eval = trainer.evaluate()["eval_loss"]
    assert trainer.evaluate()["eval_loss"] == first_eval  # evaluation masks are re-seeded every time
    trainer.train()
    losses = train_losses(trainer)
    assert losses[-1] < losses[0]
    assert trainer.evaluate()["eval_loss"] < first_eval

    trainer.save_model(tmp_path / "backbone")
    config = json.loads((tmp_path / "backbone" / "config.json").read_text())
    assert config["architectures"] == ["VideoMambaModel"] and "alignment_output_dim" not in config
    backbone = VideoMambaModel.from_pretrained(tmp_path / "backbone")
    trained = trainer.model.videomamba.state_dict()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, trained[key]), key
    # The fine-tuning model picks the pretrained backbone up (its classifier is new).
    classifier = VideoMambaForVideoClassification.from_pretrained(tmp_path / "backbone", num_labels=3)
    assert torch.equal(
        classifier.videomamba.layers[0].mixer.in_proj.weight, trained["layers.0.mixer.in_proj.weight"]
    )


def test_masked_trainer_uses_the_given_masks(tmp_path):
    generator = FrameRowMaskGenerator((4, 2, 2), mask_ratio=0.5, seed=0)
    trainer = masked_setup(tmp_path, mask_generator=generator)
    model = trainer.model.train()
    batch = {"pixel_values": torch.randn(2, 4, 3, 32, 32)}
    replay = FrameRowMaskGenerator((4, 2, 2), mask_ratio=0.5, seed=0)
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    mask = replay(2)
    assert outputs.predictions.shape == (1, 2, 1 + 8, 24)
    targets = trainer.teacher(batch["pixel_values"])
    with torch.no_grad():
        expected = model(batch["pixel_values"], bool_masked_pos=mask, alignment_targets=targets).loss
    assert torch.allclose(loss, expected, atol=1e-6)


def test_masked_resume_is_exact(tmp_path):
    def run(resume=None):
        trainer = masked_setup(tmp_path / "run", max_steps=4, save_strategy="steps", save_steps=2)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run()
    resumed = run(resume=str(tmp_path / "run" / "checkpoint-2"))
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    state_a, state_b = full.mask_generator.state_dict(), resumed.mask_generator.state_dict()
    assert torch.equal(state_a["rng_state"], state_b["rng_state"])
    # Resuming with `True` finds the last complete checkpoint.
    assert get_last_checkpoint(str(tmp_path / "run")).endswith("checkpoint-4")


def test_checkpoints_are_staged_then_renamed(tmp_path):
    trainer = masked_setup(tmp_path, max_steps=2, save_strategy="steps", save_steps=1, save_total_limit=1)
    # A staging folder left by an interrupted save is not a checkpoint and is cleaned by the next save.
    stale = tmp_path / ".staging-checkpoint-2" / "checkpoint-2"
    stale.mkdir(parents=True)
    assert get_last_checkpoint(str(tmp_path)) is None
    trainer.train()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-2"]  # rotated to one, no staging left
    assert "trainer_state.json" in os.listdir(tmp_path / "checkpoint-2")


# --- set-up errors ------------------------------------------------------------------------------------------------


def test_teacher_of_the_wrong_width_is_refused(tmp_path):
    teacher, student = teacher_and_student()
    wrapped = VideoMambaForDistillation.from_student(student, 48)  # head for a 48-wide teacher; the teacher is 16
    with pytest.raises(ValueError, match="distillation head outputs 48 features but the teacher is 16 wide"):
        DistillationTrainer(model=wrapped, args=training_args(tmp_path), teacher_model=teacher)
    with pytest.raises(ValueError, match="tokenise clips alike"):
        DistillationTrainer(
            model=VideoMambaForVideoClassification(tiny_config(patch_size=8)), args=training_args(tmp_path),
            teacher_model=teacher,
        )
    with pytest.raises(TypeError, match="teacher_model must be a VideoMambaModel"):
        DistillationTrainer(model=student, args=training_args(tmp_path), teacher_model=tiny_clip())

    model = VideoMambaForMaskedAlignment(tiny_config(alignment_output_dim=24))
    with pytest.raises(ValueError, match="teacher's tokens are 40-dimensional but the student aligns"):
        MaskedAlignmentTrainer(model=model, args=training_args(tmp_path), teacher=tiny_clip(projection_dim=40))
    with pytest.raises(ValueError, match="alignment_output_dim"):
        model(torch.randn(1, 4, 3, 32, 32), alignment_targets=F.normalize(torch.randn(1, 1, 17, 40), dim=-1))


def test_mask_of_the_wrong_length_is_refused(tmp_path):
    trainer = masked_setup(tmp_path, mask_generator=TubeMaskGenerator((8, 2, 2), 0.5))
    batch = {"pixel_values": torch.randn(2, 4, 3, 32, 32)}
    with pytest.raises(ValueError, match=r"masks for a \(8, 2, 2\) token grid .* these clips give \(4, 2, 2\)"):
        trainer.compute_loss(trainer.model, batch)
    model = trainer.model
    with pytest.raises(ValueError, match=r"bool_masked_pos must have shape \(batch, num_patches\) = \(2, 16\)"):
        model(batch["pixel_values"], bool_masked_pos=torch.zeros(2, 17, dtype=torch.bool))
    with pytest.raises(ValueError, match="same number of visible patches"):
        uneven = torch.zeros(2, 16, dtype=torch.bool)
        uneven[0, :3] = True
        model(batch["pixel_values"], bool_masked_pos=uneven)
    # A teacher whose patch grid differs from the student's is named.
    model = VideoMambaForMaskedAlignment(tiny_config(alignment_output_dim=24))
    trainer = MaskedAlignmentTrainer(
        model=model, args=training_args(tmp_path), teacher=CLIPTeacher(tiny_clip(), image_size=64),
        mask_generator=TubeMaskGenerator((4, 2, 2), 0.5),
    )
    with pytest.raises(ValueError, match="CLIP teacher sees 16 patches per frame"):
        trainer.compute_loss(trainer.model, batch)


def test_weight_decay_follows_the_official_rule(tmp_path):
    trainer = masked_setup(tmp_path)
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    assert "videomamba.layers.0.mixer.in_proj.weight" in decay and "clip_decoder.0.head.weight" in decay
    assert "videomamba.layers.0.mixer.A_log" in decay  # 2-D, decayed in the official optimiser too
    for name in (
        "videomamba.embeddings.position_embeddings", "videomamba.embeddings.temporal_position_embeddings",
        "videomamba.embeddings.cls_token", "videomamba.layers.0.norm.weight", "videomamba.layers.0.mixer.D",
        "clip_decoder.0.head.bias", "clip_decoder.0.norm.weight",
    ):
        assert name not in decay


def test_official_mask_pt_checkpoint_continues_exactly(tmp_path):
    """Our model -> the official state dict (official names) -> `videomamba-convert` -> our model: every weight and
    the predictions come back, decoder included."""
    from videomamba.convert import OfficialLayout, convert_checkpoint, our_to_official

    torch.manual_seed(0)
    config = tiny_config(alignment_output_dim=24, num_frames=4)
    source = VideoMambaForMaskedAlignment(config).eval()
    with torch.no_grad():
        for param in source.clip_decoder.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    layout = OfficialLayout(kind="masked-pretraining", final_norm="norm")
    official = {}
    for key, value in source.state_dict().items():
        official[key if key.startswith("clip_decoder.") else our_to_official(key, layout)] = value.clone()
    torch.save({"model": official}, tmp_path / "videomamba_t16_demo_mask_pt_f4_res32.pth")
    folder = convert_checkpoint(tmp_path / "videomamba_t16_demo_mask_pt_f4_res32.pth", tmp_path / "converted",
                                verbose=False)
    loaded = VideoMambaForMaskedAlignment.from_pretrained(folder).eval()
    assert loaded.config.alignment_output_dim == 24 and loaded.config.alignment_num_layers == 1
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    pixel_values = torch.randn(2, 4, 3, 32, 32)
    mask = TubeMaskGenerator((4, 2, 2), 0.5, seed=0)(2)
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values, mask).predictions, source(pixel_values, mask).predictions)


# --- example scripts (they need the video data layer, videomamba.data) ----------------------------------------------


def _load_example(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_scripts_run_on_demo_videos(tmp_path):
    pytest.importorskip("videomamba.data", reason="the video data layer is not in this checkout yet")
    from videomamba.demo_data import make_demo_videos

    data = make_demo_videos(tmp_path / "demo", num_train_per_class=2, num_val_per_class=1, num_frames=8, frame_size=32)
    teacher_dir = tmp_path / "teacher"
    torch.manual_seed(0)
    VideoMambaForVideoClassification(tiny_config(hidden_size=16, num_labels=4)).save_pretrained(teacher_dir)
    tiny_clip().save_pretrained(tmp_path / "clip")
    common = [
        "--data_dir", str(data), "--image_size", "32", "--num_frames", "4", "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--dataloader_num_workers", "0",
        "--use_cpu", "--logging_steps", "1", "--save_strategy", "no", "--scan_backend", "torch", "--hflip_prob", "0",
        "--config_overrides", "hidden_size=32,num_hidden_layers=2,state_size=8", "--report_to", "none",
    ]
    distill = _load_example("run_distillation").main(
        common + ["--teacher_model_name_or_path", str(teacher_dir), "--student_preset", "tiny",
                  "--output_dir", str(tmp_path / "distilled")]
    )
    assert "loss_distill" in distill.state.log_history[0]
    assert type(AutoModelForVideoClassification.from_pretrained(tmp_path / "distilled")).__name__ == (
        "VideoMambaForVideoClassification"
    )
    masked = _load_example("run_masked_pretraining").main(
        common + ["--clip_model_name_or_path", str(tmp_path / "clip"), "--preset", "tiny", "--mask_type", "tube",
                  "--output_dir", str(tmp_path / "pretrained")]
    )
    assert isinstance(masked.mask_generator, TubeMaskGenerator)
    VideoMambaModel.from_pretrained(tmp_path / "pretrained")
