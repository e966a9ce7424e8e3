# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Video decoding with PyAV and the frame sampling of the VideoMamba recipes.

Decoding (`read_video_frames`) seeks instead of decoding a whole long file: frames are decoded in order, and when the
next wanted frame lies more than `seek_threshold` frames ahead the reader seeks to the keyframe before it. Only wanted
frames are converted to RGB arrays.

Sampling returns frame indices (`np.int64`), never frames, so it can be tested and reused on its own:

- `sample_uniform_indices`: segment ("sparse", TSN-style) sampling. The video is cut into `num_frames` equal segments
  and one frame is taken from each: the middle one for evaluation, a random one for training. This is the default of
  the VideoMamba Kinetics-400 and Something-Something V2 recipes and suits long videos (it always covers the whole
  video). With `num_clips > 1` the clips take evenly interleaved frames within each segment.
- `sample_dense_indices`: one clip of `num_frames` frames `stride` apart (a contiguous window): a random window for
  training, the central one for evaluation, or `num_clips` evenly spaced windows for multi-view testing.
- `sample_multiview_indices`: the `(num_clips, num_frames)` indices of all temporal views of a video (e.g. 4 clips for
  Kinetics-400, 2 for Something-Something V2; the spatial crops are taken by the video processor).

Videos with fewer frames than a clip needs follow `short_video` (see `SHORT_VIDEO_POLICIES`):

- `"repeat"` (default): spread the clip over the frames there are, so frames repeat in order (the clip is stretched in
  time). For uniform sampling this is what segment sampling does anyway when `total < num_frames`.
- `"pad"`: keep the requested spacing and pad the clip's end with the last frame (the official dense test loader).
- `"error"`: raise a `ValueError` naming the frame counts.

This module only imports numpy (PyAV when decoding), and no other file of the package, so saved processors that use it
load as Hub remote code.
"""

import math
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpeg", ".mpg", ".m4v", ".gif")
SHORT_VIDEO_POLICIES = ("repeat", "pad", "error")
SAMPLING_STRATEGIES = ("uniform", "dense")


# --------------------------------------------------------------------------------------------------------------------
# Opening and metadata
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class VideoInfo:
    """What `get_video_info` reads from a file's headers (no frame is decoded)."""

    path: str
    num_frames: int
    fps: float | None
    duration: float | None
    height: int
    width: int


def _open_video(path):
    """Open `path` with PyAV; returns `(container, first video stream)` or raises a clear error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Video file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"Expected a video file but {path} is a directory.")
    if os.path.getsize(path) == 0:
        raise ValueError(f"Cannot read video {path}: the file is empty (0 bytes).")
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a declared dependency of the video extras
        raise ImportError("Decoding videos needs PyAV: pip install av (or pip install 'videomamba[video]').") from err
    try:
        container = av.open(path, mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Cannot read video {path}: FFmpeg could not open it ({err}). The file is corrupt, truncated or not a "
            "video format FFmpeg reads."
        ) from err
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        container.close()
        raise ValueError(f"Cannot read video {path}: it has no video stream (streams found: {', '.join(kinds)}).")
    return container, container.streams.video[0]


def _frame_rate(stream):
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return None


def _count_frames(container, stream) -> int:
    """Frames of a stream whose header does not say: count the packets (demuxing only, nothing is decoded)."""
    count = 0
    for packet in container.demux(stream):
        if packet.size > 0:
            count += 1
    return count


def get_video_info(path) -> VideoInfo:
    """Frame count, frame rate, duration and size of a video file, from its headers (no decoding).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, unreadable, has no video stream or no frames.
    """
    container, stream = _open_video(path)
    with container:
        num_frames = int(stream.frames or 0)
        rate = _frame_rate(stream)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        height, width = stream.codec_context.height, stream.codec_context.width
        if num_frames <= 0:
            num_frames = _count_frames(container, stream)
    if num_frames <= 0:
        raise ValueError(f"Cannot read video {os.fspath(path)}: its video stream has no frames.")
    return VideoInfo(os.fspath(path), num_frames, float(rate) if rate else None, duration, height, width)


def get_num_frames(path) -> int:
    """Number of frames of the first video stream of `path` (from the header, else by counting packets).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, unreadable, has no video stream or no frames.
    """
    return get_video_info(path).num_frames


# --------------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------------


def _check_indices(indices) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.size == 0:
        raise ValueError("No frame indices given: pass at least one frame index.")
    if not np.issubdtype(indices.dtype, np.integer):
        if not np.all(np.equal(np.mod(indices, 1), 0)):
            raise ValueError(f"Frame indices must be integers, got {indices.dtype} values like {indices.flat[0]}.")
    indices = indices.astype(np.int64).reshape(-1)
    if indices.min() < 0:
        raise ValueError(f"Frame indices must be >= 0, got {int(indices.min())}.")
    return indices


def _rgb_converter():
    """A function `frame -> (height, width, 3)` uint8 RGB array that reuses one swscale context.

    `frame.to_ndarray(format="rgb24")` builds a new conversion context for every frame, which costs more than
    decoding a small frame (about 1.3 ms a frame at 64x64, five times the decode). One converter per opened file keeps
    the results identical.
    """
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()

    def to_rgb(frame) -> np.ndarray:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()

    return to_rgb


def decode_frames(path, indices, seek_threshold: int = 64):
    """`read_video_frames` that also returns how many frames were decoded (to check that seeking works).

    Returns:
        `(frames, num_decoded)`: `frames` is `(len(indices), height, width, 3)` uint8 RGB in the order of `indices`.
    """
    import av

    indices = _check_indices(indices)
    path = os.fspath(path)
    wanted = np.unique(indices).tolist()  # sorted
    wanted_set = set(wanted)
    arrays = {}
    num_decoded = 0
    container, stream = _open_video(path)
    to_rgb = _rgb_converter()
    with container:
        rate = _frame_rate(stream)
        time_base = stream.time_base
        start_pts = stream.start_time if stream.start_time is not None else 0
        can_seek = rate is not None and time_base is not None and container.file is None
        can_seek = can_seek and seek_threshold is not None and seek_threshold >= 0

        def frame_index(frame, counter):
            if frame.pts is None or rate is None or time_base is None:
                return counter
            return int(round((frame.pts - start_pts) * time_base * rate))

        next_wanted = 0  # position in `wanted`
        position = -1  # index of the last decoded frame
        counter = -1
        last_frame = None
        frames = None
        just_seeked = False
        decode_error = None
        while next_wanted < len(wanted):
            target = wanted[next_wanted]
            if frames is None or (can_seek and target - position > seek_threshold):
                if can_seek and target > seek_threshold and target - position > seek_threshold:
                    timestamp = start_pts + int(Fraction(target) / rate / time_base)
                    container.seek(timestamp, stream=stream, backward=True, any_frame=False)
                    just_seeked = True
                elif frames is not None:
                    container.seek(0)
                    counter, position = -1, -1
                frames = container.decode(stream)
            try:
                for frame in frames:
                    num_decoded += 1
                    counter += 1
                    index = frame_index(frame, counter)
                    if just_seeked and index > target:
                        # The seek landed past the frame we want (odd timestamps): decode from the start instead.
                        can_seek, just_seeked = False, False
                        container.seek(0)
                        frames, counter, position = None, -1, -1
                        break
                    just_seeked = False
                    position = max(position, index)
                    last_frame = frame
                    if index in wanted_set and index not in arrays:
                        arrays[index] = to_rgb(frame)
                    # Wanted frames at or before this one that never appeared (timestamp gaps) take this frame.
                    while next_wanted < len(wanted) and wanted[next_wanted] <= index:
                        if wanted[next_wanted] not in arrays:
                            arrays[wanted[next_wanted]] = to_rgb(frame)
                        next_wanted += 1
                    if next_wanted >= len(wanted):
                        break
                    if can_seek and wanted[next_wanted] - position > seek_threshold:
                        break
                else:
                    break  # end of stream
            except (av.FFmpegError, ValueError) as err:
                decode_error = err
                break
            if frames is None:
                continue
        if not arrays and last_frame is None:
            reason = f" ({decode_error})" if decode_error is not None else ""
            raise ValueError(f"Cannot read video {path}: no frame could be decoded{reason}. The file is corrupt.")
        missing = [index for index in wanted if index not in arrays]
        if missing:
            fill = to_rgb(last_frame)
            for index in missing:
                arrays[index] = fill
            problem = f"decoding failed after frame {position} ({decode_error})" if decode_error else (
                f"only {position + 1} frames could be decoded"
            )
            warnings.warn(
                f"{path}: frames up to {max(missing)} were asked for but {problem}; the last decodable frame is "
                "repeated in their place.",
                stacklevel=3,
            )
    return np.stack([arrays[index] for index in indices.tolist()]), num_decoded


def read_video_frames(path, indices, seek_threshold: int = 64) -> np.ndarray:
    """Decode the frames `indices` of `path` with PyAV.

    Frames are decoded in order; when the next wanted frame is more than `seek_threshold` frames ahead, the reader
    seeks to the keyframe before it instead of decoding everything in between, so a few frames of a long video cost a
    few short decodes. Frame `i` is the frame whose timestamp is `i / fps` from the stream start.

    Args:
        path: a video file FFmpeg reads (MP4, AVI, MKV, WebM, ...).
        indices: frame indices (any order, repeats allowed), e.g. from `sample_uniform_indices`.
        seek_threshold: the gap in frames above which the reader seeks (`None` never seeks).

    Returns:
        `np.ndarray` `(len(indices), height, width, 3)` uint8 RGB, in the order of `indices`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, corrupt, has no video stream, or no frame decodes; bad indices.

    Indices past the last decodable frame (a header that promises more frames than the file holds) get the last
    decodable frame, with a warning.
    """
    return decode_frames(path, indices, seek_threshold)[0]


def read_all_frames(path) -> np.ndarray:
    """Every frame of `path`: `(num_frames, height, width, 3)` uint8 RGB."""
    container, stream = _open_video(path)
    import av

    to_rgb = _rgb_converter()
    arrays = []
    with container:
        try:
            for frame in container.decode(stream):
                arrays.append(to_rgb(frame))
        except (av.FFmpegError, ValueError) as err:
            if not arrays:
                raise ValueError(f"Cannot read video {os.fspath(path)}: no frame could be decoded ({err}).") from err
            warnings.warn(f"{os.fspath(path)}: decoding stopped after {len(arrays)} frames ({err}).", stacklevel=2)
    if not arrays:
        raise ValueError(f"Cannot read video {os.fspath(path)}: its video stream has no frames.")
    return np.stack(arrays)


# --------------------------------------------------------------------------------------------------------------------
# Frame sampling
# --------------------------------------------------------------------------------------------------------------------


def _check_sampling_args(total, num_frames, short_video, stride=1):
    if int(total) != total or total < 1:
        raise ValueError(f"The video has {total} frames; sampling needs at least one frame.")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames}.")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"The frame stride must be a positive integer, got {stride}.")
    if short_video not in SHORT_VIDEO_POLICIES:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {short_video!r}.")


def _check_clip(clip_index, num_clips):
    if int(num_clips) != num_clips or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer, got {num_clips}.")
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index must be in [0, {num_clips}), got {clip_index}.")


def sample_uniform_indices(
    total: int,
    num_frames: int,
    clip_index: int = 0,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    short_video: str = "repeat",
) -> np.ndarray:
    """Segment sampling: one frame from each of `num_frames` equal segments of `[0, total)`.

    Segment `i` covers frames `[i * total / num_frames, (i + 1) * total / num_frames)`. Without `rng` (evaluation)
    clip `k` of `num_clips` takes the frame at fraction `(k + 0.5) / num_clips` of every segment -- for one clip the
    middle frame of each segment. With `rng` (training) each segment gives a random frame.

    Args:
        total: frames in the video.
        num_frames: frames to sample (`T`).
        clip_index, num_clips: which of the evaluation clips (see `sample_multiview_indices`).
        rng: a `numpy.random.Generator` for training-time jitter; `None` for deterministic evaluation.
        short_video: what to do when `total < num_frames` (see the module docstring).

    Returns:
        `(num_frames,)` int64, non-decreasing, in `[0, total)`.
    """
    _check_sampling_args(total, num_frames, short_video)
    _check_clip(clip_index, num_clips)
    if total < num_frames:
        if short_video == "error":
            raise ValueError(
                f"The video has {total} frames but {num_frames} frames were asked for (short_video='error'); use "
                "short_video='repeat' or 'pad', or fewer frames."
            )
        if short_video == "pad":
            return np.concatenate([np.arange(total), np.full(num_frames - total, total - 1)]).astype(np.int64)
    tick = total / num_frames
    if rng is not None:
        offsets = rng.random(num_frames)
    else:
        offsets = np.full(num_frames, (clip_index + 0.5) / num_clips)
    indices = np.floor(tick * (np.arange(num_frames) + offsets)).astype(np.int64)
    return np.clip(indices, 0, total - 1)


def sample_dense_indices(
    total: int,
    num_frames: int,
    stride: int,
    clip_index: int | None = None,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    short_video: str = "repeat",
) -> np.ndarray:
    """Dense sampling: `num_frames` frames `stride` apart, a window spanning `(num_frames - 1) * stride + 1` frames.

    The window starts at a random frame with `rng` (training); without it, in the middle of the video for one clip,
    or -- clip `k` of `num_clips` -- at `floor(k * (total - span) / (num_clips - 1))`, so the clips spread evenly
    from the first to the last frame.

    Args:
        total: frames in the video.
        num_frames: frames to sample (`T`).
        stride: frames between two sampled frames (the recipes' `sampling_rate`).
        clip_index, num_clips: which evaluation window (`clip_index=None` is the central one).
        rng: a `numpy.random.Generator` for a random window (training).
        short_video: what to do when the video is shorter than the window (see the module docstring).

    Returns:
        `(num_frames,)` int64, non-decreasing, in `[0, total)`.
    """
    _check_sampling_args(total, num_frames, short_video, stride)
    if clip_index is not None:
        _check_clip(clip_index, num_clips)
    span = (num_frames - 1) * stride + 1
    if total < span:
        if short_video == "error":
            raise ValueError(
                f"The video has {total} frames but a clip of {num_frames} frames at stride {stride} spans {span} "
                "frames (short_video='error'); use short_video='repeat' or 'pad', a smaller stride or fewer frames."
            )
        if short_video == "pad":
            return np.minimum(np.arange(num_frames) * stride, total - 1).astype(np.int64)
        return np.round(np.linspace(0, total - 1, num_frames)).astype(np.int64)
    room = total - span
    if rng is not None:
        start = int(rng.integers(0, room + 1))
    elif clip_index is None or num_clips == 1:
        start = room // 2
    else:
        start = int(math.floor(clip_index * room / (num_clips - 1)))
    return (start + np.arange(num_frames) * stride).astype(np.int64)


def sample_multiview_indices(
    total: int,
    num_frames: int,
    num_clips: int,
    sampling: str = "uniform",
    stride: int = 4,
    short_video: str = "repeat",
) -> np.ndarray:
    """The temporal views of multi-view testing: `(num_clips, num_frames)` int64 indices.

    With `sampling="uniform"` the clips interleave within the segments (see `sample_uniform_indices`); with
    `"dense"` they are windows spread evenly over the video (see `sample_dense_indices`). Each clip is then cut into
    `num_crops` spatial crops by the video processor, and the caller averages the logits of the
    `num_clips * num_crops` views (e.g. 4 x 3 for Kinetics-400, 2 x 3 for Something-Something V2).
    """
    if sampling not in SAMPLING_STRATEGIES:
        raise ValueError(f"sampling must be one of {SAMPLING_STRATEGIES}, got {sampling!r}.")
    _check_clip(0, num_clips)
    clips = []
    for clip in range(num_clips):
        if sampling == "uniform":
            clips.append(sample_uniform_indices(total, num_frames, clip, num_clips, short_video=short_video))
        else:
            clips.append(sample_dense_indices(total, num_frames, stride, clip, num_clips, short_video=short_video))
    return np.stack(clips)


def sample_frame_indices(
    total: int,
    num_frames: int,
    sampling: str = "uniform",
    stride: int = 4,
    clip_index: int | None = None,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    short_video: str = "repeat",
) -> np.ndarray:
    """`sample_uniform_indices` or `sample_dense_indices` by name (`sampling="uniform"` or `"dense"`)."""
    if sampling == "uniform":
        return sample_uniform_indices(total, num_frames, clip_index or 0, num_clips, rng, short_video)
    if sampling == "dense":
        return sample_dense_indices(total, num_frames, stride, clip_index, num_clips, rng, short_video)
    raise ValueError(f"sampling must be one of {SAMPLING_STRATEGIES}, got {sampling!r}.")


__all__ = [
    "SAMPLING_STRATEGIES",
    "SHORT_VIDEO_POLICIES",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "decode_frames",
    "get_num_frames",
    "get_video_info",
    "read_all_frames",
    "read_video_frames",
    "sample_dense_indices",
    "sample_frame_indices",
    "sample_multiview_indices",
    "sample_uniform_indices",
]
