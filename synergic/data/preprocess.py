"""The one path from an image file to a model input: decode, resize, normalise.

Training (the decoded-image cache), evaluation, ``synergic predict`` and anything later (export,
explanations) turn images into tensors through a :class:`Preprocessing`, so the same file always
gives the same input. A run stores its preprocessing in every checkpoint
(``metadata["preprocessing"]``) and in its run directory (``preprocessing.json``);
``synergic eval`` and ``synergic predict`` read it from there, never from a rebuilt model.

The two halves, as in timm (``resolve_data_config`` + ``create_transform``):

* pixels: :meth:`Preprocessing.load` reads a file (:func:`~synergic.data.images.load_image`:
  8-bit RGB, alpha composited on black, 16-bit scaled, EXIF orientation applied), decodes a large
  JPEG at reduced scale (``decode_scale``) and resizes it to ``image_size`` x ``image_size``
  (``resample``), giving uint8 ``[3, S, S]``. These settings define the decoded-image cache key.
* values: :func:`normalize` maps uint8 (or float in [0, 1]) images to ``(x / 255 - mean) / std``;
  ``mean``/``std`` come from the backbone's ``pretrained_cfg`` when the run starts
  (:func:`synergic.models.backbones.backbone_normalization`) and are recorded from then on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from synergic.data.images import RESAMPLE_NAMES, load_image, resize_image
from synergic.errors import SynergicError, did_you_mean
from synergic.models.backbones import IMAGENET_MEAN, IMAGENET_STD

PREPROCESSING_FORMAT = 1
"""Bump when the pixels of a file change for the same settings (colour rules, decoding code): it
is part of the cache key and of every stored preprocessing, so old entries are never mixed in."""

DEFAULT_DECODE_SCALE = 2
"""Decode large JPEGs to at least twice the target size: the bicubic resize from there matches a
full decode to about a grey level (exactly, for the ISIC originals up to 1022 x 767), while a
3072 x 2304 image still decodes at a quarter of its pixels per side."""

_TENSOR_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact"}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input; immutable, stored with every run.

    Args:
        image_size: side ``S`` of the square model input, in pixels (``data.image_size``). The
            aspect ratio is not kept, as in the SDL paper.
        resample: resize filter (``data.resize``): ``bicubic``, ``bilinear``, ``nearest`` or
            ``lanczos`` (Pillow's filters; images given as tensors allow all but ``lanczos``).
        decode_scale: a JPEG is decoded at the smallest DCT scale (1/2, 1/4 or 1/8, libjpeg's
            "draft" mode) that keeps both sides at least ``decode_scale * image_size`` pixels;
            ``None`` always decodes at full size. Other formats are always decoded at full size.
        mean, std: per-channel normalisation (R, G, B) of images scaled to [0, 1]; ImageNet's
            by default. A run records its backbone's (``backbone_normalization``).

    Raises:
        SynergicError: one line naming the invalid field.
    """

    image_size: int
    resample: str = "bicubic"
    decode_scale: int | None = DEFAULT_DECODE_SCALE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        size, resample, scale = self.image_size, self.resample, self.decode_scale
        if not _positive_int(size):
            raise SynergicError(
                f"preprocessing: image_size must be a positive integer, got {size!r}"
            )
        if not isinstance(resample, str) or resample not in RESAMPLE_NAMES:
            hint = did_you_mean(resample, RESAMPLE_NAMES) if isinstance(resample, str) else ""
            raise SynergicError(
                f"preprocessing: unknown resample method {resample!r}{hint}: "
                f"valid names are {', '.join(RESAMPLE_NAMES)}"
            )
        if scale is not None and not _positive_int(scale):
            raise SynergicError(
                f"preprocessing: decode_scale must be a positive integer or None, got {scale!r}"
            )
        object.__setattr__(self, "mean", _three_floats("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _three_floats("std", self.std, positive=True))

    # -- pixels ---------------------------------------------------------------------------------

    @property
    def decode_size(self) -> int | None:
        """The smallest side a JPEG is decoded to (``decode_scale * image_size``); None: full."""
        return None if self.decode_scale is None else self.decode_scale * self.image_size

    def load(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """The image file ``path`` as uint8 ``[3, S, S]`` (RGB, ``S = image_size``).

        Raises:
            SynergicError: naming the file when it is missing, not an image, or damaged.
        """
        return self.resize(load_image(path, min_size=self.decode_size), what=str(path))

    def resize(self, image: Image.Image | torch.Tensor, *, what: str = "image") -> torch.Tensor:
        """An image already in memory as uint8 ``[3, S, S]``.

        ``image`` is a PIL image (converted to RGB, resized with Pillow's ``resample`` filter) or
        a uint8 tensor ``[3, H, W]`` or ``[1, H, W]`` (resized with ``torch.nn.functional.
        interpolate``, antialiased; one of the right size is returned as it is). ``what`` names
        the image in errors.

        Raises:
            SynergicError: for anything else, or ``lanczos`` on a tensor.
        """
        if isinstance(image, torch.Tensor):
            return self._resize_tensor(image, what)
        if not isinstance(image, Image.Image):
            raise SynergicError(
                f"{what} is a {type(image).__name__}; "
                "expected a PIL image or a uint8 tensor [3, H, W]"
            )
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = resize_image(image, self.image_size, self.resample)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def _resize_tensor(self, image: torch.Tensor, what: str) -> torch.Tensor:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
            raise SynergicError(
                f"{what} is a {image.dtype} tensor of shape {tuple(image.shape)}; "
                "expected uint8 [3, H, W]"
            )
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        size = self.image_size
        if image.shape[1:] == (size, size):
            return image
        if self.resample not in _TENSOR_MODES:
            raise SynergicError(
                f"resample {self.resample!r} works only for PIL images; for tensor images use one "
                f"of {', '.join(_TENSOR_MODES)}"
            )
        mode = _TENSOR_MODES[self.resample]
        resized = F.interpolate(
            image[None].float(), size=(size, size), mode=mode,
            **({"antialias": True} if mode != "nearest-exact" else {}),
        )
        return resized[0].round_().clamp_(0, 255).to(torch.uint8)

    # -- values ---------------------------------------------------------------------------------

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (uint8 0..255, or float in [0, 1]; ``[B, 3, H, W]`` or ``[3, H, W]``) as
        float ``(x - mean) / std`` on their device (see :func:`normalize`)."""
        return normalize(images, self.mean, self.std)

    # -- storage --------------------------------------------------------------------------------

    def pixel_settings(self) -> dict[str, Any]:
        """What changes the decoded uint8 pixels (not ``mean``/``std``): the cache key's part."""
        return {
            "format": PREPROCESSING_FORMAT,
            "image_size": self.image_size,
            "resample": self.resample,
            "decode_scale": self.decode_scale,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: ``format``, ``image_size``, ``resample``, ``decode_scale``, ``mean``,
        ``std`` (lists). :meth:`from_dict` reads it back."""
        return {**self.pixel_settings(), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], *, source: str = "preprocessing"
    ) -> Preprocessing:
        """The preprocessing :meth:`to_dict` wrote; ``source`` (a file, a checkpoint key) is named
        in errors.

        Raises:
            SynergicError: a missing or unknown key, another ``format``, or an invalid value.
        """
        if not isinstance(values, Mapping):
            raise SynergicError(f"{source}: expected a mapping of preprocessing settings, got "
                                f"{type(values).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - {*names, "format"})
        missing = [name for name in names if name not in values]
        if unknown or missing:
            what = "; ".join(
                part for part in (
                    f"unknown keys {', '.join(unknown)}" if unknown else "",
                    f"missing keys {', '.join(missing)}" if missing else "",
                ) if part
            )
            raise SynergicError(f"{source}: {what}: it was not written by this version of synergic")
        if values.get("format") != PREPROCESSING_FORMAT:
            raise SynergicError(
                f"{source}: preprocessing format {values.get('format')!r}, this synergic reads "
                f"format {PREPROCESSING_FORMAT}: use the synergic version that wrote the run"
            )
        try:
            return cls(**{name: values[name] for name in names})
        except SynergicError as error:
            raise SynergicError(f"{source}: {str(error).removeprefix('preprocessing: ')}") from None


def normalize(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """``(x - mean) / std`` per channel, where ``x`` is ``images / 255`` for uint8 images and
    ``images`` itself for floating-point ones (taken to be in [0, 1]).

    Args:
        images: ``[B, C, H, W]`` or ``[C, H, W]``, uint8 or floating point, on any device.
        mean, std: ``C`` values each (a sequence, or a tensor of ``C`` elements in any shape).

    Returns:
        float32 for uint8 input, else the input's dtype; same shape and device.

    Raises:
        SynergicError: another dtype, or ``mean``/``std`` not one value per channel.
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not images.is_floating_point():
        raise SynergicError(f"normalize expects uint8 or floating-point images, got {images.dtype}")
    channels = images.shape[-3] if images.ndim >= 3 else -1
    shape = (-1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(shape)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).reshape(shape)
    if mean_t.shape[0] != channels or std_t.shape[0] != channels:
        raise SynergicError(
            f"normalize: images {tuple(images.shape)} need one mean and std per channel, got "
            f"{mean_t.shape[0]} and {std_t.shape[0]}"
        )
    return (images - mean_t) / std_t


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _three_floats(name: str, values: Any, *, positive: bool) -> tuple[float, float, float]:
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        floats = ()
    bad = len(floats) != 3 or not all(math.isfinite(v) for v in floats) or (
        positive and min(floats) <= 0
    )
    if bad:
        rule = "3 finite numbers > 0" if positive else "3 finite numbers"
        raise SynergicError(f"preprocessing: {name} must be {rule} (R, G, B), got {values!r}")
    return floats  # type: ignore[return-value]
