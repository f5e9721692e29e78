"""Evaluation metrics for classifiers that output class probabilities.

For two classes the definitions are those of the ISIC Challenge's official scorer
(``isic-challenge-scoring``): a case counts as positive when its positive-class probability is
*strictly* above 0.5, and average precision is scikit-learn's ``average_precision_score``. Next to
it, ``ap_trapezoid`` is the area under the precision-recall curve by the trapezoid rule, which is
what ``average_precision_score`` returned before scikit-learn 0.19, and so what the ISIC 2016
leaderboard (the numbers the SDL paper compares against) was computed with. ``docs/metrics.md``
explains both and how they map onto the scorer's names.

Next to the metrics at the fixed ISIC rule, for two classes: thresholds chosen on one set and
applied to another (Youden's J, a target sensitivity), specificity at the sensitivities the ISIC 2017
scorer reports, calibration (Brier score, expected calibration error) and a prior correction of the
probabilities for the class mix the model was trained on (:func:`threshold_and_calibration`;
``docs/metrics.md``, "Thresholds and calibration").

Everything here takes numpy arrays and returns plain Python floats, so the results can go straight
into JSON (``nan`` marks a metric that is undefined for the data, see :func:`compute_metrics`).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

from synergic.errors import SynergicError

__all__ = [
    "CALIBRATION_BINS",
    "ISIC2017_SENSITIVITIES",
    "ISIC_THRESHOLD",
    "METRIC_NAMES_BINARY",
    "METRIC_NAMES_MULTICLASS",
    "average_precision_trapezoid",
    "calibration_metrics",
    "compute_metrics",
    "expected_calibration_error",
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


def primary_metric(num_classes: int) -> str:
    """The metric that selects the best checkpoint and ranks runs: average precision.

    AP was the ranking metric of the ISIC 2016 challenge and is the headline number of the SDL
    paper; for more than two classes it is the macro average over classes.
    """
    if num_classes < 2:
        raise SynergicError(f"num_classes must be at least 2, got {num_classes}")
    return "ap"


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
    probabilities: np.ndarray, labels: np.ndarray, *, positive_class: int = 1
) -> dict[str, float]:
    """Score class probabilities against integer labels.

    Args:
        probabilities: ``[N, K]`` class probabilities, each row summing to 1.
        labels: ``[N]`` true class indices in ``0..K-1``.
        positive_class: for ``K == 2``, the class that counts as positive (malignant in ISIC
            2016); ignored for ``K > 2``.

    Returns:
        For ``K == 2`` the keys of :data:`METRIC_NAMES_BINARY`:

        - ``ap``: ``average_precision_score`` on the positive column (the ISIC scorer's ``ap``);
        - ``ap_trapezoid``: :func:`average_precision_trapezoid` (the pre-0.19 definition);
        - ``auc``: ROC AUC;
        - ``accuracy``, ``sensitivity`` (recall of the positive class) and ``specificity``
          (recall of the negative class), predicting positive iff the positive probability is
          strictly greater than :data:`ISIC_THRESHOLD`.

        For ``K > 2`` the keys of :data:`METRIC_NAMES_MULTICLASS`: ``accuracy`` of the argmax,
        ``balanced_accuracy``, ``auc`` (macro one-vs-rest) and ``ap`` (macro mean of per-class AP).

        A metric that the labels leave undefined is ``nan``, without a warning: for ``K == 2``,
        ``ap``, ``ap_trapezoid`` and ``auc`` when only one class is present, ``sensitivity`` when
        no case is positive, ``specificity`` when none is negative (the ISIC scorer returns 1.0
        for those two); for ``K > 2``, ``auc`` and ``ap`` when some class is absent from
        ``labels``.
    """
    probabilities, labels = _validated(probabilities, labels)
    num_classes = probabilities.shape[1]
    if num_classes == 2:
        if positive_class not in (0, 1):
            raise SynergicError(
                f"positive_class must be 0 or 1 for two classes, got {positive_class}"
            )
        return _binary_metrics(probabilities[:, positive_class], labels == positive_class)
    return _multiclass_metrics(probabilities, labels)


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
