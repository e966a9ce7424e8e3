"""VideoMamba model tests (CPU): a common-model suite, the official semantics, presets and bad input."""

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForVideoClassification,
)

from videomamba import (
    VideoMambaConfig,
    VideoMambaForImageClassification,
    VideoMambaForVideoClassification,
    VideoMambaModel,
)

from .conftest import tiny_config
from .reference import reference_forward


def video(config, batch=2, frames=None, size=None):
    frames = frames or config.num_frames
    size = size or config.image_size
    return torch.randn(batch, frames, config.num_channels, size, size)


def randomize_(model, std=0.3):
    """Random values everywhere (zero-initialised tables too), so that every parameter matters in a test."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("A_log") or name.endswith("A_b_log"):
                param.copy_(torch.log(torch.rand_like(param) * 3 + 0.5))
            else:
                param.add_(torch.randn_like(param) * std)
    return model


# --- config and presets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, num_frames, expected",
    [("tiny", 1, 7_148_008), ("small", 1, 25_796_584), ("middle", 1, 74_217_448), ("tiny", 8, 7_148_008 + 8 * 192)],
)
def test_preset_parameter_counts(preset, num_frames, expected):
    config = VideoMambaConfig.from_preset(preset, num_frames=num_frames, num_labels=1000)
    with torch.device("meta"):
        model = VideoMambaForImageClassification(config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_preset_sizes_and_auto_rank():
    sizes = {name: VideoMambaConfig.from_preset(name) for name in ("tiny", "small", "middle")}
    assert [(c.num_hidden_layers, c.hidden_size) for c in sizes.values()] == [(24, 192), (24, 384), (32, 576)]
    assert [c.time_step_rank for c in sizes.values()] == [12, 24, 36]
    assert VideoMambaConfig(time_step_rank=7).time_step_rank == 7
    with pytest.raises(ValueError, match="preset"):
        VideoMambaConfig.from_preset("huge")


def test_config_round_trip(tmp_path):
    config = tiny_config(drop_path_rate=0.2, use_mamba_dt_init=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, VideoMambaConfig)
    drop = ("_name_or_path", "transformers_version")
    assert {k: v for k, v in loaded.to_dict().items() if k not in drop} == {
        k: v for k, v in config.to_dict().items() if k not in drop
    }
    assert "intermediate_size" not in json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize(
    "kwargs, message",
    [({"scan_backend": "cuda"}, "scan_backend"), ({"image_size": 30}, "divisible"), ({"num_frames": 0}, "num_frames")],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoMambaConfig(**kwargs)


# --- common model suite --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [VideoMambaModel, VideoMambaForVideoClassification])
def test_save_load_round_trip(tmp_path, config, model_class):
    model = randomize_(model_class(config)).eval()
    inputs = video(config)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = model_class.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        first, second = model(inputs), reloaded(inputs)
    assert torch.equal(first[0], second[0])


def test_meta_device_construction_then_init(config):
    with torch.device("meta"):
        model = VideoMambaForVideoClassification(config)
    assert all(p.device.type == "meta" for p in model.parameters())
    model.to_empty(device="cpu")
    model.init_weights()
    reference = VideoMambaForVideoClassification(config)
    for (name, param), (_, expected) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.isfinite(param).all(), name
        if name.endswith(("A_log", "A_b_log", ".D", ".D_b", "norm.weight", "norm_f.weight", "dt_proj.bias")):
            assert torch.equal(param, expected), name
    assert model.videomamba.embeddings.cls_token.abs().max() == 0
    assert model.videomamba.embeddings.temporal_position_embeddings.abs().max() == 0
    assert 0.01 < model.videomamba.embeddings.position_embeddings.std() < 0.03


def test_batching_equivalence(config):
    model = randomize_(VideoMambaForVideoClassification(config)).eval()
    inputs = video(config, batch=3)
    with torch.no_grad():
        batched = model(inputs).logits
        single = torch.cat([model(inputs[i : i + 1]).logits for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_hidden_states_are_the_residual_stream(config):
    model = randomize_(VideoMambaModel(config)).eval()
    with torch.no_grad():
        out = model(video(config), output_hidden_states=True)
    tokens = 1 + config.num_frames * config.num_spatial_patches
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (2, tokens, config.hidden_size) for h in out.hidden_states)
    assert out.last_hidden_state.shape == (2, tokens, config.hidden_size)
    torch.testing.assert_close(out.last_hidden_state, model.norm_f(out.hidden_states[-1]))
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 0])
    with torch.no_grad():
        embeddings = model.embeddings(video(config))
    assert not torch.equal(out.hidden_states[0], out.hidden_states[1])
    assert out.hidden_states[0].dtype == torch.float32 and embeddings.shape == out.hidden_states[0].shape


def test_return_tuple(config):
    model = VideoMambaForVideoClassification(config).eval()
    labels = torch.tensor([0, 3])
    with torch.no_grad():
        as_dict = model(video(config), labels=labels)
        as_tuple = model(video(config), labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert as_tuple[1].shape == as_dict.logits.shape == (2, config.num_labels)


def test_loss_and_backward_with_gradient_checkpointing(config):
    inputs, labels = video(config), torch.tensor([1, 4])
    plain = randomize_(VideoMambaForVideoClassification(config)).train()
    checkpointed = VideoMambaForVideoClassification(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.gradient_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in checkpointed.videomamba.layers)
    losses = []
    for model in (plain, checkpointed):
        out = model(inputs, labels=labels)
        torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))
        out.loss.backward()
        losses.append(out.loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert a.grad is not None and torch.isfinite(a.grad).all(), name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert plain.videomamba.layers[-1].mixer.A_b_log.grad.abs().sum() > 0


def test_soft_label_and_regression_losses(config):
    model = VideoMambaForVideoClassification(config).eval()
    soft = torch.softmax(torch.randn(2, config.num_labels), -1)
    out = model(video(config), labels=soft)
    torch.testing.assert_close(out.loss, -(soft * out.logits.log_softmax(-1)).sum(-1).mean())
    regression = VideoMambaForVideoClassification(tiny_config(num_labels=1)).eval()
    target = torch.tensor([0.5, -1.0])
    out = regression(video(config), labels=target)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), target))


def test_main_input_name_and_auto_classes(config):
    assert VideoMambaModel.main_input_name == "pixel_values"
    assert type(AutoModel.from_config(config)) is VideoMambaModel
    assert type(AutoModelForVideoClassification.from_config(config)) is VideoMambaForVideoClassification
    assert type(AutoModelForImageClassification.from_config(config)) is VideoMambaForImageClassification
    assert isinstance(AutoConfig.for_model("videomamba"), VideoMambaConfig)


def test_base_model_loads_from_classification_folder(tmp_path, config):
    model = randomize_(VideoMambaForVideoClassification(config)).eval()
    model.save_pretrained(tmp_path)
    backbone = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        inputs = video(config)
        torch.testing.assert_close(backbone(inputs).pooler_output, model.videomamba(inputs).pooler_output)


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "videomamba" or name.startswith("videomamba."):
                raise ImportError("videomamba is blocked in this test")
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    import torch
    from transformers import AutoModel, AutoModelForVideoClassification
    folder, inputs_path = sys.argv[1], sys.argv[2]
    model = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    assert "videomamba" not in sys.modules
    inputs = torch.load(inputs_path, weights_only=True)
    with torch.no_grad():
        torch.save(model(inputs["pixel_values"]).logits, inputs_path + ".logits")
    backbone = AutoModel.from_pretrained(folder, trust_remote_code=True)
    print(type(backbone).__name__)
    """
)


def test_remote_code_loading_without_the_package(tmp_path, config):
    model = randomize_(VideoMambaForVideoClassification(config)).eval()
    model.save_pretrained(tmp_path / "folder")
    saved = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForVideoClassification"].endswith("VideoMambaForVideoClassification")
    for module in ("selective_scan_torch.py", "bimamba_triton.py", "fused_add_norm_triton.py"):
        assert (tmp_path / "folder" / module).exists(), module
    inputs = video(config)
    torch.save({"pixel_values": inputs}, tmp_path / "inputs.pt")
    (tmp_path / "script.py").write_text(REMOTE_CODE_SCRIPT)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "folder"), str(tmp_path / "inputs.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "VideoMambaModel" in result.stdout
    remote_logits = torch.load(tmp_path / "inputs.pt.logits", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(remote_logits, model(inputs).logits)


# --- official semantics --------------------------------------------------------------------------------------------


def test_matches_independent_float64_reference(config):
    model = randomize_(VideoMambaForVideoClassification(tiny_config(num_frames=3))).eval().double()
    inputs = video(model.config, frames=3).double()
    with torch.no_grad():
        logits = model(inputs).logits
    expected = reference_forward(model.state_dict(), model.config, inputs)
    torch.testing.assert_close(logits, expected, rtol=1e-9, atol=1e-9)


def test_token_order_and_position_embeddings(config):
    model = randomize_(VideoMambaModel(config)).eval()
    emb = model.embeddings
    inputs = video(config, batch=1)
    with torch.no_grad():
        tokens = emb(inputs)
        conv = emb.patch_embeddings.projection
        grid = config.image_size // config.patch_size
        for t in range(config.num_frames):
            frame_tokens = F.conv2d(inputs[:, t], conv.weight[:, :, 0], conv.bias, stride=config.patch_size)
            frame_tokens = frame_tokens.flatten(2).transpose(1, 2)[0]  # (grid * grid, hidden), row-major
            for n in range(grid * grid):
                expected = frame_tokens[n] + emb.position_embeddings[0, 1 + n] + emb.temporal_position_embeddings[0, t]
                torch.testing.assert_close(tokens[0, 1 + t * grid * grid + n], expected)
        # cls: spatial position 0, no temporal embedding
        torch.testing.assert_close(tokens[0, 0], emb.cls_token[0, 0] + emb.position_embeddings[0, 0])


def test_block_order_and_fp32_residual(config):
    model = randomize_(VideoMambaModel(config)).eval().to(torch.bfloat16)
    with torch.no_grad():
        out = model(video(config), output_hidden_states=True)
    assert all(h.dtype == torch.float32 for h in out.hidden_states)
    assert out.last_hidden_state.dtype == torch.bfloat16
    # Block i: residual_i = residual_{i-1} + mixer_{i-1}(norm(residual_{i-1})).
    block = model.layers[0]
    with torch.no_grad():
        expected = out.hidden_states[0] + block.mixer(block.norm(out.hidden_states[0])).float()
    torch.testing.assert_close(out.hidden_states[1], expected)


def test_drop_path_rates():
    config = tiny_config(num_hidden_layers=4, drop_path_rate=0.3)
    model = VideoMambaModel(config)
    expected = [0.0] + torch.linspace(0, 0.3, 4).tolist()
    assert [layer.drop_path.drop_prob for layer in model.layers] == pytest.approx(expected[:4])
    assert model.drop_path.drop_prob == pytest.approx(0.3)
    model.eval()
    inputs = video(config)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs).last_hidden_state, model(inputs).last_hidden_state)
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(inputs).last_hidden_state, model(inputs).last_hidden_state)


def test_mixer_structure(config):
    mixer = VideoMambaModel(config).layers[0].mixer
    inner = config.intermediate_size
    assert mixer.in_proj.bias is None and mixer.in_proj.out_features == 2 * inner
    assert mixer.out_proj.bias is None
    for suffix in ("", "_b"):
        assert getattr(mixer, f"conv1d{suffix}").weight.shape == (inner, 1, config.conv_kernel)
        assert getattr(mixer, f"x_proj{suffix}").weight.shape == (config.time_step_rank + 2 * config.state_size, inner)
        assert getattr(mixer, f"dt_proj{suffix}").weight.shape == (inner, config.time_step_rank)
    # Reversing the sequence and swapping the two parameter sets gives the reversed output.
    mixer = randomize_(mixer).eval()
    swapped = VideoMambaModel(config).layers[0].mixer.eval()
    pairs = {"A_log": "A_b_log", "D": "D_b"}
    for name in ("conv1d", "x_proj", "dt_proj"):
        for param in ("weight", "bias"):
            pairs[f"{name}.{param}"] = f"{name}_b.{param}"
    pairs.update({b: a for a, b in pairs.items()})
    swap = {pairs.get(key, key): value for key, value in mixer.state_dict().items()}
    swapped.load_state_dict(swap)
    hidden = torch.randn(2, 9, config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(swapped(hidden.flip(1)).flip(1), mixer(hidden), rtol=1e-5, atol=1e-5)


def test_initialisation_matches_official_scheme():
    config = tiny_config(hidden_size=64, num_hidden_layers=6, state_size=16)
    model = VideoMambaForVideoClassification(config)
    mixer = model.videomamba.layers[2].mixer
    for linear in (mixer.in_proj, mixer.x_proj, mixer.x_proj_b, mixer.dt_proj, mixer.dt_proj_b, model.classifier):
        assert abs(linear.weight.std().item() - 0.02) < 0.004
    assert mixer.dt_proj.bias.abs().max() == 0 and mixer.dt_proj_b.bias.abs().max() == 0
    assert model.classifier.bias.abs().max() == 0
    bound = 1 / math.sqrt(config.intermediate_size * config.num_hidden_layers)
    out_w = mixer.out_proj.weight
    assert out_w.abs().max() <= bound and out_w.abs().max() > 0.9 * bound
    conv_bound = 1 / math.sqrt(config.conv_kernel)
    assert mixer.conv1d.weight.abs().max() <= conv_bound and mixer.conv1d.bias.abs().max() <= conv_bound
    assert mixer.conv1d.weight.std() > 0.5 * conv_bound / math.sqrt(3)
    expected_A = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(config.intermediate_size, -1)
    assert torch.equal(mixer.A_log, expected_A) and torch.equal(mixer.A_b_log, expected_A)
    assert torch.equal(mixer.D, torch.ones_like(mixer.D)) and torch.equal(mixer.D_b, torch.ones_like(mixer.D_b))
    assert torch.equal(model.videomamba.layers[0].norm.weight, torch.ones(config.hidden_size))
    emb = model.videomamba.embeddings
    assert emb.cls_token.abs().max() == 0 and emb.temporal_position_embeddings.abs().max() == 0
    assert abs(emb.position_embeddings.std().item() - 0.02) < 0.005


def test_mamba_dt_init_option():
    model = VideoMambaModel(tiny_config(use_mamba_dt_init=True, hidden_size=64))
    for dt_proj in (model.layers[0].mixer.dt_proj, model.layers[1].mixer.dt_proj_b):
        dt = F.softplus(dt_proj.bias)
        assert dt.min() >= 1e-4 * 0.99 and dt.max() <= 0.1 * 1.01
        assert dt.max() / dt.min() > 10  # log-uniform over two decades
        bound = config_rank_bound = model.config.time_step_rank**-0.5
        assert dt_proj.weight.abs().max() <= config_rank_bound and dt_proj.weight.abs().max() > 0.5 * bound


def test_loaded_weights_are_not_reinitialised(tmp_path, config):
    model = randomize_(VideoMambaForVideoClassification(config))
    model.save_pretrained(tmp_path)
    reloaded = VideoMambaForVideoClassification.from_pretrained(tmp_path)
    mixer = reloaded.videomamba.layers[0].mixer
    assert torch.equal(mixer.A_log, model.videomamba.layers[0].mixer.A_log)
    assert torch.equal(mixer.out_proj.weight, model.videomamba.layers[0].mixer.out_proj.weight)
    assert torch.equal(
        reloaded.videomamba.embeddings.cls_token, model.videomamba.embeddings.cls_token
    )


def test_masked_tokens_are_dropped(config):
    model = randomize_(VideoMambaModel(config)).eval()
    inputs = video(config)
    num_patches = config.num_frames * config.num_spatial_patches
    mask = torch.zeros(2, num_patches, dtype=torch.bool)
    mask[0, [1, 5, 6]] = True
    mask[1, [0, 2, 15]] = True
    with torch.no_grad():
        out = model(inputs, bool_masked_pos=mask)
        full_embeddings = model.embeddings(inputs)
        masked_embeddings = model.embeddings(inputs, bool_masked_pos=mask)
    assert out.last_hidden_state.shape == (2, 1 + num_patches - 3, config.hidden_size)
    keep = torch.cat([torch.ones(2, 1, dtype=torch.bool), ~mask], dim=1)
    torch.testing.assert_close(masked_embeddings, full_embeddings[keep].reshape(2, -1, config.hidden_size))
    with pytest.raises(ValueError, match="num_patches"):
        model(inputs, bool_masked_pos=mask[:, 1:])
    uneven = mask.clone()
    uneven[0, 9] = True
    with pytest.raises(ValueError, match="same number"):
        model(inputs, bool_masked_pos=uneven)


# --- position tables -----------------------------------------------------------------------------------------------


def test_load_at_other_frames_and_resolution_interpolates(tmp_path, config):
    model = randomize_(VideoMambaForVideoClassification(config))
    model.save_pretrained(tmp_path)
    resized = VideoMambaForVideoClassification.from_pretrained(tmp_path, num_frames=8, image_size=64)
    assert resized.config.num_frames == 8 and resized.config.image_size == 64
    emb, old = resized.videomamba.embeddings, model.videomamba.embeddings
    expected_t = F.interpolate(old.temporal_position_embeddings.permute(0, 2, 1), size=8, mode="linear")
    torch.testing.assert_close(emb.temporal_position_embeddings, expected_t.permute(0, 2, 1))
    grid = old.position_embeddings[:, 1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2)
    expected_s = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(emb.position_embeddings[:, 1:], expected_s.reshape(1, 16, -1))
    torch.testing.assert_close(emb.position_embeddings[:, 0], old.position_embeddings[:, 0])
    assert resized(video(resized.config, batch=1)).logits.shape == (1, config.num_labels)
    # the same through a config object
    other = VideoMambaForVideoClassification.from_pretrained(tmp_path, config=tiny_config(num_frames=8))
    torch.testing.assert_close(other.videomamba.embeddings.temporal_position_embeddings, emb.temporal_position_embeddings)


def test_interpolate_pos_encoding_at_forward_equals_resizing(config):
    model = randomize_(VideoMambaForVideoClassification(config)).eval()
    inputs = video(config, frames=6, size=48)
    with torch.no_grad():
        on_the_fly = model(inputs, interpolate_pos_encoding=True).logits
        model.resize_position_embeddings(num_frames=6, image_size=48)
        resized = model(inputs).logits
    torch.testing.assert_close(on_the_fly, resized)
    non_square = video(config, frames=2)[..., :16, :]
    with torch.no_grad():
        assert model(non_square, interpolate_pos_encoding=True).logits.shape == (2, config.num_labels)


def test_image_checkpoint_inflates_to_video(tmp_path):
    image_config = tiny_config(num_frames=1)
    image_model = randomize_(VideoMambaForImageClassification(image_config)).eval()
    assert image_model.videomamba.embeddings.temporal_position_embeddings is None
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image_logits = image_model(images).logits
        torch.testing.assert_close(image_model(images.unsqueeze(1)).logits, image_logits)
    image_model.save_pretrained(tmp_path)
    video_model = VideoMambaForVideoClassification.from_pretrained(tmp_path, num_frames=4).eval()
    emb = video_model.videomamba.embeddings
    assert emb.temporal_position_embeddings.shape == (1, 4, image_config.hidden_size)
    assert emb.temporal_position_embeddings.abs().max() == 0
    # A video of one repeated image: the inflated model sees the same tokens in every frame.
    with torch.no_grad():
        clip = images.unsqueeze(1).repeat(1, 4, 1, 1, 1)
        tokens = video_model.videomamba.embeddings(clip)
        single = image_model.videomamba.embeddings(images)
    torch.testing.assert_close(tokens[:, 1:5], single[:, 1:])
    torch.testing.assert_close(tokens[:, 5:9], single[:, 1:])


# --- backends ------------------------------------------------------------------------------------------------------


def test_cuda_backends_refuse_cpu_tensors(config):
    for backend in ("mamba_ssm", "triton"):
        model = VideoMambaModel(tiny_config(scan_backend=backend))
        with pytest.raises(ValueError, match="CUDA"):
            model(video(config))
    auto = VideoMambaModel(tiny_config(scan_backend="auto")).eval()
    explicit = VideoMambaModel(tiny_config(scan_backend="torch")).eval()
    explicit.load_state_dict(auto.state_dict())
    inputs = video(config)
    with torch.no_grad():
        torch.testing.assert_close(auto(inputs).pooler_output, explicit(inputs).pooler_output)


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((2, 4, 32), {}, "shape"),
        ((2, 4, 3, 32, 32, 1), {}, "shape"),
        ((2, 4, 1, 32, 32), {}, "channels"),
        ((2, 3, 4, 32, 32), {}, "transpose"),
        ((2, 4, 3, 30, 32), {"interpolate_pos_encoding": True}, "divisible"),
        ((2, 8, 3, 32, 32), {}, "interpolate_pos_encoding"),
        ((2, 4, 3, 48, 48), {}, "resize_position_embeddings"),
    ],
)
def test_bad_input_gets_clear_errors(config, shape, kwargs, message):
    model = VideoMambaForVideoClassification(config)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape), **kwargs)


def test_missing_pixel_values(config):
    with pytest.raises(ValueError, match="pixel_values"):
        VideoMambaModel(config)()


def test_bad_labels(config):
    model = VideoMambaForVideoClassification(config)
    with pytest.raises(ValueError, match="labels"):
        model(video(config), labels=torch.randn(2, 3))
