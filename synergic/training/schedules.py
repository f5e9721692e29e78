"""Learning-rate schedules as multipliers of the initial rate, ``factor(step)``.

The paper's (§3.4): eta(t) = eta(0) / (1 + gamma * t), gamma = 1e-4.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def inverse_time_lr(gamma: float = 1e-4) -> Callable[[int], float]:
    """eta(t) / eta(0) = 1 / (1 + gamma * t)."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return lambda step: 1.0 / (1.0 + gamma * step)


def constant_lr() -> Callable[[int], float]:
    return lambda step: 1.0


def cosine_lr(total_steps: int) -> Callable[[int], float]:
    """Half a cosine from 1 to 0 over ``total_steps``."""
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


def with_warmup(factor: Callable[[int], float], warmup: int) -> Callable[[int], float]:
    """Linear warm-up over the first ``warmup`` steps, then ``factor``."""
    if warmup <= 0:
        return factor
    return lambda step: factor(step) * min(1.0, (step + 1) / warmup)


def make_schedule(name: str, *, gamma: float = 1e-4, warmup: int = 0, total_steps: int = 1):
    if name == "inverse_time":
        factor = inverse_time_lr(gamma)
    elif name == "constant":
        factor = constant_lr()
    elif name == "cosine":
        factor = cosine_lr(total_steps)
    else:
        raise ValueError(f"unknown learning-rate schedule {name!r}: inverse_time, constant, cosine")
    return with_warmup(factor, warmup)
