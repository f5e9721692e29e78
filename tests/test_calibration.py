"""Thresholds and calibration of two-class models (synergic.metrics, plots.plot_reliability, and
the metrics.json entries ``threshold``, ``calibration``, ``prior_correction`` of a run).

Each statistic is checked against hand-computed values on fixed data and against an independent
computation (scikit-learn, a brute-force search, a closed form); specificity at a target
sensitivity is also checked against the ISIC Challenge's scorer (skipped when it is unavailable,
see tests/isic_scorer_support.py).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from isic_scorer_support import (
    SCORER_PYTHON_ENV,
    _run_scorer_python,
    scorer_unavailable_reason,
    write_scorer_ground_truth,
)
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score, roc_curve

from synergic.errors import SynergicError
from synergic.metrics import (
    ISIC2017_SENSITIVITIES,
    calibration_metrics,
    compute_metrics,
    expected_calibration_error,
    prior_corrected,
    rates_at_threshold,
    specificity_at_sensitivity,
    threshold_and_calibration,
    threshold_at_sensitivity,
    youden_threshold,
)
from synergic.plots import plot_reliability

# Ten images, five positive. Sorted by score: .9+ .8+ .6- .55+ .4- .35+ .3+ .2- .1- .05-, so at
# ">= 0.3" all five positives and three of five negatives are right: J = 1 + 0.6 - 1 = 0.6, the
# largest (">= 0.8": 0.4, ">= 0.55": 0.4, ">= 0.35": 0.4).
LABELS = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.55, 0.3, 0.05])

# 60 images with scores on a 0.1 grid (many ties). At sensitivity 0.82 the ROC curve has two
# collinear tied steps: roc_curve's default drop_intermediate=True, which the ISIC 2017 scorer
# used, drops the point between them, so its specificity is lower than the best achievable.
TIED_LABELS = np.array([int(c) for c in
                        "001101001010100001010100100000100010000001000100100000001011"])
TIED_SCORES = np.array([float(v) for v in (
    ".5 .1 1. .7 .3 1. .1 .3 .6 .2 .6 .5 .7 .3 .5 .7 .7 .2 .6 .8 .4 .5 .3 .3 .4 .6 .5 .3 .2 .6 "
    ".8 .6 .3 .8 .6 .7 .0 .4 .4 .0 .2 .4 .1 .2 .1 .7 .4 .4 .5 .3 .7 .3 .3 .2 .5 .5 .8 .4 .8 .6"
).split()])


def brute_force_rates(is_positive, scores, threshold):
    predicted = (np.asarray(scores) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(np.asarray(is_positive).astype(int), predicted,
                                      labels=[0, 1]).ravel()
    return tp / (tp + fn), tn / (tn + fp)


# -- Youden's J ------------------------------------------------------------------------------


def test_youden_threshold_hand_computed():
    threshold, j = youden_threshold(LABELS, SCORES)
    assert (threshold, j) == (0.3, pytest.approx(0.6))
    assert rates_at_threshold(LABELS, SCORES, threshold) == {
        "sensitivity": 1.0, "specificity": 0.6,
    }


def test_youden_threshold_is_the_brute_force_maximum():
    rng = np.random.default_rng(3)
    is_positive = rng.uniform(size=200) < 0.3
    scores = np.round(rng.normal(0.4 + 0.2 * is_positive, 0.15), 2)  # ties on a 0.01 grid
    best = max(
        (sum(brute_force_rates(is_positive, scores, t)) - 1, t) for t in np.unique(scores)
    )
    threshold, j = youden_threshold(is_positive, scores)
    assert j == pytest.approx(best[0], abs=1e-12)
    assert sum(brute_force_rates(is_positive, scores, threshold)) - 1 == pytest.approx(best[0])


def test_youden_ties_go_to_the_highest_threshold():
    # ">= 0.9": J = 1/2 - 0; ">= 0.7": J = 2/2 - 1/2. The more specific threshold wins.
    assert youden_threshold([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]) == (0.9, 0.5)
    # 2 positives, 10 negatives: J = 1/2 - 2/10 at ">= 0.85" and 2/2 - 7/10 at ">= 0.55", equal,
    # but in floating point 0.5 - 0.2 = 0.3 < 1.0 - 0.7 = 0.30000000000000004.
    labels = [0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    scores = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4]
    assert 0.5 - 0.2 < 1.0 - 0.7
    assert youden_threshold(labels, scores) == (0.85, pytest.approx(0.3))


def test_youden_with_one_class_is_nan():
    threshold, j = youden_threshold([1, 1, 1], [0.2, 0.5, 0.9])
    assert math.isnan(threshold) and math.isnan(j)


def test_rates_use_greater_or_equal_and_nan_for_a_missing_class():
    assert rates_at_threshold([1, 0], [0.5, 0.5], 0.5) == {"sensitivity": 1.0, "specificity": 0.0}
    rates = rates_at_threshold([0, 0], [0.2, 0.7], 0.5)
    assert math.isnan(rates["sensitivity"]) and rates["specificity"] == 0.5


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1], [0.5], "2 labels but 1 scores"),
        ([], [], "zero samples"),
        ([0, 2], [0.1, 0.9], "bool or 0/1"),
        ([0, 1], [0.1, float("nan")], "nan or inf"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(labels, scores, match):
    with pytest.raises(SynergicError, match=match) as error:
        youden_threshold(labels, scores)
    assert "\n" not in str(error.value)


# -- specificity at a target sensitivity (ISIC 2017) ------------------------------------------


def test_specificity_at_sensitivity_hand_computed():
    # TPR first reaches 0.5 at ">= 0.55" (3/5, one false positive): specificity 4/5.
    assert specificity_at_sensitivity(LABELS, SCORES, 0.5) == pytest.approx(0.8)
    assert threshold_at_sensitivity(LABELS, SCORES, 0.5) == 0.55
    # 82, 89, 95 % and 100 % all need all five positives: ">= 0.3", specificity 3/5.
    for target in (*ISIC2017_SENSITIVITIES, 1.0):
        assert specificity_at_sensitivity(LABELS, SCORES, target) == pytest.approx(0.6)
        assert threshold_at_sensitivity(LABELS, SCORES, target) == 0.3


def test_without_ties_it_is_the_best_specificity_reaching_the_sensitivity():
    rng = np.random.default_rng(7)
    is_positive = rng.uniform(size=150) < 0.25
    scores = rng.normal(0.3 * is_positive, 0.2)  # continuous: no ties
    for target in ISIC2017_SENSITIVITIES:
        reaching = [
            specificity for t in scores
            for sensitivity, specificity in [brute_force_rates(is_positive, scores, t)]
            if sensitivity >= target
        ]
        assert specificity_at_sensitivity(is_positive, scores, target) == pytest.approx(
            max(reaching), abs=1e-12
        )


def test_ties_follow_the_isic_2017_rule_not_the_best_point():
    ours = specificity_at_sensitivity(TIED_LABELS, TIED_SCORES, 0.82)
    fpr, tpr, _ = roc_curve(TIED_LABELS, TIED_SCORES, drop_intermediate=False)
    best = 1 - fpr[np.argmax(tpr >= 0.82)]
    assert ours == pytest.approx(0.5) and best == pytest.approx(9 / 14)


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01])
def test_a_target_sensitivity_outside_0_1_is_refused(target):
    with pytest.raises(SynergicError, match=r"target sensitivity must be in \(0, 1\]"):
        specificity_at_sensitivity(LABELS, SCORES, target)


def _isic2017_rule(fpr, tpr, target):
    """``computeSPECMetrics`` of the ISIC 2017 scorer (``Python/scoreCommon.py`` of
    isic-challenge-scoring): the first ROC point whose TPR reaches the target, 1 - its FPR."""
    for position, true_positive_rate in enumerate(tpr):
        if true_positive_rate >= target:
            return 1.0 - fpr[position]
    return 0.0


_SCORER_ROC = """
import json, pathlib, sys, warnings
warnings.simplefilter("ignore")
from isic_challenge_scoring import ClassificationMetric, ClassificationScore
score = ClassificationScore.from_file(
    pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), ClassificationMetric.AVERAGE_PRECISION)
roc = score.rocs["malignant"]
print(json.dumps({"fpr": roc["fpr"].tolist(), "tpr": roc["tpr"].tolist()}))
"""


def _scorer_roc(truth_path: Path, prediction_path: Path) -> dict[str, list[float]]:
    python = os.environ.get(SCORER_PYTHON_ENV)
    if python:
        output = _run_scorer_python(
            python, ["-c", _SCORER_ROC, str(truth_path), str(prediction_path)],
            cwd=str(truth_path.parent),
        )
        return json.loads(output)
    from isic_challenge_scoring import ClassificationMetric, ClassificationScore

    score = ClassificationScore.from_file(
        truth_path, prediction_path, ClassificationMetric.AVERAGE_PRECISION
    )
    roc = score.rocs["malignant"]
    return {"fpr": roc["fpr"].tolist(), "tpr": roc["tpr"].tolist()}


@pytest.mark.skipif(scorer_unavailable_reason() is not None,
                    reason=scorer_unavailable_reason() or "")
def test_specificity_at_sensitivity_matches_the_isic_scorer(tmp_path):
    # Today's scorer (5.x) no longer reports spec_at_sens_*; its ROC curve (the same
    # roc_curve(drop_intermediate=True) call, on the files as it parses them) with the 2017 rule
    # must give our numbers. Fewer than 100 ROC points, so the scorer does not simplify the curve.
    images = [f"ISIC_{k:07d}" for k in range(len(TIED_LABELS))]
    truth_path, prediction_path = tmp_path / "truth.csv", tmp_path / "predictions.csv"
    write_scorer_ground_truth(dict(zip(images, map(float, TIED_LABELS))), truth_path)
    with prediction_path.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["image", "benign", "malignant"])
        writer.writerows(
            [image, repr(1.0 - p), repr(p)] for image, p in zip(images, TIED_SCORES.tolist())
        )
    roc = _scorer_roc(truth_path, prediction_path)
    assert len(roc["fpr"]) < 100
    for target in ISIC2017_SENSITIVITIES:
        theirs = _isic2017_rule(roc["fpr"], roc["tpr"], target)
        assert specificity_at_sensitivity(TIED_LABELS, TIED_SCORES, target) == pytest.approx(
            theirs, abs=1e-12
        ), target


# -- calibration ------------------------------------------------------------------------------


def test_expected_calibration_error_hand_computed():
    probability = np.array([0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95])
    is_positive = np.array([0, 0, 1, 1, 1, 1, 0])
    # Bin [0, .1]: |0 - .05| x 1; (.1, .2]: |.5 - .15| x 2; (.9, 1]: |.75 - .95| x 4; over 7.
    assert expected_calibration_error(is_positive, probability) == pytest.approx(1.55 / 7)
    assert expected_calibration_error(is_positive, probability, n_bins=1) == pytest.approx(
        abs(4 / 7 - probability.mean())
    )


def test_a_probability_on_a_bin_edge_goes_to_the_lower_bin_as_in_calibration_curve():
    is_positive, probability = np.array([1, 0]), np.array([0.1, 0.05])
    assert len(calibration_curve(is_positive, probability, n_bins=10)[0]) == 1  # one bin
    assert expected_calibration_error(is_positive, probability) == pytest.approx(0.425)


def test_expected_calibration_error_is_the_weighted_gap_of_calibration_curve():
    rng = np.random.default_rng(11)
    probability = rng.uniform(size=500)
    is_positive = rng.uniform(size=500) < probability**2
    for n_bins in (5, 10, 15):
        fraction, mean = calibration_curve(is_positive, probability, n_bins=n_bins)
        counts = np.histogram(probability, bins=np.linspace(0, 1, n_bins + 1))[0]
        expected = np.sum(counts[counts > 0] * np.abs(fraction - mean)) / probability.size
        assert expected_calibration_error(is_positive, probability, n_bins) == pytest.approx(
            expected, abs=1e-12
        )


def test_calibration_metrics_brier_is_sklearns():
    probability = np.array([0.1, 0.4, 0.8, 0.9])
    is_positive = np.array([False, True, True, False])
    result = calibration_metrics(is_positive, probability)
    assert result["bins"] == 10
    assert result["brier"] == pytest.approx((0.01 + 0.36 + 0.04 + 0.81) / 4)
    assert result["brier"] == pytest.approx(brier_score_loss(is_positive, probability))
    # One class only: both are still defined.
    assert calibration_metrics([0, 0], [0.2, 0.4])["brier"] == pytest.approx(0.1)


@pytest.mark.parametrize("probability", [[-0.1, 0.5], [0.5, 1.2]])
def test_calibration_refuses_probabilities_outside_0_1(probability):
    with pytest.raises(SynergicError, match=r"must lie in \[0, 1\]"):
        expected_calibration_error([0, 1], probability)


# -- prior correction -------------------------------------------------------------------------


def _posterior(x, prior):
    # Classes N(+1, 1) and N(-1, 1): log-likelihood ratio 2x, so P(1|x) = sigmoid(2x + logit).
    return 1.0 / (1.0 + np.exp(-(2 * x + np.log(prior / (1 - prior)))))


def test_prior_correction_recovers_the_posterior_under_the_new_prior():
    x = np.linspace(-4, 4, 81)
    trained = _posterior(x, 0.35)  # a perfectly calibrated model trained at 35 % positives
    corrected = prior_corrected(np.stack([1 - trained, trained], 1), [0.65, 0.35], [0.81, 0.19])
    np.testing.assert_allclose(corrected[:, 1], _posterior(x, 0.19), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(corrected.sum(axis=1), 1.0)


def test_prior_correction_keeps_the_ranking_and_equal_priors_change_nothing():
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet([1, 1, 1], size=50)
    np.testing.assert_allclose(
        prior_corrected(probabilities, [2, 1, 1], [2, 1, 1]), probabilities, rtol=1e-12
    )
    labels = rng.integers(0, 2, size=50)
    binary = np.stack([1 - probabilities[:, 0], probabilities[:, 0]], 1)
    shifted = prior_corrected(binary, [0.65, 0.35], [0.81, 0.19])
    assert roc_auc_score(labels, shifted[:, 1]) == pytest.approx(
        roc_auc_score(labels, binary[:, 1])
    )


@pytest.mark.parametrize(
    ("training", "target", "match"),
    [([0.5, 0.5, 0.0], [0.3, 0.3, 0.4], "training_prior must hold 3 positive"),
     ([0.5, 0.5], [0.3, 0.3, 0.4], "training_prior must hold 3"),
     ([1, 1, 1], [0.3, float("nan"), 0.4], "target_prior must hold 3")],
)
def test_bad_priors_are_refused(training, target, match):
    with pytest.raises(SynergicError, match=match):
        prior_corrected(np.full((2, 3), 1 / 3), training, target)


def test_the_balanced_sampler_trains_on_half_the_data_prior_plus_a_quarter(isic_sample):
    # docs/metrics.md: half the pairs share a class (drawn at the data's frequencies), half are
    # one image of each class, so a component sees 0.5 * pi + 0.5 * 0.5 positives.
    from synergic.experiment import sampler_class_mix
    from synergic.sampling import BalancedPairSampler, RandomPairSampler

    rows = (isic_sample / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv").read_text().split()
    labels = np.array([int(row.split(",")[1] == "malignant") for row in rows])
    data_prior = labels.mean()
    assert 0.1 < data_prior < 0.4
    balanced = sampler_class_mix(BalancedPairSampler(labels.tolist(), batch_size=32), labels, 500)
    np.testing.assert_allclose(balanced[:, 1], 0.5 * data_prior + 0.25, atol=0.02)
    uniform = sampler_class_mix(RandomPairSampler(labels.tolist(), batch_size=32), labels, 500)
    np.testing.assert_allclose(uniform[:, 1], data_prior, atol=0.02)


# -- the metrics.json entries -----------------------------------------------------------------


def _two_columns(scores):
    return np.stack([1 - np.asarray(scores), np.asarray(scores)], 1)


def test_threshold_and_calibration_entries():
    test_scores = np.array([0.2, 0.7, 0.45, 0.3, 0.9, 0.1])
    test_labels = np.array([0, 1, 1, 0, 1, 0])
    entries = threshold_and_calibration(
        _two_columns(test_scores), test_labels,
        validation_probabilities=_two_columns(SCORES), validation_labels=LABELS,
        training_prior=[0.65, 0.35], data_prior=[0.81, 0.19],
    )
    threshold = entries["threshold"]
    assert threshold["youden"] == 0.3 and threshold["validation_youden_j"] == pytest.approx(0.6)
    # At ">= 0.3" on test: 3/3 positives, 2/3 negatives (0.3 itself counts as positive).
    assert threshold["test_at_youden"] == {"sensitivity": 1.0, "specificity": pytest.approx(2 / 3)}
    assert list(threshold["specificity_at_sensitivity"]) == ["0.82", "0.89", "0.95"]
    assert threshold["specificity_at_sensitivity"]["0.82"] == pytest.approx(
        specificity_at_sensitivity(test_labels, test_scores, 0.82)
    )
    assert threshold["at_validation_sensitivity"]["0.95"] == {
        "threshold": 0.3, "sensitivity": 1.0, "specificity": pytest.approx(2 / 3),
    }
    assert entries["calibration"] == {
        "brier": pytest.approx(brier_score_loss(test_labels, test_scores)),
        "ece": pytest.approx(expected_calibration_error(test_labels, test_scores)),
        "bins": 10,
    }
    corrected = prior_corrected(_two_columns(test_scores), [0.65, 0.35], [0.81, 0.19])
    at_rule = compute_metrics(corrected, test_labels)
    prior = entries["prior_correction"]
    assert prior["training_prior"] == [0.65, 0.35] and prior["data_prior"] == [0.81, 0.19]
    assert prior["test"] == {
        "accuracy": at_rule["accuracy"], "sensitivity": at_rule["sensitivity"],
        "specificity": at_rule["specificity"],
        "brier": pytest.approx(brier_score_loss(test_labels, corrected[:, 1])),
        "ece": pytest.approx(expected_calibration_error(test_labels, corrected[:, 1])),
    }
    json.dumps(entries, allow_nan=False)  # plain floats only


def test_no_threshold_is_chosen_without_a_two_class_validation_set():
    probabilities, labels = _two_columns(SCORES), LABELS
    alone = threshold_and_calibration(probabilities, labels)
    assert set(alone) == {"threshold", "calibration"}
    assert set(alone["threshold"]) == {"rule", "specificity_at_sensitivity"}
    one_class = threshold_and_calibration(
        probabilities, labels, validation_probabilities=probabilities[:3],
        validation_labels=np.zeros(3, dtype=int),
    )
    assert "youden" not in one_class["threshold"]


def test_more_than_two_classes_give_no_entries():
    probabilities = np.full((4, 3), 1 / 3)
    assert threshold_and_calibration(probabilities, np.array([0, 1, 2, 0])) == {}


# -- the reliability diagram ------------------------------------------------------------------


def test_plot_reliability_writes_only_the_png(tmp_path):
    rng = np.random.default_rng(2)
    probability = rng.uniform(size=100)
    is_positive = rng.uniform(size=100) < probability
    target = tmp_path / "calibration.png"
    assert plot_reliability({"model": (probability, is_positive)}, target) == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.png"]


def test_plot_reliability_refuses_what_it_cannot_draw(tmp_path):
    with pytest.raises(SynergicError, match="only one class"):
        plot_reliability({"model": ([0.2, 0.3], [1, 1])}, tmp_path / "c.png")
    with pytest.raises(SynergicError, match=r"must lie in \[0, 1\]"):
        plot_reliability({"model": ([0.2, 1.3], [0, 1])}, tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


# -- a run ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_torch_thread):
    from tiny_recipe import TINY_RECIPE

    from synergic.experiment import run
    from synergic.recipe.loading import load_recipe

    folder = tmp_path_factory.mktemp("calibration")
    (folder / "tiny.yaml").write_text(TINY_RECIPE)
    run(load_recipe(folder / "tiny.yaml"), folder / "run")
    return folder / "run"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_run_writes_calibration_png_and_the_metrics_json_entries(tiny_run):
    from synergic.experiment import build_sampler, sampler_class_mix
    from synergic.recipe.loading import load_recipe

    assert (tiny_run / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    classes = metrics["classes"]
    predictions = _read_csv(tiny_run / "predictions.csv")
    truth = {
        row["image"]: classes.index(row["label"])
        for row in _read_csv(tiny_run / "test_labels.csv")
    }
    scores = np.array([float(row[classes[1]]) for row in predictions])
    labels = np.array([truth[row["image"]] for row in predictions])

    assert metrics["calibration"]["bins"] == 10
    assert metrics["calibration"]["brier"] == pytest.approx(brier_score_loss(labels, scores))
    assert metrics["calibration"]["ece"] == pytest.approx(
        expected_calibration_error(labels, scores)
    )
    threshold = metrics["threshold"]
    for target, value in threshold["specificity_at_sensitivity"].items():
        assert value == pytest.approx(specificity_at_sensitivity(labels, scores, float(target)))
    # The tiny recipe carves a validation split: a threshold was chosen on it and applied here.
    assert threshold["test_at_youden"] == pytest.approx(
        rates_at_threshold(labels, scores, threshold["youden"])
    )
    assert set(threshold["at_validation_sensitivity"]) == {"0.82", "0.89", "0.95"}

    # The prior correction's mixes: the sampler's draws over the run's steps, the training labels.
    splits = _read_csv(tiny_run / "splits.csv")
    train_labels = np.array([classes.index(r["label"]) for r in splits if r["split"] == "train"])
    prior = metrics["prior_correction"]
    assert prior["data_prior"] == pytest.approx(np.bincount(train_labels) / train_labels.size)
    recipe = load_recipe(tiny_run / "recipe.yaml")
    mix = sampler_class_mix(build_sampler(recipe, train_labels.tolist()), train_labels,
                            prior["sampler_steps"])
    assert prior["sampler_steps"] == metrics["iterations"] == recipe.train.iterations
    np.testing.assert_allclose(prior["component_training_prior"], mix, rtol=1e-12)
    assert prior["training_prior"] == pytest.approx(mix.mean(axis=0).tolist())
    corrected = prior_corrected(_two_columns(scores), prior["training_prior"], prior["data_prior"])
    assert prior["test"]["brier"] == pytest.approx(brier_score_loss(labels, corrected[:, 1]))
