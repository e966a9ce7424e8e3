# Copyright 2026 The videomamba authors. Licensed under the Apache License, Version 2.0.
"""Multimodal processor of the VideoMamba video-text model: a video processor and a BERT tokenizer in one object.

`VideoMambaProcessor` follows transformers' `ProcessorMixin` conventions: `save_pretrained` writes the video
processor's and the tokenizer's files into one folder and `from_pretrained` loads both back (with
`AutoProcessor` once `videomamba` is imported). `build_wordpiece_tokenizer` trains a small BERT-style WordPiece
tokenizer from captions with the `tokenizers` library, for fully offline demos.
"""

from transformers import BatchFeature, ProcessorMixin


class VideoMambaProcessor(ProcessorMixin):
    r"""
    Wraps a video processor (e.g. `VideoMambaVideoProcessor`) and a BERT tokenizer.

    Args:
        video_processor ([`BaseVideoProcessor`]): turns videos into `pixel_values` `(batch, frames, channels, height,
            width)`.
        tokenizer ([`PreTrainedTokenizerBase`]): a BERT-family tokenizer (`[CLS]`, `[SEP]`, `[PAD]`, `[MASK]`).
        max_text_length (`int`, defaults to 32): captions are padded / truncated to this many tokens unless the call
            says otherwise (the paper uses 32).

    Example:

    ```python
    >>> processor = VideoMambaProcessor(video_processor, tokenizer)
    >>> batch = processor(text=["the digit 3 moves to the left"], videos=[frames], return_tensors="pt")
    >>> sorted(batch.keys())
    ['attention_mask', 'input_ids', 'pixel_values', 'token_type_ids']
    ```
    """

    def __init__(self, video_processor=None, tokenizer=None, max_text_length: int = 32, **kwargs):
        if video_processor is None or tokenizer is None:
            raise ValueError("VideoMambaProcessor needs both a video_processor and a tokenizer.")
        self.max_text_length = max_text_length
        super().__init__(video_processor, tokenizer, **kwargs)

    def __call__(self, text=None, videos=None, images=None, return_tensors="pt", **kwargs) -> BatchFeature:
        """Tokenise `text` and/or process `videos` (and `images`, processed as one-frame videos).

        Args:
            text (`str` or `list[str]`): captions.
            videos: one video or a list of videos (each `(frames, height, width, 3)` uint8 arrays, lists of frames, or
                whatever the video processor accepts).
            images: one image or a list of images (`(height, width, 3)` arrays or PIL images), as one-frame videos.
            kwargs: tokenizer arguments (`padding`, `truncation`, `max_length`, ...) and video-processor arguments
                (any other key is passed to the video processor).
        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (and `token_type_ids`) for text and `pixel_values`
            for videos/images. When both captions and videos are given they must pair one to one.
        """
        if text is None and videos is None and images is None:
            raise ValueError("Give at least one of text, videos or images.")
        if videos is not None and images is not None:
            raise ValueError("Give videos or images, not both: a batch holds one kind of media.")
        if images is not None:
            videos = self._images_as_videos(images)
        if isinstance(text, str):
            text = [text]
        if videos is not None and not isinstance(videos, (list, tuple)):
            videos = [videos] if getattr(videos, "ndim", 5) == 4 else videos
        if text is not None and videos is not None and len(text) != len(videos):
            raise ValueError(
                f"Got {len(text)} captions and {len(videos)} videos; a joint call pairs caption i with video i. To embed "
                "a gallery of videos and a list of queries of different sizes, call the processor twice: "
                "processor(text=captions) and processor(videos=videos)."
            )

        tokenizer_keys = {
            "padding", "truncation", "max_length", "pad_to_multiple_of", "return_attention_mask",
            "return_token_type_ids", "add_special_tokens", "return_length", "return_special_tokens_mask",
            "return_offsets_mapping", "padding_side", "stride",
        }
        text_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in tokenizer_keys}
        data = {}
        if text is not None:
            text_kwargs.setdefault("padding", "max_length")
            text_kwargs.setdefault("truncation", True)
            text_kwargs.setdefault("max_length", self.max_text_length)
            data.update(self.tokenizer(text, return_tensors=return_tensors, **text_kwargs))
        if videos is not None:
            data.update(self.video_processor(videos, return_tensors=return_tensors, **kwargs))
        return BatchFeature(data=data, tensor_type=return_tensors)

    @staticmethod
    def _images_as_videos(images):
        import numpy as np

        if not isinstance(images, (list, tuple)):
            images = [images]
        videos = []
        for image in images:
            array = np.asarray(image)
            if array.ndim != 3:
                raise ValueError(f"Each image must be (height, width, channels); got shape {array.shape}.")
            videos.append(array[None])
        return videos

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        names = list(self.tokenizer.model_input_names) + list(self.video_processor.model_input_names)
        return list(dict.fromkeys(names))


def build_wordpiece_tokenizer(
    texts,
    vocab_size: int = 1000,
    lowercase: bool = True,
    model_max_length: int = 512,
    save_directory=None,
):
    """Train a BERT-style WordPiece tokenizer on `texts` (an iterable of strings) with the `tokenizers` library and
    wrap it as a transformers `BertTokenizerFast`. Runs offline in well under a second for caption-sized corpora.

    The vocabulary holds `[PAD]` (id 0), `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, the words and pieces of `texts`, and
    every lowercase letter and digit as a word start and as a continuation piece, so unseen words split into
    characters instead of becoming `[UNK]`.

    Args:
        texts: the training captions.
        vocab_size: the most tokens to keep (the result is smaller for small corpora).
        lowercase: lowercase and strip accents (as uncased BERT).
        model_max_length: the tokenizer's maximum length.
        save_directory: when given, `save_pretrained` the tokenizer there.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    special_tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, min_frequency=1, initial_alphabet=list(alphabet)
    )

    def corpus():
        # Both orders give every character as a continuation piece ("##x").
        yield f"{alphabet} {alphabet[::-1]} " + " ".join(alphabet)
        for text in texts:
            yield text

    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    wrapped = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        do_lower_case=lowercase,
        model_max_length=model_max_length,
    )
    if save_directory is not None:
        wrapped.save_pretrained(save_directory)
    return wrapped


__all__ = ["VideoMambaProcessor", "build_wordpiece_tokenizer"]
