# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Video processor for VideoMamba: PyAV decoding, the recipes' frame sampling, short-side resize + crops, ImageNet
normalisation.

`VideoMambaVideoProcessor` takes video files (decoded with PyAV, only the sampled frames) or decoded frames and
returns `pixel_values` of shape `(batch, num_frames, 3, crop_height, crop_width)` for the model, or
`(batch, num_views, num_frames, 3, crop_height, crop_width)` for multi-view testing (`num_clips * num_crops > 1`):
run the model on `pixel_values.flatten(0, 1)` and average the view logits with `average_view_logits`.
"""

import os

import numpy as np
import torch
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling
from transformers.processing_utils import VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor

from .transforms import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    make_train_transform,
    normalize_clip,
    resize_clip,
    short_side_size,
    three_crop,
)
from .video_io import (
    SAMPLING_STRATEGIES,
    SHORT_VIDEO_POLICIES,
    get_num_frames,
    read_video_frames,
    sample_frame_indices,
    sample_multiview_indices,
)


class VideoMambaVideoProcessorKwargs(VideosKwargs, total=False):
    """The keyword arguments of `VideosKwargs`, plus:

    sampling (`str`): `"uniform"` (segment sampling, the default) or `"dense"` (frames `frame_stride` apart).
    frame_stride (`int`): frames between two sampled frames for dense sampling.
    num_clips (`int`): temporal views per video (multi-view testing).
    num_crops (`int`): spatial views per clip (1: center crop; 3: left/center/right along the longer side).
    short_video (`str`): `"repeat"`, `"pad"` or `"error"`, for videos with fewer frames than a clip needs.
    seek_threshold (`int`): the decoder seeks when the next sampled frame is more than this many frames ahead.
    """

    sampling: str
    frame_stride: int
    num_clips: int
    num_crops: int
    short_video: str
    seek_threshold: int


_RESAMPLE_NAMES = {
    int(PILImageResampling.NEAREST): "nearest",
    int(PILImageResampling.BILINEAR): "bilinear",
    int(PILImageResampling.BICUBIC): "bicubic",
}
_EXTRA_OPTIONS = ("sampling", "frame_stride", "num_clips", "num_crops", "short_video", "seek_threshold")


def _size_value(size, key):
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def _as_size_dict(size, name):
    """`int`, `(h, w)`, dict or transformers `SizeDict` -> a plain dict with `shortest_edge` or `height`/`width`."""
    if size is None:
        return None
    if isinstance(size, int):
        return {"shortest_edge": size} if name == "size" else {"height": size, "width": size}
    if isinstance(size, (tuple, list)):
        return {"height": int(size[0]), "width": int(size[1])}
    out = {k: _size_value(size, k) for k in ("shortest_edge", "height", "width")}
    return {k: int(v) for k, v in out.items() if v is not None}


def average_view_logits(logits: torch.Tensor, num_views: int) -> torch.Tensor:
    """`(batch * num_views, num_labels)` logits, views of one video adjacent (as `pixel_values.flatten(0, 1)` gives
    them) -> `(batch, num_labels)`, the mean over the views (the multi-view score of the recipes)."""
    if logits.shape[0] % num_views:
        raise ValueError(f"{logits.shape[0]} rows of logits are not a multiple of num_views={num_views}.")
    return logits.view(-1, num_views, logits.shape[-1]).mean(1)


class VideoMambaVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor for VideoMamba.

    Accepts, as one video or a list of videos: a file path (decoded with PyAV: only the sampled frames, seeking in long
    files), a `{"path": ...}` dict (a `datasets` `Video(decode=False)` value), an array or tensor of frames
    `(frames, height, width, channels)` or `(frames, channels, height, width)`, or a list of frames (PIL images or
    arrays).

    Steps: frame sampling (`sampling="uniform"`: the middle frame of each of `num_frames` equal segments, the default;
    `"dense"`: `num_frames` frames `frame_stride` apart, the central window), short-side resize to
    `size["shortest_edge"]`, crop to `crop_size` (center, or `num_crops` crops along the longer side), rescale to
    [0, 1] and normalise with the ImageNet mean and std.

    Multi-view testing: `num_clips` temporal clips x `num_crops` spatial crops per video (4 x 3 for Kinetics-400,
    2 x 3 for Something-Something V2); `pixel_values` is then `(batch, num_views, frames, 3, height, width)` and the
    caller averages the view logits (`average_view_logits`).

    Videos with fewer frames than a clip needs follow `short_video`: `"repeat"` (default; frames repeat in order),
    `"pad"` (repeat the last frame at the end) or `"error"`.

    Example:

    ```python
    >>> from videomamba import VideoMambaVideoProcessor
    >>> processor = VideoMambaVideoProcessor(num_frames=8)
    >>> inputs = processor("video.mp4", return_tensors="pt")  # pixel_values (1, 8, 3, 224, 224)
    >>> views = processor("video.mp4", num_clips=4, num_crops=3, return_tensors="pt")  # (1, 12, 8, 3, 224, 224)
    ```
    """

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 8
    sampling = "uniform"
    frame_stride = 4
    num_clips = 1
    num_crops = 1
    short_video = "repeat"
    seek_threshold = 64
    valid_kwargs = VideoMambaVideoProcessorKwargs
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Older transformers releases do not copy unknown options onto the instance: do it here.
        for key in _EXTRA_OPTIONS:
            if kwargs.get(key) is not None:
                setattr(self, key, kwargs[key])
        self._validate_options({key: getattr(self, key) for key in _EXTRA_OPTIONS})

    @staticmethod
    def _validate_options(options):
        if options.get("sampling") is not None and options["sampling"] not in SAMPLING_STRATEGIES:
            raise ValueError(f"sampling must be one of {SAMPLING_STRATEGIES}, got {options['sampling']!r}.")
        if options.get("short_video") is not None and options["short_video"] not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {options['short_video']!r}.")
        for key in ("frame_stride", "num_clips", "num_crops"):
            value = options.get(key)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{key} must be a positive integer, got {value!r}.")

    @property
    def num_views(self) -> int:
        """Views per video with the processor's own settings (`num_clips * num_crops`)."""
        return int(self.num_clips) * int(self.num_crops)

    @property
    def resample_name(self) -> str:
        resample = self.resample
        if isinstance(resample, str):
            return resample
        value = getattr(resample, "value", resample)
        return _RESAMPLE_NAMES.get(int(value), "bilinear") if value is not None else "bilinear"

    def sample_frames(self, metadata=None, num_frames=None, fps=None, total_num_frames=None, **kwargs) -> np.ndarray:
        """Indices of one evaluation clip, from `total_num_frames` or a transformers `VideoMetadata`."""
        total = total_num_frames if total_num_frames is not None else getattr(metadata, "total_num_frames", None)
        if total is None:
            raise ValueError("sample_frames needs the video's frame count (total_num_frames or metadata).")
        return sample_frame_indices(
            int(total), num_frames or self.num_frames, kwargs.get("sampling") or self.sampling,
            kwargs.get("frame_stride") or self.frame_stride, short_video=kwargs.get("short_video") or self.short_video,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Turning inputs into uint8 / float frame tensors (frames, channels, height, width)
    # ----------------------------------------------------------------------------------------------------------------

    @staticmethod
    def _is_path(item) -> bool:
        return isinstance(item, (str, os.PathLike)) or (isinstance(item, dict) and "path" in item)

    @classmethod
    def _split_batch(cls, videos) -> list:
        """One video or a batch -> a list of videos (paths, 4-D arrays/tensors, or lists of frames)."""
        if cls._is_path(videos):
            return [videos]
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim == 4:
                return [videos]
            if videos.ndim == 5:
                return list(videos)
            raise ValueError(
                f"An array of videos must be 4-D (frames, height, width, channels) for one video or 5-D for a batch; "
                f"got shape {tuple(videos.shape)}."
            )
        if isinstance(videos, (list, tuple)):
            if len(videos) == 0:
                raise ValueError("No videos given: the list is empty.")
            first = videos[0]
            if cls._is_path(first) or (isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 4):
                return list(videos)
            if isinstance(first, (list, tuple)):
                return list(videos)
            return [videos]  # a list of frames (PIL images or 3-D arrays)
        raise ValueError(
            f"Unsupported video input of type {type(videos).__name__}: pass a file path, an array/tensor of frames, a "
            "list of frames, or a list of those."
        )

    @staticmethod
    def _to_frames_tensor(video, input_data_format=None) -> torch.Tensor:
        """Frames in any supported layout -> `(frames, channels, height, width)` tensor (dtype kept)."""
        if isinstance(video, (list, tuple)):
            frames = [np.asarray(frame) if not isinstance(frame, torch.Tensor) else frame for frame in video]
            if not frames:
                raise ValueError("A video given as a list of frames has no frames.")
            frames = [torch.from_numpy(np.ascontiguousarray(f)) if isinstance(f, np.ndarray) else f for f in frames]
            frames = [f.unsqueeze(-1) if f.ndim == 2 else f for f in frames]
            video = torch.stack(frames)
        elif isinstance(video, np.ndarray):
            video = torch.from_numpy(np.ascontiguousarray(video))
        if not isinstance(video, torch.Tensor) or video.ndim != 4:
            raise ValueError(f"A video must be 4-D frames; got {getattr(video, 'shape', type(video).__name__)}.")
        layout = str(getattr(input_data_format, "value", input_data_format) or "")
        if layout in ("channels_last", "last"):
            channels_last = True
        elif layout in ("channels_first", "first"):
            channels_last = False
        elif video.shape[-1] in (1, 3, 4):
            channels_last = True
        elif video.shape[1] in (1, 3, 4):
            channels_last = False
        else:
            raise ValueError(
                f"Cannot tell the channel axis of frames of shape {tuple(video.shape)}: expected 1, 3 or 4 channels "
                "last (frames, height, width, channels) or first (frames, channels, height, width)."
            )
        if channels_last:
            video = video.permute(0, 3, 1, 2)
        return video.contiguous()

    @staticmethod
    def _to_rgb(video: torch.Tensor) -> torch.Tensor:
        channels = video.shape[1]
        if channels == 1:
            return video.expand(-1, 3, -1, -1).contiguous()
        if channels == 4:
            return video[:, :3]
        return video

    def _decode_clips(self, video, options) -> torch.Tensor:
        """Frames of every temporal clip: `(num_clips, num_frames, channels, height, width)`."""
        num_frames, num_clips = options["num_frames"], options["num_clips"]
        if self._is_path(video):
            path = video["path"] if isinstance(video, dict) else os.fspath(video)
            total = get_num_frames(path)
            if options["do_sample_frames"]:
                indices = sample_multiview_indices(
                    total, num_frames, num_clips, options["sampling"], options["frame_stride"], options["short_video"]
                )
            else:
                if num_clips != 1:
                    raise ValueError("num_clips > 1 needs do_sample_frames=True.")
                indices = np.arange(total)[None]
            frames = read_video_frames(path, indices.reshape(-1), seek_threshold=options["seek_threshold"])
            frames = torch.from_numpy(frames).permute(0, 3, 1, 2)
            return frames.reshape(indices.shape[0], indices.shape[1], *frames.shape[1:])
        frames = self._to_frames_tensor(video, options.get("input_data_format"))
        if options["do_sample_frames"]:
            indices = sample_multiview_indices(
                frames.shape[0], num_frames, num_clips, options["sampling"], options["frame_stride"],
                options["short_video"],
            )
            return frames[torch.from_numpy(indices)]
        if num_clips != 1:
            raise ValueError("num_clips > 1 needs do_sample_frames=True.")
        return frames.unsqueeze(0)

    # ----------------------------------------------------------------------------------------------------------------
    # Spatial processing
    # ----------------------------------------------------------------------------------------------------------------

    def _spatial_views(self, clip: torch.Tensor, options) -> list[torch.Tensor]:
        """One `(frames, channels, height, width)` clip -> its `num_crops` processed views."""
        if options["do_convert_rgb"]:
            clip = self._to_rgb(clip)
        interpolation = options["interpolation"]
        if options["do_resize"]:
            size = options["size"]
            if "shortest_edge" in size:
                target = short_side_size(clip.shape[-2], clip.shape[-1], size["shortest_edge"])
            elif "height" in size and "width" in size:
                target = (size["height"], size["width"])
            else:
                raise ValueError(f"size must have 'shortest_edge' or 'height' and 'width', got {size}.")
            clip = resize_clip(clip, target, interpolation, output_dtype=torch.float32)
        num_crops = options["num_crops"]
        if options["do_center_crop"]:
            crop = options["crop_size"]
            views = three_crop(clip, (crop["height"], crop["width"]), num_crops)
        else:
            if num_crops != 1:
                raise ValueError("num_crops > 1 needs do_center_crop=True (the crops have crop_size).")
            views = [clip]
        rescale = options["rescale_factor"] if options["do_rescale"] else None
        mean, std = (options["image_mean"], options["image_std"]) if options["do_normalize"] else (None, None)
        if rescale is None and mean is None:
            return [view.float() for view in views]
        return [normalize_clip(view, mean, std, rescale) for view in views]

    def _resolve_options(self, kwargs) -> dict:
        allowed = set(self.valid_kwargs.__annotations__) | set(_EXTRA_OPTIONS) | {"return_tensors"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ValueError(
                f"Unknown option(s) {unknown} for {type(self).__name__}; valid options: {sorted(allowed)}."
            )
        options = {key: kwargs[key] if kwargs.get(key) is not None else getattr(self, key, None) for key in allowed}
        self._validate_options(options)
        if options.get("fps") is not None:
            raise ValueError(f"{type(self).__name__} samples a number of frames (num_frames), not a frame rate (fps).")
        options["size"] = _as_size_dict(options["size"], "size")
        options["crop_size"] = _as_size_dict(options["crop_size"], "crop_size")
        resample = options["resample"]
        if resample is None or isinstance(resample, str):
            options["interpolation"] = resample or "bilinear"
        else:
            value = getattr(resample, "value", resample)
            options["interpolation"] = _RESAMPLE_NAMES.get(int(value), "bilinear")
        for key in ("num_frames", "num_clips", "num_crops", "frame_stride", "seek_threshold"):
            if options[key] is not None:
                options[key] = int(options[key])
        return options

    def preprocess(self, videos, **kwargs) -> BatchFeature:
        """Turn `videos` into `pixel_values`; see the class docstring. Options given here override the processor's
        own for this call (`num_frames`, `sampling`, `frame_stride`, `num_clips`, `num_crops`, `short_video`,
        `size`, `crop_size`, `do_*`, `image_mean`, `image_std`, `return_tensors`, ...)."""
        options = self._resolve_options(kwargs)
        return_tensors = options.pop("return_tensors", None)
        processed = []
        for video in self._split_batch(videos):
            clips = self._decode_clips(video, options)
            views = [view for clip in clips for view in self._spatial_views(clip, options)]
            processed.append(views[0] if len(views) == 1 else torch.stack(views))
        shapes = {tuple(p.shape) for p in processed}
        if return_tensors is not None and len(shapes) > 1:
            raise ValueError(
                f"The processed videos have different shapes {sorted(shapes)} and cannot be batched: set do_resize, "
                "do_center_crop and do_sample_frames so that all videos get the same size and frame count."
            )
        if return_tensors in ("pt", "np") or getattr(return_tensors, "value", None) in ("pt", "np"):
            pixel_values = torch.stack(processed)
            if str(getattr(return_tensors, "value", return_tensors)) == "np":
                pixel_values = pixel_values.numpy()
            return BatchFeature(data={"pixel_values": pixel_values})
        if return_tensors is not None:
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
        return BatchFeature(data={"pixel_values": processed})

    def __call__(self, videos, **kwargs) -> BatchFeature:
        return self.preprocess(videos, **kwargs)

    # ----------------------------------------------------------------------------------------------------------------
    # Training-time helpers
    # ----------------------------------------------------------------------------------------------------------------

    def train_transform(self, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip_prob: float = 0.5, generator=None):
        """The clip augmentation for training with this processor's crop size and normalisation: random resized crop
        and horizontal flip, the same for every frame (see `videomamba.transforms.make_train_transform`)."""
        crop = _as_size_dict(self.crop_size, "crop_size")
        return make_train_transform(
            (crop["height"], crop["width"]),
            mean=self.image_mean if self.do_normalize else None,
            std=self.image_std if self.do_normalize else None,
            scale=scale,
            ratio=ratio,
            hflip_prob=hflip_prob,
            rescale_factor=self.rescale_factor if self.do_rescale else None,
            interpolation=self.resample_name,
            generator=generator,
        )

    def sample_train_indices(self, total: int, rng: np.random.Generator, num_frames: int | None = None) -> np.ndarray:
        """Training-time frame indices: a random frame per segment (uniform) or a random window (dense)."""
        return sample_frame_indices(
            total, num_frames or self.num_frames, self.sampling, self.frame_stride, rng=rng,
            short_video=self.short_video,
        )

    def to_dict(self):
        output = super().to_dict()
        for key in _EXTRA_OPTIONS:
            output[key] = getattr(self, key)
        for key in ("size", "crop_size"):
            if output.get(key) is not None:
                output[key] = _as_size_dict(output[key], key)
        return output


__all__ = ["VideoMambaVideoProcessor", "VideoMambaVideoProcessorKwargs", "average_view_logits"]
