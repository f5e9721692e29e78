"""Reading image files into 8-bit RGB, whatever they were saved as.

Medical image collections mix greyscale scans, 16-bit PNGs, CMYK JPEGs from publishing tools,
phone photos with an EXIF rotation and the occasional truncated download. :func:`load_image` turns
all of them into one thing, an ``RGB`` :class:`PIL.Image.Image`, or fails with a one-line
:class:`~synergic.errors.SynergicError` that names the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from synergic.errors import SynergicError, did_you_mean

RESAMPLE_NAMES: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
"""The ``resample`` names :func:`resize_image` accepts, with Pillow's filter for each."""

_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def load_image(path: str | os.PathLike[str], *, min_size: int | None = None) -> Image.Image:
    """Read an image file as an 8-bit ``RGB`` image, fully decoded.

    - greyscale and palette images are expanded to RGB;
    - transparent pixels (``LA``, ``RGBA``, palette transparency) are composited onto black;
    - 16-bit images (``I;16`` PNGs, and mode ``I`` taken as 0..65535) are scaled to 0..255;
    - CMYK JPEGs are converted to RGB (Pillow already undoes Adobe's inverted CMYK);
    - the EXIF orientation is applied, so a portrait phone photo comes out upright.

    ``min_size``: the caller will shrink the image to ``min_size`` pixels anyway, so a JPEG is
    decoded at a reduced scale (1/2, 1/4 or 1/8) that keeps both sides at least ``min_size``;
    a 6000x4000 photo then never exists at full size in memory. Other formats ignore it.

    Raises :class:`SynergicError` naming the file when it is missing, empty, not an image, or
    truncated/corrupt (the whole file is decoded here, so damage is found now, not mid-training).
    """
    path = Path(path)
    try:
        size_on_disk = path.stat().st_size
    except FileNotFoundError:
        raise SynergicError(f"image file not found: {path}") from None
    except OSError as error:
        raise SynergicError(f"cannot read image file {path}: {error.strerror or error}") from None
    if path.is_dir():
        raise SynergicError(f"expected an image file but found a folder: {path}")
    if size_on_disk == 0:
        raise SynergicError(f"image file is empty (0 bytes): {path}; re-download or delete it")
    if min_size is not None and (not isinstance(min_size, int) or min_size < 1):
        raise SynergicError(f"min_size must be a positive integer, got {min_size!r}")

    # We open the file ourselves so that it is closed on every path, including errors.
    with open(path, "rb") as file:
        try:
            image = Image.open(file)
        except UnidentifiedImageError:
            raise SynergicError(
                f"not an image (or a format Pillow cannot read): {path}"
            ) from None
        except (OSError, SyntaxError, ValueError) as error:
            raise SynergicError(f"cannot open image {path}: {error}") from None
        except Image.DecompressionBombError as error:
            raise SynergicError(f"image too large to decode safely: {path}: {error}") from None
        try:
            if min_size is not None and image.format in ("JPEG", "MPO"):
                image.draft("RGB", (min_size, min_size))
            image.load()
        except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error
            raise SynergicError(
                f"cannot decode image {path} (truncated or corrupt: {error}); "
                "re-download or delete it"
            ) from None
        try:
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:  # noqa: BLE001 - damaged EXIF is common; the pixels are still good
            pass
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        # A palette may carry transparency; expand to RGBA first so it is composited like alpha.
        if "transparency" in image.info:
            return _composite_on_black(image.convert("RGBA"))
        return image.convert("RGB")
    if mode in _ALPHA_MODES:
        return _composite_on_black(image.convert("RGBA"))
    if mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips at 255 instead of scaling, which turns a
        # 16-bit scan almost white; divide by 257 so that 65535 -> 255 and 0 -> 0.
        values = np.asarray(image).astype(np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        # Floating-point images have no fixed range: values in [0, 1] are scaled, others clipped.
        values = np.asarray(image).astype(np.float64)
        values = np.nan_to_num(values)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "1":
        return image.convert("L").convert("RGB")
    # L, CMYK, YCbCr, LAB, HSV: Pillow converts these correctly.
    return image.convert("RGB")


def _composite_on_black(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, (0, 0, 0))
    background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return background


def resize_image(image: Image.Image, size: int, resample: str = "bicubic") -> Image.Image:
    """Resize to ``size`` x ``size`` pixels, ignoring the aspect ratio (as the SDL paper does).

    ``resample`` is one of :data:`RESAMPLE_NAMES` (``bicubic``, ``bilinear``, ``nearest``,
    ``lanczos``). An image that already has that size is returned as it is.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise SynergicError(f"image size must be a positive integer, got {size!r}")
    try:
        method = RESAMPLE_NAMES[resample]
    except (KeyError, TypeError):
        valid = ", ".join(RESAMPLE_NAMES)
        hint = did_you_mean(resample, RESAMPLE_NAMES) if isinstance(resample, str) else ""
        raise SynergicError(
            f"unknown resample method {resample!r}{hint}: valid names are {valid}"
        ) from None
    if image.size == (size, size):
        return image
    return image.resize((size, size), method)
