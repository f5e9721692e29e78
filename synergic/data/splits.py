"""Carving a validation split out of a training split."""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence

import numpy as np

from synergic.errors import SynergicError


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices ``0..len(labels)-1`` into ``(train, val)``, keeping class proportions.

    Each class with at least 2 images gives ``round(fraction * n)`` of its ``n`` images to
    validation, but never fewer than 1 and never all of them: every such class is represented in
    both splits, so validation AP and AUC are defined even for a rare class (2 malignant among
    38 images at ``fraction=0.2`` gives 1 malignant to validation, where a proportional draw gives
    none). A class with a single image stays in train (see :func:`unrepresentable_classes`).
    The images of each class are drawn with ``numpy.random.default_rng(seed)``, class by class
    in label order, so the same ``seed`` always gives the same split. ``fraction=0`` puts
    everything in train. Both lists come back sorted.

    Raises:
        SynergicError: ``fraction`` is not a number in [0, 1).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise SynergicError(f"validation fraction must be a number in [0, 1), got {fraction!r}")
    if not 0.0 <= fraction < 1.0:
        raise SynergicError(f"validation fraction must be in [0, 1), got {fraction}")
    labels = [int(label) for label in labels]
    everything = list(range(len(labels)))
    if fraction == 0.0:
        return everything, []
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    val: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) < 2:
            continue
        # Half up, not Python's round-half-to-even: 2.5 images -> 3 whatever the class.
        wanted = min(len(members) - 1, max(1, math.floor(fraction * len(members) + 0.5)))
        chosen = rng.permutation(len(members))[:wanted]
        val.extend(members[int(i)] for i in chosen)
    val_set = set(val)
    return [i for i in everything if i not in val_set], sorted(val)


def unrepresentable_classes(labels: Sequence[int]) -> list[int]:
    """Labels with fewer than 2 images: a carved validation split cannot hold them, since a
    class must keep a training image."""
    counts = Counter(int(label) for label in labels)
    return sorted(label for label, count in counts.items() if count < 2)
