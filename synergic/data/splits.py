"""Carving a validation split out of a training split: stratified by class
(:func:`stratified_split`), or by class and group (:func:`grouped_stratified_split`, with
scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`) when images of one lesion
or patient must stay on one side."""

from __future__ import annotations

import functools
import math
import numbers
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

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
    _check_fraction(fraction)
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


def _check_fraction(fraction: float) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise SynergicError(f"validation fraction must be a number in [0, 1), got {fraction!r}")
    if not 0.0 <= fraction < 1.0:
        raise SynergicError(f"validation fraction must be in [0, 1), got {fraction}")


GROUPED_SPLIT_ATTEMPTS = 8
"""How many shuffles of the groups :func:`grouped_stratified_split` tries, in a fixed order, for
a split that leaves every class it can on both sides."""

MAX_GROUPED_FOLDS = 100
"""The most folds :func:`grouped_stratified_split` deals the groups into: the validation fraction
is met as closely as a fraction with a denominator of at most 100 can (0.15 exactly, as 3/20)."""


def grouped_stratified_split(
    labels: Sequence[int], groups: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices ``0..len(labels)-1`` into ``(train, val)`` so that every group (``groups[i]``
    is image ``i``'s lesion or patient id) lies wholly on one side, keeping the class proportions
    as well as the groups allow.

    scikit-learn's ``StratifiedGroupKFold(k, shuffle=True, random_state=seed)`` deals the groups
    into ``k`` folds of similar class mix, and ``m`` consecutive folds become the validation
    split, where ``m/k`` is the fraction closest to ``fraction`` with ``k`` at most
    :data:`MAX_GROUPED_FOLDS`, the number of groups and the images of the largest class
    (:meth:`fractions.Fraction.limit_denominator`: 0.2 is 1 fold of 5, 0.15 is 3 of 20). So the
    validation split holds about ``fraction`` of the *groups'* images, not exactly that many.
    Of the ``k`` runs of ``m`` consecutive folds (starting at fold 0, 1, ...) the first is taken
    that leaves every class found in at least 2 groups on both sides. When no run does, whole
    groups of the best run are moved across, smallest first, while that puts more classes on
    both sides (a rare class spread over few groups may all land in training); when that is not
    enough either, the groups are dealt again with other shuffles (``random_state`` drawn from
    ``numpy.random.SeedSequence([seed, attempt])``, up to :data:`GROUPED_SPLIT_ATTEMPTS` in
    all), and failing that the split that misses the fewest classes is returned: a class in a single
    group cannot be on both sides (:func:`unrepresentable_classes`), and
    :func:`classes_missing_from_a_side` says which classes a split leaves out. The same inputs
    always give the same split; both lists come back sorted. ``fraction=0`` puts everything in
    train.

    Raises:
        SynergicError: ``fraction`` is not a number in [0, 1); ``groups`` is not one id per
            image; the images form fewer than 2 groups, or no class has 2 images.
    """
    _check_fraction(fraction)
    labels_array = np.asarray([int(label) for label in labels], dtype=np.int64)
    groups = [str(group) for group in groups]
    if len(groups) != len(labels_array):
        raise SynergicError(
            f"{len(groups)} group ids for {len(labels_array)} images: a grouped validation split "
            "needs one group id per image"
        )
    everything = list(range(len(labels_array)))
    if fraction == 0.0:
        return everything, []
    group_count = len(set(groups))
    if group_count < 2:
        raise SynergicError(
            f"the {len(groups)} training images form {group_count} group, so no validation split "
            "can keep groups apart: set data.validation_group_by: none"
        )
    # scikit-learn needs no more folds than groups, nor than the images of the largest class.
    most_folds = min(MAX_GROUPED_FOLDS, group_count, max(Counter(labels_array.tolist()).values()))
    if most_folds < 2:
        raise SynergicError(
            f"the {len(groups)} training images have one image per class, too few for a "
            "grouped validation split: add images or set data.validation_fraction=0"
        )
    approximation = Fraction(fraction).limit_denominator(most_folds)
    folds, taken = approximation.denominator, approximation.numerator
    if taken == 0:  # fewer groups than 1/fraction: one fold's worth is the least there is
        folds, taken = most_folds, 1
    taken = min(taken, folds - 1)

    unrepresentable = set(unrepresentable_classes(labels_array.tolist(), groups))
    coverable = sorted(set(labels_array.tolist()) - unrepresentable)
    group_codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    best: tuple[tuple[int, int], np.ndarray] | None = None
    for attempt in range(GROUPED_SPLIT_ATTEMPTS):
        # The first shuffle is the seed itself, so a split that covers every class is the one
        # this function always gave.
        state = seed % 2**32 if attempt == 0 else \
            int(np.random.SeedSequence([seed % 2**32, attempt]).generate_state(1)[0])
        fold_of = _group_folds(tuple(labels_array.tolist()), tuple(groups), folds, state)
        for start in range(folds):
            in_val = np.isin(fold_of, [(start + j) % folds for j in range(taken)])
            score = _split_score(labels_array, in_val, coverable)
            if best is None or score < best[0]:
                best = (score, in_val)
            if score == (0, 0):
                break
        assert best is not None
        if best[0] != (0, 0):
            moved = _move_groups_to_cover(labels_array, group_codes, best[1], coverable)
            score = _split_score(labels_array, moved, coverable)
            if score < best[0]:
                best = (score, moved)
        if best[0] == (0, 0):
            break
    assert best is not None
    in_val = best[1]
    return [i for i in everything if not in_val[i]], [i for i in everything if in_val[i]]


def _split_score(
    labels: np.ndarray, in_val: np.ndarray, coverable: Sequence[int]
) -> tuple[int, int]:
    """(1 when a side is empty, classes missing from a side): lower is better, (0, 0) is whole."""
    return int(not in_val.any() or in_val.all()), _missing_count(labels, in_val, coverable)


def _missing_count(labels: np.ndarray, in_val: np.ndarray, coverable: Sequence[int]) -> int:
    """How many of the ``coverable`` classes are missing from validation or from training."""
    val_classes, train_classes = set(labels[in_val].tolist()), set(labels[~in_val].tolist())
    return sum(1 for k in coverable if k not in val_classes or k not in train_classes)


def _move_groups_to_cover(
    labels: np.ndarray, group_codes: np.ndarray, in_val: np.ndarray, coverable: Sequence[int]
) -> np.ndarray:
    """``in_val`` with whole groups moved across, smallest first (then by group), while a move
    lowers the number of classes missing from a side: dealing groups into folds of similar class
    mix cannot promise a rare class spread over few groups a place on both sides."""
    in_val = in_val.copy()
    sizes = np.bincount(group_codes)
    missing = _missing_count(labels, in_val, coverable)
    improved = True
    while missing and improved:
        improved = False
        for k in coverable:
            for side_is_val in (False, True):  # k missing from validation, then from training
                if (labels[in_val == side_is_val] == k).any():
                    continue
                # Groups holding k on the other side, smallest first.
                donors = np.unique(group_codes[(labels == k) & (in_val != side_is_val)])
                for code in sorted(donors.tolist(), key=lambda c: (sizes[c], c)):
                    trial = in_val.copy()
                    trial[group_codes == code] = side_is_val
                    count = _missing_count(labels, trial, coverable)
                    if count < missing and trial.any() and not trial.all():
                        in_val, missing, improved = trial, count, True
                        break
    return in_val


@functools.lru_cache(maxsize=4)
def _group_folds(
    labels: tuple[int, ...], groups: tuple[str, ...], folds: int, seed: int
) -> np.ndarray:
    """The fold of each image under ``StratifiedGroupKFold``; cached, since a run asks twice
    (checks, then decoding) and 25,000 images with 20 folds take seconds."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    with warnings.catch_warnings():
        # "The least populated class has only n members": expected of a rare class; the caller
        # picks the folds that keep every class it can on both sides.
        warnings.simplefilter("ignore", UserWarning)
        placeholder = np.zeros(len(labels))
        for fold, (_, held_out) in enumerate(splitter.split(placeholder, labels, groups)):
            fold_of[held_out] = fold
    fold_of.setflags(write=False)
    return fold_of


def classes_missing_from_a_side(
    labels: Sequence[int], train: Sequence[int], val: Sequence[int],
    groups: Sequence[str] | None = None,
) -> tuple[list[int], list[int]]:
    """``(missing from val, missing from train)``: the labels that a split of indices could have
    put on both sides (not :func:`unrepresentable_classes`) but left out of one, each sorted."""
    labels = [int(label) for label in labels]
    coverable = set(labels) - set(unrepresentable_classes(labels, groups))
    in_train = {labels[i] for i in train}
    in_val = {labels[i] for i in val}
    return sorted(coverable - in_val), sorted(coverable - in_train)


def unrepresentable_classes(
    labels: Sequence[int], groups: Sequence[str] | None = None
) -> list[int]:
    """Labels with fewer than 2 images (with ``groups``: found in fewer than 2 groups): a carved
    validation split cannot hold them, since a class must keep a training image (and a group
    cannot be on both sides)."""
    if groups is None:
        counts = Counter(int(label) for label in labels)
    else:
        counts = Counter(label for label, _ in {(int(k), str(g)) for k, g in zip(labels, groups)})
    return sorted(label for label, count in counts.items() if count < 2)
