"""Test-time augmentation (TTA): classify each image in several symmetric views and average.

The views are exact symmetries of the square image grid (no interpolation), the ones the paper
trains with (Sect. 3.4: random rotations and horizontal and vertical flips):

* ``none``: the image as it is (1 view).
* ``flips``: the image, its horizontal flip (left-right, ``torch.flip(x, dims=[-1])``) and its
  vertical flip (top-bottom, ``dims=[-2]``): 3 views.
* ``d4``: the 8 symmetries of the square, the dihedral group D4: rotations by 0, 90, 180 and 270
  degrees (``torch.rot90``, counter-clockwise), each with and without a horizontal flip first
  (which includes the vertical flip and both transposes): 8 views. Needs square images.

Each component's softmax is averaged over the views (the mean of the probabilities, not of the
logits) *before* the aggregator combines the components, so with ``sum_softmax`` the aggregate is
eq. 6 of the paper applied to view-averaged component predictions.

Everything here is plain PyTorch and works on any module, framework or not:
:func:`view_averaged_logits` takes a function from images to logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from synergic.errors import SynergicError

if TYPE_CHECKING:  # torch is imported where used: the command line reads TTA_MODES at start
    import torch

TTA_MODES: tuple[str, ...] = ("none", "flips", "d4")
"""The test-time augmentations, by name: ``none``, ``flips`` (3 views), ``d4`` (8 views)."""


def _rotate(k: int, flip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def view(images: torch.Tensor) -> torch.Tensor:
        import torch

        if flip:
            images = torch.flip(images, dims=[-1])
        return torch.rot90(images, k, dims=(-2, -1)) if k else images

    return view


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def _hflip(images: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.flip(images, dims=[-1])


def _vflip(images: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.flip(images, dims=[-2])


def tta_views(mode: str) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """``[(name, view), ...]`` of ``mode``: each view maps images ``[..., H, W]`` to the same
    images seen another way (a new tensor of the same shape and dtype; ``d4`` needs H == W).

    Names: ``identity``, ``hflip``, ``vflip``; for ``d4`` ``rot0`` ... ``rot270`` and
    ``hflip+rot0`` ... ``hflip+rot270`` (the horizontal flip first, then the rotation,
    counter-clockwise).

    Raises:
        SynergicError: an unknown mode (one line naming the valid ones).
    """
    if mode == "none":
        return [("identity", _identity)]
    if mode == "flips":
        return [("identity", _identity), ("hflip", _hflip), ("vflip", _vflip)]
    if mode == "d4":
        return [
            (f"{'hflip+' if flip else ''}rot{90 * k}", _rotate(k, flip))
            for flip in (False, True) for k in range(4)
        ]
    raise SynergicError(f"unknown test-time augmentation {mode!r}: use one of {', '.join(TTA_MODES)}")


def check_tta(mode: str, image_shape: tuple[int, ...] | torch.Size) -> None:
    """Refuse ``mode`` for images of ``image_shape`` (``[..., H, W]``) it cannot apply to.

    Raises:
        SynergicError: an unknown mode, or ``d4`` on images that are not square.
    """
    tta_views(mode)
    height, width = int(image_shape[-2]), int(image_shape[-1])
    if mode == "d4" and height != width:
        raise SynergicError(
            f"test-time augmentation d4 rotates by 90 degrees, which needs square images; these "
            f"are {height}x{width}: use --tta flips"
        )


def view_averaged_logits(
    classify: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, mode: str
) -> torch.Tensor:
    """Logits ``[B, K]`` (float32) whose softmax is the mean over the views of ``mode`` of
    ``softmax(classify(view(images)))``.

    ``classify`` maps images ``[B, C, H, W]`` (already normalised) to logits ``[B, K]``. With
    ``mode="none"`` its logits are returned as they are (float32); otherwise the result is
    ``log(mean_v softmax(z_v))``, computed as ``logsumexp_v(log_softmax(z_v)) - log V``: finite,
    and ``softmax`` of it gives back the averaged probabilities exactly (up to rounding), so any
    aggregator that takes logits works on it unchanged. Views are classified one after another, so
    the memory needed is that of one view.

    Raises:
        SynergicError: an unknown mode, or ``d4`` on images that are not square.
    """
    import torch

    check_tta(mode, images.shape)
    views = tta_views(mode)
    if mode == "none":
        return classify(images).float()
    log_probabilities = torch.stack(
        [classify(view(images)).float().log_softmax(dim=-1) for _, view in views]
    )
    return torch.logsumexp(log_probabilities, dim=0) - math.log(len(views))
