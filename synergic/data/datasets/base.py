"""A data set made of image files on disk, shared by the built-in file-based data sets."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from synergic.data.images import load_image
from synergic.data.names import printable_name
from synergic.errors import SynergicError, did_you_mean

if TYPE_CHECKING:
    import torch

    from synergic.data.preprocess import Preprocessing

SPLITS = ("train", "val", "test")
"""The split names a data-set factory is asked for."""


GROUPS_ATTRIBUTE = "groups"
"""The optional data-set attribute that says which images belong together: a mapping from a kind
of group (``"lesion"``, ``"patient"``) to one group id per image, in the data set's order, e.g.
``{"patient": ["p1", "p1", "p7", ...]}``. Images of one group (two photographs of one lesion,
the lesions of one patient) are never split between training and held-out folds by
``synergic cv`` (``--group-by KIND``). A data set without the attribute has no groups."""


def dataset_groups(dataset: object, *, name: str) -> dict[str, list[str]]:
    """The :data:`GROUPS_ATTRIBUTE` of ``dataset``, checked: ``{kind: [group id per image]}`` with
    ids as strings; ``{}`` when the data set has no ``groups``.

    Raises:
        SynergicError: ``groups`` is not a mapping of names to one id per image (a plugin's
            mistake), naming the data set ``name`` and the kind.
    """
    from collections.abc import Mapping

    groups = getattr(dataset, GROUPS_ATTRIBUTE, None)
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise SynergicError(
            f"data set '{name}': its '{GROUPS_ATTRIBUTE}' attribute is a "
            f"{type(groups).__name__}, expected a mapping of a group kind to one id per image, "
            "e.g. {'patient': [...]}"
        )
    size = len(dataset.ids)
    checked: dict[str, list[str]] = {}
    for kind, ids in groups.items():
        if isinstance(ids, (str, bytes)) or len(ids) != size:
            count = "a string" if isinstance(ids, (str, bytes)) else f"{len(ids)} ids"
            raise SynergicError(
                f"data set '{name}': {GROUPS_ATTRIBUTE}[{kind!r}] has {count} for {size} images; "
                "it needs one group id per image, in the data set's order"
            )
        checked[str(kind)] = [printable_name(str(group)) for group in ids]
    return checked


PRIMARY_METRIC_ATTRIBUTE = "primary_metric"
"""The optional data-set attribute that names the challenge's ranking metric, as a key of
:func:`synergic.metrics.compute_metrics`: ``"ap"`` (ISIC 2016; the default when absent),
``"task_auc"`` (ISIC 2017), ``"balanced_accuracy"`` (ISIC 2018, 2019), ``"auc"`` (ISIC 2020). It
selects the best checkpoint, ranks sweep cells and heads reports (docs/metrics.md)."""

TASK_CLASSES_ATTRIBUTE = "task_classes"
"""The optional data-set attribute that names the classes the challenge scores one-vs-rest, e.g.
ISIC 2017's ``("melanoma", "seborrheic_keratosis")``: each gets the metric ``auc_<class>``, and
``task_auc`` is their mean (:func:`synergic.metrics.compute_metrics`)."""


def dataset_task_classes(dataset: object, *, name: str) -> tuple[str, ...]:
    """The :data:`TASK_CLASSES_ATTRIBUTE` of ``dataset``, checked: a tuple of names from its
    ``classes``; ``()`` when the data set has none.

    Raises:
        SynergicError: a value that is not a sequence of the data set's class names, naming the
            data set ``name``.
    """
    task_classes = getattr(dataset, TASK_CLASSES_ATTRIBUTE, None)
    if task_classes is None:
        return ()
    classes = [str(c) for c in dataset.classes]
    if isinstance(task_classes, (str, bytes)) or not isinstance(task_classes, Sequence):
        raise SynergicError(
            f"data set '{name}': its '{TASK_CLASSES_ATTRIBUTE}' attribute is a "
            f"{type(task_classes).__name__}, expected a tuple of class names, e.g. "
            f"{tuple(classes[1:])}"
        )
    for task in task_classes:
        if task not in classes:
            raise SynergicError(
                f"data set '{name}': {TASK_CLASSES_ATTRIBUTE} names {task!r}, not one of its "
                f"classes {', '.join(classes)}{did_you_mean(str(task), classes)}"
            )
    if len(set(task_classes)) != len(task_classes):
        raise SynergicError(
            f"data set '{name}': {TASK_CLASSES_ATTRIBUTE} {tuple(task_classes)} names a class twice"
        )
    return tuple(str(task) for task in task_classes)


def dataset_primary_metric(dataset: object, *, name: str) -> str:
    """The :data:`PRIMARY_METRIC_ATTRIBUTE` of ``dataset``, checked against the metrics
    :func:`synergic.metrics.compute_metrics` reports for its classes and task classes;
    :data:`synergic.metrics.DEFAULT_PRIMARY_METRIC` (``"ap"``) when the data set names none.

    Raises:
        SynergicError: an unknown metric name, or bad ``task_classes``
            (:func:`dataset_task_classes`), in one line naming the data set ``name``.
    """
    from synergic.metrics import primary_metric

    metric = getattr(dataset, PRIMARY_METRIC_ATTRIBUTE, None)
    task_classes = dataset_task_classes(dataset, name=name)
    return primary_metric(
        len(dataset.classes), metric, task_classes=task_classes, dataset=name
    )


def check_split_name(split: str, dataset: str) -> None:
    """Raise a one-line error when ``split`` is not ``train``, ``val`` or ``test``."""
    if split not in SPLITS:
        hint = did_you_mean(split, SPLITS) if isinstance(split, str) else ""
        raise SynergicError(
            f"data set '{dataset}': unknown split {split!r}{hint}; "
            f"valid splits: {', '.join(SPLITS)}"
        )


class FileImageDataset:
    """Images read from files, with their labels.

    ``dataset[i]`` is ``(load_image(paths[i]), labels[i])``: an RGB PIL image and a class index.
    :meth:`load_resized` gives the model-sized version (JPEGs are decoded at reduced scale).

    Args:
        classes: class names; ``labels`` index into it.
        ids: one unique identifier per image (a file name, an image id). Ids and class names
            are kept as :func:`~synergic.data.names.printable_name` writes them (valid UTF-8).
        labels: class index of each image.
        paths: image file of each image.
        name: what the data set is called in error messages, e.g. ``"isic2016 (train)"``.
        source: the file the list came from (a CSV), named in error messages when given.
    """

    def __init__(
        self,
        classes: Sequence[str],
        ids: Sequence[str],
        labels: Sequence[int],
        paths: Sequence[str | os.PathLike[str]],
        *,
        name: str,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        where = f" (from {source})" if source is not None else ""
        self.name = name
        self.source = Path(source) if source is not None else None
        # Valid UTF-8 from the start (undecodable bytes as \xNN), so that no output written
        # after training can fail on an image's or a class folder's name: synergic.data.names.
        self.classes = [printable_name(str(c)) for c in classes]
        self.ids = [printable_name(str(i)) for i in ids]
        self.labels = list(labels)
        self.paths = [Path(p) for p in paths]

        if not self.classes:
            raise SynergicError(f"data set '{name}'{where} has no classes")
        if len(set(self.classes)) != len(self.classes):
            repeated = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise SynergicError(f"data set '{name}'{where}: class names repeat: {repeated}")
        if not len(self.ids) == len(self.labels) == len(self.paths):
            raise SynergicError(
                f"data set '{name}'{where}: {len(self.ids)} ids, {len(self.labels)} labels and "
                f"{len(self.paths)} paths; they must be equally many"
            )
        num_classes = len(self.classes)
        for position, (image_id, label) in enumerate(zip(self.ids, self.labels)):
            valid = isinstance(label, numbers.Integral) and not isinstance(label, bool)
            if not valid or not 0 <= label < num_classes:
                raise SynergicError(
                    f"data set '{name}'{where}: image '{image_id}' has label {label!r}, "
                    f"expected an integer in 0..{num_classes - 1}"
                )
            self.labels[position] = int(label)
        seen: set[str] = set()
        for image_id in self.ids:
            if image_id in seen:
                raise SynergicError(
                    f"data set '{name}'{where}: image id '{image_id}' appears twice"
                )
            seen.add(image_id)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return load_image(self.paths[index]), self.labels[index]

    def load_resized(self, index: int, preprocessing: Preprocessing) -> torch.Tensor:
        """Image ``index`` as uint8 ``[3, S, S]``: ``preprocessing.load(paths[index])``, the
        path that ``synergic predict`` takes too (see :mod:`synergic.data.preprocess`).

        Raises:
            SynergicError: naming the file when it is missing or cannot be decoded.
        """
        return preprocessing.load(self.paths[index])

    def class_counts(self) -> dict[str, int]:
        """How many images each class has, in class order."""
        counts = dict.fromkeys(self.classes, 0)
        for label in self.labels:
            counts[self.classes[label]] += 1
        return counts

    def __repr__(self) -> str:
        return f"FileImageDataset({self.name!r}, {len(self)} images, classes={self.classes})"
