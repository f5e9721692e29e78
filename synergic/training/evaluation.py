"""Test-time prediction and scoring: each component classifies every image, an aggregator
combines them (eq. 6), and the metrics are computed for the aggregate and each component."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from synergic.aggregators import sum_softmax
from synergic.data.preprocess import normalize
from synergic.training import distributed


@dataclass
class Evaluation:
    probabilities: torch.Tensor  # aggregate, [N, K]
    component_probabilities: list[torch.Tensor]  # softmax of each component, [N, K]
    labels: torch.Tensor  # [N]
    metrics: dict[str, float] = field(default_factory=dict)
    component_metrics: list[dict[str, float]] = field(default_factory=list)


def _components_of(model: nn.Module) -> nn.ModuleList:
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model.components


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    tta: str = "none",
) -> list[torch.Tensor]:
    """Each component's logits ``[N, K]`` (float32, on the CPU) for uint8 images ``[N, 3, H, W]``
    (read ``batch_size`` at a time, so a memory-mapped tensor or an
    :class:`~synergic.data.cache.ImageRows` view is never copied whole), normalised with ``mean``/``std`` by :func:`synergic.data.preprocess.normalize` (a run's are in
    its checkpoint: ``Preprocessing.from_dict(state["metadata"]["preprocessing"])``).

    ``tta``: test-time augmentation, ``none``, ``flips`` or ``d4`` (:mod:`synergic.tta`); with
    views, each component's logits are ``log`` of its softmax averaged over the views
    (:func:`synergic.tta.view_averaged_logits`), so the aggregator averages views before it
    combines components.

    Raises:
        SynergicError: an unknown ``tta``, or ``d4`` on images that are not square."""
    from synergic.tta import check_tta, view_averaged_logits

    check_tta(tta, images.shape)
    device = torch.device(device)
    components = _components_of(model)
    was_training = components.training
    components.eval()
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    outputs: list[list[torch.Tensor]] = [[] for _ in components]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    # Under torch.distributed each rank predicts a contiguous shard, gathered in rank order
    # below: every image once, none padded or duplicated.
    info = distributed.current()
    first, last = info.shard(len(images))
    try:
        for start in range(first, last, batch_size):
            batch = images[start : min(start + batch_size, last)].to(device, non_blocking=True)
            batch = normalize(batch, mean_t, std_t)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                for k, component in enumerate(components):

                    def classify(x: torch.Tensor, component=component) -> torch.Tensor:
                        if channels_last:  # also for flipped and rotated views
                            x = x.contiguous(memory_format=torch.channels_last)
                        return component(x).logits

                    # Kept on the device until the end: a .cpu() per batch would wait for the GPU.
                    outputs[k].append(view_averaged_logits(classify, batch, tta))
    finally:
        components.train(was_training)
    logits = [torch.cat(chunks).cpu() if chunks else torch.empty(0) for chunks in outputs]
    if info.enabled:
        shards = distributed.all_gather_objects(logits)
        logits = [torch.cat([shard[k] for shard in shards if shard[k].numel()]) for k in range(len(logits))]
    return logits


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    aggregator: Callable[[list[torch.Tensor]], torch.Tensor] = sum_softmax,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    scorer: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None,
    tta: str = "none",
) -> Evaluation:
    """Predict ``images`` with every component, aggregate, and score against ``labels``.

    ``tta``: test-time augmentation (``none``, ``flips``, ``d4``; see :func:`predict`): the
    components' probabilities are averaged over the views before the aggregator sums them.

    ``scorer(probabilities [N, K] float64, labels [N] int64)`` gives the metrics; default
    :func:`synergic.metrics.compute_metrics` (a data set with task classes passes
    ``functools.partial(compute_metrics, classes=..., task_classes=...)``)."""
    from synergic.metrics import compute_metrics

    scorer = scorer or compute_metrics

    logits = predict(
        model, images, mean=mean, std=std, batch_size=batch_size, device=device,
        precision=precision, channels_last=channels_last, tta=tta,
    )
    labels = torch.as_tensor(labels, dtype=torch.long)
    aggregate = aggregator(logits)
    component_probabilities = [x.softmax(dim=-1) for x in logits]
    y = labels.numpy()
    return Evaluation(
        probabilities=aggregate,
        component_probabilities=component_probabilities,
        labels=labels,
        metrics=scorer(aggregate.double().numpy(), y),
        component_metrics=[scorer(p.double().numpy(), y) for p in component_probabilities],
    )
