"""Carving a validation split out of a training split."""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence

from synergic.errors import SynergicError


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices ``0..len(labels)-1`` into ``(train, val)``, keeping class proportions.

    About ``fraction`` of the images go to validation, drawn per class with scikit-learn's
    ``train_test_split(stratify=...)`` so that the same ``seed`` always gives the same split.
    Every class keeps at least one training image: a class with a single image stays in train,
    and a class the draw would have emptied gets one image back. When the validation set is too
    small to hold one image of every class, it is drawn without stratification.
    ``fraction=0`` puts everything in train. Both lists come back sorted.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise SynergicError(f"validation fraction must be a number in [0, 1), got {fraction!r}")
    if not 0.0 <= fraction < 1.0:
        raise SynergicError(f"validation fraction must be in [0, 1), got {fraction}")
    labels = [int(label) for label in labels]
    everything = list(range(len(labels)))
    counts = Counter(labels)
    # A class with one image cannot give one to validation and keep one for training.
    pool = [index for index in everything if counts[labels[index]] >= 2]
    pool_classes = len({labels[index] for index in pool})
    # Leave at least one image of each class in train: that caps the validation size.
    val_size = min(math.ceil(fraction * len(pool)), len(pool) - pool_classes)
    if fraction == 0.0 or val_size <= 0:
        return everything, []

    from sklearn.model_selection import train_test_split

    pool_labels = [labels[index] for index in pool]
    can_stratify = val_size >= pool_classes and len(pool) - val_size >= pool_classes
    train_part, val_part = train_test_split(
        pool,
        test_size=val_size,
        random_state=seed,
        shuffle=True,
        stratify=pool_labels if can_stratify else None,
    )
    val = sorted(int(index) for index in val_part)
    train_set = set(everything) - set(val)
    # Rounding in the stratified draw (or no stratification) can empty a class of training images.
    for label in sorted(counts):
        if not any(labels[index] == label for index in train_set):
            back = next(index for index in val if labels[index] == label)
            val.remove(back)
            train_set.add(back)
    return sorted(train_set), val
