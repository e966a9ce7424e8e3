# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Streaming video decode for long videos: sample frames at a requested rate while decoding, never holding the video.

`StreamingVideoReader` reads a file with PyAV as a stream of packets, decodes frames one after the other, keeps only
the frames that are sampled, turns each sampled frame into model input right away (resize the short side, centre crop,
ImageNet normalisation) and yields them in batches of `batch_size`. At most one decoded frame (the one shown at the
next sample time) and one batch of model-ready frames are alive at any moment, whatever the video's length.

Sampling follows the *displayed frame* rule: for each sample time `tau_k` the frame shown at `tau_k` is taken, i.e. the
last frame whose presentation time (`pts * time_base`, relative to the first frame) is `<= tau_k`. With `fps=f` the
sample times are `tau_k = k / f` up to the end of the last frame; with `num_frames=n` they are the centres of `n`
equal segments of the stream's duration, `tau_k = (k + 0.5) * duration / n`. A requested rate above the video's own
repeats frames, so the time axis stays uniform.

This module imports `av` lazily (`pip install av`); it has no other dependency than torch.
"""

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F


IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass
class FrameBatch:
    """One batch of sampled frames.

    Attributes:
        pixel_values: `(frames, channels, crop_size, crop_size)` normalised frames (the model's per-frame input).
        timestamps: `(frames,)` float64 sample times in seconds, relative to the first frame.
        frame_times: `(frames,)` float64 presentation times of the frames taken, in seconds.
    """

    pixel_values: torch.Tensor
    timestamps: torch.Tensor
    frame_times: torch.Tensor


def preprocess_frames(
    frames: torch.Tensor,
    image_size: int = 224,
    crop_size: int | None = None,
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The minimal VideoMamba frame transform with torch ops.

    Args:
        frames: `(frames, height, width, 3)` uint8 RGB (as decoded) or `(frames, 3, height, width)` uint8.
        image_size: the short side after the (bilinear, antialiased) resize.
        crop_size: side of the centre crop (defaults to `image_size`).
    Returns:
        `(frames, 3, crop_size, crop_size)` in `dtype`: `(x / 255 - mean) / std`.
    """
    crop_size = image_size if crop_size is None else crop_size
    if crop_size > image_size:
        raise ValueError(f"crop_size ({crop_size}) must not exceed image_size ({image_size}).")
    if frames.ndim != 4:
        raise ValueError(
            f"frames must be (frames, height, width, 3) or (frames, 3, height, width); got {tuple(frames.shape)}."
        )
    if frames.shape[-1] == 3 and frames.shape[1] != 3:
        frames = frames.permute(0, 3, 1, 2)
    height, width = frames.shape[-2:]
    scale = image_size / min(height, width)
    new_height = max(crop_size, round(height * scale))
    new_width = max(crop_size, round(width * scale))
    pixels = frames.float()
    if (new_height, new_width) != (height, width):
        pixels = F.interpolate(
            pixels, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=True
        )
    top, left = (new_height - crop_size) // 2, (new_width - crop_size) // 2
    pixels = pixels[:, :, top : top + crop_size, left : left + crop_size]
    mean_t = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    return ((pixels / 255.0 - mean_t) / std_t).to(dtype)


def _open_video_stream(path):
    """Open `path` with PyAV and return `(container, video_stream)`, or raise a clear error."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No video file at {str(path)!r}.")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise ValueError(f"PyAV could not open {str(path)!r} as a media file: {error}") from error
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        container.close()
        raise ValueError(
            f"{str(path)!r} has no video stream (its streams: {', '.join(kinds)}); pass a file with a video track."
        )
    return container, container.streams.video[0]


def probe_video(path) -> dict:
    """Metadata of the first video stream without decoding: `duration` (seconds or None), `average_rate` (fps or
    None), `num_frames` (as stored in the container, 0 when unknown), `width`, `height`."""
    container, stream = _open_video_stream(path)
    try:
        return {
            "duration": _stream_duration(container, stream),
            "average_rate": float(stream.average_rate) if stream.average_rate else None,
            "num_frames": int(stream.frames or 0),
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
        }
    finally:
        container.close()


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return None


class StreamingVideoReader:
    """Decode a (long) video file as a stream and yield sampled, model-ready frames in batches.

    Args:
        path: the video file.
        fps (`float`, *optional*): sample rate in frames per second (default 1 when `num_frames` is not given).
        num_frames (`int`, *optional*): sample this many frames, the centres of equal segments of the duration.
        image_size (`int`): short side after the resize. crop_size (`int`, *optional*): centre crop (= image_size).
        batch_size (`int`): frames per yielded `FrameBatch`; memory holds at most this many model-ready frames.
        mean, std: normalisation. dtype: dtype of `pixel_values`. max_frames: stop after this many samples.
        threads (`bool`): let FFmpeg decode with several threads.

    Iterating yields `FrameBatch` objects; `num_sampled` and `max_buffered_frames` (the most model-ready frames held
    at once, for checking memory bounds) are updated as it goes. `expected_num_samples()` estimates the total for
    progress bars. Example:

    ```python
    >>> reader = StreamingVideoReader("lecture.mp4", fps=1, image_size=224, batch_size=64)
    >>> for batch in reader:
    ...     batch.pixel_values.shape  # (<=64, 3, 224, 224)
    ```
    """

    def __init__(
        self,
        path,
        fps: float | None = None,
        num_frames: int | None = None,
        image_size: int = 224,
        crop_size: int | None = None,
        batch_size: int = 32,
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        dtype: torch.dtype = torch.float32,
        max_frames: int | None = None,
        threads: bool = True,
    ):
        if fps is not None and num_frames is not None:
            raise ValueError("Pass either fps (a sampling rate) or num_frames (a frame count), not both.")
        if fps is None and num_frames is None:
            fps = 1.0
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be a positive number of frames per second, got {fps}.")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}.")
        self.path = Path(path)
        self.fps = fps
        self.num_frames = num_frames
        self.image_size = image_size
        self.crop_size = image_size if crop_size is None else crop_size
        self.batch_size = batch_size
        self.mean, self.std, self.dtype = mean, std, dtype
        self.max_frames = max_frames
        self.threads = threads
        self.num_sampled = 0
        self.max_buffered_frames = 0
        # Fails fast on a missing file, an unreadable file or a file without a video stream.
        self.metadata = probe_video(self.path)
        if num_frames is not None and self.metadata["duration"] is None:
            raise ValueError(
                f"{str(self.path)!r} does not store its duration, so num_frames cannot be spread over it; sample "
                "with fps=... instead."
            )

    def expected_num_samples(self) -> int | None:
        """The number of frames iteration will yield, as far as the container's metadata tells (None if unknown)."""
        if self.num_frames is not None:
            total = self.num_frames
        elif self.metadata["duration"] is None:
            return self.max_frames
        else:
            total = max(1, math.ceil(self.metadata["duration"] * self.fps - 1e-6))
        return min(total, self.max_frames) if self.max_frames else total

    def _target_times(self) -> Iterator[Fraction]:
        if self.num_frames is not None:
            duration = Fraction(self.metadata["duration"]).limit_denominator(10**6)
            for k in range(self.num_frames):
                yield (k + Fraction(1, 2)) * duration / self.num_frames
            return
        step = 1 / Fraction(self.fps).limit_denominator(10**6)
        k = 0
        while True:
            yield k * step
            k += 1

    def _emit(self, pending: list, timestamps: list, frame_times: list) -> FrameBatch:
        self.max_buffered_frames = max(self.max_buffered_frames, len(pending))
        pixel_values = torch.stack(pending)
        batch = FrameBatch(
            pixel_values=pixel_values,
            timestamps=torch.tensor(timestamps, dtype=torch.float64),
            frame_times=torch.tensor(frame_times, dtype=torch.float64),
        )
        pending.clear(), timestamps.clear(), frame_times.clear()
        return batch

    def __iter__(self) -> Iterator[FrameBatch]:
        container, stream = _open_video_stream(self.path)
        if self.threads:
            stream.thread_type = "AUTO"
        default_duration = Fraction(1, 1) / Fraction(stream.average_rate) if stream.average_rate else Fraction(1, 30)
        targets = self._target_times()
        target = next(targets)
        limit = self.max_frames if self.max_frames is not None else float("inf")
        if self.num_frames is not None:
            limit = min(limit, self.num_frames)
        pending, timestamps, frame_times = [], [], []
        previous = None  # (time, frame) of the last decoded frame, shown until the next frame's time
        previous_model_input = None  # that frame, converted, when it has been sampled already
        origin = None
        self.num_sampled = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and stream.time_base is not None:
                    time = Fraction(frame.pts) * stream.time_base
                elif frame.time is not None:
                    time = Fraction(frame.time).limit_denominator(10**6)
                else:
                    time = index * default_duration
                if origin is None:
                    origin = time
                time -= origin
                if previous is not None and time <= previous[0]:
                    # Out-of-order or duplicate timestamps: count the frame as shown right after the previous one.
                    time = previous[0] + Fraction(1, 10**6)
                # Every sample time before this frame's time shows the previous frame.
                while previous is not None and target < time and self.num_sampled < limit:
                    if previous_model_input is None:
                        previous_model_input = self._convert(previous[1])
                    pending.append(previous_model_input)
                    timestamps.append(float(target))
                    frame_times.append(float(previous[0]))
                    self.num_sampled += 1
                    target = next(targets, None)
                    if target is None:
                        break
                    if len(pending) == self.batch_size:
                        yield self._emit(pending, timestamps, frame_times)
                if target is None or self.num_sampled >= limit:
                    break
                previous, previous_model_input = (time, frame), None
            else:
                # End of stream: the last frame is shown for one frame duration (count mode: until all are taken).
                if previous is not None:
                    frame_duration = (
                        Fraction(previous[1].duration) * stream.time_base
                        if getattr(previous[1], "duration", None) and stream.time_base is not None
                        else default_duration
                    )
                    end = previous[0] + frame_duration
                    while target is not None and self.num_sampled < limit and (
                        self.num_frames is not None or target < end
                    ):
                        if previous_model_input is None:
                            previous_model_input = self._convert(previous[1])
                        pending.append(previous_model_input)
                        timestamps.append(float(target))
                        frame_times.append(float(previous[0]))
                        self.num_sampled += 1
                        target = next(targets, None)
                        if len(pending) == self.batch_size:
                            yield self._emit(pending, timestamps, frame_times)
            if pending:
                yield self._emit(pending, timestamps, frame_times)
        finally:
            container.close()
        if self.num_sampled == 0:
            raise ValueError(f"No frame could be decoded from {str(self.path)!r}.")

    def _convert(self, frame) -> torch.Tensor:
        array = frame.to_ndarray(format="rgb24")  # (height, width, 3) uint8
        pixels = preprocess_frames(
            torch.from_numpy(array).unsqueeze(0), self.image_size, self.crop_size, self.mean, self.std, self.dtype
        )
        return pixels[0]


__all__ = [
    "FrameBatch",
    "StreamingVideoReader",
    "preprocess_frames",
    "probe_video",
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
]
