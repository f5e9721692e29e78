"""Sanity checks on a data set before training on it, each failing with a one-line error."""

from __future__ import annotations

import numbers
from collections import Counter
from typing import Any

from synergic.errors import SynergicError


def check_dataset(
    dataset: Any, *, split: str, name: str, num_classes: int | None = None
) -> dict[str, int]:
    """Check that ``dataset`` (an :class:`~synergic.data.ImageDataset`) is usable for ``split``.

    Raises :class:`SynergicError` when it lacks ``classes``/``ids``/``labels``, when it is empty,
    when ``len(dataset)``, ``ids`` and ``labels`` disagree, when a label is not a class index,
    when an id repeats, when ``num_classes`` (e.g. the train split's) differs from its class
    count, or, for ``split="train"``, when a class has no image. Unreadable images are not looked
    for here; :func:`~synergic.data.load_image` reports them when they are decoded.

    Returns the number of images of each class.
    """
    where = f"data set '{name}' ({split} split)"
    for attribute in ("classes", "ids", "labels"):
        if not hasattr(dataset, attribute):
            raise SynergicError(
                f"{where} has no attribute '{attribute}'; a data set needs classes, ids and labels"
            )
    classes = list(dataset.classes)
    ids = list(dataset.ids)
    labels = list(dataset.labels)
    size = len(dataset)
    if size == 0:
        raise SynergicError(f"{where} is empty; check data.root and the data set's files")
    if not classes:
        raise SynergicError(f"{where} has no classes")
    if not len(ids) == len(labels) == size:
        raise SynergicError(
            f"{where}: len() is {size} but it has {len(ids)} ids and {len(labels)} labels"
        )
    if num_classes is not None and num_classes != len(classes):
        raise SynergicError(
            f"{where} has {len(classes)} classes ({', '.join(map(str, classes))}) "
            f"but {num_classes} were expected"
        )
    for image_id, label in zip(ids, labels):
        if (
            isinstance(label, bool)
            or not isinstance(label, numbers.Integral)
            or not 0 <= label < len(classes)
        ):
            raise SynergicError(
                f"{where}: image '{image_id}' has label {label!r}, "
                f"expected a class index in 0..{len(classes) - 1}"
            )
    repeated = [image_id for image_id, count in Counter(ids).items() if count > 1]
    if repeated:
        raise SynergicError(f"{where}: image id '{repeated[0]}' appears more than once")
    counts = Counter(int(label) for label in labels)
    if split == "train":
        for index, class_name in enumerate(classes):
            if counts[index] == 0:
                raise SynergicError(
                    f"{where}: class '{class_name}' has no image; every class needs training images"
                )
    return {str(class_name): counts[index] for index, class_name in enumerate(classes)}
