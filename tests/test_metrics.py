from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from synergic.errors import SynergicError
from synergic.metrics import (
    METRIC_NAMES_BINARY,
    METRIC_NAMES_MULTICLASS,
    average_precision_trapezoid,
    compute_metrics,
    primary_metric,
)


def _binary_case(seed: int = 0, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    positive = np.clip(0.35 * labels + rng.uniform(0.0, 0.65, n), 0.0, 1.0)
    positive = np.round(positive, 2)  # ties, as real softmax outputs rounded to a grid have
    return np.stack([1 - positive, positive], axis=1), labels


def _as_probabilities(positive: list[float]) -> np.ndarray:
    positive_column = np.asarray(positive, dtype=np.float64)
    return np.stack([1 - positive_column, positive_column], axis=1)


def test_binary_metrics_equal_scikit_learn():
    probabilities, labels = _binary_case()
    scores = probabilities[:, 1]
    predicted = (scores > 0.5).astype(int)
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    expected = {
        "ap": skm.average_precision_score(labels, scores),
        "ap_trapezoid": skm.auc(recall, precision),
        "auc": skm.roc_auc_score(labels, scores),
        "accuracy": skm.accuracy_score(labels, predicted),
        "sensitivity": skm.recall_score(labels, predicted, pos_label=1),
        "specificity": skm.recall_score(labels, predicted, pos_label=0),
    }
    result = compute_metrics(probabilities, labels)
    assert tuple(result) == METRIC_NAMES_BINARY
    assert all(type(value) is float for value in result.values())
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-12), name


def test_positive_class_zero_is_the_mirror_image():
    probabilities, labels = _binary_case(seed=1)
    assert compute_metrics(probabilities[:, ::-1], 1 - labels, positive_class=0) == (
        compute_metrics(probabilities, labels, positive_class=1)
    )


def test_isic_threshold_is_strictly_greater_than_one_half():
    # positive probability:  0.5  0.5000001  0.9 | 0.5  0.5000001  0.1
    # true class:            pos  pos        pos | neg  neg        neg
    # predicted positive:    no   yes        yes | no   yes        no
    # TP = 2, FN = 1, TN = 2, FP = 1.
    probabilities = _as_probabilities([0.5, 0.5000001, 0.9, 0.5, 0.5000001, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    result = compute_metrics(probabilities, labels)
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert "threshold" not in result


def test_isic_threshold_differs_from_argmax_only_at_exactly_one_half():
    # With class 0 positive, a row (0.5, 0.5) is a tie that argmax breaks towards class 0
    # (positive); the ISIC rule looks at the positive column alone and calls it negative.
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    labels = np.array([0, 0, 1])
    result = compute_metrics(probabilities, labels, positive_class=0)
    assert result["sensitivity"] == pytest.approx(1 / 2)
    argmax_sensitivity = np.mean(probabilities[labels == 0].argmax(axis=1) == 0)
    assert argmax_sensitivity == 1.0


def test_trapezoid_ap_on_hand_computed_cases():
    # scikit-learn's documented case: labels 0 0 1 1, scores 0.1 0.4 0.35 0.8.
    # Ranked by score: 0.8 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg). Operating points
    # (recall, precision): (0.5, 1) at 0.8, (0.5, 1/2) at 0.4, (1, 2/3) at 0.35, plus (0, 1).
    # Step-wise AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    # Trapezoids: (0 -> 0.5) at height 1 = 0.5; (0.5 -> 0.5) has no width;
    # (0.5 -> 1) between heights 1/2 and 2/3 = 0.5 * 7/12 = 7/24. Total 19/24.
    labels = np.array([0, 0, 1, 1])
    result = compute_metrics(_as_probabilities([0.1, 0.4, 0.35, 0.8]), labels)
    assert result["ap"] == pytest.approx(5 / 6)
    assert result["ap_trapezoid"] == pytest.approx(19 / 24)

    # A classifier that says 0.5 to everything, one positive in four. The only operating point
    # is (recall 1, precision 1/4), plus (0, 1). Step-wise AP = 1 * 1/4 = 0.25. The trapezoid
    # joins (0, 1) to (1, 1/4) with a straight line: (1 + 1/4) / 2 = 0.625, a constant score
    # that beats the prevalence: the optimism that made scikit-learn 0.19 drop it.
    constant = compute_metrics(_as_probabilities([0.5] * 4), np.array([1, 0, 0, 0]))
    assert constant["ap"] == pytest.approx(0.25)
    assert constant["ap_trapezoid"] == pytest.approx(0.625)
    assert average_precision_trapezoid(np.array([1, 0, 0, 0]), np.full(4, 0.5)) == 0.625


def test_multiclass_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    labels = np.concatenate([np.arange(3), rng.integers(0, 3, 27)])
    logits = rng.normal(size=(30, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = compute_metrics(probabilities, labels)
    assert tuple(result) == METRIC_NAMES_MULTICLASS
    assert all(type(value) is float for value in result.values())
    predicted = probabilities.argmax(axis=1)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert result["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(labels, predicted)
    )
    assert result["auc"] == pytest.approx(
        skm.roc_auc_score(
            labels, probabilities, multi_class="ovr", average="macro", labels=[0, 1, 2]
        )
    )
    per_class_ap = [skm.average_precision_score(labels == k, probabilities[:, k]) for k in range(3)]
    assert result["ap"] == pytest.approx(np.mean(per_class_ap))
    assert result["accuracy"] != result["balanced_accuracy"]  # the case is not balanced


def test_single_class_labels_give_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        only_negative = compute_metrics(_as_probabilities([0.2, 0.7, 0.4]), np.zeros(3, int))
        three_classes = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
        class_two_absent = compute_metrics(three_classes, np.array([0, 1, 0]))
    for name in ("ap", "ap_trapezoid", "auc", "sensitivity"):
        assert math.isnan(only_negative[name]), name
    assert only_negative["specificity"] == pytest.approx(2 / 3)
    assert only_negative["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(class_two_absent["auc"]) and math.isnan(class_two_absent["ap"])
    assert class_two_absent["accuracy"] == 1.0 and class_two_absent["balanced_accuracy"] == 1.0


@pytest.mark.parametrize(
    ("probabilities", "labels", "message"),
    [
        (np.array([[2.0, -1.0], [0.3, 0.2]]), np.array([0, 1]), "sum to 1"),
        (np.array([0.2, 0.8]), np.array([1]), r"shape \[N, K\]"),
        (np.array([[1.0], [1.0]]), np.array([0, 0]), "K >= 2"),
        (np.array([[0.2, 0.8]]), np.array([0, 1]), "labels must have shape"),
        (np.array([[0.2, 0.8]]), np.array([2]), r"0\.\.1"),
        (np.array([[0.2, 0.8]]), np.array([0.5]), "integer"),
        (np.array([[np.nan, 0.8]]), np.array([1]), "nan"),
        (np.zeros((0, 2)), np.zeros(0, int), "zero samples"),
    ],
)
def test_rejects_inputs_that_are_not_probabilities_and_labels(probabilities, labels, message):
    with pytest.raises(SynergicError, match=message):
        compute_metrics(probabilities, labels)


def test_rejects_a_positive_class_outside_two_classes():
    with pytest.raises(SynergicError, match="positive_class"):
        compute_metrics(_as_probabilities([0.2, 0.8]), np.array([0, 1]), positive_class=2)


def test_float_labels_holding_integers_are_accepted():
    probabilities, labels = _binary_case(seed=2)
    assert compute_metrics(probabilities, labels.astype(float)) == compute_metrics(
        probabilities, labels
    )


def test_primary_metric_is_average_precision():
    assert primary_metric(2) == "ap" and primary_metric(7) == "ap"
    assert primary_metric(2) in METRIC_NAMES_BINARY
    assert primary_metric(7) in METRIC_NAMES_MULTICLASS
    with pytest.raises(SynergicError, match="at least 2"):
        primary_metric(1)


def test_primary_metric_takes_a_data_sets_name_when_it_is_a_reported_key():
    assert primary_metric(7, "balanced_accuracy") == "balanced_accuracy"
    assert primary_metric(3, "task_auc", task_classes=("melanoma",)) == "task_auc"
    with pytest.raises(SynergicError, match="data set 'isic2099': its primary_metric 'balanced"):
        primary_metric(2, "balanced_accuracy", dataset="isic2099")


def test_metric_names_are_the_keys_compute_metrics_returns():
    from synergic.metrics import is_metric_name, metric_names

    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 2, 2])
    tasks = ("melanoma", "seborrheic_keratosis")
    classes = ["nevus", "melanoma", "seborrheic_keratosis"]
    result = compute_metrics(probabilities, labels, classes=classes, task_classes=tasks)
    assert tuple(result) == metric_names(3, tasks) == (
        *METRIC_NAMES_MULTICLASS, "task_auc", "auc_melanoma", "auc_seborrheic_keratosis"
    )
    assert all(is_metric_name(name) for name in result)
    assert not is_metric_name("auc_") and not is_metric_name("f1")


def test_task_auc_is_the_mean_of_the_one_vs_rest_aucs_of_the_task_classes():
    # ISIC 2017 Part 3: nevus, melanoma, seborrheic keratosis; the challenge ranked the mean of
    # the melanoma-vs-rest and the seborrheic-keratosis-vs-rest AUCs. Ties on a 0.05 grid.
    rng = np.random.default_rng(2017)
    labels = rng.choice(3, size=80, p=[0.7, 0.2, 0.1])
    logits = rng.normal(size=(80, 3)) + 1.2 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probabilities = np.round(probabilities * 20) / 20
    probabilities[:, 0] = 1 - probabilities[:, 1:].sum(axis=1)
    classes = ["nevus", "melanoma", "seborrheic_keratosis"]
    result = compute_metrics(probabilities, labels, classes=classes,
                             task_classes=("melanoma", "seborrheic_keratosis"))
    melanoma = skm.roc_auc_score(labels == 1, probabilities[:, 1])
    keratosis = skm.roc_auc_score(labels == 2, probabilities[:, 2])
    assert result["auc_melanoma"] == pytest.approx(melanoma, abs=1e-12)
    assert result["auc_seborrheic_keratosis"] == pytest.approx(keratosis, abs=1e-12)
    assert result["task_auc"] == pytest.approx((melanoma + keratosis) / 2, abs=1e-12)
    assert result["task_auc"] != pytest.approx(result["auc"])  # not the 3-class macro AUC
    # Without the task classes nothing changes in the other keys.
    plain = compute_metrics(probabilities, labels)
    assert {k: result[k] for k in plain} == plain


def test_task_auc_is_nan_when_a_task_class_is_absent_and_task_classes_are_checked():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.5, 0.2, 0.3]])
    classes = ["nevus", "melanoma", "seborrheic_keratosis"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute_metrics(probabilities, np.array([0, 1, 0]), classes=classes,
                                 task_classes=("melanoma", "seborrheic_keratosis"))
    assert result["auc_melanoma"] == 1.0
    assert math.isnan(result["auc_seborrheic_keratosis"]) and math.isnan(result["task_auc"])
    with pytest.raises(SynergicError, match="pass classes="):
        compute_metrics(probabilities, np.array([0, 1, 2]), task_classes=("melanoma",))
    with pytest.raises(SynergicError,
                       match=r"'melanom' is not one of the classes .* \(did you mean 'melanoma'"):
        compute_metrics(probabilities, np.array([0, 1, 2]), classes=classes,
                        task_classes=("melanom",))


def test_a_shared_highest_probability_predicts_no_class_as_the_isic_scorer():
    # Row 1 ties classes 0 and 1 (argmax would say 0, right); the scorer calls it undecided.
    probabilities = np.array([[0.8, 0.1, 0.1], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    labels = np.array([0, 0, 2, 1])
    result = compute_metrics(probabilities, labels)
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1) / 3)
