"""Official checkpoint conversion (`videomamba.convert`): exactness against an independent re-computation of the
official forward pass, nothing dropped silently, the way back, and loading with / without the package.

The official-format state dicts below are written from the research code (OpenGVLab/VideoMamba:
`video_sm/models/videomamba.py`, `image_sm/models/videomamba.py`, `video_sm/models/videomamba_pretrain.py`,
`video_mm/models/backbones/videomamba/videomamba.py`, `mamba/mamba_ssm/modules/mamba_simple.py`): the exact key names
and shapes, tiny sizes, random values; their key names and shapes were checked once to be identical to the
`state_dict()` of the official classes, instantiated with stubbed kernels). `official_forward` re-computes the official
forward pass from its equations in float64 with plain tensor ops -- it calls none of the package's modules.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videomamba import convert as vmc


DIM, DEPTH, STATE, PATCH, IMG, FRAMES, CLASSES = 32, 2, 8, 16, 32, 4, 5
INNER, RANK, KERNEL = 2 * DIM, math.ceil(DIM / 16), 4


# ------------------------------------------------------------------------------------------------------------------
# Official-format state dicts
# ------------------------------------------------------------------------------------------------------------------


def _randn(gen, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen) * scale


def official_backbone(gen, image=False, frames=FRAMES, img=IMG, final_norm="norm_f", prefix=""):
    """`VisionMamba` backbone tensors: patch_embed.proj, cls_token, pos_embed, temporal_pos_embedding, layers.{i}.*,
    the final RMSNorm. Values are scaled so activations stay O(1) (a meaningful relative comparison)."""
    grid = (img // PATCH) ** 2
    sd = {}
    conv_shape = (DIM, 3, PATCH, PATCH) if image else (DIM, 3, 1, PATCH, PATCH)
    sd["patch_embed.proj.weight"] = _randn(gen, *conv_shape, scale=1 / math.sqrt(3 * PATCH * PATCH))
    sd["patch_embed.proj.bias"] = _randn(gen, DIM, scale=0.1)
    sd["cls_token"] = _randn(gen, 1, 1, DIM, scale=0.5)
    sd["pos_embed"] = _randn(gen, 1, grid + 1, DIM, scale=0.5)
    if not image:
        sd["temporal_pos_embedding"] = _randn(gen, 1, frames, DIM, scale=0.5)
    for i in range(DEPTH):
        m = f"layers.{i}.mixer."
        sd[m + "A_log"] = torch.log(torch.rand(INNER, STATE, generator=gen) * (STATE - 1) + 1)
        sd[m + "D"] = _randn(gen, INNER)
        sd[m + "A_b_log"] = torch.log(torch.rand(INNER, STATE, generator=gen) * (STATE - 1) + 1)
        sd[m + "D_b"] = _randn(gen, INNER)
        sd[m + "in_proj.weight"] = _randn(gen, 2 * INNER, DIM, scale=1 / math.sqrt(DIM))
        for sfx in ("", "_b"):
            sd[m + f"conv1d{sfx}.weight"] = _randn(gen, INNER, 1, KERNEL, scale=0.5)
            sd[m + f"conv1d{sfx}.bias"] = _randn(gen, INNER, scale=0.1)
            sd[m + f"x_proj{sfx}.weight"] = _randn(gen, RANK + 2 * STATE, INNER, scale=1 / math.sqrt(INNER))
            sd[m + f"dt_proj{sfx}.weight"] = _randn(gen, INNER, RANK, scale=1 / math.sqrt(RANK))
            sd[m + f"dt_proj{sfx}.bias"] = torch.rand(INNER, generator=gen) * 2 - 3  # softplus ~ 0.05..0.3
        sd[m + "out_proj.weight"] = _randn(gen, DIM, INNER, scale=1 / math.sqrt(INNER))
        sd[f"layers.{i}.norm.weight"] = 1 + _randn(gen, DIM, scale=0.1)
    sd[f"{final_norm}.weight"] = 1 + _randn(gen, DIM, scale=0.1)
    return {prefix + k: v for k, v in sd.items()}


def official_classifier(gen, image=False, frames=FRAMES, classes=CLASSES, img=IMG):
    sd = official_backbone(gen, image=image, frames=frames, img=img)
    sd["head.weight"] = _randn(gen, classes, DIM, scale=1 / math.sqrt(DIM))
    sd["head.bias"] = _randn(gen, classes, scale=0.1)
    return sd


def official_mask_pretrain(gen, clip_dim=24):
    """`videomamba_pretrain.VisionMamba`: final norm `norm`, `clip_decoder.0.{head,norm}` (Linear + LayerNorm), no
    head; `clip_pos_embed` is a plain attribute, not in the state dict."""
    sd = official_backbone(gen, final_norm="norm")
    sd["clip_decoder.0.head.weight"] = _randn(gen, clip_dim, DIM, scale=0.2)
    sd["clip_decoder.0.head.bias"] = _randn(gen, clip_dim, scale=0.1)
    sd["clip_decoder.0.norm.weight"] = 1 + _randn(gen, clip_dim, scale=0.1)
    sd["clip_decoder.0.norm.bias"] = _randn(gen, clip_dim, scale=0.1)
    return sd


def official_video_text(gen, clip_dim=24, embed=16):
    """`UMT_VIDEOMAMBA`: `vision_encoder.*` (the pretrain VisionMamba plus `pool_norm`), text side, CLIP teacher."""
    sd = {f"vision_encoder.{k}": v for k, v in official_mask_pretrain(gen, clip_dim).items()}
    sd["vision_encoder.pool_norm.weight"] = 1 + _randn(gen, DIM, scale=0.1)
    sd["vision_encoder.pool_norm.bias"] = _randn(gen, DIM, scale=0.1)
    sd["text_encoder.bert.embeddings.word_embeddings.weight"] = _randn(gen, 30, 8)
    sd["text_encoder.bert.encoder.layer.0.attention.self.query.weight"] = _randn(gen, 8, 8)
    sd["vision_proj.weight"] = _randn(gen, embed, DIM)
    sd["vision_proj.bias"] = _randn(gen, embed)
    sd["text_proj.weight"] = _randn(gen, embed, 8)
    sd["text_proj.bias"] = _randn(gen, embed)
    sd["temp"] = torch.tensor(0.07)
    sd["itm_head.weight"] = _randn(gen, 2, 8)
    sd["itm_head.bias"] = _randn(gen, 2)
    sd["clip_teacher.transformer.resblocks.0.attn.in_proj_weight"] = _randn(gen, 24, 8)
    return sd


# ------------------------------------------------------------------------------------------------------------------
# The official forward pass, re-computed from its equations (float64, plain tensor ops)
# ------------------------------------------------------------------------------------------------------------------


def _rms_norm(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _scan_direction(sd, m, sfx, x, z):
    """Mamba's fast path for one direction: causal depthwise conv (padding K-1, first L outputs) -> SiLU -> x_proj ->
    dt_proj -> softplus(dt + bias) -> selective scan h_t = exp(delta A) h_{t-1} + delta B_t x_t,
    y_t = C_t h_t + D x_t -> y * silu(z). `x`, `z`: (batch, length, inner)."""
    weight, bias = sd[m + f"conv1d{sfx}.weight"], sd[m + f"conv1d{sfx}.bias"]
    length, kernel = x.shape[1], weight.shape[-1]
    u = bias.expand_as(x).clone()
    for j in range(kernel):  # out_t = b + sum_j w_j x_{t - (K - 1) + j}
        shift = kernel - 1 - j
        u = u + F.pad(x, (0, 0, shift, 0))[:, :length] * weight[:, 0, j]
    u = u * torch.sigmoid(u)
    x_dbl = u @ sd[m + f"x_proj{sfx}.weight"].T
    dt_weight = sd[m + f"dt_proj{sfx}.weight"]
    rank, state = dt_weight.shape[1], sd[m + "A_log"].shape[1]
    dt, B, C = x_dbl[..., :rank], x_dbl[..., rank:rank + state], x_dbl[..., rank + state:]
    delta = F.softplus(dt @ dt_weight.T + sd[m + f"dt_proj{sfx}.bias"])
    A = -torch.exp(sd[m + ("A_log" if sfx == "" else "A_b_log")])
    D = sd[m + ("D" if sfx == "" else "D_b")]
    h = x.new_zeros(x.shape[0], x.shape[2], state)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    y = torch.stack(ys, dim=1)
    return y * z * torch.sigmoid(z)


def _bimamba(sd, m, hidden):
    xz = hidden @ sd[m + "in_proj.weight"].T
    x, z = xz.chunk(2, dim=-1)
    y = _scan_direction(sd, m, "", x, z)
    y_b = _scan_direction(sd, m, "_b", x.flip(1), z.flip(1)).flip(1)
    return (y + y_b) @ sd[m + "out_proj.weight"].T


def official_forward(sd, video, prefix="", final_norm="norm_f", mask=None):
    """`VisionMamba.forward_features` with fused add + RMSNorm (the released models' setting), in float64.

    Args:
        video: `(B, C, T, H, W)` (the official layout) or `(B, C, H, W)` for the image model.
        mask: `(B, 1 + N)` bool, True = dropped (the cls column False), as the pretraining code.
    Returns:
        `(normed (B, L, D), residual entering the last block (B, L, D))`.
    """
    sd = {k[len(prefix):]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    video = video.double()
    weight, bias = sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"]
    if weight.ndim == 4:  # image_sm: Conv2d, flatten, cls, pos_embed
        b, c, height, width = video.shape
        p = weight.shape[-1]
        patches = video.reshape(b, c, height // p, p, width // p, p)
        emb = torch.einsum("bchpwq,dcpq->bdhw", patches, weight) + bias[:, None, None]
        x = emb.flatten(2).transpose(1, 2)
        x = torch.cat([sd["cls_token"].expand(b, -1, -1), x], dim=1) + sd["pos_embed"]
    else:  # video_sm: Conv3d; cls + pos_embed per frame, temporal table per patch, '(b t) n m -> b (t n) m'
        b, c, frames, height, width = video.shape
        k, p = weight.shape[2], weight.shape[-1]
        patches = video.reshape(b, c, frames // k, k, height // p, p, width // p, p)
        emb = torch.einsum("bctkhpwq,dckpq->bdthw", patches, weight) + bias[:, None, None, None]
        _, d, t, gh, gw = emb.shape
        x = emb.permute(0, 2, 3, 4, 1).reshape(b * t, gh * gw, d)
        x = torch.cat([sd["cls_token"].expand(b * t, -1, -1), x], dim=1) + sd["pos_embed"]
        cls_tokens, x = x[:b, :1], x[:, 1:]
        n = x.shape[1]
        x = x.reshape(b, t, n, d).permute(0, 2, 1, 3).reshape(b * n, t, d) + sd["temporal_pos_embedding"]
        x = x.reshape(b, n, t, d).permute(0, 2, 1, 3).reshape(b, t * n, d)
        x = torch.cat([cls_tokens, x], dim=1)
    if mask is not None:
        x = x[~mask].reshape(x.shape[0], -1, x.shape[-1])
    residual, hidden = None, x
    depth = len({key.split(".")[1] for key in sd if key.startswith("layers.")})
    for i in range(depth):
        residual = hidden if residual is None else residual + hidden
        hidden = _bimamba(sd, f"layers.{i}.mixer.", _rms_norm(residual, sd[f"layers.{i}.norm.weight"]))
    return _rms_norm(residual + hidden, sd[f"{final_norm}.weight"]), residual


def official_logits(sd, video):
    normed, _ = official_forward(sd, video)
    return normed[:, 0] @ sd["head.weight"].double().T + sd["head.bias"].double()


def assert_rel_close(actual, expected, tol=1e-5):
    actual, expected = actual.detach().double(), expected.detach().double()
    assert actual.shape == expected.shape
    error = (actual - expected).abs().max() / expected.abs().max()
    assert error <= tol, f"relative error {error:.3g} > {tol}"


# ------------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def save_pth(path, state_dict, wrap="model", extra=None):
    payload = {wrap: state_dict, **(extra or {})} if wrap else state_dict
    torch.save(payload, path)
    return path


def convert(*args):
    return vmc.main([str(a) for a in args])


def video_batch(batch=2, frames=FRAMES, img=IMG):
    return torch.randn(batch, 3, frames, img, img)  # official layout (B, C, T, H, W)


# ------------------------------------------------------------------------------------------------------------------
# Exactness
# ------------------------------------------------------------------------------------------------------------------


def test_video_classification_exact(tmp_path, gen):
    """64x64 frames: 1 + 4 x 16 = 65 tokens, so the package's chunked scan (chunks of 32) crosses chunk borders."""
    from videomamba import VideoMambaForVideoClassification

    sd = official_classifier(gen, img=64)
    ckpt = save_pth(tmp_path / "videomamba_t16_k400_f8_res224.pth", sd, extra={"epoch": 3, "optimizer": {}})
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(CLASSES)) + "\n")
    assert convert(ckpt, tmp_path / "out", "--labels", labels) == 0

    model = VideoMambaForVideoClassification.from_pretrained(tmp_path / "out").eval()
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.state_size, config.num_frames, config.image_size,
            config.num_labels, config.time_step_rank, config.conv_kernel) == (DIM, DEPTH, STATE, FRAMES, 64, CLASSES,
                                                                              RANK, KERNEL)
    assert config.id2label[3] == "class 3" and config.scan_backend == "auto"
    video = video_batch(img=64)
    with torch.no_grad():
        ours = model(video.transpose(1, 2)).logits  # ours: (B, T, C, H, W)
    assert_rel_close(ours, official_logits(sd, video))


def test_image_classification_exact(tmp_path, gen):
    from videomamba import VideoMambaForImageClassification

    sd = official_classifier(gen, image=True)
    ckpt = save_pth(tmp_path / "videomamba_t16_in1k_res224.pth", sd, wrap=None)  # raw state dict
    assert convert(ckpt, tmp_path / "out") == 0

    model = VideoMambaForImageClassification.from_pretrained(tmp_path / "out").eval()
    assert model.config.num_frames == 1
    assert model.videomamba.embeddings.patch_embeddings.projection.weight.shape == (DIM, 3, 1, PATCH, PATCH)
    images = torch.randn(3, 3, IMG, IMG)
    with torch.no_grad():
        ours = model(images).logits
    assert_rel_close(ours, official_logits(sd, images))
    assert "Conv2d patch embedding is stored as the equal Conv3d" in (tmp_path / "out" / "README.md").read_text()
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": int(IMG / 0.875)} and processor["resample"] == 3
    assert processor["crop_size"] == {"height": IMG, "width": IMG}
    assert processor["image_mean"] == [0.485, 0.456, 0.406] and processor["image_std"] == [0.229, 0.224, 0.225]


def test_mask_pretrained_backbone_exact_and_clip_decoder_kept(tmp_path, gen):
    from safetensors.torch import load_file

    from videomamba import VideoMambaModel

    sd = official_mask_pretrain(gen)
    ckpt = save_pth(tmp_path / "videomamba_m16_k400_mask_pt_f8_res224.pth", sd)
    assert convert(ckpt, tmp_path / "out") == 0
    out = tmp_path / "out"

    model = VideoMambaModel.from_pretrained(out).eval()
    video = video_batch()
    expected, _ = official_forward(sd, video, final_norm="norm")
    with torch.no_grad():
        assert_rel_close(model(video.transpose(1, 2)).last_hidden_state, expected)

    # The masked forward of pretraining: official mask (B, 1 + N) with the cls column kept; ours (B, N).
    num_patches = FRAMES * (IMG // PATCH) ** 2
    bool_masked_pos = torch.zeros(2, num_patches, dtype=torch.bool)
    bool_masked_pos[0, [1, 2, 5, 9, 14]] = True
    bool_masked_pos[1, [0, 3, 6, 7, 15]] = True
    official_mask = torch.cat([torch.zeros(2, 1, dtype=torch.bool), bool_masked_pos], dim=1)
    expected, expected_residual = official_forward(sd, video, final_norm="norm", mask=official_mask)
    with torch.no_grad():
        outputs = model(video.transpose(1, 2), bool_masked_pos=bool_masked_pos, output_hidden_states=True)
    assert_rel_close(outputs.last_hidden_state, expected)
    # The clip decoder's input (return index depth - 1, fused add-norm): the residual entering the last block.
    assert_rel_close(outputs.hidden_states[DEPTH - 1], expected_residual)

    decoder = load_file(str(out / "clip_decoder.safetensors"))
    assert set(decoder) == {k for k in sd if k.startswith("clip_decoder.")}
    assert all(torch.equal(decoder[k], sd[k]) for k in decoder)
    info = json.loads((out / "conversion_info.json").read_text())
    assert info["layout"]["final_norm"] == "norm"
    assert info["clip_decoder"]["clip_return_layer"] == 1
    assert (info["clip_decoder"]["clip_decoder_embed_dim"], info["clip_decoder"]["clip_output_dim"]) == (DIM, 24)
    assert not (out / "original_extras.safetensors").exists()
    assert "clip_decoder.safetensors" in (out / "README.md").read_text()


def test_video_text_needs_a_choice_then_vision_tower_is_exact(tmp_path, gen, capsys):
    from safetensors.torch import load_file

    from videomamba import VideoMambaModel

    sd = official_video_text(gen)
    ckpt = save_pth(tmp_path / "videomamba_m16_25M_f8_res224.pth", sd)
    assert convert(ckpt, tmp_path / "refused") == 2
    err = capsys.readouterr().err
    for key in ("text_encoder.bert.embeddings.word_embeddings.weight", "clip_teacher", "itm_head.weight", "temp",
                "--vision-only"):
        assert key in err
    assert not (tmp_path / "refused").exists()

    assert convert(ckpt, tmp_path / "out", "--vision-only") == 0
    out = tmp_path / "out"
    model = VideoMambaModel.from_pretrained(out).eval()
    video = video_batch()
    expected, _ = official_forward(sd, video, prefix="vision_encoder.", final_norm="norm")
    with torch.no_grad():
        assert_rel_close(model(video.transpose(1, 2)).last_hidden_state, expected)

    info = json.loads((out / "conversion_info.json").read_text())
    dropped = set(info["dropped"]["keys"])
    assert dropped == {k for k in sd if k.split(".")[0] in ("text_encoder", "text_proj", "itm_head", "temp",
                                                            "clip_teacher")}
    extras = load_file(str(out / "original_extras.safetensors"))
    assert set(extras) == {"vision_encoder.pool_norm.weight", "vision_encoder.pool_norm.bias", "vision_proj.weight",
                           "vision_proj.bias"}
    assert set(load_file(str(out / "clip_decoder.safetensors"))) == {
        k[len("vision_encoder."):] for k in sd if k.startswith("vision_encoder.clip_decoder.")
    }
    card = (out / "README.md").read_text()
    assert "Dropped at conversion" in card and "`text_encoder`" in card


@pytest.mark.gpu
def test_converted_model_on_cuda_matches_the_official_equations(tmp_path, gen):
    """The converted folder on CUDA with scan_backend="auto" (the fused Triton or stock mamba-ssm kernels where
    installed) against the float64 re-computation; TF32 off so that float32 means float32."""
    from videomamba import VideoMambaForVideoClassification

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    sd = official_classifier(gen, img=64)
    assert convert(save_pth(tmp_path / "ckpt.pth", sd), tmp_path / "out") == 0
    model = VideoMambaForVideoClassification.from_pretrained(tmp_path / "out").eval().cuda()
    video = video_batch(img=64)
    with torch.no_grad():
        ours = model(video.transpose(1, 2).cuda()).logits.cpu()
    backend = model.videomamba.layers[0].mixer.resolve_backend(torch.zeros(1, device="cuda"))
    print(f"scan backend on CUDA: {backend}")
    assert_rel_close(ours, official_logits(sd, video), tol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# Nothing silently dropped
# ------------------------------------------------------------------------------------------------------------------


def test_unknown_keys_stop_until_allowed(tmp_path, gen, capsys):
    sd = official_classifier(gen)
    sd["aux_head.weight"] = torch.randn(3, DIM)
    sd["aux_head.bias"] = torch.randn(3)
    ckpt = save_pth(tmp_path / "ckpt.pth", sd)
    assert convert(ckpt, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "aux_head.weight [3, 32]" in err and "aux_head.bias" in err and "--drop" in err
    assert not (tmp_path / "out").exists()

    assert convert(ckpt, tmp_path / "dropped", "--drop", "aux_head") == 0
    info = json.loads((tmp_path / "dropped" / "conversion_info.json").read_text())
    assert info["dropped"]["keys"] == {"aux_head.weight": [3, DIM], "aux_head.bias": [3]}

    assert convert(ckpt, tmp_path / "kept", "--keep", "aux_head.") == 0
    state, _ = vmc.original_state_dict_from_folder(tmp_path / "kept")
    assert torch.equal(state["aux_head.weight"], sd["aux_head.weight"])


def test_missing_keys_stop_until_allowed(tmp_path, gen, capsys):
    sd = official_classifier(gen)
    del sd["layers.1.mixer.x_proj_b.weight"], sd["norm_f.weight"]
    ckpt = save_pth(tmp_path / "ckpt.pth", sd)
    assert convert(ckpt, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "layers.1.mixer.x_proj_b.weight" in err and "norm_f.weight" in err and "lacks" in err

    assert convert(ckpt, tmp_path / "out", "--allow-missing", "norm_f", "--allow-missing",
                   "layers.1.mixer.x_proj_b") == 0
    info = json.loads((tmp_path / "out" / "conversion_info.json").read_text())
    assert sorted(info["missing_left_at_init"]) == ["layers.1.mixer.x_proj_b.weight", "norm_f.weight"]
    assert "--allow-missing" in (tmp_path / "out" / "README.md").read_text()


def test_prefix_matching_is_by_name_component():
    assert vmc._matches("temp", ["temp"]) and not vmc._matches("temporal_pos_embedding", ["temp"])
    assert vmc._matches("text_encoder.bert.x", ["text_encoder."]) and vmc._matches("head.bias", ["head"])


class NotAllowedInCheckpoints:
    """A pickled object that torch.load(weights_only=True) refuses."""


def test_bad_inputs_get_clear_errors(tmp_path, gen, capsys):
    sd = official_classifier(gen)
    ckpt = save_pth(tmp_path / "ckpt.pth", sd)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert convert(ckpt, tmp_path / "o1", "--labels", labels) == 2
    assert "2 labels but the classifier has 5 outputs" in capsys.readouterr().err
    assert convert(ckpt, tmp_path / "o2", "--num-labels", 7) == 2
    assert "--num-labels 7 disagrees" in capsys.readouterr().err
    assert convert(ckpt, tmp_path / "o3", "--task", "backbone") == 2
    assert "--drop head" in capsys.readouterr().err

    torch.save({"model": sd, "obj": NotAllowedInCheckpoints()}, tmp_path / "unsafe.pth")
    assert convert(tmp_path / "unsafe.pth", tmp_path / "o4") == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert convert(tmp_path / "labels.txt", tmp_path / "o5") == 2
    capsys.readouterr()
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    assert convert(tmp_path / "other.pth", tmp_path / "o6") == 2
    assert "not an official VideoMamba checkpoint" in capsys.readouterr().err

    (tmp_path / "exists").mkdir()
    assert convert(ckpt, tmp_path / "exists") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_research_checkpoint_with_args_namespace_and_ddp_prefix(tmp_path, gen):
    import argparse

    sd = official_classifier(gen)
    payload = {"model": {f"module.{k}": v for k, v in sd.items()}, "args": argparse.Namespace(lr=1e-4, model="x"),
               "epoch": 10}
    torch.save(payload, tmp_path / "ckpt.pth")
    assert convert(tmp_path / "ckpt.pth", tmp_path / "out") == 0
    info = json.loads((tmp_path / "out" / "conversion_info.json").read_text())
    assert info["source"]["key_prefix_stripped"] == "module."
    assert info["source"]["ignored_entries"] == ["args", "epoch"]
    assert convert("--to-original", tmp_path / "out", tmp_path / "back.pth") == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == ["model"] and list(back["model"]) == list(payload["model"])


# ------------------------------------------------------------------------------------------------------------------
# The way back
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["video", "image", "mask_pt", "video_text_keep"])
def test_to_original_restores_identical_tensors(tmp_path, gen, kind):
    if kind == "video":
        sd, wrap, flags = official_classifier(gen), "model", []
    elif kind == "image":
        sd, wrap, flags = official_classifier(gen, image=True), None, []
    elif kind == "mask_pt":
        sd, wrap, flags = official_mask_pretrain(gen), "module", []
    else:
        sd, wrap, flags = official_video_text(gen), "model", ["--keep", "text_encoder", "--keep", "text_proj",
                                                              "--keep", "itm_head", "--keep", "temp",
                                                              "--keep", "clip_teacher"]
    ckpt = save_pth(tmp_path / "ckpt.pth", sd, wrap=wrap)
    assert convert(ckpt, tmp_path / "out", *flags) == 0
    assert convert("--to-original", tmp_path / "out", tmp_path / "back.pth") == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    if wrap:
        assert list(back) == [wrap]
        back = back[wrap]
    assert list(back) == list(sd)  # same keys, same order
    for key, tensor in sd.items():
        assert back[key].dtype == tensor.dtype and back[key].shape == tensor.shape, key
        assert torch.equal(back[key], tensor), key


def test_dtype_is_kept_both_ways(tmp_path, gen):
    sd = {k: v.to(torch.bfloat16) for k, v in official_classifier(gen).items()}
    sd["layers.0.mixer.A_log"] = sd["layers.0.mixer.A_log"].float()  # mixed dtypes: saved as float32, restored
    ckpt = save_pth(tmp_path / "ckpt.pth", sd)
    assert convert(ckpt, tmp_path / "mixed") == 0
    assert json.loads((tmp_path / "mixed" / "config.json").read_text())["dtype"] == "float32"
    assert convert("--to-original", tmp_path / "mixed", tmp_path / "back.pth") == 0
    back = torch.load(tmp_path / "back.pth", weights_only=True)["model"]
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in sd.items())

    del sd["layers.0.mixer.A_log"]
    sd["layers.0.mixer.A_log"] = torch.zeros(INNER, STATE, dtype=torch.bfloat16)
    assert convert(save_pth(tmp_path / "bf16.pth", sd), tmp_path / "bf16") == 0
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_to_original_of_a_plain_saved_model(tmp_path):
    """A folder not made by the converter (e.g. after fine-tuning here) goes back in the classification names."""
    from tests.conftest import tiny_config
    from videomamba import VideoMambaForImageClassification

    model = VideoMambaForImageClassification(tiny_config(num_frames=1))
    model.save_pretrained(tmp_path / "m")
    assert convert("--to-original", tmp_path / "m", tmp_path / "m.pth") == 0
    back = torch.load(tmp_path / "m.pth", weights_only=True)
    assert back["patch_embed.proj.weight"].shape == (32, 3, 16, 16) and "temporal_pos_embedding" not in back
    assert torch.equal(back["head.weight"], model.classifier.weight.detach())
    assert torch.equal(back["norm_f.weight"], model.videomamba.norm_f.weight.detach())
    # ... and that file converts again to the same model.
    assert convert(tmp_path / "m.pth", tmp_path / "again") == 0
    again = VideoMambaForImageClassification.from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


# ------------------------------------------------------------------------------------------------------------------
# Geometry overrides
# ------------------------------------------------------------------------------------------------------------------


def test_num_frames_and_image_size_overrides_resize_the_tables(tmp_path, gen):
    from videomamba import VideoMambaForVideoClassification

    sd = official_classifier(gen)
    ckpt = save_pth(tmp_path / "ckpt.pth", sd)
    assert convert(ckpt, tmp_path / "out", "--num-frames", 8, "--image-size", 64) == 0
    model = VideoMambaForVideoClassification.from_pretrained(tmp_path / "out")
    assert (model.config.num_frames, model.config.image_size) == (8, 64)
    temporal = model.videomamba.embeddings.temporal_position_embeddings.detach()
    expected = F.interpolate(sd["temporal_pos_embedding"].permute(0, 2, 1), size=8, mode="linear",
                             align_corners=False).permute(0, 2, 1)
    assert torch.allclose(temporal, expected, atol=1e-6)
    assert model.videomamba.embeddings.position_embeddings.shape == (1, 1 + 16, DIM)
    processor = json.loads((tmp_path / "out" / "video_preprocessor_config.json").read_text())
    assert processor["num_frames"] == 8 and processor["crop_size"] == {"height": 64, "width": 64}
    assert "resized" in (tmp_path / "out" / "README.md").read_text()


def test_image_checkpoint_inflates_to_video(tmp_path, gen):
    from videomamba import VideoMambaForVideoClassification

    sd = official_classifier(gen, image=True)
    ckpt = save_pth(tmp_path / "ckpt.pth", sd)
    assert convert(ckpt, tmp_path / "out", "--task", "video-classification") == 2
    assert convert(ckpt, tmp_path / "out", "--task", "video-classification", "--num-frames", 4) == 0
    model = VideoMambaForVideoClassification.from_pretrained(tmp_path / "out").eval()
    assert not model.videomamba.embeddings.temporal_position_embeddings.detach().any()  # official init: zeros
    # With a zero temporal table, a video of one repeated image gives the image model's tokens per frame; the cls
    # output differs (the scan sees 4 frames), so check the table and the patch embedding only.
    conv = model.videomamba.embeddings.patch_embeddings.projection.weight.detach()
    assert torch.equal(conv[:, :, 0], sd["patch_embed.proj.weight"])


# ------------------------------------------------------------------------------------------------------------------
# Folder contents, loading with and without the package, pipelines
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def video_folder(tmp_path, gen):
    sd = official_classifier(gen)
    ckpt = save_pth(tmp_path / "videomamba_t16_k400_f8_res224.pth", sd)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({str(i): f"action_{i}" for i in range(CLASSES)}))
    out = tmp_path / "videomamba-t16-k400"
    assert convert(ckpt, out, "--labels", labels) == 0
    return out, sd


def test_folder_contents(video_folder):
    out, _ = video_folder
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "video_preprocessor_config.json", "README.md",
            "conversion_info.json", "modeling_videomamba.py", "configuration_videomamba.py",
            "selective_scan_torch.py"} <= files
    assert not any(name.endswith(".bin") for name in files)
    processor = json.loads((out / "video_preprocessor_config.json").read_text())
    assert processor["video_processor_type"] == "VideoMambaVideoProcessor"
    assert processor["size"] == {"shortest_edge": IMG} and processor["crop_size"] == {"height": IMG, "width": IMG}
    assert processor["num_frames"] == FRAMES and processor["do_normalize"] and processor["do_center_crop"]
    assert processor["image_mean"] == [0.485, 0.456, 0.406] and processor["image_std"] == [0.229, 0.224, 0.225]
    assert processor["rescale_factor"] == pytest.approx(1 / 255)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0")
    assert "videomamba_t16_k400_f8_res224.pth" in card and "pipeline_tag: video-classification" in card
    assert "76.9" in card  # the model zoo's top-1 for this file name
    assert "Conv2d" not in card
    info = json.loads((out / "conversion_info.json").read_text())
    assert len(info["source"]["sha256"]) == 64
    assert info["key_map"]["patch_embed.proj.weight"] == "videomamba.embeddings.patch_embeddings.projection.weight"
    assert info["key_map"]["head.weight"] == "classifier.weight"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["4"] == "action_4"
    assert config["auto_map"]["AutoModelForVideoClassification"].endswith("VideoMambaForVideoClassification")


def test_auto_model_loads_folder(video_folder):
    from transformers import AutoModelForVideoClassification

    out, sd = video_folder
    model = AutoModelForVideoClassification.from_pretrained(out).eval()
    assert type(model).__name__ == "VideoMambaForVideoClassification"
    video = video_batch(batch=1)
    with torch.no_grad():
        assert_rel_close(model(video.transpose(1, 2)).logits, official_logits(sd, video))


_BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockVideomamba(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "videomamba" or name.startswith("videomamba."):
                raise ImportError(f"{name} is blocked: this test runs as if the package were not installed")
            return None

    sys.meta_path.insert(0, BlockVideomamba())
    try:
        import videomamba  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("videomamba was importable")

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModelForVideoClassification, pipeline

    video_folder, image_folder, inputs, output = sys.argv[1:5]
    model = AutoModelForVideoClassification.from_pretrained(video_folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        logits = model(torch.load(inputs, weights_only=True)).logits
    classifier = pipeline("image-classification", model=image_folder, trust_remote_code=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    result = classifier(image, top_k=2)
    torch.save({"logits": logits, "pipeline": result, "modules": sorted(m for m in sys.modules if "videomamba" in m)},
               output)
    """
)


def test_remote_code_without_the_package(tmp_path, video_folder, gen):
    out, sd = video_folder
    image_sd = official_classifier(gen, image=True)
    assert convert(save_pth(tmp_path / "img.pth", image_sd), tmp_path / "image-folder") == 0
    video = video_batch(batch=1)
    torch.save(video.transpose(1, 2).contiguous(), tmp_path / "inputs.pt")
    script = tmp_path / "blocked.py"
    script.write_text(_BLOCKED_IMPORT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, str(script), str(out), str(tmp_path / "image-folder"), str(tmp_path / "inputs.pt"),
         str(tmp_path / "result.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    assert not any(m == "videomamba" or m.startswith("videomamba.") for m in result["modules"])
    assert_rel_close(result["logits"], official_logits(sd, video))
    assert len(result["pipeline"]) == 2 and {r["label"] for r in result["pipeline"]} <= {f"LABEL_{i}" for i in
                                                                                         range(CLASSES)}


def test_image_pipeline_uses_the_converted_model(tmp_path, gen):
    from PIL import Image
    from transformers import AutoImageProcessor, pipeline

    from videomamba import VideoMambaForImageClassification

    sd = official_classifier(gen, image=True)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n" + "".join(f"{i},name {i}\n" for i in range(CLASSES)))
    assert convert(save_pth(tmp_path / "img.pth", sd), tmp_path / "out", "--labels", labels) == 0
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    result = pipeline("image-classification", model=str(tmp_path / "out"))(image, top_k=CLASSES)

    pixel_values = AutoImageProcessor.from_pretrained(tmp_path / "out")(image, return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, IMG, IMG)
    probs = official_logits(sd, pixel_values).softmax(-1)[0]
    assert [r["label"] for r in result] == [f"name {i}" for i in probs.argsort(descending=True).tolist()]
    assert result[0]["score"] == pytest.approx(probs.max().item(), rel=1e-4)


def test_video_pipeline_uses_the_converted_model(video_folder, tmp_path):
    import videomamba

    if getattr(videomamba, "VideoMambaVideoProcessor", None) is None:
        pytest.skip("VideoMambaVideoProcessor is not in the package yet (branch `video`)")
    from transformers import AutoVideoProcessor, pipeline

    from videomamba.demo_data import write_mp4

    out, sd = video_folder
    frames = np.random.default_rng(2).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    write_mp4(tmp_path / "clip.mp4", frames)
    result = pipeline("video-classification", model=str(out))(str(tmp_path / "clip.mp4"), top_k=CLASSES)
    assert {r["label"] for r in result} == {f"action_{i}" for i in range(CLASSES)}
    processor = AutoVideoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "VideoMambaVideoProcessor"
    inputs = processor(str(tmp_path / "clip.mp4"), num_frames=FRAMES, do_sample_frames=True, return_tensors="pt")
    probs = official_logits(sd, inputs.pixel_values.transpose(1, 2)).softmax(-1)[0]
    assert result[0]["label"] == f"action_{probs.argmax().item()}"
    assert result[0]["score"] == pytest.approx(probs.max().item(), rel=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# Command line and docs
# ------------------------------------------------------------------------------------------------------------------


def test_python_dash_m_entry_point(tmp_path, gen):
    ckpt = save_pth(tmp_path / "ckpt.pth", official_classifier(gen))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = subprocess.run([sys.executable, "-m", "videomamba.convert", str(ckpt), str(tmp_path / "out")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Converted ckpt.pth (video-classification)" in run.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_console_script_is_declared():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "videomamba-convert = videomamba.convert:main" in cfg["options.entry_points"]["console_scripts"]


def test_docs_table_lists_every_known_checkpoint():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "convert.md").read_text()
    for name, (_, _, _, top1, _, _) in vmc.OFFICIAL_CHECKPOINTS.items():
        row = next((line for line in docs.splitlines() if f"`{name}`" in line and line.startswith("|")), None)
        assert row is not None, name
        if top1 is not None:
            assert f"| {top1} " in row, name
