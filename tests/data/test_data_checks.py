"""check_dataset: one-line errors for data sets that would break training."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from synergic.data.checks import check_dataset
from synergic.errors import SynergicError


@dataclass
class ListDataset:
    classes: list
    ids: list
    labels: list
    length: int | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.ids) if self.length is None else self.length

    def __getitem__(self, index):
        return None, self.labels[index]


def test_a_good_data_set_passes_and_gives_class_counts():
    dataset = ListDataset(["benign", "malignant"], ["a", "b", "c"], [0, 1, 0])
    assert check_dataset(dataset, split="train", name="d") == {"benign": 2, "malignant": 1}


@pytest.mark.parametrize(
    ("dataset", "split", "message"),
    [
        (ListDataset(["x"], [], []), "test", r"data set 'd' \(test split\) is empty"),
        (ListDataset(["x", "y"], ["a", "b"], [0, 0]), "train", "class 'y' has no image"),
        (ListDataset(["x", "y"], ["a", "b"], [0, 2]), "test", "image 'b' has label 2"),
        (ListDataset(["x", "y"], ["a", "b"], [0, -1]), "test", "label -1"),
        (ListDataset(["x", "y"], ["a", "b"], [0, 1.0]), "test", "label 1.0"),
        (ListDataset(["x", "y"], ["a", "a"], [0, 1]), "train", "image id 'a' appears more"),
        (ListDataset(["x", "y"], ["a", "b"], [0, 1], length=3), "train", "len.. is 3"),
        (ListDataset(["x", "y"], ["a", "b"], [0]), "train", "2 ids and 1 labels"),
        (ListDataset([], ["a"], [0]), "train", "no classes"),
    ],
)
def test_problems_are_reported(dataset, split, message):
    with pytest.raises(SynergicError, match=message):
        check_dataset(dataset, split=split, name="d")


def test_a_class_may_be_absent_from_the_test_split():
    dataset = ListDataset(["x", "y"], ["a"], [0])
    assert check_dataset(dataset, split="test", name="d") == {"x": 1, "y": 0}


def test_class_count_must_match_the_expected_one():
    dataset = ListDataset(["x", "y"], ["a", "b"], [0, 1])
    check_dataset(dataset, split="test", name="d", num_classes=2)
    with pytest.raises(SynergicError, match="has 2 classes .x, y. but 3 were expected"):
        check_dataset(dataset, split="test", name="d", num_classes=3)


def test_missing_attributes_are_named():
    class NoIds:
        classes = ["x"]
        labels = [0]

        def __len__(self):
            return 1

    with pytest.raises(SynergicError, match="no attribute 'ids'"):
        check_dataset(NoIds(), split="train", name="plugin")
