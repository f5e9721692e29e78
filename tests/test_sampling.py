from __future__ import annotations

import itertools

import pytest
import torch

from synergic.sampling import BalancedPairSampler, RandomPairSampler, intra_class_fraction

ISIC_LIKE = [0] * 727 + [1] * 173  # ISIC 2016's training set: 727 benign, 173 malignant


@pytest.mark.parametrize(
    "labels",
    [ISIC_LIKE, [0] * 40 + [1] * 1, [0] * 5 + [1] * 30 + [2] * 1 + [3] * 12],
    ids=["isic-727-173", "one-image-class", "four-classes"],
)
@pytest.mark.parametrize("batch_size", [32, 20])
def test_every_balanced_batch_is_45_to_55_percent_intra_class(labels, batch_size):
    sampler = BalancedPairSampler(labels, num_streams=2, batch_size=batch_size, seed=3)
    for step in range(100):
        indices = sampler.sample(step)
        assert indices.shape == (2, batch_size)
        assert 0.45 <= intra_class_fraction(sampler.labels, indices) <= 0.55


@pytest.mark.parametrize("num_streams", [3, 4])
@pytest.mark.parametrize("labels", [ISIC_LIKE, [0] * 9 + [1] * 7 + [2] * 1])
def test_every_pair_of_streams_is_balanced_for_sdl_n(num_streams, labels):
    sampler = BalancedPairSampler(labels, num_streams=num_streams, batch_size=32, seed=0)
    for step in range(30):
        indices = sampler.sample(step)
        for i, j in itertools.combinations(range(num_streams), 2):
            assert 0.45 <= intra_class_fraction(sampler.labels, indices, i, j) <= 0.55


def test_balanced_pairs_are_random_not_fixed():
    sampler = BalancedPairSampler(ISIC_LIKE, batch_size=32, seed=0)
    batches = [sampler.sample(step) for step in range(50)]
    used = torch.cat([b.flatten() for b in batches]).unique()
    assert len(used) > 600  # most of the 900 images appear within 50 steps
    malignant = sum((sampler.labels[b] == 1).float().mean().item() for b in batches) / 50
    # Intra-class pairs follow the natural class mix, inter-class pairs hold one of each.
    expected = 0.5 * (173 / 900) + 0.5 * 0.5
    assert abs(malignant - expected) < 0.05


@pytest.mark.parametrize("num_streams", [2, 3])
def test_every_component_sees_the_same_class_mix(num_streams):
    sampler = BalancedPairSampler(ISIC_LIKE, num_streams=num_streams, batch_size=32, seed=0)
    batches = torch.stack([sampler.sample(step) for step in range(200)])  # [steps, n, M]
    malignant = (sampler.labels[batches] == 1).float().mean(dim=(0, 2))
    assert malignant.max() - malignant.min() < 0.03, malignant


def test_same_seed_same_pairs_and_steps_are_independent_of_history():
    a = BalancedPairSampler(ISIC_LIKE, batch_size=32, seed=7)
    b = BalancedPairSampler(ISIC_LIKE, batch_size=32, seed=7)
    for step in [0, 1, 99, 5000]:
        assert torch.equal(a.sample(step), b.sample(step))
    assert torch.equal(a.sample(12), a.sample(12))  # no hidden state: resumable at any step
    assert not torch.equal(a.sample(0), a.sample(1))
    c = BalancedPairSampler(ISIC_LIKE, batch_size=32, seed=8)
    assert not torch.equal(a.sample(0), c.sample(0))


def test_sampling_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    BalancedPairSampler(ISIC_LIKE, seed=1).sample(0)
    RandomPairSampler(ISIC_LIKE, seed=1).sample(0)
    assert torch.equal(before, torch.get_rng_state())


def test_random_sampler_keeps_the_natural_class_mix():
    sampler = RandomPairSampler(ISIC_LIKE, num_streams=2, batch_size=256, seed=0)
    fractions = [intra_class_fraction(sampler.labels, sampler.sample(s)) for s in range(20)]
    natural = (727 / 900) ** 2 + (173 / 900) ** 2  # about 0.69
    assert abs(sum(fractions) / 20 - natural) < 0.03


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_streams": 0}, "num_streams"),
        ({"batch_size": 0}, "batch_size"),
        ({"intra_class_fraction": 1.5}, "intra_class_fraction"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BalancedPairSampler(ISIC_LIKE, **kwargs)


def test_single_class_cannot_be_balanced():
    with pytest.raises(ValueError, match="two classes"):
        BalancedPairSampler([0, 0, 0])
