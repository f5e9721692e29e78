"""Confidence intervals and paired comparisons of classifiers on one test set.

Every statistic here is computed from per-image predictions and labels, so it works on any
model's outputs, not only synergic's:

- :func:`metric_intervals`: a bootstrap 95 % interval for every metric of
  :func:`synergic.metrics.compute_metrics` (the ``test_ci`` and ``test_components_ci`` entries of
  ``metrics.json``);
- :func:`paired_comparison`: the difference of one metric between two models scored on the same
  images, its paired-bootstrap interval and, for AUC of two classes, the DeLong test
  (:func:`delong_test`); ``synergic compare RUN_A RUN_B`` prints it for two runs.

Over several runs (the seeds of a sweep cell, the folds of a cross-validation) the statistics are of
the runs' values instead: :func:`mean_std` (mean and sample standard deviation) and
:func:`t_interval` (Student's t interval of the mean), both in :func:`mean_std_interval`.

The bootstrap resamples the test images **within each class** (a stratified bootstrap, as pROC's
``ci.auc(..., boot.stratified=TRUE)`` and ISIC-style papers do): every resample keeps the test
set's class counts, so AUC and AP are defined in every resample where they are defined on the test
set itself, and no resample has to be dropped. Each resample is scored by the very function that
reports the metric (:func:`~synergic.metrics.compute_metrics`), so an interval is one of exactly
the number next to it.

``docs/metrics.md`` ("Confidence intervals") and ``docs/experiments.md`` ("Is SDL better than the
ensemble on my data?") explain how to read them.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synergic.errors import SynergicError
from synergic.metrics import compute_metrics

__all__ = [
    "CI_LEVEL",
    "CI_METHOD",
    "DEFAULT_N_BOOTSTRAP",
    "DeLongResult",
    "delong_placements",
    "delong_test",
    "format_stat",
    "mean_std",
    "mean_std_interval",
    "metric_intervals",
    "paired_comparison",
    "stratified_bootstrap",
    "t_interval",
]

#: The confidence level of every interval synergic reports.
CI_LEVEL = 0.95

#: How the intervals are computed, as ``metrics.json`` records it (``ci.method``).
#:
#: Percentile rather than BCa: BCa's acceleration comes from a jackknife that leaves out one image
#: at a time, which is undefined for a class with one test image and degenerate when a metric is
#: constant over the resamples (an AUC of 1.0: scipy then warns and returns nan); the percentile
#: interval has neither problem, costs no jackknife (N more metric evaluations per run), and is
#: what pROC's ``ci.auc(method="bootstrap")`` and most ISIC papers report.
CI_METHOD = "percentile, stratified by class"

#: Bootstrap resamples when nothing else is said (``train.n_bootstrap``, ``--n-bootstrap``):
#: enough that the Monte Carlo error of a 95 % percentile bound is about 0.005 for an AUC near
#: 0.8 on 100 test images, a tenth of the interval's half width.
DEFAULT_N_BOOTSTRAP = 1000


def stratified_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    *,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of a statistic of the images, resampling within each class.

    ``scipy.stats.bootstrap`` with one sample per class and ``paired=False`` draws each class's
    images with replacement, independently, keeping the class counts; ``statistic`` is handed the
    drawn image indices. A class with a single image is in every resample as itself (scipy
    cannot resample a sample of one).

    Args:
        statistic: ``indices [N'] int64 -> [M] float``: the statistic of the images at those
            indices (with repeats); ``nan`` where it is undefined.
        labels: ``[N]`` class of each image (any integer coding).
        n_bootstrap: resamples, at least 1.
        level: the confidence level, in ``(0, 1)``.
        seed: seeds ``numpy.random.default_rng``, so the interval is reproducible.

    Returns:
        ``(low [M], high [M])`` float64; ``nan`` for a value whose statistic is ``nan`` on the
        images themselves, and everywhere when no class has two images to resample.

    Raises:
        SynergicError: ``n_bootstrap < 1``, ``level`` outside ``(0, 1)``, or no image.
    """
    from scipy import stats

    if n_bootstrap < 1:
        raise SynergicError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    if not 0.0 < level < 1.0:
        raise SynergicError(f"the confidence level must lie in (0, 1), got {level}")
    labels = np.asarray(labels).ravel()
    if labels.size == 0:
        raise SynergicError("cannot bootstrap zero images: labels are empty")
    observed = np.atleast_1d(np.asarray(statistic(np.arange(labels.size)), dtype=np.float64))
    nan = np.full(observed.shape, math.nan)
    strata = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    varying = tuple(s for s in strata if s.size >= 2)
    fixed = np.concatenate([s for s in strata if s.size < 2] + [np.empty(0, np.int64)])
    if not varying:
        return nan, nan.copy()

    def resampled(*parts: np.ndarray) -> np.ndarray:
        indices = np.concatenate([*(p.astype(np.int64) for p in parts), fixed])
        return np.asarray(statistic(indices), dtype=np.float64)

    with warnings.catch_warnings():
        # scipy warns when a bound is nan; a statistic undefined on the images is nan below.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            varying, resampled, n_resamples=n_bootstrap, paired=False, vectorized=False,
            method="percentile", confidence_level=level, rng=np.random.default_rng(seed),
        )
    low = np.atleast_1d(np.asarray(result.confidence_interval.low, dtype=np.float64))
    high = np.atleast_1d(np.asarray(result.confidence_interval.high, dtype=np.float64))
    undefined = ~np.isfinite(observed)
    low[undefined] = high[undefined] = math.nan
    return low, high


def metric_intervals(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    component_probabilities: Sequence[np.ndarray] = (),
    positive_class: int = 1,
    classes: Sequence[str] | None = None,
    task_classes: Sequence[str] = (),
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap intervals of every metric of a model and of its components, on one test set.

    One stratified resampling of the images (:func:`stratified_bootstrap`) scores the aggregate
    and every component on the same resample with :func:`synergic.metrics.compute_metrics`.

    Args:
        probabilities: ``[N, K]`` class probabilities of the model (the SDL aggregate).
        labels: ``[N]`` true class indices.
        component_probabilities: ``[N, K]`` probabilities of each component, if any.
        positive_class: as :func:`~synergic.metrics.compute_metrics` (two classes).
        classes, task_classes: as :func:`~synergic.metrics.compute_metrics`: with task classes
            the intervals cover ``task_auc`` and each ``auc_<class>`` too.
        n_bootstrap, level, seed: as :func:`stratified_bootstrap`.

    Returns:
        The ``metrics.json`` entries: ``test_ci`` (``{metric: [low, high]}``, the metrics and
        order of :func:`~synergic.metrics.compute_metrics`), ``test_components_ci`` (one such
        dict per component) and ``ci`` (``{"method", "n_bootstrap", "level", "seed"}``).
        An undefined interval is ``[nan, nan]``.

    Raises:
        SynergicError: what :func:`~synergic.metrics.compute_metrics` or
            :func:`stratified_bootstrap` refuse.
    """
    models = [np.asarray(probabilities, dtype=np.float64)]
    models += [np.asarray(p, dtype=np.float64) for p in component_probabilities]
    labels = np.asarray(labels)
    options = {"positive_class": positive_class, "classes": classes, "task_classes": task_classes}
    names = list(compute_metrics(models[0], labels, **options))

    def scores(indices: np.ndarray) -> np.ndarray:
        values = []
        for p in models:  # one compute_metrics call per model and resample: it is the cost
            metrics = compute_metrics(p[indices], labels[indices], **options)
            values.extend(metrics[name] for name in names)
        return np.array(values)

    low, high = stratified_bootstrap(
        scores, labels, n_bootstrap=n_bootstrap, level=level, seed=seed
    )
    per_model = [
        {name: [float(low[m * len(names) + j]), float(high[m * len(names) + j])]
         for j, name in enumerate(names)}
        for m in range(len(models))
    ]
    return {
        "test_ci": per_model[0],
        "test_components_ci": per_model[1:],
        "ci": {"method": CI_METHOD, "n_bootstrap": int(n_bootstrap), "level": float(level),
               "seed": int(seed)},
    }


# -- DeLong's test ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of two correlated AUCs: ``difference = auc_b - auc_a``, its standard error
    ``se``, ``z = difference / se`` and the two-sided ``p_value``."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float


def delong_placements(
    is_positive: np.ndarray, scores: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The AUC and DeLong's placement values of one score, from midranks (Sun & Xu 2014).

    A positive case's placement is the fraction of negatives it outscores, ties counting one
    half (DeLong et al.'s V10); a negative case's is the fraction of positives that outscore it
    (V01). Their means are both the AUC. Computed in O(N log N) from midranks
    (``scipy.stats.rankdata``), as Sun & Xu's algorithm does, not from the N_pos x N_neg pairs.

    Args:
        is_positive: ``[N]`` bool or 0/1, at least one positive and one negative.
        scores: ``[N]`` float, higher = more likely positive.

    Returns:
        ``(auc, positive_placements [N_pos], negative_placements [N_neg])``, each placement in
        ``[0, 1]``, in the order of the cases in the input.

    Raises:
        SynergicError: inputs of different lengths, nan/inf scores, or a class missing.
    """
    is_positive, matrix = _binary_scores(is_positive, [scores])
    auc, v10, v01 = _placements(is_positive, matrix)
    return float(auc[0]), v10[0], v01[0]


def delong_test(
    is_positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray
) -> DeLongResult:
    """DeLong's test for the difference of two AUCs measured on the same cases.

    DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or more correlated receiver
    operating characteristic curves: a nonparametric approach", Biometrics 44(3):837-845, 1988;
    computed with the fast algorithm of Sun & Xu, "Fast implementation of DeLong's algorithm for
    comparing the areas under correlated receiver operating characteristic curves", IEEE Signal
    Processing Letters 21(11):1389-1393, 2014. The covariance of the two AUCs is
    ``S10 / N_pos + S01 / N_neg`` from the covariances (``n - 1`` in the denominator) of the
    placement values (:func:`delong_placements`); ``z`` is the difference over its standard
    error and the p-value two-sided from the normal distribution, as pROC's
    ``roc.test(method="delong", paired=TRUE)`` computes them (the tests check pROC's published
    result on its ``aSAH`` data). Neither scipy nor scikit-learn implements this test.

    Identical scores (zero variance and no difference) give ``z = 0`` and ``p = 1``, as pROC.

    Args:
        is_positive: ``[N]`` bool or 0/1; at least two positives and two negatives.
        scores_a, scores_b: ``[N]`` float scores of the two models for the same cases, in the
            same order.

    Returns:
        A :class:`DeLongResult` with ``difference = auc_b - auc_a``.

    Raises:
        SynergicError: inputs of different lengths, nan/inf scores, or fewer than two cases of
            a class.
    """
    from scipy import stats

    is_positive, matrix = _binary_scores(is_positive, [scores_a, scores_b])
    num_positive = int(is_positive.sum())
    num_negative = is_positive.size - num_positive
    if num_positive < 2 or num_negative < 2:
        raise SynergicError(
            f"DeLong's test needs at least two cases of each class, got {num_positive} positive "
            f"and {num_negative} negative"
        )
    aucs, v10, v01 = _placements(is_positive, matrix)
    covariance = np.cov(v10) / num_positive + np.cov(v01) / num_negative
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    difference = float(aucs[1] - aucs[0])
    if variance <= 0.0:  # no spread in the placements: the normal approximation has nothing
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        return DeLongResult(float(aucs[0]), float(aucs[1]), difference, 0.0, z,
                            1.0 if difference == 0.0 else 0.0)
    se = math.sqrt(variance)
    z = difference / se
    return DeLongResult(float(aucs[0]), float(aucs[1]), difference, se, z,
                        float(2.0 * stats.norm.sf(abs(z))))


def _placements(
    is_positive: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Sun & Xu (2014), Algorithm 1: midranks within the positives (T_x), within the negatives
    # (T_y) and over both (T_z), for each row of `scores` [models, N].
    from scipy.stats import rankdata

    positives = scores[:, is_positive]
    negatives = scores[:, ~is_positive]
    num_positive, num_negative = positives.shape[1], negatives.shape[1]
    if not num_positive or not num_negative:
        raise SynergicError(
            "the AUC needs positive and negative cases, the labels hold one class only"
        )
    within_positive = rankdata(positives, axis=1)
    within_negative = rankdata(negatives, axis=1)
    overall = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    v10 = (overall[:, :num_positive] - within_positive) / num_negative
    v01 = 1.0 - (overall[:, num_positive:] - within_negative) / num_positive
    aucs = v10.mean(axis=1)
    return aucs, v10, v01


def _binary_scores(
    is_positive: np.ndarray, scores: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    from synergic.metrics import as_positive_mask

    is_positive = as_positive_mask(is_positive)
    rows = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    for row in rows:
        if row.size != is_positive.size:
            raise SynergicError(
                f"got {is_positive.size} labels but {row.size} scores: pass one score per label"
            )
    matrix = np.stack(rows)
    if not np.all(np.isfinite(matrix)):
        raise SynergicError("scores contain nan or inf: check the model's outputs")
    return is_positive, matrix


# -- paired comparison --------------------------------------------------------------------------


def paired_comparison(
    probabilities_a: np.ndarray,
    probabilities_b: np.ndarray,
    labels: np.ndarray,
    *,
    metric: str = "auc",
    positive_class: int = 1,
    classes: Sequence[str] | None = None,
    task_classes: Sequence[str] = (),
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare two models scored on the same images: ``B - A`` in one metric, with its
    paired-bootstrap interval and, for AUC of two classes, DeLong's p-value.

    The bootstrap draws the images jointly for both models (one resample, two scores), within
    each class (:func:`stratified_bootstrap`), so the interval reflects how the difference varies
    with the test images while the pairing removes the images' shared difficulty. AUC for more
    than two classes is the macro one-vs-rest AUC that :func:`~synergic.metrics.compute_metrics`
    reports; DeLong's test is defined for two classes only.

    Args:
        probabilities_a, probabilities_b: ``[N, K]`` class probabilities of models A and B for
            the same images, in the same order.
        labels: ``[N]`` true class indices.
        metric: a key of :func:`~synergic.metrics.compute_metrics` for ``K`` classes (and
            ``task_classes``: ``task_auc``, ``auc_<class>``).
        positive_class, classes, task_classes, n_bootstrap, level, seed: as
            :func:`metric_intervals`.

    Returns:
        ``{"metric", "a", "b", "difference", "ci": [low, high], "p_value", "z", "test",
        "note", "method", "n_bootstrap", "level", "seed"}``: ``difference = b - a``;
        ``p_value`` and ``z`` are DeLong's (``test`` = ``"delong"``) for binary AUC, else
        ``None`` with ``note`` saying why (``note`` is ``None`` otherwise).

    Raises:
        SynergicError: probabilities of different shapes, an unknown metric, or inputs that
            :func:`~synergic.metrics.compute_metrics` refuses.
    """
    probabilities_a = np.asarray(probabilities_a, dtype=np.float64)
    probabilities_b = np.asarray(probabilities_b, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities_a.shape != probabilities_b.shape:
        raise SynergicError(
            f"the two models' probabilities differ in shape, {probabilities_a.shape} and "
            f"{probabilities_b.shape}: score both on the same images and classes"
        )
    options = {"positive_class": positive_class, "classes": classes, "task_classes": task_classes}
    metrics_a = compute_metrics(probabilities_a, labels, **options)
    if metric not in metrics_a:
        raise SynergicError(
            f"unknown metric '{metric}' for {probabilities_a.shape[1]} classes: choose one of "
            f"{', '.join(metrics_a)}"
        )
    metrics_b = compute_metrics(probabilities_b, labels, **options)

    def difference(indices: np.ndarray) -> np.ndarray:
        a = compute_metrics(probabilities_a[indices], labels[indices], **options)[metric]
        b = compute_metrics(probabilities_b[indices], labels[indices], **options)[metric]
        return np.array([b - a])

    low, high = stratified_bootstrap(
        difference, labels, n_bootstrap=n_bootstrap, level=level, seed=seed
    )
    p_value: float | None = None
    z: float | None = None
    test: str | None = None
    note: str | None = None
    if metric != "auc":
        note = "DeLong's test compares AUCs only: the interval is the evidence"
    elif probabilities_a.shape[1] != 2:
        note = (f"DeLong's test is for two classes; with {probabilities_a.shape[1]} the AUC is "
                "the macro one-vs-rest mean and only the interval is given")
    else:
        is_positive = labels == positive_class
        positives = int(is_positive.sum())
        if min(positives, is_positive.size - positives) < 2:
            note = "DeLong's test needs at least two test images of each class"
        else:
            result = delong_test(is_positive, probabilities_a[:, positive_class],
                                 probabilities_b[:, positive_class])
            p_value, z, test = result.p_value, result.z, "delong"
    return {
        "metric": metric,
        "a": metrics_a[metric],
        "b": metrics_b[metric],
        "difference": metrics_b[metric] - metrics_a[metric],
        "ci": [float(low[0]), float(high[0])],
        "p_value": p_value,
        "z": z,
        "test": test,
        "note": note,
        "method": CI_METHOD,
        "n_bootstrap": int(n_bootstrap),
        "level": float(level),
        "seed": int(seed),
    }


# -- over runs: seeds of a sweep cell, folds of a cross-validation ------------------------------


def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` over the finite values (NaN is stored as null in
    metrics.json). ``std`` is the sample standard deviation (n - 1), null for fewer than two."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return {
        "mean": statistics.fmean(kept) if kept else None,
        "std": statistics.stdev(kept) if len(kept) > 1 else None,
        "n": len(kept),
        "values": [None if v is None else float(v) for v in values],
    }


def t_interval(values: Sequence[float], confidence: float = CI_LEVEL) -> list[float] | None:
    """``[lo, hi]``: Student's t interval for the mean of ``values``, ``mean ± t(1 - (1 -
    confidence) / 2, n - 1) · s / √n`` with the sample standard deviation ``s``
    (``scipy.stats.t``). None for fewer than two values; ``[mean, mean]`` when they are equal.

    Over cross-validation folds it is optimistic: folds share training images, so their results
    are not independent (Bengio & Grandvalet, JMLR 2004) and the true spread is wider.
    """
    from scipy import stats

    kept = np.asarray([float(v) for v in values], dtype=np.float64)
    if kept.size < 2:
        return None
    mean = float(kept.mean())
    scale = float(kept.std(ddof=1)) / math.sqrt(kept.size)
    if scale == 0.0:
        return [mean, mean]
    low, high = stats.t.interval(confidence, kept.size - 1, loc=mean, scale=scale)
    return [float(low), float(high)]


def mean_std_interval(
    values: Sequence[float | None], confidence: float = CI_LEVEL
) -> dict[str, Any]:
    """:func:`mean_std` plus ``ci``: the :func:`t_interval` of the finite values, clipped to
    ``[0, 1]`` (every metric synergic reports lies there; a t-interval does not know that);
    null for fewer than two finite values."""
    stat = mean_std(values)
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    interval = t_interval(finite, confidence)
    stat["ci"] = [max(0.0, interval[0]), min(1.0, interval[1])] if interval else None
    return stat


def format_stat(stat: Mapping[str, Any] | None, digits: int = 4) -> str:
    """``0.6536 ± 0.0123`` (or just the mean for one value, ``n/a`` for none), from a
    :func:`mean_std` dict."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = f"{stat['mean']:.{digits}f}"
    if stat.get("std") is not None:
        text += f" ± {stat['std']:.{digits}f}"
    return text
