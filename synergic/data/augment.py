"""Batched, reproducible augmentation on tensors: the paper's random rotation and flips.

Zhang et al. (2018, Sec. 2.4) train with "random rotation and horizontal and vertical flips". Here
that runs on a whole batch at once, on whatever device the batch is on: a decoded uint8 batch goes
to the GPU once and is augmented there, so the data loader does no per-image work.

The random numbers are always drawn on the CPU from the ``torch.Generator`` you pass, then moved to
the batch's device: the same generator state gives the same augmentation on CPU and GPU, and a run
seeded by (seed, epoch, step) repeats exactly.

Only images turned by an angle that is not a multiple of 90 degrees are resampled (bilinear);
the others are turned exactly (``torch.rot90``, or not at all), so an unrotated image keeps its
pixels bit for bit. The corners a rotation brings in from outside the image are filled by
mirroring the image (``fill="reflect"``, the default), by repeating its edge pixels
(``"border"``) or with black (``"zeros"``): see :data:`FILL_MODES`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from synergic.errors import SynergicError

#: ``fill`` of :func:`augment_batch` -> ``padding_mode`` of :func:`torch.nn.functional.grid_sample`.
#: ``reflect`` mirrors the image about its edges (OpenCV's ``BORDER_REFLECT``: the edge pixel is
#: repeated once), ``border`` repeats the edge pixels outwards, ``zeros`` fills with black.
FILL_MODES: dict[str, str] = {"reflect": "reflection", "border": "border", "zeros": "zeros"}
DEFAULT_FILL = "reflect"


def to_float01(images: Tensor) -> Tensor:
    """uint8 images to float32 in [0, 1]; floating-point images are returned unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images
    raise SynergicError(f"images must be uint8 or floating point, got {images.dtype}")


def normalize(
    images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor
) -> Tensor:
    """``(images - mean) / std`` per channel, for float images ``[B, C, H, W]`` in [0, 1].

    The same arithmetic as :func:`synergic.data.preprocess.normalize` (the one path every input
    takes), which also accepts uint8 images; here uint8 is refused so that a forgotten
    :func:`to_float01` is caught.
    """
    from synergic.data.preprocess import normalize as normalize_inputs

    if not images.is_floating_point():
        raise SynergicError(
            f"normalize expects float images in [0, 1], got {images.dtype}; call to_float01 first"
        )
    return normalize_inputs(images, mean, std)


def augment_batch(
    images: Tensor,
    *,
    generator: torch.Generator,
    rotation: float = 180.0,
    hflip: bool = True,
    vflip: bool = True,
    fill: str = DEFAULT_FILL,
    shard: tuple[int, int] | None = None,
) -> Tensor:
    """Randomly rotate and flip each image of a batch.

    Args:
        images: ``[B, C, H, W]``, uint8 (scaled to [0, 1]) or floating point (taken as already in
            [0, 1]; its dtype is kept), on any device.
        generator: a CPU ``torch.Generator``; every random number comes from it.
        rotation: each image turns by an angle drawn uniformly from ``[-rotation, rotation]``
            degrees (counter-clockwise as displayed), with bilinear interpolation. 0 turns
            nothing.
        hflip, vflip: mirror each image left-right / top-bottom with probability 0.5.
        fill: what the corners brought in from outside the image show: ``"reflect"`` (the
            image mirrored about its edges), ``"border"`` (its edge pixels repeated) or
            ``"zeros"`` (black); one of :data:`FILL_MODES`.
        shard: ``(offset, total)``: ``images`` are images ``offset..offset+B-1`` of a batch of
            ``total``; the numbers are drawn for the whole batch and this shard's are used, so
            the ranks of a distributed run augment exactly as one process would.

    Returns:
        Floating-point ``[B, C, H, W]`` in [0, 1] on the images' device. With ``rotation=0`` and no
        flips it equals ``to_float01(images)`` exactly.

    Raises:
        SynergicError: images not ``[B, C, H, W]`` uint8 or floating point, a generator that is
            not on the CPU, a negative or infinite ``rotation``, or an unknown ``fill``.
    """
    if images.ndim != 4:
        raise SynergicError(
            f"augment_batch expects images [B, C, H, W], got shape {tuple(images.shape)}"
        )
    if generator.device.type != "cpu":
        raise SynergicError(
            f"augment_batch needs a CPU torch.Generator (got one on {generator.device}) so that "
            "CPU and GPU runs draw the same numbers"
        )
    if not math.isfinite(rotation) or rotation < 0:
        raise SynergicError(
            f"augment_batch: rotation must be a finite number of degrees >= 0, got {rotation!r}"
        )
    _check_fill(fill)
    images = to_float01(images)
    offset, batch = shard if shard is not None else (0, images.shape[0])
    # Always draw all three, so switching one option off does not shift the others' numbers.
    angles = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * rotation
    hflips = torch.rand(batch, generator=generator) < 0.5
    vflips = torch.rand(batch, generator=generator) < 0.5
    mine = slice(offset, offset + images.shape[0])
    angles, hflips, vflips = angles[mine], hflips[mine], vflips[mine]
    return rotate_and_flip(
        images,
        angles if rotation > 0 else None,
        hflips if hflip else None,
        vflips if vflip else None,
        fill=fill,
    )


def rotate_and_flip(
    images: Tensor,
    angles: Tensor | None,
    hflips: Tensor | None,
    vflips: Tensor | None,
    *,
    fill: str = DEFAULT_FILL,
) -> Tensor:
    """The deterministic part of :func:`augment_batch`: given angles (degrees) and flip masks.

    ``images`` is floating point ``[B, C, H, W]``; ``angles`` is ``[B]`` (None: no rotation),
    best on the CPU (angles on another device are copied back to find the exact ones);
    ``hflips``/``vflips`` are bool ``[B]`` (None: no flip); ``fill`` is one of
    :data:`FILL_MODES`. Rotation comes first, then the flips. An angle that is a multiple of 90
    degrees turns its image exactly (no resampling; on a non-square image only multiples of 180).
    """
    _check_fill(fill)
    if angles is not None:
        images = _rotate(images, angles, FILL_MODES[fill])
    if hflips is not None:
        mask = hflips.to(device=images.device, non_blocking=True).view(-1, 1, 1, 1)
        images = torch.where(mask, images.flip(-1), images)
    if vflips is not None:
        mask = vflips.to(device=images.device, non_blocking=True).view(-1, 1, 1, 1)
        images = torch.where(mask, images.flip(-2), images)
    return images


def _check_fill(fill: str) -> None:
    if fill not in FILL_MODES:
        raise SynergicError(
            f"augmentation fill {fill!r} is unknown: use one of {', '.join(FILL_MODES)} "
            "(data.augment.fill)"
        )


def _rotate(images: Tensor, angles_degrees: Tensor, padding_mode: str) -> Tensor:
    angles = angles_degrees.detach().to("cpu", torch.float64)
    quarter_turns = angles / 90.0
    exact = quarter_turns == quarter_turns.round()
    turns = quarter_turns.round().remainder(4).long()
    height, width = images.shape[-2:]
    if height != width:  # an odd number of quarter turns would swap height and width
        exact &= turns % 2 == 0
    if not bool(exact.any()):  # the usual case with random angles: one call for the batch
        return _resample(images, angles, padding_mode)
    if bool((exact & (turns == 0)).all()):
        return images
    rotated = torch.empty_like(images)
    groups = [(~exact, None)] + [(exact & (turns == k), k) for k in range(4)]
    for mask, k in groups:
        if not bool(mask.any()):
            continue
        index = mask.nonzero().flatten().to(images.device, non_blocking=True)
        subset = images.index_select(0, index)
        if k is None:
            subset = _resample(subset, angles[mask], padding_mode)
        elif k:
            subset = torch.rot90(subset, k, dims=(2, 3))
        rotated.index_copy_(0, index, subset)
    return rotated


def _resample(images: Tensor, angles_degrees: Tensor, padding_mode: str) -> Tensor:
    height, width = images.shape[-2:]
    radians = torch.deg2rad(angles_degrees.to(device=images.device, non_blocking=True))
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps each output pixel to where it samples the input, in coordinates normalised
    # to [-1, 1] per axis; the H/W factors keep the rotation rigid on non-square images. With y
    # pointing down, sampling at R(a) p turns the picture counter-clockwise by a as displayed
    # (90 degrees is torch.rot90(images, 1, dims=(2, 3))).
    theta = torch.zeros(images.shape[0], 2, 3, dtype=torch.float64, device=images.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * (height / width)
    theta[:, 1, 0] = sin * (width / height)
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )
