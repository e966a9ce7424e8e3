"""Hour-long video support: exact chunked inference, streaming decode, the long-video API and CLI (CPU, tiny models)."""

import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import tiny_config
from videomamba import VideoMambaForVideoClassification, VideoMambaModel
from videomamba import long_video
from videomamba.demo_data import write_mp4
from videomamba.long_video import (
    StatelessKernelDirectionScan,
    add_initial_state_contribution,
    choose_chunk_size,
    chunked_classify,
    chunked_forward,
    encode_long_video,
    get_direction_scan,
    pool_segments,
)
from videomamba.selective_scan_torch import causal_depthwise_conv1d, selective_scan
from videomamba.streaming import StreamingVideoReader, preprocess_frames, probe_video


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tests run many tiny ops (chunk size 1 is ~600 scan calls); on a shared CPU one thread is ~10x faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def long_memory_(model):
    """Random weights with slowly decaying scan states, so that a state not carried across a chunk boundary shows."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("A_log", "A_b_log")):
                values = torch.empty(parameter.shape).uniform_(math.log(0.02), math.log(0.5), generator=generator)
                parameter.copy_(values)
            elif "dt_proj" in name and name.endswith("bias"):
                parameter.copy_(torch.empty(parameter.shape).uniform_(-3.0, -1.0, generator=generator))
            elif name.endswith("temporal_position_embeddings") or name.endswith("cls_token"):
                parameter.normal_(0, 0.1, generator=generator)
            elif name.endswith(("in_proj.weight", "x_proj.weight", "x_proj_b.weight", "out_proj.weight")):
                parameter.normal_(0, 1.0 / math.sqrt(parameter.shape[1]), generator=generator)
    return model.eval()


def build_model(cls=VideoMambaModel, **overrides):
    config = tiny_config(**overrides)
    return long_memory_(cls(config))


# --- the stock-kernel route, emulated on the CPU ---------------------------------------------------------------------


def reference_causal_conv1d_fn(x, weight, bias=None, activation=None):
    """`causal_conv1d_fn`'s contract (zero initial state, `(batch, dim, length)` with a unit length stride)."""
    assert activation == "silu" and x.stride(-1) == 1 and weight.dtype == x.dtype and weight.ndim == 2
    return causal_depthwise_conv1d(x.transpose(1, 2), weight.unsqueeze(1), bias).transpose(1, 2)


def reference_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                                return_last_state=False):
    """`selective_scan_fn`'s contract: always a zero initial state, `(batch, dim, length)` layout."""
    for tensor in (u, delta, B, C, z):
        assert tensor.stride(-1) == 1
    out, last = selective_scan(
        u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
        z=None if z is None else z.transpose(1, 2), dt_bias=delta_bias, delta_softplus=delta_softplus,
        return_final_state=True,
    )
    out = out.transpose(1, 2)
    return (out, last) if return_last_state else out


def stateless_scan(block_size=5):
    return StatelessKernelDirectionScan(reference_causal_conv1d_fn, reference_selective_scan_fn, block_size=block_size)


# --- exact chunked inference -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_model():
    torch.manual_seed(0)
    return build_model(num_hidden_layers=3)


@pytest.fixture(scope="module")
def clip():
    return torch.randn(2, 24, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # 1 + 24 * 4 = 97 tokens


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 500])
def test_chunked_equals_full_torch(video_model, clip, chunk_size):
    full = video_model(clip, interpolate_pos_encoding=True).last_hidden_state
    out = chunked_forward(video_model, clip, chunk_size=chunk_size, backend="torch")
    assert out.last_hidden_state.shape == full.shape == (2, 97, 32)
    torch.testing.assert_close(out.last_hidden_state, full, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(out.pooler_output, full[:, 0], rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunked_equals_full_with_mask(video_model, clip, chunk_size):
    generator = torch.Generator().manual_seed(3)
    mask = torch.zeros(2, 96, dtype=torch.bool)
    for row in range(2):
        mask[row, torch.randperm(96, generator=generator)[:60]] = True  # 36 visible patches per sample
    full = video_model(clip, bool_masked_pos=mask, interpolate_pos_encoding=True).last_hidden_state
    out = chunked_forward(video_model, clip, bool_masked_pos=mask, chunk_size=chunk_size, backend="torch")
    assert out.last_hidden_state.shape == full.shape == (2, 37, 32)
    torch.testing.assert_close(out.last_hidden_state, full, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 40, 97])
def test_chunked_stateless_kernel_route_equals_full(video_model, clip, chunk_size):
    """The route the stock mamba-ssm kernels take (no initial state): conv state prepended, scan state added."""
    full = video_model(clip, interpolate_pos_encoding=True).last_hidden_state
    out = chunked_forward(video_model, clip, chunk_size=chunk_size, backend=stateless_scan())
    torch.testing.assert_close(out.last_hidden_state, full, rtol=1e-5, atol=2e-5)


def test_scans_never_see_more_than_a_chunk(video_model, clip):
    """Memory is bounded by the chunk: every scan call gets at most `chunk_size` tokens, each direction covers the
    whole sequence once per block, and states are carried between consecutive chunks only."""
    calls = []

    class Recording(long_video.TorchDirectionScan):
        def __call__(self, mixer, x, z, backward, conv_state=None, ssm_state=None):
            calls.append((mixer.layer_idx, backward, x.shape[1], conv_state is None, ssm_state is None))
            return super().__call__(mixer, x, z, backward, conv_state, ssm_state)

    chunked_forward(video_model, clip, chunk_size=10, backend=Recording())
    assert max(length for *_, length, _, _ in calls) == 10
    for layer in range(3):
        for backward in (False, True):
            lengths = [c[2] for c in calls if c[:2] == (layer, backward)]
            fresh = [c[3] and c[4] for c in calls if c[:2] == (layer, backward)]
            assert sum(lengths) == 97 and len(lengths) == 10
            assert lengths == ([10] * 9 + [7] if not backward else [7] + [10] * 9)
            assert fresh == [True] + [False] * 9


def test_dropping_the_carried_states_is_detected(video_model, clip):
    """The tests above can fail: without the scan-state contribution or the conv state the result is off."""
    full = video_model(clip, interpolate_pos_encoding=True).last_hidden_state

    class NoScanState(StatelessKernelDirectionScan):
        def __call__(self, mixer, x, z, backward, conv_state=None, ssm_state=None):
            return super().__call__(mixer, x, z, backward, conv_state, None)

    class NoConvState(StatelessKernelDirectionScan):
        def __call__(self, mixer, x, z, backward, conv_state=None, ssm_state=None):
            return super().__call__(mixer, x, z, backward, None, ssm_state)

    for broken in (NoScanState, NoConvState):
        out = chunked_forward(video_model, clip, chunk_size=7, backend=broken(
            reference_causal_conv1d_fn, reference_selective_scan_fn))
        assert (out.last_hidden_state - full).abs().max() > 1e-2


def test_initial_state_contribution_is_exact():
    generator = torch.Generator().manual_seed(4)
    batch, dim, state, length = 2, 6, 4, 37
    u, delta, z = (torch.randn(batch, dim, length, generator=generator) for _ in range(3))
    B, C = (torch.randn(batch, state, length, generator=generator) for _ in range(2))
    A = -torch.rand(dim, state, generator=generator) * 0.3
    D, bias = torch.randn(dim, generator=generator), torch.randn(dim, generator=generator) - 1
    h0 = torch.randn(batch, dim, state, generator=generator)
    out0, last0 = reference_selective_scan_fn(u, delta, A, B, C, D, z, bias, True, return_last_state=True)
    out, last = add_initial_state_contribution(out0, last0, delta, bias, A, C, z, h0, block_size=8)
    expected, expected_last = selective_scan(
        u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D, z.transpose(1, 2),
        bias, True, initial_state=h0, return_final_state=True,
    )
    torch.testing.assert_close(out, expected.transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-5)
    assert (out - out0).abs().max() > 1e-2  # the state contributes


@pytest.mark.parametrize(
    "overrides",
    [
        dict(use_bias=True, rms_norm=False),  # out_proj bias added once across both sweeps; LayerNorm
        dict(tubelet_size=2, residual_in_fp32=False),
    ],
)
def test_chunked_equals_full_other_configs(clip, overrides):
    torch.manual_seed(5)
    model = build_model(num_hidden_layers=2, **overrides)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0, 0.1)
    full = model(clip[:1], interpolate_pos_encoding=True).last_hidden_state
    for chunk_size in (3, 16):
        out = chunked_forward(model, clip[:1], chunk_size=chunk_size, backend="torch", offload=True)
        torch.testing.assert_close(out.last_hidden_state, full, rtol=1e-5, atol=2e-5)


def test_chunked_bf16_close_to_full(clip):
    """bf16 autocast and bf16 weights: chunked stays as close to the full bf16 pass as bf16 itself is to float32."""
    torch.manual_seed(12)
    model = build_model(num_hidden_layers=2)
    pixels = clip[:1, :6]
    reference = model(pixels, interpolate_pos_encoding=True).last_hidden_state
    scale = reference.abs().max()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(pixels, interpolate_pos_encoding=True).last_hidden_state.float()
        for backend in ("torch", stateless_scan()):
            out = chunked_forward(model, pixels, chunk_size=5, backend=backend).last_hidden_state.float()
            assert (out - full).abs().max() < 0.02 * scale
    model = model.to(torch.bfloat16)
    full = model(pixels, interpolate_pos_encoding=True).last_hidden_state.float()
    out = chunked_forward(model, pixels, chunk_size=5).last_hidden_state
    assert out.dtype == torch.bfloat16 and (out.float() - full).abs().max() < 0.02 * scale


def test_chunked_classify_and_auto_chunk_size(clip):
    torch.manual_seed(6)
    model = build_model(VideoMambaForVideoClassification, num_hidden_layers=2)
    expected = model(clip, interpolate_pos_encoding=True).logits
    torch.testing.assert_close(chunked_classify(model, clip, chunk_size=10), expected, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(chunked_classify(model, clip), expected, rtol=1e-5, atol=2e-5)  # chosen chunk size


def test_choose_chunk_size():
    config = tiny_config()
    per_token = long_video.chunk_bytes_per_token(config, 1, "torch")
    assert long_video.chunk_bytes_per_token(config, 2, "torch") == 2 * per_token
    assert long_video.chunk_bytes_per_token(config, 1, "mamba_ssm") < per_token
    assert choose_chunk_size(config, 10**6, free_bytes=per_token * 10_000, memory_fraction=0.5) == 4864
    assert choose_chunk_size(config, 100, free_bytes=per_token * 10_000) == 100  # never above the length
    assert choose_chunk_size(config, 10**6, free_bytes=0) == 1  # never below one
    assert long_video.available_memory("cpu") > 0


@pytest.mark.parametrize("chunk_size", [0, -4])
def test_non_positive_chunk_size_is_a_clear_error(video_model, clip, chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be a positive number of tokens"):
        chunked_forward(video_model, clip, chunk_size=chunk_size)

def test_cli_rejects_non_positive_chunk_size(capsys):
    for value in ("0", "-4"):
        with pytest.raises(SystemExit):
            long_video.run_cli(["features", "x.mp4", "--model", "m", "--chunk-size", value])
        assert "--chunk-size: must be a positive number of tokens" in capsys.readouterr().err


def test_other_bad_arguments(video_model, clip):
    with pytest.raises(TypeError, match="positive int"):
        chunked_forward(video_model, clip, chunk_size=2.5)
    with pytest.raises(ValueError, match="backend"):
        chunked_forward(video_model, clip, chunk_size=8, backend="cuda-magic")
    with pytest.raises(ValueError, match="CUDA only"):
        get_direction_scan("mamba_ssm", torch.device("cpu"))
    model = build_model(num_hidden_layers=1).train()
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        chunked_forward(model, clip, chunk_size=8)


# --- streaming decode ------------------------------------------------------------------------------------------------


def indexed_frames(count, height=48, width=64):
    """Flat frames whose red level encodes the frame index (even steps, so H.264 keeps them distinguishable)."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[..., 0] = (np.arange(count) * 8 % 256)[:, None, None]
    frames[..., 1] = 128
    return frames


@pytest.fixture(scope="module")
def long_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "long.mp4"
    write_mp4(path, indexed_frames(600), fps=30)  # 20 s at 30 fps
    return path


def test_streaming_decode_at_fps_is_bounded(long_mp4):
    reader = StreamingVideoReader(long_mp4, fps=2, image_size=32, batch_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    assert reader.expected_num_samples() == 40
    all_frames_bytes = 600 * 48 * 64 * 3
    tracemalloc.start()
    try:
        timestamps, frame_times, reds, sizes = [], [], [], []
        for batch in reader:
            sizes.append(batch.pixel_values.shape[0])
            timestamps += batch.timestamps.tolist()
            frame_times += batch.frame_times.tolist()
            reds += (batch.pixel_values[:, 0].mean((1, 2)) * 255).tolist()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.pixel_values.shape[1:] == (3, 32, 32)
    assert sum(sizes) == reader.num_sampled == 40 and max(sizes) == 8
    assert reader.max_buffered_frames <= 8
    assert peak < all_frames_bytes / 20, f"decoding held {peak} bytes (all frames: {all_frames_bytes})"
    np.testing.assert_allclose(timestamps, np.arange(40) / 2)
    np.testing.assert_allclose(frame_times, np.arange(40) / 2, atol=1e-6)
    expected_reds = (np.arange(40) * 15 * 8) % 256  # frame 15 k is shown at k / 2 s
    np.testing.assert_allclose(reds, expected_reds, atol=3)


def test_streaming_decode_by_count_and_above_the_video_rate(long_mp4):
    reader = StreamingVideoReader(long_mp4, num_frames=5, image_size=32, batch_size=2)
    batches = list(reader)
    assert [b.pixel_values.shape[0] for b in batches] == [2, 2, 1]
    times = torch.cat([b.timestamps for b in batches])
    torch.testing.assert_close(times, (torch.arange(5, dtype=torch.float64) + 0.5) * 4)
    # 45 fps from a 30 fps video: the shown frame repeats, the sample times stay uniform.
    reader = StreamingVideoReader(long_mp4, fps=45, image_size=32, max_frames=9)
    batch = next(iter(reader))
    assert batch.pixel_values.shape[0] == 9
    frame_indices = torch.round(batch.frame_times * 30).long().tolist()
    assert frame_indices == [0, 0, 1, 2, 2, 3, 4, 4, 5]


def write_audio_only(path, seconds=0.5, rate=16000):
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        samples = (0.3 * np.sin(np.arange(int(seconds * rate)) / 10)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_file_without_video_stream_is_a_clear_error(tmp_path, video_model):
    audio = tmp_path / "speech.mp4"
    write_audio_only(audio)
    with pytest.raises(ValueError, match="has no video stream.*audio"):
        StreamingVideoReader(audio)
    with pytest.raises(ValueError, match="has no video stream"):
        encode_long_video(video_model, audio, progress=False)
    with pytest.raises(FileNotFoundError, match="No video file"):
        StreamingVideoReader(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 20)
    with pytest.raises(ValueError, match="could not open"):
        probe_video(tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match="fps must be a positive"):
        StreamingVideoReader(audio, fps=0)
    with pytest.raises(ValueError, match="not both"):
        StreamingVideoReader(audio, fps=1, num_frames=3)
    with pytest.raises(ValueError, match="apply when `video` is a path"):
        encode_long_video(video_model, [], fps=2, progress=False)


def test_preprocess_frames():
    frames = torch.zeros(2, 40, 80, 3, dtype=torch.uint8)
    frames[:, :, 30:50] = 255  # a white band in the middle
    out = preprocess_frames(frames, image_size=20, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (2, 3, 20, 20)  # short side 40 -> 20, long side 80 -> 40, centre crop 20
    assert torch.allclose(out[:, :, :, 6:14], torch.ones(()), atol=1e-3) and out[:, :, :, 0].max() < 0.05


# --- the long-video API and CLI --------------------------------------------------------------------------------------


def full_reference(model, long_mp4, fps):
    reader = StreamingVideoReader(long_mp4, fps=fps, image_size=model.config.image_size, batch_size=1000)
    pixel_values = next(iter(reader)).pixel_values[None]
    with torch.no_grad():
        return model(pixel_values, interpolate_pos_encoding=True, output_hidden_states=False)


def test_encode_long_video_equals_full(long_mp4):
    torch.manual_seed(7)
    model = build_model(VideoMambaForVideoClassification, num_hidden_layers=2)
    output = encode_long_video(model, long_mp4, fps=2, chunk_size=11, frames_per_batch=6, progress=False)
    reference = full_reference(model.videomamba, long_mp4, fps=2)
    steps = 40
    assert output.num_tokens == 1 + steps * 4 and output.backend == "torch"
    torch.testing.assert_close(output.pooler_output, reference.pooler_output[0], rtol=1e-5, atol=2e-5)
    frame_features = reference.last_hidden_state[0, 1:].view(steps, 4, -1).mean(1)
    torch.testing.assert_close(output.frame_features, frame_features, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(output.timestamps, torch.arange(steps, dtype=torch.float64) / 2)
    logits = model(full_reference_pixels(model, long_mp4), interpolate_pos_encoding=True).logits[0]
    torch.testing.assert_close(output.logits, logits, rtol=1e-5, atol=2e-5)


def full_reference_pixels(model, long_mp4):
    reader = StreamingVideoReader(long_mp4, fps=2, image_size=model.config.image_size, batch_size=1000)
    return next(iter(reader)).pixel_values[None]


def test_encode_long_video_tubelet_pads_the_last_tubelet(long_mp4):
    torch.manual_seed(8)
    model = build_model(tubelet_size=2, num_frames=4, num_hidden_layers=1)
    output = encode_long_video(model, long_mp4, num_frames=5, chunk_size=4, frames_per_batch=3, progress=False)
    reader = StreamingVideoReader(long_mp4, num_frames=5, image_size=32, batch_size=100)
    pixels = next(iter(reader)).pixel_values
    pixels = torch.cat([pixels, pixels[-1:]])[None]  # 5 frames -> 3 tubelets
    with torch.no_grad():
        reference = model(pixels, interpolate_pos_encoding=True)
    assert output.frame_features.shape == (3, 32) and output.timestamps.shape == (3,)
    torch.testing.assert_close(output.pooler_output, reference.pooler_output[0], rtol=1e-5, atol=2e-5)


def test_pool_segments():
    features = torch.arange(12, dtype=torch.float32).view(6, 2)
    times = torch.tensor([0.0, 0.5, 1.0, 1.5, 4.0, 4.5], dtype=torch.float64)
    pooled, starts, ends = pool_segments(features, times, 2.0)
    torch.testing.assert_close(pooled, torch.tensor([[3.0, 4.0], [9.0, 10.0]]))
    torch.testing.assert_close(starts, torch.tensor([0.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([2.0, 6.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="segment_seconds"):
        pool_segments(features, times, 0)


def test_cli_classify_and_features(tmp_path, long_mp4, capsys):
    torch.manual_seed(9)
    model = build_model(VideoMambaForVideoClassification, num_hidden_layers=2)
    model.config.id2label = {i: f"class_{i}" for i in range(5)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "model")
    summary = long_video.run_cli([
        "classify", str(long_mp4), "--model", str(tmp_path / "model"), "--fps", "2", "--device", "cpu",
        "--chunk-size", "13", "--top-k", "3", "--no-progress", "--output", str(tmp_path / "top.json"),
    ])
    expected = model(full_reference_pixels(model, long_mp4), interpolate_pos_encoding=True).logits[0].softmax(-1)
    scores, indices = expected.topk(3)
    assert [entry["index"] for entry in summary["top_k"]] == indices.tolist()
    assert summary["top_k"][0]["label"] == f"class_{int(indices[0])}"
    np.testing.assert_allclose([entry["score"] for entry in summary["top_k"]], scores.tolist(), atol=1e-5)
    assert json.loads((tmp_path / "top.json").read_text())["frames"] == 40

    summary = long_video.run_cli([
        "features", str(long_mp4), "--model", str(tmp_path / "model"), "--fps", "2", "--device", "cpu",
        "--segment-seconds", "5", "--no-progress", "--output", str(tmp_path / "segments.safetensors"),
    ])
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "segments.safetensors")
    assert saved["features"].shape == (4, 32) and summary["features_shape"] == [4, 32]
    torch.testing.assert_close(saved["timestamps"], torch.tensor([0.0, 5.0, 10.0, 15.0], dtype=torch.float64))
    reference = full_reference(model.videomamba, long_mp4, fps=2).last_hidden_state[0, 1:].view(40, 4, -1).mean(1)
    torch.testing.assert_close(saved["features"], reference.view(4, 10, -1).mean(1), rtol=1e-5, atol=2e-5)
    capsys.readouterr()


def test_cli_runs_as_a_module(tmp_path, long_mp4):
    model = build_model(num_hidden_layers=1)
    model.save_pretrained(tmp_path / "backbone")
    output = tmp_path / "frames.npy"
    result = subprocess.run(
        [sys.executable, "-m", "videomamba.long_video", "features", str(long_mp4), "--model",
         str(tmp_path / "backbone"), "--num-frames", "6", "--device", "cpu", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["features_shape"] == [6, 32]
    assert np.load(output).shape == (6, 32)
    assert np.load(tmp_path / "frames_timestamps.npy").shape == (6,)


# --- GPU -------------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_tf32():
    """Full float32 on the GPU (cuDNN convolutions default to TF32, whose algorithm may differ by input size)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "mamba_ssm", "auto"])
def test_chunked_equals_full_cuda(backend, clip, no_tf32):
    from videomamba import is_mamba_ssm_available

    if backend == "mamba_ssm" and not is_mamba_ssm_available():
        pytest.skip("mamba-ssm / causal-conv1d not installed")
    torch.manual_seed(10)
    model = build_model(num_hidden_layers=3, hidden_size=64, scan_backend="torch").cuda()
    pixels = clip.cuda()
    full = model(pixels, interpolate_pos_encoding=True).last_hidden_state
    for chunk_size in (1, 7, 64, 500):
        for offload in (False, True):
            out = chunked_forward(model, pixels, chunk_size=chunk_size, backend=backend, offload=offload)
            torch.testing.assert_close(out.last_hidden_state.cuda(), full, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_chunked_bf16_autocast_close_to_full_cuda(clip):
    torch.manual_seed(11)
    model = build_model(num_hidden_layers=3, hidden_size=64, scan_backend="auto").cuda()
    pixels = clip.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        full = model(pixels, interpolate_pos_encoding=True).last_hidden_state.float()
        out = chunked_forward(model, pixels, chunk_size=16).last_hidden_state.float()
    assert (out - full).abs().max() < 0.05 * full.abs().max()
