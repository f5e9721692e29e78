"""stratified_split: a deterministic validation split that never empties a class of train."""

from __future__ import annotations

from collections import Counter

import pytest

from synergic.data.splits import stratified_split
from synergic.errors import SynergicError


def test_proportions_are_kept_and_lists_partition_the_indices():
    labels = [0] * 80 + [1] * 20
    train, val = stratified_split(labels, 0.2, seed=0)
    assert sorted(train + val) == list(range(100))
    assert train == sorted(train) and val == sorted(val)
    assert Counter(labels[i] for i in val) == {0: 16, 1: 4}
    assert all(type(i) is int for i in train + val)


def test_same_seed_same_split_other_seed_other_split():
    labels = [i % 3 for i in range(60)]
    assert stratified_split(labels, 0.25, seed=7) == stratified_split(labels, 0.25, seed=7)
    assert stratified_split(labels, 0.25, seed=7) != stratified_split(labels, 0.25, seed=8)


def test_fraction_zero_keeps_everything_in_train():
    assert stratified_split([0, 1, 1, 0], 0.0, seed=0) == ([0, 1, 2, 3], [])


def test_a_class_with_one_image_stays_in_train():
    labels = [0] * 10 + [1]
    for seed in range(5):
        train, val = stratified_split(labels, 0.5, seed=seed)
        assert 10 in train
        assert len(val) == 5


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_class_keeps_a_training_image(fraction, seed):
    labels = [0] * 2 + [1] * 3 + [2] * 20 + [3]
    train, val = stratified_split(labels, fraction, seed=seed)
    assert sorted(train + val) == list(range(len(labels)))
    assert {labels[i] for i in train} == {0, 1, 2, 3}


def test_a_small_fraction_still_gives_validation_every_class():
    labels = [0] * 5 + [1] * 5
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert {labels[i] for i in val} == {0, 1}


def test_two_of_38_malignant_gives_validation_both_classes():
    # The reported case: a proportional draw at 0.2 gives validation no malignant image, so
    # validation AP is NaN at every evaluation and no best.pt is ever written.
    labels = [0] * 36 + [1] * 2
    for seed in range(10):
        train, val = stratified_split(labels, 0.2, seed=seed)
        assert Counter(labels[i] for i in val) == {0: 7, 1: 1}
        assert Counter(labels[i] for i in train) == {0: 29, 1: 1}


def test_unrepresentable_classes_are_the_single_image_ones():
    from synergic.data.splits import unrepresentable_classes

    assert unrepresentable_classes([0, 0, 1, 2, 2, 3]) == [1, 3]
    assert unrepresentable_classes([0, 0, 1, 1]) == []


def test_only_singletons_means_no_validation():
    assert stratified_split([0, 1, 2], 0.5, seed=0) == ([0, 1, 2], [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "0.2", True])
def test_bad_fraction(fraction):
    with pytest.raises(SynergicError, match="fraction"):
        stratified_split([0, 1, 0, 1], fraction, seed=0)
