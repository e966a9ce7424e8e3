"""Fine-tuning: optimizer groups, the example script (demo data, checkpoints, resume, model card), the pipeline and
`transformers.Trainer`. Tiny models and tiny demo data, CPU only (the GPU pipeline test runs where CUDA is)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from .conftest import tiny_config


pytest.importorskip("av")
pytest.importorskip("accelerate")

from videomamba import VideoMambaForVideoClassification, VideoMambaVideoProcessor  # noqa: E402
from videomamba.data import VideoClipDataset, collate_video_batch, load_video_samples  # noqa: E402
from videomamba.demo_data import make_demo_videos  # noqa: E402
from videomamba.training_utils import is_no_weight_decay, layer_id, param_groups, topk_correct  # noqa: E402


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_video_classification.py"
TINY_MODEL = "hidden_size=32,num_hidden_layers=2,state_size=8"


def load_script():
    spec = importlib.util.spec_from_file_location("run_video_classification", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_video_classification", module)
    spec.loader.exec_module(module)
    return module


def tiny_args(output_dir, demo_dir, *extra):
    return [
        "--demo_dir", str(demo_dir), "--demo_videos_per_class", "3", "--output_dir", str(output_dir),
        "--config_overrides", TINY_MODEL, "--num_frames", "4", "--image_size", "32",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--num_workers", "0",
        "--learning_rate", "1e-3", "--seed", "0", *extra,
    ]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_videos(root, num_train_per_class=3, num_val_per_class=1)  # what the script makes for 3 per class
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_dir):
    """The script run end to end on the demo data with checkpoints every 3 steps: (output folder, results)."""
    output = tmp_path_factory.mktemp("run")
    script = load_script()
    results = script.main(tiny_args(output, demo_dir, "--max_train_steps", "8", "--checkpointing_steps", "3",
                                    "--eval_num_clips", "2", "--eval_num_crops", "3", "--with_tracking"))
    return output, results


# ---------------------------------------------------------------------------------------------------------------------
# Optimizer settings
# ---------------------------------------------------------------------------------------------------------------------


def test_param_groups_follow_the_recipe():
    model = VideoMambaForVideoClassification(tiny_config(num_hidden_layers=3))
    groups = param_groups(model, learning_rate=1.0, weight_decay=0.1, layer_decay=0.5)
    by_name = {name: group for group in groups for name in group["param_names"]}
    assert set(by_name) == {name for name, _ in model.named_parameters()}
    no_decay = [
        "videomamba.embeddings.position_embeddings", "videomamba.embeddings.temporal_position_embeddings",
        "videomamba.embeddings.cls_token", "videomamba.layers.0.mixer.A_log", "videomamba.layers.1.mixer.A_b_log",
        "videomamba.layers.2.mixer.D", "videomamba.layers.0.mixer.D_b", "videomamba.layers.1.norm.weight",
        "videomamba.norm_f.weight", "classifier.bias", "videomamba.layers.0.mixer.conv1d.bias",
    ]
    for name in no_decay:
        assert by_name[name]["weight_decay"] == 0.0, name
    for name in ("videomamba.layers.0.mixer.in_proj.weight", "classifier.weight",
                 "videomamba.embeddings.patch_embeddings.projection.weight"):
        assert by_name[name]["weight_decay"] == 0.1, name
    # lr = 0.5 ** (num_layers + 1 - layer_id): embeddings 1/16, block i 0.5 ** (3 - i), head 1.
    assert by_name["videomamba.embeddings.cls_token"]["lr"] == 0.5**4
    assert by_name["videomamba.layers.0.mixer.x_proj.weight"]["lr"] == 0.5**3
    assert by_name["videomamba.layers.2.mixer.out_proj.weight"]["lr"] == 0.5
    assert by_name["classifier.weight"]["lr"] == by_name["videomamba.norm_f.weight"]["lr"] == 1.0
    assert layer_id("videomamba.layers.10.norm.weight", 24) == 11
    assert is_no_weight_decay("x.A_log", torch.zeros(4, 4)) and not is_no_weight_decay("x.weight", torch.zeros(4, 4))


def test_topk_correct_caps_k():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]])
    assert topk_correct(logits, torch.tensor([1, 2]), ks=(1, 2, 5)) == {1: 1, 2: 2, 5: 2}


# ---------------------------------------------------------------------------------------------------------------------
# The example script
# ---------------------------------------------------------------------------------------------------------------------


def test_script_trains_on_demo_data_and_saves_a_usable_folder(trained, demo_dir):
    output, results = trained
    assert results["train_steps"] == 8
    assert 0.0 <= results["eval_top1"] <= 1.0 and results["eval_top5"] == 1.0  # 4 classes: top-5 is everything
    assert results["eval_num_samples"] == 4 and results["eval_views"] == "2x3"
    assert 0.0 <= results["eval_multiview_top1"] <= 1.0
    for name in ("config.json", "model.safetensors", "video_preprocessor_config.json", "README.md",
                 "all_results.json", "modeling_videomamba.py", "video_processing_videomamba.py"):
        assert (output / name).is_file(), name
    assert [p.name for p in sorted(output.glob("step_*"))] == ["step_3", "step_6"]
    assert not list(output.glob(".tmp-*")) and not list(output.glob(".final-model*"))
    assert list((output / "run_video_classification").rglob("events.out.tfevents*")), "no TensorBoard events"
    config = json.loads((output / "config.json").read_text())
    assert config["num_frames"] == 4 and config["id2label"] == {"0": "left", "1": "right", "2": "up", "3": "down"}
    processor = VideoMambaVideoProcessor.from_pretrained(output)
    assert processor.num_frames == 4 and processor.crop_size["height"] == 32


def test_model_card_has_hub_metadata(trained):
    from huggingface_hub import ModelCard

    output, results = trained
    card = ModelCard.load(output / "README.md")
    assert card.data.pipeline_tag == "video-classification"
    assert card.data.library_name == "transformers"
    metrics = card.data.eval_results
    top1 = [m for m in metrics if m.metric_name == "Top-1 accuracy"][0]
    assert top1.metric_value == pytest.approx(results["eval_top1"], abs=1e-4)
    assert any(m.metric_name == "Top-1 accuracy (multi-view)" for m in metrics)
    assert "left" in card.text and "pipeline(" in card.text


def test_script_resumes_exactly_from_a_checkpoint(trained, demo_dir, tmp_path):
    """Resuming from step_3 (mid-epoch: 12 videos / batch 2) reproduces the uninterrupted run's final weights."""
    import shutil

    from safetensors.torch import load_file

    output, _ = trained
    shutil.copytree(output / "step_3", tmp_path / "step_3")
    script = load_script()
    results = script.main(tiny_args(tmp_path, demo_dir, "--max_train_steps", "8", "--checkpointing_steps", "3",
                                    "--resume_from_checkpoint", "latest"))
    assert results["train_steps"] == 8 and results["resumed_from_step"] == 3 and results["train_steps_this_run"] == 5
    resumed, uninterrupted = load_file(tmp_path / "model.safetensors"), load_file(output / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], msg=key)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        script.main(tiny_args(tmp_path / "x", demo_dir, "--max_train_steps", "1", "--resume_from_checkpoint",
                              str(tmp_path)))


def test_script_fine_tunes_an_image_checkpoint_with_a_new_head(demo_dir, tmp_path):
    image_model = VideoMambaForVideoClassification(tiny_config(num_frames=1, num_labels=7, image_size=32))
    image_model.save_pretrained(tmp_path / "image")
    script = load_script()
    args = tiny_args(tmp_path / "out", demo_dir, "--max_train_steps", "2", "--model_name_or_path",
                     str(tmp_path / "image"))
    args.remove("--config_overrides")
    args.remove(TINY_MODEL)
    results = script.main(args)
    assert results["num_classes"] == 4
    model = VideoMambaForVideoClassification.from_pretrained(tmp_path / "out")
    assert model.config.num_frames == 4 and model.config.num_labels == 4
    assert model.videomamba.embeddings.temporal_position_embeddings.shape == (1, 4, 32)
    assert "image checkpoint" in (tmp_path / "out" / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------------------


def run_pipeline(folder, video, device=None):
    from transformers import pipeline

    classifier = pipeline("video-classification", model=str(folder), device=device)
    return classifier, classifier(str(video), top_k=3)


def test_pipeline_returns_top_k_labels(trained, demo_dir):
    output, _ = trained
    video = demo_dir / "val" / "up" / "val_up_0000.mp4"
    classifier, predictions = run_pipeline(output, video)
    assert len(predictions) == 3
    assert {p["label"] for p in predictions} <= {"left", "right", "up", "down"}
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    # The pipeline agrees with processor + model by hand.
    model = VideoMambaForVideoClassification.from_pretrained(output).eval()
    inputs = VideoMambaVideoProcessor.from_pretrained(output)(str(video), return_tensors="pt")
    with torch.no_grad():
        probs = model(**inputs).logits.softmax(-1)[0]
    assert predictions[0]["label"] == model.config.id2label[int(probs.argmax())]
    assert predictions[0]["score"] == pytest.approx(float(probs.max()), rel=1e-4)


@pytest.mark.gpu
def test_pipeline_on_gpu(trained, demo_dir):
    output, _ = trained
    video = demo_dir / "val" / "left" / "val_left_0000.mp4"
    classifier, predictions = run_pipeline(output, video, device=0)
    assert classifier.model.device.type == "cuda"
    _, cpu_predictions = run_pipeline(output, video)
    assert predictions[0]["label"] == cpu_predictions[0]["label"]
    assert predictions[0]["score"] == pytest.approx(cpu_predictions[0]["score"], abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# transformers.Trainer
# ---------------------------------------------------------------------------------------------------------------------


def test_transformers_trainer_trains_videomamba(demo_dir, tmp_path):
    from transformers import Trainer, TrainingArguments

    from videomamba.training_utils import build_optimizer

    samples, class_names = load_video_samples(demo_dir / "train.txt")
    eval_samples, _ = load_video_samples(demo_dir / "val.txt")
    processor = VideoMambaVideoProcessor(num_frames=4, size={"shortest_edge": 32},
                                         crop_size={"height": 32, "width": 32})
    model = VideoMambaForVideoClassification(tiny_config(num_labels=len(class_names)))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def compute_metrics(prediction):
        logits, labels = prediction
        return {"accuracy": float((logits.argmax(-1) == labels).mean())}

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=3,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=VideoClipDataset(samples, processor, train=True, transform=processor.train_transform(
            scale=(0.5, 1.0), hflip_prob=0.0)),
        eval_dataset=VideoClipDataset(eval_samples, processor),
        data_collator=collate_video_batch,
        compute_metrics=compute_metrics,
        optimizers=(build_optimizer(model, 1e-3, weight_decay=0.05, layer_decay=0.75), None),
    )
    train_output = trainer.train()
    metrics = trainer.evaluate()
    assert train_output.global_step == 3 and torch.isfinite(torch.tensor(train_output.training_loss))
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_loss" in metrics
    changed = [name for name, p in model.named_parameters() if not torch.equal(p.detach().cpu(), before[name])]
    assert "classifier.weight" in changed and "videomamba.layers.0.mixer.A_log" in changed
