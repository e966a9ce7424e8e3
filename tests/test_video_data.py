"""Video decoding, frame sampling, clip transforms, the video processor and the clip dataset (CPU, no network)."""

import json
import warnings

import numpy as np
import pytest
import torch


av = pytest.importorskip("av")

from videomamba import VideoMambaVideoProcessor, average_view_logits  # noqa: E402
from videomamba.data import VideoClipDataset, collate_video_batch, load_video_samples  # noqa: E402
from videomamba.demo_data import write_mp4  # noqa: E402
from videomamba.transforms import (  # noqa: E402
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    RandomHorizontalFlipVideo,
    RandomResizedCropVideo,
    make_train_transform,
    three_crop,
)
from videomamba.video_io import (  # noqa: E402
    decode_frames,
    get_num_frames,
    get_video_info,
    read_all_frames,
    read_video_frames,
    sample_dense_indices,
    sample_frame_indices,
    sample_multiview_indices,
    sample_uniform_indices,
)


def coded_frames(num_frames, height=32, width=32):
    """Frames whose mean brightness encodes their index (survives lossy coding): frame t has value 8 + 3 * t."""
    values = (8 + 3 * np.arange(num_frames)) % 256
    return np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8).copy()


def write_video(path, frames, fps=25, gop=None):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        options = {"crf": "10"}
        if gop:
            options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_ids(frames):
    return np.round((frames.reshape(len(frames), -1).mean(1) - 8) / 3).astype(int)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = {
        "short": write_video(root / "short.mp4", coded_frames(20)),
        "long": write_video(root / "long.mp4", coded_frames(80, 16, 16), gop=8),
        "tiny": write_video(root / "tiny.mp4", coded_frames(3)),
        "wide": write_video(root / "wide.mp4", coded_frames(12, 32, 48)),
    }
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    paths["empty"] = empty
    garbage = root / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    paths["garbage"] = garbage
    truncated = root / "truncated.mp4"
    data = paths["short"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    paths["truncated"] = truncated
    audio = root / "audio.wav"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    paths["audio"] = audio
    return paths


# ---------------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------------


def test_uniform_sampling_takes_segment_middles():
    np.testing.assert_array_equal(sample_uniform_indices(16, 8), [1, 3, 5, 7, 9, 11, 13, 15])
    np.testing.assert_array_equal(sample_uniform_indices(100, 4), [12, 37, 62, 87])
    np.testing.assert_array_equal(sample_uniform_indices(8, 8), np.arange(8))
    # Training: one random frame inside each segment.
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = sample_uniform_indices(100, 4, rng=rng)
        assert np.all(idx // 25 == np.arange(4))


def test_uniform_multiclip_interleaves_within_segments():
    views = sample_multiview_indices(120, 4, num_clips=3)
    assert views.shape == (3, 4)
    np.testing.assert_array_equal(views[:, 0], [5, 15, 25])  # offsets 1/6, 3/6, 5/6 of a 30-frame segment
    assert np.all(views // 30 == np.arange(4))
    assert len({tuple(v) for v in views}) == 3


def test_dense_sampling_windows():
    # The central window: it spans 25 frames, leaving 75 to share on both sides.
    np.testing.assert_array_equal(sample_dense_indices(100, 4, 8), 37 + 8 * np.arange(4))
    rng = np.random.default_rng(1)
    for _ in range(20):
        idx = sample_dense_indices(100, 4, 8, rng=rng)
        assert np.all(np.diff(idx) == 8) and 0 <= idx[0] and idx[-1] < 100
    views = sample_multiview_indices(100, 4, num_clips=3, sampling="dense", stride=8)
    np.testing.assert_array_equal(views[:, 0], [0, 37, 75])  # first to last window, evenly spaced
    assert views[-1, -1] == 99


def test_short_video_policies():
    np.testing.assert_array_equal(sample_uniform_indices(3, 6), [0, 0, 1, 1, 2, 2])  # repeat in order
    np.testing.assert_array_equal(sample_uniform_indices(3, 6, short_video="pad"), [0, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(sample_dense_indices(10, 4, 4, short_video="pad"), [0, 4, 8, 9])
    np.testing.assert_array_equal(sample_dense_indices(10, 4, 4, short_video="repeat"), [0, 3, 6, 9])
    with pytest.raises(ValueError, match="3 frames but 6 frames"):
        sample_uniform_indices(3, 6, short_video="error")
    with pytest.raises(ValueError, match="spans 13 frames"):
        sample_dense_indices(10, 4, 4, short_video="error")
    with pytest.raises(ValueError, match="short_video must be one of"):
        sample_uniform_indices(10, 4, short_video="loop")
    with pytest.raises(ValueError, match="0 frames"):
        sample_frame_indices(0, 4)
    with pytest.raises(ValueError, match="sampling must be one of"):
        sample_frame_indices(10, 4, sampling="random")


# ---------------------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------------------


def test_read_frames_returns_requested_frames_in_order(videos):
    assert get_num_frames(videos["short"]) == 20
    info = get_video_info(videos["wide"])
    assert (info.num_frames, info.height, info.width, info.fps) == (12, 32, 48, 25.0)
    indices = [5, 0, 19, 5, 7]
    frames = read_video_frames(videos["short"], indices)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frame_ids(frames), indices)
    np.testing.assert_array_equal(frames, read_all_frames(videos["short"])[indices])


def test_read_frames_seeks_in_long_videos(videos):
    reference = read_all_frames(videos["long"])
    indices = [2, 40, 77]
    frames, decoded = decode_frames(videos["long"], indices, seek_threshold=10)
    np.testing.assert_array_equal(frames, reference[indices])
    np.testing.assert_array_equal(frame_ids(frames), indices)
    assert decoded < 30, f"decoded {decoded} of 80 frames: the reader should seek to keyframes"
    _, decoded_without_seeking = decode_frames(videos["long"], indices, seek_threshold=None)
    assert decoded_without_seeking == 78


def test_unreadable_videos_raise_clear_errors(videos, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_video_frames(tmp_path / "missing.mp4", [0])
    with pytest.raises(ValueError, match="empty"):
        get_num_frames(videos["empty"])
    for name in ("garbage", "truncated"):
        with pytest.raises(ValueError, match=f"{name}.mp4.*could not open"):
            read_video_frames(videos[name], [0])
    with pytest.raises(ValueError, match="no video stream"):
        get_num_frames(videos["audio"])
    with pytest.raises(ValueError, match="directory"):
        get_num_frames(tmp_path)
    with pytest.raises(ValueError, match=">= 0"):
        read_video_frames(videos["short"], [-1])


def test_decoded_frames_equal_pyav_rgb_conversion(videos):
    """The reader converts with one reused swscale context per file: the pixels are PyAV's `to_ndarray("rgb24")`."""
    for name in ("short", "wide"):
        with av.open(str(videos[name])) as container:
            expected = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
        np.testing.assert_array_equal(read_all_frames(videos[name]), expected)
        np.testing.assert_array_equal(read_video_frames(videos[name], [3, 1, 3]), expected[[3, 1, 3]])


def test_frames_past_the_end_repeat_the_last_frame_with_a_warning(videos):
    with pytest.warns(UserWarning, match="only 3 frames could be decoded"):
        frames = read_video_frames(videos["tiny"], [0, 2, 5])
    np.testing.assert_array_equal(frame_ids(frames), [0, 2, 2])


# ---------------------------------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------------------------------


def test_train_transforms_apply_the_same_op_to_every_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    clip = frame.expand(6, -1, -1, -1).contiguous()  # six identical frames
    crop = RandomResizedCropVideo(24, scale=(0.2, 0.6))
    for _ in range(5):
        out = crop(clip)
        assert out.shape == (6, 3, 24, 24) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[t]) for t in range(6))
    flip = RandomHorizontalFlipVideo(p=1.0)
    torch.testing.assert_close(flip(clip), clip.flip(-1))
    transform = make_train_transform(24, hflip_prob=0.5)
    out = transform(clip)
    assert out.dtype == torch.float32 and out.shape == (6, 3, 24, 24)
    assert all(torch.allclose(out[0], out[t]) for t in range(6))


def test_three_crop_covers_the_long_side():
    clip = torch.arange(20 * 40).view(1, 1, 20, 40).expand(2, 3, -1, -1)
    crops = three_crop(clip, (20, 20), 3)
    assert [c[0, 0, 0, 0].item() for c in crops] == [0, 10, 20]
    tall = clip.transpose(-1, -2)  # 40x20: the crops move down the rows
    for crop_tall, crop_wide in zip(three_crop(tall, (20, 20), 3), crops):
        torch.testing.assert_close(crop_tall, crop_wide.transpose(-1, -2))


# ---------------------------------------------------------------------------------------------------------------------
# Processor
# ---------------------------------------------------------------------------------------------------------------------


def small_processor(**kwargs):
    kwargs = {"num_frames": 4, "size": {"shortest_edge": 16}, "crop_size": {"height": 16, "width": 16}, **kwargs}
    return VideoMambaVideoProcessor(**kwargs)


def test_processor_decodes_samples_and_normalises(videos):
    processor = small_processor()
    out = processor(str(videos["short"]), return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 4, 3, 16, 16) and out.dtype == torch.float32
    # Constant frames of value v normalise to (v / 255 - mean) / std per channel; frames 2, 7, 12, 17 are sampled.
    values = read_video_frames(videos["short"], [2, 7, 12, 17]).reshape(4, -1, 3).mean(1) / 255
    expected = (values - np.array(IMAGENET_DEFAULT_MEAN)) / np.array(IMAGENET_DEFAULT_STD)
    np.testing.assert_allclose(out[0].mean((2, 3)).numpy(), expected, atol=0.05)
    # Arrays (channels last or first), tensors and lists of frames give the same result as the file.
    frames = read_all_frames(videos["short"])
    for video in (frames, torch.from_numpy(frames).permute(0, 3, 1, 2), list(frames)):
        torch.testing.assert_close(processor(video, return_tensors="pt")["pixel_values"], out)
    batch = processor([str(videos["short"]), {"path": str(videos["wide"])}], return_tensors="pt")["pixel_values"]
    assert batch.shape == (2, 4, 3, 16, 16)


def test_processor_resizes_short_side_and_center_crops():
    frames = np.zeros((4, 20, 40, 3), dtype=np.uint8)
    frames[:, :, 15:25] = 255  # a bright vertical band in the middle third
    out = small_processor(size={"shortest_edge": 10}, crop_size={"height": 10, "width": 10}, do_normalize=False)(
        frames, return_tensors="pt"
    )["pixel_values"]
    assert out.shape == (1, 4, 3, 10, 10)
    # 20x40 -> 10x20, then the central 10 columns: the band (columns 7.5..12.5 after resizing) sits at 2.5..7.5.
    column_means = out[0, 0, 0].mean(0)
    assert column_means[3:7].min() > 0.9 and column_means[[0, 9]].max() < 0.1


def test_processor_multiview(videos):
    processor = small_processor()
    out = processor(str(videos["wide"]), num_clips=2, num_crops=3, return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 6, 4, 3, 16, 16)
    # 32x48 -> 16x24: the three crops start at columns 0, 4, 8 of the resized frames.
    frames = read_all_frames(videos["wide"])
    frames[..., :24, 0] = 0
    frames[..., 24:, 0] = 255
    views = processor(frames, num_clips=2, num_crops=3, do_normalize=False, return_tensors="pt")["pixel_values"][0]
    red_share = views[:, 0, 0].mean((1, 2))
    assert red_share[0] < red_share[1] < red_share[2]
    torch.testing.assert_close(red_share[:3], red_share[3:])
    logits = torch.arange(12.0).view(12, 1)
    torch.testing.assert_close(average_view_logits(logits, 6), torch.tensor([[2.5], [8.5]]))


def test_processor_short_video_policy(videos):
    processor = small_processor(num_frames=6)
    out = processor(str(videos["tiny"]), do_normalize=False, do_rescale=False, return_tensors="pt")["pixel_values"]
    assert frame_ids(out[0].permute(0, 2, 3, 1).numpy()).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="3 frames but 6 frames"):
        processor(str(videos["tiny"]), short_video="error")
    with pytest.raises(ValueError, match="could not open"):
        processor(str(videos["garbage"]))
    with pytest.raises(ValueError, match="Unknown option"):
        processor(str(videos["short"]), num_segments=3)


def test_processor_save_load_and_auto_class(tmp_path):
    from transformers import AutoVideoProcessor

    processor = small_processor(sampling="dense", frame_stride=2, num_crops=3, short_video="pad")
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert saved["video_processor_type"] == "VideoMambaVideoProcessor"
    assert saved["auto_map"]["AutoVideoProcessor"].endswith("VideoMambaVideoProcessor")
    assert (tmp_path / "video_processing_videomamba.py").exists() and (tmp_path / "video_io.py").exists()
    assert saved["image_mean"] == list(IMAGENET_DEFAULT_MEAN) and saved["image_std"] == list(IMAGENET_DEFAULT_STD)
    loaded = AutoVideoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is VideoMambaVideoProcessor
    for key in ("num_frames", "sampling", "frame_stride", "num_crops", "short_video"):
        assert getattr(loaded, key) == getattr(processor, key)
    frames = np.random.default_rng(0).integers(0, 256, (30, 20, 24, 3), dtype=np.uint8)
    torch.testing.assert_close(loaded(frames, return_tensors="pt")["pixel_values"],
                               processor(frames, return_tensors="pt")["pixel_values"])
    with pytest.raises(ValueError, match="sampling must be one of"):
        VideoMambaVideoProcessor(sampling="random")


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for split, count in (("train", 3), ("val", 2)):
        for label, name in enumerate(("walk", "jump")):
            for i in range(count):
                relative = f"{split}/{name}/{i}.mp4"
                write_mp4(root / relative, rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8))
                lines[split].append(f"{relative} {label}")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (root / "labels.txt").write_text("walk\njump\n")
    return root


def test_load_video_samples_from_folders_and_list_files(folder_dataset, tmp_path):
    samples, names = load_video_samples(folder_dataset, split="train")
    assert names == ["jump", "walk"]  # sorted class folders, as datasets' videofolder does
    assert len(samples) == 6 and {label for _, label in samples} == {0, 1}
    assert all(("/jump/" in path) == (label == 0) for path, label in samples)
    val, names_val = load_video_samples(folder_dataset, split="validation")
    assert len(val) == 4 and names_val == names
    listed, listed_names = load_video_samples(folder_dataset / "val.txt")
    assert listed_names == ["walk", "jump"] and len(listed) == 4
    assert all(("/walk/" in path) == (label == 0) for path, label in listed)
    bad = tmp_path / "bad.txt"
    bad.write_text("a.mp4 cat\n")
    with pytest.raises(ValueError, match="line 1.*not an integer"):
        load_video_samples(bad)
    missing = tmp_path / "missing.txt"
    missing.write_text("nowhere.mp4 0\n")
    with pytest.raises(FileNotFoundError, match="1 of 1 videos do not exist"):
        load_video_samples(missing)
    with pytest.raises(ValueError, match="no 'test' split"):
        load_video_samples(folder_dataset, split="test")


def test_load_video_samples_from_a_datasets_videofolder(folder_dataset, tmp_path):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.load_dataset("videofolder", data_dir=str(folder_dataset / "train"), cache_dir=str(tmp_path))
    samples, names = load_video_samples(dataset, split="train")
    ours, our_names = load_video_samples(folder_dataset, split="train")
    assert names == our_names and sorted(samples) == sorted(ours)


def test_clip_dataset_items_and_collate(folder_dataset):
    samples, _ = load_video_samples(folder_dataset, split="train")
    processor = small_processor()
    train = VideoClipDataset(samples, processor, train=True)
    item = train[0]
    assert item["pixel_values"].shape == (4, 3, 16, 16) and item["labels"] == samples[0][1]
    evaluation = VideoClipDataset(samples, processor, num_frames=6, num_clips=2, num_crops=3)
    assert evaluation[1]["pixel_values"].shape == (6, 6, 3, 16, 16)
    # The dataset's evaluation view is exactly the processor's.
    single = VideoClipDataset(samples, processor)
    expected = processor(samples[2][0], return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(single[2]["pixel_values"], expected)
    batch = collate_video_batch([train[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 4, 3, 16, 16) and batch["labels"].dtype == torch.long
    # A plain callable transform works as well.
    plain = VideoClipDataset(samples, lambda clip: clip.float() / 255, num_frames=5)
    assert plain[0]["pixel_values"].shape == (5, 3, 32, 32)


def test_clip_dataset_bad_videos(folder_dataset, tmp_path):
    samples, _ = load_video_samples(folder_dataset, split="train")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    dataset = VideoClipDataset([(str(broken), 0)] + samples, small_processor())
    with pytest.raises(ValueError, match="broken.mp4"):
        dataset[0]
    skipping = VideoClipDataset([(str(broken), 0)] + samples, small_processor(), skip_bad_videos=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = skipping[0]
    assert item["pixel_values"].shape == (4, 3, 16, 16)
    assert any("broken.mp4" in str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------------------------------------------------


def _digit_centres(frames):
    """Row and column of the bright glyph's centre of mass in each frame `(T, H, W, 3)`."""
    gray = frames.astype(np.float64).mean(-1)
    weight = np.clip(gray - np.percentile(gray, 90, axis=(1, 2), keepdims=True), 0, None)
    rows, cols = np.mgrid[: gray.shape[1], : gray.shape[2]]
    total = weight.sum((1, 2))
    return (weight * rows).sum((1, 2)) / total, (weight * cols).sum((1, 2)) / total


def test_demo_digits_cross_the_canvas_in_their_direction():
    from sklearn.datasets import load_digits

    from videomamba.demo_data import render_moving_digit

    digits = load_digits()
    rng = np.random.default_rng(0)
    moves = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
    for i, (direction, (dy, dx)) in enumerate(moves.items()):
        frames = render_moving_digit(digits.images[i], direction, 16, 64, rng)
        assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8
        rows, cols = _digit_centres(frames)
        along, across = (rows, cols) if dy else (cols, rows)
        step = dy or dx
        shift = step * (along[-1] - along[0])
        # The glyph is 16 px, so 48 px are free: the path covers at least 90% of them (glyph edges blur the centre).
        assert shift > 0.8 * 48, f"{direction}: the digit moved {shift:.1f} px along its direction"
        assert np.all(step * np.diff(along) > 0), f"{direction}: the motion is not monotonic"
        assert np.ptp(across) < 2, f"{direction}: the digit drifted across its direction"


def test_make_demo_videos_rewrites_a_folder_of_other_settings(tmp_path):
    from videomamba.demo_data import make_demo_videos

    root = make_demo_videos(tmp_path / "demo", num_train_per_class=1, num_val_per_class=1, num_frames=4, frame_size=32)
    stamp = json.loads((root / "demo_settings.json").read_text())
    video = root / "train" / "left" / "train_left_0000.mp4"
    assert get_num_frames(video) == 4 and "version" in stamp
    mtime = video.stat().st_mtime_ns
    make_demo_videos(root, num_train_per_class=1, num_val_per_class=1, num_frames=4, frame_size=32)
    assert video.stat().st_mtime_ns == mtime  # same settings: reused
    stamp.pop("version")  # a folder written before the rendering changed
    (root / "demo_settings.json").write_text(json.dumps(stamp))
    make_demo_videos(root, num_train_per_class=1, num_val_per_class=1, num_frames=4, frame_size=32)
    assert video.stat().st_mtime_ns != mtime
