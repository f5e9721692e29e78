"""Evaluation metrics for classifiers that output class probabilities.

For two classes the definitions are those of the ISIC Challenge's official scorer
(``isic-challenge-scoring``): a case counts as positive when its positive-class probability is
*strictly* above 0.5, and average precision is scikit-learn's ``average_precision_score``. Next to
it, ``ap_trapezoid`` is the area under the precision-recall curve by the trapezoid rule, which is
what ``average_precision_score`` returned before scikit-learn 0.19, and so what the ISIC 2016
leaderboard (the numbers the SDL paper compares against) was computed with. ``docs/metrics.md``
explains both and how they map onto the scorer's names.

Next to the metrics at the fixed ISIC rule, for two classes: thresholds chosen on one set and
applied to another (Youden's J, a target sensitivity), specificity at the sensitivities the
ISIC 2017 scorer reports, calibration (Brier score, expected calibration error) and a prior
correction of the probabilities for the class mix the model was trained on
(:func:`threshold_and_calibration`; ``docs/metrics.md``, "Thresholds and calibration").

Everything here takes numpy arrays and returns plain Python floats, so the results can go straight
into JSON (``nan`` marks a metric that is undefined for the data, see :func:`compute_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from synergic.errors import SynergicError, did_you_mean

__all__ = [
    "CALIBRATION_BINS",
    "CLASS_AUC_PREFIX",
    "DEFAULT_PRIMARY_METRIC",
    "ISIC2017_SENSITIVITIES",
    "ISIC_THRESHOLD",
    "METRIC_NAMES_BINARY",
    "METRIC_NAMES_MULTICLASS",
    "TASK_AUC",
    "average_precision_trapezoid",
    "calibration_metrics",
    "compute_metrics",
    "expected_calibration_error",
    "is_metric_name",
    "metric_names",
    "prior_corrected",
    "primary_metric",
    "rates_at_threshold",
    "specificity_at_sensitivity",
    "threshold_and_calibration",
    "threshold_at_sensitivity",
    "youden_threshold",
]

#: A case is predicted positive iff its positive-class probability is strictly greater than this,
#: as in the ISIC scorer (``prediction.gt(0.5)``): a probability of exactly 0.5 is negative.
ISIC_THRESHOLD = 0.5

#: The keys of :func:`compute_metrics` for two classes, in reporting order.
METRIC_NAMES_BINARY: tuple[str, ...] = (
    "ap",
    "ap_trapezoid",
    "auc",
    "accuracy",
    "sensitivity",
    "specificity",
)

#: The keys of :func:`compute_metrics` for more than two classes, in reporting order.
METRIC_NAMES_MULTICLASS: tuple[str, ...] = ("ap", "auc", "accuracy", "balanced_accuracy")

# Rows of a softmax in float32 sum to 1 within ~1e-6; anything further off is not probabilities.
_ROW_SUM_TOLERANCE = 1e-4


#: The primary metric of a data set that names none: average precision, the ranking metric of
#: the ISIC 2016 challenge and the headline number of the SDL paper (for more than two classes,
#: the macro average over classes).
DEFAULT_PRIMARY_METRIC = "ap"

#: The key of the mean one-vs-rest ROC AUC over a data set's ``task_classes``: the ranking score
#: of ISIC 2017 Part 3 (the mean of the melanoma and the seborrheic keratosis AUCs).
TASK_AUC = "task_auc"

#: ``auc_<class>``: the one-vs-rest ROC AUC of one of the ``task_classes``.
CLASS_AUC_PREFIX = "auc_"


def metric_names(num_classes: int, task_classes: Sequence[str] = ()) -> tuple[str, ...]:
    """The keys :func:`compute_metrics` returns for ``num_classes`` classes and these
    ``task_classes``, in its order.

    Raises:
        SynergicError: ``num_classes`` below 2.
    """
    if num_classes < 2:
        raise SynergicError(f"num_classes must be at least 2, got {num_classes}")
    names = METRIC_NAMES_BINARY if num_classes == 2 else METRIC_NAMES_MULTICLASS
    if task_classes:
        names += (TASK_AUC, *(CLASS_AUC_PREFIX + name for name in task_classes))
    return names


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a key :func:`compute_metrics` can return for some data set: one of
    :data:`METRIC_NAMES_BINARY`, :data:`METRIC_NAMES_MULTICLASS`, :data:`TASK_AUC`, or
    ``auc_<class>``."""
    return (
        name in METRIC_NAMES_BINARY
        or name in METRIC_NAMES_MULTICLASS
        or name == TASK_AUC
        or (name.startswith(CLASS_AUC_PREFIX) and len(name) > len(CLASS_AUC_PREFIX))
    )


def primary_metric(
    num_classes: int,
    name: str | None = None,
    *,
    task_classes: Sequence[str] = (),
    dataset: str = "the data set",
) -> str:
    """The metric that selects the best checkpoint and ranks runs: ``name`` (a data set's
    ``primary_metric`` attribute, :data:`synergic.data.datasets.base.PRIMARY_METRIC_ATTRIBUTE`),
    checked to be a key :func:`compute_metrics` returns for ``num_classes`` classes and
    ``task_classes``; :data:`DEFAULT_PRIMARY_METRIC` (``"ap"``) when ``name`` is None.

    The built-in data sets name their challenge's ranking metric: isic2016 ``ap``, isic2017
    ``task_auc``, isic2018 and isic2019 ``balanced_accuracy``, isic2020 ``auc``.

    Raises:
        SynergicError: ``num_classes`` below 2, or a ``name`` that is not such a key (one line
            naming ``dataset`` and the valid names).
    """
    names = metric_names(num_classes, task_classes)
    if name is None:
        return DEFAULT_PRIMARY_METRIC
    if name not in names:
        hint = did_you_mean(name, names) if isinstance(name, str) else ""
        raise SynergicError(
            f"data set '{dataset}': its primary_metric {name!r} is not a metric synergic reports "
            f"for {num_classes} classes{hint}; use one of {', '.join(names)}"
        )
    return name


def average_precision_trapezoid(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve by the trapezoid rule (scikit-learn < 0.19 "AP").

    Linear interpolation between operating points: for scores that are all equal it gives
    ``(1 + prevalence) / 2`` where the step-wise AP gives ``prevalence``. ``nan`` when
    ``is_positive`` has no positive or no negative case.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return math.nan
    precision, recall, _ = skm.precision_recall_curve(is_positive, np.asarray(scores))
    return float(skm.auc(recall, precision))


def compute_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    positive_class: int = 1,
    classes: Sequence[str] | None = None,
    task_classes: Sequence[str] = (),
) -> dict[str, float]:
    """Score class probabilities against integer labels.

    Args:
        probabilities: ``[N, K]`` class probabilities, each row summing to 1.
        labels: ``[N]`` true class indices in ``0..K-1``.
        positive_class: for ``K == 2``, the class that counts as positive (malignant in ISIC
            2016); ignored for ``K > 2``.
        classes: the ``K`` class names, in column order; needed only with ``task_classes``.
        task_classes: names (in ``classes``) of the classes scored one-vs-rest, as the
            challenge's binary tasks: ISIC 2017 Part 3's ``("melanoma",
            "seborrheic_keratosis")``.

    Returns:
        For ``K == 2`` the keys of :data:`METRIC_NAMES_BINARY`:

        - ``ap``: ``average_precision_score`` on the positive column (the ISIC scorer's ``ap``);
        - ``ap_trapezoid``: :func:`average_precision_trapezoid` (the pre-0.19 definition);
        - ``auc``: ROC AUC;
        - ``accuracy``, ``sensitivity`` (recall of the positive class) and ``specificity``
          (recall of the negative class), predicting positive iff the positive probability is
          strictly greater than :data:`ISIC_THRESHOLD`.

        For ``K > 2`` the keys of :data:`METRIC_NAMES_MULTICLASS`: ``accuracy`` of the argmax,
        ``balanced_accuracy`` (the mean recall over the classes present in ``labels``: the ISIC
        scorer's balanced multiclass accuracy, ranking metric of ISIC 2018 and 2019), ``auc``
        (macro one-vs-rest) and ``ap`` (macro mean of per-class AP). A row whose highest
        probability is shared by several classes predicts none of them (the scorer's
        "undecided"): it counts as wrong in ``accuracy`` and ``balanced_accuracy``.

        With ``task_classes``, then: ``task_auc`` (:data:`TASK_AUC`), the mean of the
        one-vs-rest ROC AUCs of those classes (``roc_auc_score(labels == k, p[:, k])``), and
        ``auc_<class>`` for each, in the order given.

        A metric that the labels leave undefined is ``nan``, without a warning: for ``K == 2``,
        ``ap``, ``ap_trapezoid`` and ``auc`` when only one class is present, ``sensitivity`` when
        no case is positive, ``specificity`` when none is negative (the ISIC scorer returns 1.0
        for those two); for ``K > 2``, ``auc`` and ``ap`` when some class is absent from
        ``labels``; ``auc_<class>`` when every label is, or none is, that class, and
        ``task_auc`` when one of its terms is ``nan``.

    Raises:
        SynergicError: inputs that are not ``[N, K]`` probabilities and ``[N]`` labels in
            ``0..K-1``; ``task_classes`` without ``classes``, or naming a class not in them.
    """
    probabilities, labels = _validated(probabilities, labels)
    num_classes = probabilities.shape[1]
    tasks = _task_columns(classes, task_classes, num_classes)
    if num_classes == 2:
        if positive_class not in (0, 1):
            raise SynergicError(
                f"positive_class must be 0 or 1 for two classes, got {positive_class}"
            )
        result = _binary_metrics(probabilities[:, positive_class], labels == positive_class)
    else:
        result = _multiclass_metrics(probabilities, labels)
    if tasks:
        aucs = {
            CLASS_AUC_PREFIX + name: _one_vs_rest_auc(labels == k, probabilities[:, k])
            for name, k in tasks
        }
        result[TASK_AUC] = float(np.mean(list(aucs.values())))  # nan when a term is nan
        result.update(aucs)
    return result


def _task_columns(
    classes: Sequence[str] | None, task_classes: Sequence[str], num_classes: int
) -> list[tuple[str, int]]:
    if isinstance(task_classes, str):
        task_classes = (task_classes,)
    if not task_classes:
        return []
    if classes is None:
        raise SynergicError(
            "task_classes need the class names: pass classes=[...] to compute_metrics"
        )
    classes = list(classes)
    if len(classes) != num_classes:
        raise SynergicError(
            f"classes names {len(classes)} classes but the probabilities have {num_classes} "
            "columns"
        )
    columns = []
    for name in task_classes:
        if name not in classes:
            raise SynergicError(
                f"task class {name!r} is not one of the classes {', '.join(classes)}"
                f"{did_you_mean(str(name), classes)}"
            )
        columns.append((str(name), classes.index(name)))
    return columns


def _one_vs_rest_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    if is_positive.all() or not is_positive.any():
        return math.nan
    return float(skm.roc_auc_score(is_positive, scores))


def _binary_metrics(positive_probability: np.ndarray, is_positive: np.ndarray) -> dict[str, float]:
    # Thresholding the positive column alone, as the ISIC scorer does. With rows that sum to 1
    # this equals argmax except at exactly 0.5 when the positive class has the lower index
    # (argmax would break that tie towards it) or when rounding leaves a row sum a hair off 1.
    predicted_positive = positive_probability > ISIC_THRESHOLD
    num_positive = int(is_positive.sum())
    num_negative = is_positive.size - num_positive
    true_positive = int((predicted_positive & is_positive).sum())
    true_negative = int((~predicted_positive & ~is_positive).sum())
    both_classes = num_positive > 0 and num_negative > 0
    return {
        "ap": (
            float(skm.average_precision_score(is_positive, positive_probability))
            if both_classes
            else math.nan
        ),
        "ap_trapezoid": average_precision_trapezoid(is_positive, positive_probability),
        "auc": (
            float(skm.roc_auc_score(is_positive, positive_probability))
            if both_classes
            else math.nan
        ),
        "accuracy": (true_positive + true_negative) / is_positive.size,
        "sensitivity": true_positive / num_positive if num_positive else math.nan,
        "specificity": true_negative / num_negative if num_negative else math.nan,
    }


def _multiclass_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    num_classes = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    # A maximum shared by two classes decides nothing (-1, never right), as the ISIC scorer's
    # "undecided" label: argmax alone would hand the tie to the lower class index.
    tied = (probabilities == probabilities.max(axis=1, keepdims=True)).sum(axis=1) > 1
    predicted[tied] = -1
    every_class_present = np.unique(labels).size == num_classes
    if every_class_present:
        # roc_auc_score insists on rows summing to 1 within its own tolerance; renormalising
        # rows that passed our looser check does not change any per-class ranking that matters.
        normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
        auc = float(
            skm.roc_auc_score(
                labels,
                normalised,
                multi_class="ovr",
                average="macro",
                labels=list(range(num_classes)),
            )
        )
        ap = float(
            np.mean(
                [
                    skm.average_precision_score(labels == k, probabilities[:, k])
                    for k in range(num_classes)
                ]
            )
        )
    else:
        auc = ap = math.nan
    return {
        "ap": ap,
        "auc": auc,
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": _balanced_accuracy(labels, predicted),
    }


def _balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    # Mean recall over the classes present in `labels`, as sklearn.metrics.balanced_accuracy_score,
    # computed directly so that predictions of an absent class do not raise a warning.
    recalls = [float((predicted[labels == k] == k).mean()) for k in np.unique(labels)]
    return float(np.mean(recalls))


def _validated(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise SynergicError(
            f"probabilities must have shape [N, K] with K >= 2 classes, got shape "
            f"{probabilities.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != probabilities.shape[0]:
        raise SynergicError(
            f"labels must have shape [N] = [{probabilities.shape[0]}] to match probabilities, "
            f"got shape {labels.shape}"
        )
    if labels.size == 0:
        raise SynergicError("cannot compute metrics on zero samples: labels are empty")
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind != "f" or not np.all(labels == np.round(labels)):
            raise SynergicError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    num_classes = probabilities.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise SynergicError(
            f"labels must lie in 0..{num_classes - 1} for {num_classes} classes, found "
            f"{labels.min()}..{labels.max()}"
        )
    if not np.all(np.isfinite(probabilities)):
        raise SynergicError("probabilities contain nan or inf: check the model's outputs")
    row_sums = probabilities.sum(axis=1)
    worst = int(np.abs(row_sums - 1.0).argmax())
    if abs(row_sums[worst] - 1.0) > _ROW_SUM_TOLERANCE:
        raise SynergicError(
            f"probabilities must sum to 1 in every row, row {worst} sums to {row_sums[worst]:.6g}: "
            f"pass softmax outputs, not logits"
        )
    return probabilities, labels


# -- thresholds and calibration (two classes) --------------------------------------------------

#: The sensitivities at which the ISIC 2017 scorer (Part 3) reports specificity
#: (``spec_at_sens_82``, ``_89``, ``_95`` of its ``scoreP3.py``).
ISIC2017_SENSITIVITIES: tuple[float, ...] = (0.82, 0.89, 0.95)

#: Equal-width probability bins of :func:`expected_calibration_error` and the reliability diagram.
#: Ten, as scikit-learn's reliability-diagram examples and Naeini et al. (2015) use; Guo et al.
#: (2017) used 15 for top-label confidence.
CALIBRATION_BINS = 10


def youden_threshold(is_positive: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises Youden's J = sensitivity + specificity - 1, and that J.

    Youden, "Index for rating diagnostic tests", Cancer 3(1), 1950. The candidates are the
    distinct scores (``sklearn.metrics.roc_curve`` with ``drop_intermediate=False``), and a case
    is positive iff its score is **greater than or equal to** the threshold, scikit-learn's rule
    (the ISIC rule at 0.5 is strict, see :data:`ISIC_THRESHOLD`). J is compared in exact integer
    arithmetic; among equal maxima the highest threshold (the most specific) wins.

    Args:
        is_positive: ``[N]`` bool or 0/1, the true class.
        scores: ``[N]`` float positive-class probabilities (or any score, higher = positive).

    Returns:
        ``(threshold, j)``, ``(nan, nan)`` when ``is_positive`` holds one class only.

    Raises:
        SynergicError: inputs of different lengths, empty, or with nan/inf scores.
    """
    is_positive, scores = _binary_inputs(is_positive, scores)
    num_positive = int(is_positive.sum())
    num_negative = is_positive.size - num_positive
    if not num_positive or not num_negative:
        return math.nan, math.nan
    fpr, tpr, thresholds = skm.roc_curve(is_positive, scores, drop_intermediate=False)
    # J = TP/P - FP/N, compared as the integer TP*N - FP*P so that equal J tie exactly.
    true_positives = np.rint(tpr * num_positive).astype(np.int64)
    false_positives = np.rint(fpr * num_negative).astype(np.int64)
    scaled_j = true_positives[1:] * num_negative - false_positives[1:] * num_positive
    best = int(np.argmax(scaled_j)) + 1  # index 0 is roc_curve's threshold of +inf
    return float(thresholds[best]), float(scaled_j[best - 1] / (num_positive * num_negative))


def rates_at_threshold(
    is_positive: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float]:
    """``{"sensitivity", "specificity"}`` predicting positive iff ``scores >= threshold``.

    ``sensitivity`` is ``nan`` without a positive case, ``specificity`` without a negative one.
    Inputs as :func:`youden_threshold`.
    """
    is_positive, scores = _binary_inputs(is_positive, scores)
    predicted_positive = scores >= threshold
    num_positive = int(is_positive.sum())
    num_negative = is_positive.size - num_positive
    true_positive = int((predicted_positive & is_positive).sum())
    true_negative = int((~predicted_positive & ~is_positive).sum())
    return {
        "sensitivity": true_positive / num_positive if num_positive else math.nan,
        "specificity": true_negative / num_negative if num_negative else math.nan,
    }


def specificity_at_sensitivity(
    is_positive: np.ndarray, scores: np.ndarray, sensitivity: float
) -> float:
    """Specificity at a target sensitivity, as the ISIC 2017 challenge's scorer computes it.

    The scorer (``computeSPECMetrics`` in ``scoreCommon.py`` of ``isic-challenge-scoring``,
    used by its 2017 ``scoreP3.py``) takes ``sklearn.metrics.roc_curve`` with its default
    ``drop_intermediate=True``, walks the points in order of falling threshold, and returns
    1 - FPR at the first point whose TPR is ``>= sensitivity``: the best specificity of any
    threshold that reaches the sensitivity, except that with tied scores a dropped collinear
    point can make it lower, exactly as in the scorer. No interpolation.

    Args:
        is_positive, scores: as :func:`youden_threshold`.
        sensitivity: the target, in ``(0, 1]`` (for ISIC 2017: :data:`ISIC2017_SENSITIVITIES`).

    Returns:
        The specificity in ``[0, 1]``; ``nan`` when ``is_positive`` holds one class only.

    Raises:
        SynergicError: a target outside ``(0, 1]``, or inputs :func:`youden_threshold` refuses.
    """
    point = _isic2017_operating_point(is_positive, scores, sensitivity)
    return math.nan if point is None else 1.0 - point[0]


def threshold_at_sensitivity(
    is_positive: np.ndarray, scores: np.ndarray, sensitivity: float
) -> float:
    """The threshold of the operating point :func:`specificity_at_sensitivity` picks (positive
    iff ``score >= threshold``), to carry to another set; ``nan`` for one class only."""
    point = _isic2017_operating_point(is_positive, scores, sensitivity)
    return math.nan if point is None else point[1]


def _isic2017_operating_point(
    is_positive: np.ndarray, scores: np.ndarray, sensitivity: float
) -> tuple[float, float] | None:
    if not 0.0 < sensitivity <= 1.0:
        raise SynergicError(f"target sensitivity must be in (0, 1], got {sensitivity}")
    is_positive, scores = _binary_inputs(is_positive, scores)
    if is_positive.all() or not is_positive.any():
        return None
    fpr, tpr, thresholds = skm.roc_curve(is_positive, scores)
    index = int(np.argmax(tpr >= sensitivity))  # the last point has TPR 1, so one exists
    return float(fpr[index]), float(thresholds[index])


def expected_calibration_error(
    is_positive: np.ndarray, probability: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> float:
    """Expected calibration error of positive-class probabilities over equal-width bins.

    ECE = sum over bins b of (n_b / N) * |fraction of positives in b - mean probability in b|
    (Naeini, Cooper & Hauskrecht, "Obtaining well calibrated probabilities using Bayesian
    binning", AAAI 2015; Guo et al., "On calibration of modern neural networks", ICML 2017,
    eq. 3, who bin the top-label confidence instead). The bins are those of
    ``sklearn.calibration.calibration_curve(strategy="uniform", n_bins=n_bins)``: ``[0, 1/n]``,
    ``(1/n, 2/n]``, ..., so the value is the count-weighted mean distance of the reliability
    diagram's points from the diagonal.

    Args:
        is_positive: ``[N]`` bool or 0/1, the true class.
        probability: ``[N]`` positive-class probabilities in ``[0, 1]``.
        n_bins: number of bins, at least 1.

    Returns:
        ECE in ``[0, 1]``.

    Raises:
        SynergicError: ``n_bins < 1``, probabilities outside ``[0, 1]``, or inputs
            :func:`youden_threshold` refuses.
    """
    if n_bins < 1:
        raise SynergicError(f"n_bins must be at least 1, got {n_bins}")
    is_positive, probability = _binary_inputs(is_positive, probability)
    _check_unit_interval(probability)
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probability)
    positives = np.bincount(bins, weights=is_positive.astype(np.float64), minlength=n_bins)
    probability_sums = np.bincount(bins, weights=probability, minlength=n_bins)
    return float(np.abs(positives - probability_sums).sum() / probability.size)


def calibration_metrics(
    is_positive: np.ndarray, probability: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> dict[str, float | int]:
    """``{"brier", "ece", "bins"}`` of positive-class probabilities.

    ``brier`` is ``sklearn.metrics.brier_score_loss`` (mean squared difference between the
    probability and the 0/1 truth, lower is better), ``ece`` is
    :func:`expected_calibration_error` over ``bins`` equal-width bins. Inputs and errors as
    :func:`expected_calibration_error`.
    """
    ece = expected_calibration_error(is_positive, probability, n_bins)
    is_positive, probability = _binary_inputs(is_positive, probability)
    brier = skm.brier_score_loss(is_positive.astype(np.int64), probability, pos_label=1)
    return {"brier": float(brier), "ece": ece, "bins": int(n_bins)}


def prior_corrected(
    probabilities: np.ndarray, training_prior: np.ndarray, target_prior: np.ndarray
) -> np.ndarray:
    """Class probabilities moved from the class mix a model was trained on to another mix.

    Bayes' rule, p'(k|x) = p(k|x) * target_k / training_k, normalised over k (Saerens, Latinne &
    Decaestecker, "Adjusting the outputs of a classifier to new a priori probabilities: a simple
    procedure", Neural Computation 14(1), 2002, eq. 2.4). It assumes that the model's
    probabilities are calibrated to ``training_prior`` and that p(x|k) is the same under both
    mixes. For two classes it is a monotone map of the positive probability: AUC, AP and any
    threshold chosen on the corrected probabilities select the same images.

    Args:
        probabilities: ``[N, K]`` class probabilities, rows summing to 1.
        training_prior: ``[K]`` class frequencies the model was trained on (for synergic, the
            sampler's class mix), each > 0; normalised to sum 1.
        target_prior: ``[K]`` class frequencies to correct to (the data's), each > 0.

    Returns:
        ``[N, K]`` float64 probabilities, rows summing to 1.

    Raises:
        SynergicError: priors of the wrong length or not positive and finite; probabilities that
            :func:`compute_metrics` would refuse (labels aside).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities, _ = _validated(probabilities, np.zeros(probabilities.shape[:1], dtype=np.int64))
    num_classes = probabilities.shape[1]
    weights = []
    for name, prior in (("training_prior", training_prior), ("target_prior", target_prior)):
        prior = np.asarray(prior, dtype=np.float64).ravel()
        if prior.size != num_classes or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
            raise SynergicError(
                f"{name} must hold {num_classes} positive class frequencies, got {prior.tolist()}"
            )
        weights.append(prior / prior.sum())
    corrected = probabilities * (weights[1] / weights[0])
    return corrected / corrected.sum(axis=1, keepdims=True)


def threshold_and_calibration(
    test_probabilities: np.ndarray,
    test_labels: np.ndarray,
    *,
    validation_probabilities: np.ndarray | None = None,
    validation_labels: np.ndarray | None = None,
    training_prior: np.ndarray | None = None,
    data_prior: np.ndarray | None = None,
    positive_class: int = 1,
    sensitivities: tuple[float, ...] = ISIC2017_SENSITIVITIES,
    n_bins: int = CALIBRATION_BINS,
) -> dict[str, dict]:
    """Operating points and calibration of a two-class model: the ``metrics.json`` entries
    ``threshold``, ``calibration`` and (with both priors) ``prior_correction``.

    Args:
        test_probabilities, test_labels: ``[N, 2]`` probabilities and ``[N]`` class indices of
            the set reported on.
        validation_probabilities, validation_labels: the same for the set thresholds are chosen
            on (never the test set); without them, or with one class in them, no threshold is
            chosen.
        training_prior, data_prior: ``[2]`` class mixes for :func:`prior_corrected`.
        positive_class: the class that counts as positive.
        sensitivities: the targets of ``specificity_at_sensitivity`` (JSON keys as ``"0.82"``).
        n_bins: the calibration bins.

    Returns:
        ``{}`` for more than two classes. Otherwise

        - ``threshold``: ``rule`` (positive iff probability >= threshold),
          ``specificity_at_sensitivity`` (on test, :func:`specificity_at_sensitivity`); with a
          two-class validation set also ``youden`` and ``validation_youden_j``
          (:func:`youden_threshold` on validation), ``test_at_youden`` (test sensitivity and
          specificity at it, :func:`rates_at_threshold`), ``at_validation_sensitivity`` (per
          target: the threshold :func:`threshold_at_sensitivity` picks on validation, and the
          test sensitivity and specificity at it);
        - ``calibration``: :func:`calibration_metrics` of the test probabilities;
        - ``prior_correction`` (when both priors are given): the priors, and the test
          ``accuracy``/``sensitivity``/``specificity`` at the ISIC rule, ``brier`` and ``ece`` of
          the corrected probabilities.

    Raises:
        SynergicError: inputs that :func:`compute_metrics` or :func:`prior_corrected` refuse.
    """
    test_probabilities, test_labels = _validated(test_probabilities, test_labels)
    if test_probabilities.shape[1] != 2:
        return {}
    if positive_class not in (0, 1):
        raise SynergicError(f"positive_class must be 0 or 1 for two classes, got {positive_class}")
    test_score = test_probabilities[:, positive_class]
    test_truth = test_labels == positive_class
    threshold: dict[str, Any] = {
        "rule": "positive iff probability >= threshold",
        "specificity_at_sensitivity": {
            f"{target:g}": specificity_at_sensitivity(test_truth, test_score, target)
            for target in sensitivities
        },
    }
    if validation_probabilities is not None and validation_labels is not None:
        validation_probabilities, validation_labels = _validated(
            validation_probabilities, validation_labels
        )
        validation_score = validation_probabilities[:, positive_class]
        validation_truth = validation_labels == positive_class
        youden, youden_j = youden_threshold(validation_truth, validation_score)
        if not math.isnan(youden):
            threshold["youden"] = youden
            threshold["validation_youden_j"] = youden_j
            threshold["test_at_youden"] = rates_at_threshold(test_truth, test_score, youden)
            at_sensitivity = {}
            for target in sensitivities:
                chosen = threshold_at_sensitivity(validation_truth, validation_score, target)
                at_sensitivity[f"{target:g}"] = {
                    "threshold": chosen, **rates_at_threshold(test_truth, test_score, chosen)
                }
            threshold["at_validation_sensitivity"] = at_sensitivity
    result: dict[str, dict] = {
        "threshold": threshold,
        "calibration": calibration_metrics(test_truth, test_score, n_bins),
    }
    if training_prior is not None and data_prior is not None:
        corrected = prior_corrected(test_probabilities, training_prior, data_prior)
        at_rule = compute_metrics(corrected, test_labels, positive_class=positive_class)
        result["prior_correction"] = {
            "training_prior": [float(x) for x in np.asarray(training_prior, dtype=float).ravel()],
            "data_prior": [float(x) for x in np.asarray(data_prior, dtype=float).ravel()],
            "test": {
                **{name: at_rule[name] for name in ("accuracy", "sensitivity", "specificity")},
                **{
                    name: value
                    for name, value in calibration_metrics(
                        test_truth, corrected[:, positive_class], n_bins
                    ).items()
                    if name != "bins"
                },
            },
        }
    return result


def _binary_inputs(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    is_positive = np.asarray(is_positive).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if is_positive.size != scores.size:
        raise SynergicError(
            f"got {is_positive.size} labels but {scores.size} scores: pass one score per label"
        )
    if scores.size == 0:
        raise SynergicError("cannot compute metrics on zero samples: labels are empty")
    is_positive = as_positive_mask(is_positive)
    if not np.all(np.isfinite(scores)):
        raise SynergicError("scores contain nan or inf: check the model's outputs")
    return is_positive, scores


def as_positive_mask(is_positive: np.ndarray) -> np.ndarray:
    """``is_positive`` (bool, or 0/1) as a bool array ``[N]``.

    Raises:
        SynergicError: values other than 0 and 1.
    """
    is_positive = np.asarray(is_positive).ravel()
    if is_positive.dtype != bool:
        if not np.all((is_positive == 0) | (is_positive == 1)):
            raise SynergicError(
                "is_positive must be bool or 0/1 (True = positive class), got values "
                f"{np.unique(is_positive)[:5].tolist()}"
            )
        is_positive = is_positive.astype(bool)
    return is_positive


def _check_unit_interval(probability: np.ndarray) -> None:
    if probability.min() < 0.0 or probability.max() > 1.0:
        raise SynergicError(
            f"probabilities must lie in [0, 1], got "
            f"{probability.min():.6g}..{probability.max():.6g}"
        )
