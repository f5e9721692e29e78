"""Image data for synergic: reading files, the built-in data sets, splits and checks.

What every data set looks like (:class:`ImageDataset`), the error a data set raises when it has no
validation split (:class:`NoSuchSplit`) and :func:`load_image`, which reads any image file as RGB.
The built-in data sets live in :mod:`synergic.data.datasets`; downloading in
:mod:`synergic.data.download`; validation splits in :mod:`synergic.data.splits`; sanity checks in
:mod:`synergic.data.checks`. Importing this package imports neither torch nor numpy nor PIL:
``load_image``, ``resize_image`` and ``RESAMPLE_NAMES`` come from :mod:`synergic.data.images` at
their first use, so that :mod:`synergic.data.names` and the registry's listing stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from synergic.errors import SynergicError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from synergic.data.images import RESAMPLE_NAMES, load_image, resize_image

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


_FROM_IMAGES = ("RESAMPLE_NAMES", "load_image", "resize_image")


def __getattr__(name: str):
    # PEP 562: synergic.data.images imports numpy and PIL, which most importers of this package
    # (synergic.data.names at every command's start) do not need.
    if name in _FROM_IMAGES:
        from synergic.data import images

        value = getattr(images, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'synergic.data' has no attribute {name!r}")
