"""Pair samplers (§3.1, §3.3): which training images each component sees at each step.

A sampler's ``sample(step)`` returns a ``LongTensor[num_streams, batch_size]`` of data-set
indices: row k is the image stream of component k, and column b is the b-th tuple of images
(x_i, x_j, ...) whose pairwise synergic labels the heads learn. Every random number comes from a
``torch.Generator`` seeded from ``(seed, step)``: the same seed gives the same pairs on every
machine and every rank, and a resumed run continues the same sequence with no sampler state.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import torch

_SEED_STRIDE = 1_000_003  # a prime, so (seed, step) pairs do not collide for realistic steps


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator seeded deterministically from (seed, step, stream)."""
    generator = torch.Generator()
    generator.manual_seed((seed * _SEED_STRIDE + step) * 16 + stream & 0x7FFF_FFFF_FFFF_FFFF)
    return generator


class PairSampler:
    """Base class: holds the labels and the class -> indices table, checks the arguments."""

    def __init__(
        self, labels: Sequence[int], *, num_streams: int = 2, batch_size: int = 32, seed: int = 0
    ) -> None:
        if num_streams < 1:
            raise ValueError(f"num_streams must be >= 1, got {num_streams}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        labels = [int(label) for label in labels]
        if not labels:
            raise ValueError("labels is empty: the training set has no images")
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.num_streams = num_streams
        self.batch_size = batch_size
        self.seed = int(seed)
        num_classes = max(labels) + 1
        self.class_indices = [
            torch.nonzero(self.labels == c).flatten().tolist() for c in range(num_classes)
        ]
        self.class_counts = [len(ix) for ix in self.class_indices]

    def generator(self, step: int) -> torch.Generator:
        return step_generator(self.seed, step)

    def sample(self, step: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self.labels)}, num_streams={self.num_streams}, "
            f"batch_size={self.batch_size}, seed={self.seed})"
        )


class RandomPairSampler(PairSampler):
    """Every stream draws images uniformly at random: pairs keep the natural class mix."""

    def sample(self, step: int) -> torch.Tensor:
        g = self.generator(step)
        return torch.randint(len(self.labels), (self.num_streams, self.batch_size), generator=g)


@lru_cache(maxsize=64)
def _partitions(num_streams: int, max_blocks: int) -> tuple[tuple[int, ...], ...]:
    """Set partitions of the streams in canonical form (block ids in order of first use)."""
    result = []
    for assignment in itertools.product(range(num_streams), repeat=num_streams):
        canonical = all(
            assignment[k] <= max(assignment[:k], default=-1) + 1 for k in range(num_streams)
        )
        if canonical and max(assignment) < max_blocks:
            result.append(assignment)
    return tuple(result)


class BalancedPairSampler(PairSampler):
    """The paper's sampler: random pairs with about half of them intra-class in every batch.

    For each tuple of the batch it first decides which streams share a class (for two streams:
    same or different; for n streams: a partition of the streams), keeping the intra-class
    fraction of every pair of streams as close to ``intra_class_fraction`` as the batch size
    allows (exactly half for an even batch and two streams). It then gives each group a distinct
    class, the first drawn with the natural class frequencies of the training set and the others
    in proportion to their frequencies among the remaining classes, and draws each image
    uniformly within its class. The groups receive those classes in random order, so every
    component sees the same class mix. A class with a single image can form an intra-class pair
    with itself (the two components still see different augmentations).
    """

    def __init__(
        self,
        labels: Sequence[int],
        *,
        num_streams: int = 2,
        batch_size: int = 32,
        seed: int = 0,
        intra_class_fraction: float = 0.5,
    ) -> None:
        super().__init__(labels, num_streams=num_streams, batch_size=batch_size, seed=seed)
        if not 0.0 <= intra_class_fraction <= 1.0:
            raise ValueError(f"intra_class_fraction must be in [0, 1], got {intra_class_fraction}")
        present = [c for c, n in enumerate(self.class_counts) if n > 0]
        if len(present) < 2 and num_streams > 1 and intra_class_fraction < 1.0:
            raise ValueError("the balanced sampler needs images of at least two classes")
        self.intra_class_fraction = intra_class_fraction
        self._present = present
        self._partitions = _partitions(num_streams, len(present))
        self._pairs = list(itertools.combinations(range(num_streams), 2))

    def _choose_partitions(self, uniforms: list[float]) -> list[tuple[int, ...]]:
        same_counts = dict.fromkeys(self._pairs, 0)
        chosen = []
        for row, u in enumerate(uniforms):
            target = self.intra_class_fraction * (row + 1)
            scores = []
            for partition in self._partitions:
                score = sum(
                    (same_counts[(i, j)] + (partition[i] == partition[j]) - target) ** 2
                    for i, j in self._pairs
                )
                scores.append(score)
            best = min(scores)
            candidates = [p for p, s in zip(self._partitions, scores) if s <= best + 1e-9]
            partition = candidates[min(int(u * len(candidates)), len(candidates) - 1)]
            for i, j in self._pairs:
                same_counts[(i, j)] += partition[i] == partition[j]
            chosen.append(partition)
        return chosen

    def sample(self, step: int) -> torch.Tensor:
        g = self.generator(step)
        n, m = self.num_streams, self.batch_size
        uniforms = torch.rand(m, 1 + 3 * n, generator=g, dtype=torch.float64).tolist()
        partitions = self._choose_partitions([u[0] for u in uniforms])
        order = torch.randperm(m, generator=g).tolist()
        indices = torch.empty(n, m, dtype=torch.long)
        for column, (partition, u) in enumerate(zip((partitions[k] for k in order), uniforms)):
            drawn: list[int] = []
            for block in range(max(partition) + 1):
                drawn.append(self._draw_class(u[1 + block], exclude=drawn))
            # The first class is drawn with the natural frequencies, the others from the rest:
            # hand them to the groups in random order, so every component sees the same class mix.
            order = sorted(range(len(drawn)), key=lambda b: u[1 + 2 * n + b])
            block_classes = [drawn[b] for b in order]
            for stream in range(n):
                members = self.class_indices[block_classes[partition[stream]]]
                pick = min(int(u[1 + n + stream] * len(members)), len(members) - 1)
                indices[stream, column] = members[pick]
        return indices

    def _draw_class(self, u: float, exclude: list[int]) -> int:
        candidates = [c for c in self._present if c not in exclude]
        total = sum(self.class_counts[c] for c in candidates)
        threshold = u * total
        for c in candidates:
            threshold -= self.class_counts[c]
            if threshold < 0:
                return c
        return candidates[-1]


def intra_class_fraction(labels: torch.Tensor, indices: torch.Tensor, i: int = 0, j: int = 1) -> float:
    """The fraction of columns of ``indices`` whose streams i and j share a class."""
    return (labels[indices[i]] == labels[indices[j]]).float().mean().item()
