"""synthetic_lesions: determinism, splits, labels, and a task that is learnable but not trivial."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from synergic.data import NoSuchSplit
from synergic.data.datasets.synthetic import SyntheticLesions, synthetic_lesions
from synergic.errors import SynergicError


def _stack(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_items_are_uint8_chw_with_ids_labels_and_classes():
    data = synthetic_lesions(split="train", num_train=12, image_size=32)
    image, label = data[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert label == data.labels[3] and label in (0, 1)
    assert data.classes == ["benign", "malignant"]
    assert len(data) == len(data.ids) == len(data.labels) == 12
    assert data.ids[12 - 1] == "synthetic_train_00011"
    assert len(set(data.ids)) == 12
    assert torch.equal(data[-1][0], data[11][0])
    with pytest.raises(IndexError):
        data[12]


def test_same_arguments_give_the_same_pixels_in_any_access_order():
    first = synthetic_lesions(split="test", num_test=6, image_size=32, seed=3)
    second = synthetic_lesions(split="test", num_test=6, image_size=32, seed=3)
    backwards = [second[i][0] for i in reversed(range(6))][::-1]
    assert all(torch.equal(first[i][0], backwards[i]) for i in range(6))
    assert first.labels == second.labels


def test_pixels_are_pinned_so_generator_changes_are_noticed():
    # Any change to the drawing code (or to numpy's random streams) changes these digests; if the
    # change is intended, update them and say so in the changelog: old seeds give other images.
    data = SyntheticLesions(split="train", num_images=3, image_size=16, seed=0)
    digests = [hashlib.sha256(data[i][0].numpy().tobytes()).hexdigest()[:16] for i in range(3)]
    assert digests == PINNED_DIGESTS


PINNED_DIGESTS = ["876486519f07715e", "60dafbe418db4880", "84005443f7cd19aa"]


def test_splits_and_seeds_give_different_images():
    def images(split: str, seed: int) -> torch.Tensor:
        return _stack(SyntheticLesions(split=split, num_images=4, image_size=24, seed=seed))

    train, test, val, reseeded = (
        images("train", 0),
        images("test", 0),
        images("val", 0),
        images("train", 1),
    )
    for other in (test, val, reseeded):
        for a in train:
            assert all(not torch.equal(a, b) for b in other)


def test_an_images_label_and_pixels_do_not_depend_on_the_split_size():
    small = SyntheticLesions(split="train", num_images=10, image_size=24)
    large = SyntheticLesions(split="train", num_images=50, image_size=24)
    assert large.labels[:10] == small.labels
    assert torch.equal(large[7][0], small[7][0])


@pytest.mark.parametrize("count", [4, 10, 37, 200])
def test_every_split_size_holds_the_malignant_fraction_to_one_image(count):
    data = SyntheticLesions(split="test", num_images=count, malignant_fraction=0.3)
    assert abs(sum(data.labels) - 0.3 * count) <= 1
    assert set(data.labels) == {0, 1}


def test_an_empty_split_does_not_exist():
    with pytest.raises(NoSuchSplit, match="num_val"):
        synthetic_lesions(split="val")
    assert len(synthetic_lesions(split="val", num_val=5)) == 5
    with pytest.raises(NoSuchSplit, match="num_test"):
        synthetic_lesions(split="test", num_test=0)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"split": "tarin"}, "did you mean 'train'"),
        ({"split": "train", "num_train": -1}, "num_train"),
        ({"split": "train", "image_size": 4}, "image_size"),
        ({"split": "train", "seed": -2}, "seed"),
        ({"split": "train", "malignant_fraction": 1.5}, "malignant_fraction"),
    ],
)
def test_invalid_options_are_one_line_errors(arguments, message):
    with pytest.raises(SynergicError, match=message) as caught:
        synthetic_lesions(**arguments)
    assert "\n" not in str(caught.value)


def test_root_is_accepted_and_ignored(tmp_path):
    with_root = synthetic_lesions(root=str(tmp_path), split="train", num_train=2, image_size=16)
    without = synthetic_lesions(split="train", num_train=2, image_size=16)
    assert torch.equal(with_root[1][0], without[1][0])
    assert list(tmp_path.iterdir()) == []


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    wins = (positive[:, None] > negative[None]).sum() + 0.5 * (
        positive[:, None] == negative[None]
    ).sum()
    return float(wins / (positive.size * negative.size))


def _crude_features(data: SyntheticLesions) -> np.ndarray:
    images = _stack(data).float() / 255
    luminance = images.mean(1)
    median = luminance.flatten(1).median(1).values[:, None, None]
    columns = [
        (luminance < median - 0.15).float().mean((1, 2)),  # dark area: size and darkness
        images.std(1).mean((1, 2)),  # colourfulness
        (images[:, 2] - images[:, 0]).mean((1, 2)),  # blue-grey against red
        luminance.flatten(1).std(1),  # contrast
    ]
    return torch.stack(columns, 1).double().numpy()


def test_classes_are_learnable_but_overlap():
    # Four crude whole-image statistics and a least-squares linear score: far better than chance,
    # far from perfect. (A small CNN reaches a test AUC of about 0.8; the latent atypia's own
    # AUC, the ceiling for any model, is about 0.92.)
    train = SyntheticLesions(split="train", num_images=200, image_size=32)
    test = SyntheticLesions(split="test", num_images=200, image_size=32)
    train_x, test_x = _crude_features(train), _crude_features(test)
    mean, std = train_x.mean(0), train_x.std(0)
    design = np.c_[(train_x - mean) / std, np.ones(len(train_x))]
    weights, *_ = np.linalg.lstsq(design, np.array(train.labels, dtype=np.float64), rcond=None)
    scores = np.c_[(test_x - mean) / std, np.ones(len(test_x))] @ weights
    assert 0.65 < _auc(np.array(test.labels), scores) < 0.95


def test_malignant_lesions_are_larger_and_darker_on_average_but_not_always():
    data = SyntheticLesions(split="train", num_images=120, image_size=32)
    dark_area = torch.from_numpy(_crude_features(data)[:, 0])
    labels = torch.tensor(data.labels).bool()
    benign, malignant = dark_area[~labels], dark_area[labels]
    assert malignant.mean() > benign.mean()
    # Overlap both ways: some benign lesions are larger than the median melanoma and vice versa.
    assert (benign > malignant.median()).any()
    assert (malignant < benign.median()).any()
