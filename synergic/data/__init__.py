"""Image data for synergic: reading files, the built-in data sets, splits and checks.

What every data set looks like (:class:`ImageDataset`), the error a data set raises when it has no
validation split (:class:`NoSuchSplit`) and :func:`load_image`, which reads any image file as RGB.
The built-in data sets live in :mod:`synergic.data.datasets`; downloading in
:mod:`synergic.data.download`; validation splits in :mod:`synergic.data.splits`; sanity checks in
:mod:`synergic.data.checks`. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from synergic.data.images import RESAMPLE_NAMES, load_image, resize_image
from synergic.errors import SynergicError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "RESAMPLE_NAMES",
    "ImageDataset",
    "NoSuchSplit",
    "load_image",
    "resize_image",
]


class NoSuchSplit(SynergicError):
    """Raised by a data-set factory asked for a split the data set does not have.

    For ``"val"`` the framework catches it and carves a stratified validation split out of
    ``"train"`` (:func:`synergic.data.splits.stratified_split`).
    """


@runtime_checkable
class ImageDataset(Protocol):
    """What a data-set factory returns.

    ``classes[k]`` names class ``k``; ``ids[i]`` identifies image ``i`` (unique, e.g. a file name);
    ``labels[i]`` is its class index. ``dataset[i]`` is ``(image, label)`` where ``image`` is an
    RGB :class:`PIL.Image.Image` or a ``uint8`` tensor ``[3, H, W]``.
    """

    classes: list[str]
    ids: list[str]
    labels: list[int]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Image.Image | torch.Tensor, int]: ...
