"""synergic-medmnist: the MedMNIST 2-D data sets for synergic, read from their ``.npz`` files.

Installing this package registers the data set ``medmnist``::

    data:
      dataset: medmnist
      image_size: 28
      options: {flag: dermamnist, download: true}

As a library, without recipes::

    MedMNIST("dermamnist.npz", "train")[0]  # (uint8 tensor [3, 28, 28], int)
"""

from __future__ import annotations

from synergic import hookimpl

__version__ = "0.1.0"

__all__ = ["MedMNIST", "medmnist_dataset", "register_datasets", "__version__"]


@hookimpl
def register_datasets(register):
    # By reference: synergic imports the data set's module (torch, numpy) at its first use.
    register(
        "medmnist",
        "synergic_medmnist.dataset:medmnist_dataset",
        description="MedMNIST v2/v3 and MedMNIST+ 2-D sets from their .npz files "
        "(options: flag, size, download)",
    )


def __getattr__(name: str):
    # Lazy so that discovering the plugin does not import torch.
    if name in ("MedMNIST", "medmnist_dataset"):
        from synergic_medmnist import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'synergic_medmnist' has no attribute {name!r}")
