"""synergic.stats (bootstrap intervals, DeLong's test, paired comparison) and `synergic compare`.

Each statistic is checked against an independent computation: DeLong's test against pROC's
published result on its aSAH data and against a slow pairwise implementation, the bootstrap
against scipy's own percentile interval, a normal approximation and a hand-rolled resampling.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from synergic.errors import SynergicError
from synergic.metrics import compute_metrics
from synergic.stats import (
    CI_METHOD,
    delong_placements,
    delong_test,
    metric_intervals,
    paired_comparison,
    stratified_bootstrap,
)

# -- pROC's aSAH example -------------------------------------------------------------------------
#
# pROC (Robin et al., BMC Bioinformatics 12:77, 2011) publishes, in its test suite, the DeLong
# placement values of two predictors of its `aSAH` data (113 patients, 41 with a poor outcome =
# cases, 72 good = controls), tests/testthat/helper-deLongPlacementsCpp-expected.R, and the result
# of `roc.test(roc(aSAH$outcome, aSAH$wfns), roc(aSAH$outcome, aSAH$s100b))` (method "delong",
# paired), tests/testthat/test-roc.test.R:
#     Z = 2.20898359144091, p = 0.0271757822291882,
#     95 % CI of AUC(wfns) - AUC(s100b) = [0.0104061769564846, 0.174214419249478].
# The placements are written here as integers: a case's is (2 * controls below + controls tied),
# over 2 * 72; a control's is (2 * cases above + cases tied), over 2 * 41. Any scores that give
# these placements give the same AUCs and the same test (both depend on the ranks only), so the
# scores are rebuilt from them (`_scores_from_placements`) and the rebuilt placements checked.

ASAH_CASES, ASAH_CONTROLS = 41, 72
ASAH = {
    "wfns": (
        "117 94 128 140 140 140 140 94 140 94 37 94 140 128 128 94 140 140 140 94 140 94 140 94 "
        "128 140 128 128 37 128 128 94 94 140 140 94 94 140 140 140 140",
        "80 80 80 80 18 80 66 66 80 66 66 80 80 80 66 80 66 80 80 53 44 80 44 80 18 18 80 80 66 "
        "44 80 80 66 66 80 66 80 66 66 80 80 80 80 66 80 66 80 80 53 66 44 66 80 44 80 80 18 44 "
        "66 66 80 80 80 53 80 66 66 44 44 80 80 80",
    ),
    "s100b": (
        "81 63 103 78 130 144 140 26 123 50 26 128 126 139 144 118 144 144 144 26 144 120 0 50 "
        "116 144 118 144 38 118 81 63 74 116 144 88 144 121 144 144 130",
        "58 55 66 80 28 52 66 66 80 73 80 70 63 77 52 77 63 58 52 80 53 55 36 70 24 28 53 77 32 "
        "28 63 73 70 73 80 58 66 55 54 80 80 70 80 70 73 53 70 73 37 63 42 77 66 39 77 80 48 34 "
        "66 54 73 55 66 77 80 52 54 28 52 54 24 27",
    ),
}
ASAH_IS_POSITIVE = np.array([True] * ASAH_CASES + [False] * ASAH_CONTROLS)


def _numerators(text: str) -> np.ndarray:
    return np.array([int(x) for x in text.split()])


def _scores_from_placements(case: np.ndarray, control: np.ndarray) -> np.ndarray:
    """Scores [cases..., controls...] whose placements are the given numerators.

    Controls with the same placement are tied (no case can lie between them, or their
    placements would differ); control group k from the bottom gets score 2k. A case above
    exactly k groups has numerator 2 * (controls in them), and gets 2k + 1; a case tied with
    group k has 2 * (controls below k) + (size of k), and gets 2k.
    """
    levels, sizes = np.unique(control, return_counts=True)
    levels, sizes = levels[::-1], sizes[::-1]  # ascending score: descending cases above
    below = np.concatenate([[0], np.cumsum(sizes)])
    control_scores = {int(y): 2.0 * (k + 1) for k, y in enumerate(levels)}
    case_scores = []
    for x in case:
        above = np.flatnonzero(2 * below == x)
        tied = np.flatnonzero(2 * below[:-1] + sizes == x)
        assert above.size + tied.size == 1, x
        case_scores.append(2.0 * above[0] + 1 if above.size else 2.0 * (tied[0] + 1))
    return np.array(case_scores + [control_scores[int(y)] for y in control])


def asah_scores(name: str) -> np.ndarray:
    case, control = (_numerators(text) for text in ASAH[name])
    return _scores_from_placements(case, control)


def slow_placements(is_positive, scores):
    """DeLong et al. (1988) by definition: psi over every (case, control) pair, O(N^2)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    x, y = scores[is_positive], scores[~is_positive]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)


def slow_delong(is_positive, scores_a, scores_b):
    """(difference b - a, z, p) from the pairwise placements and DeLong's eq. for S."""
    is_positive = np.asarray(is_positive, dtype=bool)
    m, n = int(is_positive.sum()), int((~is_positive).sum())
    auc_a, x_a, y_a = slow_placements(is_positive, scores_a)
    auc_b, x_b, y_b = slow_placements(is_positive, scores_b)
    s10 = np.cov(np.vstack([x_a, x_b]), ddof=1)
    s01 = np.cov(np.vstack([y_a, y_b]), ddof=1)
    s = s10 / m + s01 / n
    variance = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    z = (auc_b - auc_a) / math.sqrt(variance)
    return auc_b - auc_a, z, 2 * scipy_stats.norm.sf(abs(z))


def test_rebuilt_asah_scores_have_procs_published_placements():
    for name, (case_text, control_text) in ASAH.items():
        scores = asah_scores(name)
        auc, cases, controls = delong_placements(ASAH_IS_POSITIVE, scores)
        np.testing.assert_allclose(cases * 2 * ASAH_CONTROLS, _numerators(case_text), atol=1e-9)
        np.testing.assert_allclose(controls * 2 * ASAH_CASES, _numerators(control_text),
                                   atol=1e-9)
        _, slow_cases, slow_controls = slow_placements(ASAH_IS_POSITIVE, scores)
        np.testing.assert_allclose(slow_cases, cases, atol=1e-12)
        np.testing.assert_allclose(slow_controls, controls, atol=1e-12)
        assert auc == pytest.approx(roc_auc_score(ASAH_IS_POSITIVE, scores), abs=1e-12)
    # pROC's theta of each predictor (same file)
    assert delong_placements(ASAH_IS_POSITIVE, asah_scores("wfns"))[0] == pytest.approx(
        0.823678861788618, abs=1e-12)
    assert delong_placements(ASAH_IS_POSITIVE, asah_scores("s100b"))[0] == pytest.approx(
        0.731368563685637, abs=1e-12)


def test_delong_matches_procs_published_roc_test_on_asah():
    # roc.test(r.wfns, r.s100b): Z = (AUC_wfns - AUC_s100b) / SE; ours is B - A with B = wfns
    result = delong_test(ASAH_IS_POSITIVE, asah_scores("s100b"), asah_scores("wfns"))
    assert result.z == pytest.approx(2.20898359144091, rel=1e-10)
    assert result.p_value == pytest.approx(0.0271757822291882, rel=1e-10)
    half_width = scipy_stats.norm.ppf(0.975) * result.se
    assert result.difference - half_width == pytest.approx(0.0104061769564846, rel=1e-9)
    assert result.difference + half_width == pytest.approx(0.174214419249478, rel=1e-9)
    swapped = delong_test(ASAH_IS_POSITIVE, asah_scores("wfns"), asah_scores("s100b"))
    assert swapped.z == pytest.approx(-result.z) and swapped.p_value == pytest.approx(
        result.p_value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_a_slow_pairwise_implementation_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 60
    is_positive = rng.random(n) < 0.35
    is_positive[:2], is_positive[2:4] = True, False
    # rounded to one decimal: many ties within each model, between classes and across models
    scores_a = np.round(np.clip(rng.normal(0.4 + 0.2 * is_positive, 0.2), 0, 1), 1)
    scores_b = np.round(np.clip(0.5 * scores_a + rng.normal(0.25 + 0.15 * is_positive, 0.15),
                                0, 1), 1)
    result = delong_test(is_positive, scores_a, scores_b)
    difference, z, p = slow_delong(is_positive, scores_a, scores_b)
    assert result.difference == pytest.approx(difference, abs=1e-12)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.auc_a == pytest.approx(roc_auc_score(is_positive, scores_a), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(is_positive, scores_b), abs=1e-12)


def test_delong_of_identical_scores_is_z_0_p_1_and_refuses_bad_input():
    scores = asah_scores("s100b")
    result = delong_test(ASAH_IS_POSITIVE, scores, scores)
    assert (result.z, result.p_value, result.difference) == (0.0, 1.0, 0.0)
    with pytest.raises(SynergicError, match="at least two cases of each class"):
        delong_test([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], [0.8, 0.1, 0.2, 0.3])
    with pytest.raises(SynergicError, match="one score per label"):
        delong_test([1, 0, 1, 0], [0.9, 0.1, 0.2], [0.8, 0.1, 0.2, 0.3])
    with pytest.raises(SynergicError, match="nan or inf"):
        delong_test([1, 0, 1, 0], [0.9, math.nan, 0.2, 0.3], [0.8, 0.1, 0.2, 0.3])


# -- the bootstrap -------------------------------------------------------------------------------


def test_stratified_bootstrap_is_scipys_percentile_interval_over_classes():
    """With one class it is exactly scipy.stats.bootstrap(method="percentile") of that sample."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=40)
    labels = np.zeros(40, dtype=int)
    low, high = stratified_bootstrap(lambda i: np.array([values[i].mean()]), labels,
                                     n_bootstrap=300, seed=7)
    direct = scipy_stats.bootstrap((values,), np.mean, n_resamples=300, method="percentile",
                                   rng=np.random.default_rng(7), vectorized=False)
    assert low[0] == pytest.approx(direct.confidence_interval.low, abs=1e-12)
    assert high[0] == pytest.approx(direct.confidence_interval.high, abs=1e-12)


def test_stratified_bootstrap_of_a_mean_matches_the_stratified_normal_interval():
    """The interval of a mean under resampling within two classes approaches
    mean +- 1.96 * sqrt(sum_k (n_k/N)^2 s_k^2 / n_k) (population s_k: the bootstrap's)."""
    rng = np.random.default_rng(5)
    labels = np.array([0] * 300 + [1] * 100)
    values = np.where(labels == 1, rng.normal(3.0, 2.0, 400), rng.normal(0.0, 1.0, 400))
    low, high = stratified_bootstrap(lambda i: np.array([values[i].mean()]), labels,
                                     n_bootstrap=4000, seed=0)
    se = math.sqrt(sum((np.sum(labels == k) / 400) ** 2 * values[labels == k].var()
                       / np.sum(labels == k) for k in (0, 1)))
    # An unstratified bootstrap would add the between-class spread: a wider interval.
    assert (high[0] - low[0]) == pytest.approx(2 * 1.959964 * se, rel=0.06)
    assert (low[0] + high[0]) / 2 == pytest.approx(values.mean(), abs=0.1 * se)


def test_stratified_bootstrap_keeps_class_counts_and_seeds_reproducibly():
    labels = np.array([0] * 7 + [1] * 3 + [2])  # class 2 has one image: in every resample
    seen = []

    def statistic(indices):
        seen.append(np.bincount(labels[indices], minlength=3).tolist())
        return np.array([indices.size])

    stratified_bootstrap(statistic, labels, n_bootstrap=25, seed=1)
    assert all(counts == [7, 3, 1] for counts in seen)
    mean = lambda i: np.array([float(i.mean())])  # noqa: E731
    first = stratified_bootstrap(mean, labels, n_bootstrap=50, seed=4)
    again = stratified_bootstrap(mean, labels, n_bootstrap=50, seed=4)
    other = stratified_bootstrap(mean, labels, n_bootstrap=50, seed=5)
    assert np.array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))
    with pytest.raises(SynergicError, match="n_bootstrap must be at least 1"):
        stratified_bootstrap(mean, labels, n_bootstrap=0)
    with pytest.raises(SynergicError, match=r"level must lie in \(0, 1\)"):
        stratified_bootstrap(mean, labels, level=1.0)


def test_bootstrap_auc_interval_agrees_with_delongs_on_asah():
    """pROC's two intervals of an AUC (bootstrap, DeLong) agree closely on aSAH's s100b; ours too."""
    scores = asah_scores("s100b")
    labels = ASAH_IS_POSITIVE.astype(int)
    low, high = stratified_bootstrap(
        lambda i: np.array([delong_placements(labels[i], scores[i])[0]]), labels,
        n_bootstrap=2000, seed=0,
    )
    auc, cases, controls = delong_placements(ASAH_IS_POSITIVE, scores)
    se = math.sqrt(cases.var(ddof=1) / ASAH_CASES + controls.var(ddof=1) / ASAH_CONTROLS)
    assert low[0] == pytest.approx(auc - 1.959964 * se, abs=0.02)
    assert high[0] == pytest.approx(auc + 1.959964 * se, abs=0.02)


def _binary_predictions(n=60, seed=0, positives=20):
    rng = np.random.default_rng(seed)
    labels = np.array([1] * positives + [0] * (n - positives))
    p = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.01, 0.99).round(2)  # ties
    return np.stack([1 - p, p], axis=1), labels


def test_metric_intervals_are_those_of_compute_metrics_over_resamples():
    probabilities, labels = _binary_predictions()
    components = [np.roll(probabilities, 1, axis=0)]
    result = metric_intervals(probabilities, labels, component_probabilities=components,
                              n_bootstrap=25, seed=2)
    assert result["ci"] == {"method": CI_METHOD, "n_bootstrap": 25, "level": 0.95, "seed": 2}
    reported = compute_metrics(probabilities, labels)
    assert list(result["test_ci"]) == list(reported)
    assert len(result["test_components_ci"]) == 1
    # the same resamples, scored one metric at a time by compute_metrics
    for model, intervals, name in ((probabilities, result["test_ci"], "auc"),
                                   (probabilities, result["test_ci"], "sensitivity"),
                                   (components[0], result["test_components_ci"][0], "ap")):
        low, high = intervals[name]
        expected = stratified_bootstrap(
            lambda i: np.array([compute_metrics(model[i], labels[i])[name]]), labels,
            n_bootstrap=25, seed=2,
        )
        assert (low, high) == pytest.approx((expected[0][0], expected[1][0]), abs=1e-12)
    for name, value in reported.items():
        low, high = result["test_ci"][name]
        assert low <= value + 1e-12 and value <= high + 1e-12, name


def test_metric_intervals_with_one_positive_image_and_with_one_class():
    # One positive image: it is in every resample, so AUC and AP stay defined in each one.
    probabilities, labels = _binary_predictions(n=30, positives=1)
    result = metric_intervals(probabilities, labels, n_bootstrap=30)
    assert all(math.isfinite(b) for b in result["test_ci"]["auc"])
    sensitivity = compute_metrics(probabilities, labels)["sensitivity"]
    assert result["test_ci"]["sensitivity"] == [sensitivity, sensitivity]
    # One class only: AUC, AP and sensitivity are undefined on the test set, so are their
    # intervals; accuracy and specificity still have one.
    one_class = metric_intervals(probabilities[labels == 0], labels[labels == 0], n_bootstrap=30)
    for name in ("ap", "ap_trapezoid", "auc", "sensitivity"):
        assert all(math.isnan(b) for b in one_class["test_ci"][name]), name
    assert all(math.isfinite(b) for b in one_class["test_ci"]["accuracy"])


def test_metric_intervals_for_three_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 12)
    logits = rng.normal(size=(36, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = metric_intervals(probabilities, labels, n_bootstrap=20)
    assert list(result["test_ci"]) == ["ap", "auc", "accuracy", "balanced_accuracy"]
    assert all(math.isfinite(b) for bounds in result["test_ci"].values() for b in bounds)


# -- paired comparison ---------------------------------------------------------------------------


def test_paired_comparison_difference_interval_and_delong():
    probabilities_a, labels = _binary_predictions(seed=1)
    probabilities_b, _ = _binary_predictions(seed=2)
    result = paired_comparison(probabilities_a, probabilities_b, labels, n_bootstrap=60, seed=3)
    auc_a = roc_auc_score(labels, probabilities_a[:, 1])
    auc_b = roc_auc_score(labels, probabilities_b[:, 1])
    assert (result["a"], result["b"]) == pytest.approx((auc_a, auc_b))
    assert result["difference"] == pytest.approx(auc_b - auc_a)
    expected = delong_test(labels, probabilities_a[:, 1], probabilities_b[:, 1])
    assert result["p_value"] == pytest.approx(expected.p_value)
    assert result["z"] == pytest.approx(expected.z)
    assert result["test"] == "delong" and result["note"] is None
    # a hand-rolled paired, stratified bootstrap of the same difference, with its own draws
    rng = np.random.default_rng(11)
    strata = [np.flatnonzero(labels == k) for k in (0, 1)]
    draws = []
    for _ in range(1000):
        i = np.concatenate([rng.choice(s, s.size) for s in strata])
        draws.append(slow_placements(labels[i], probabilities_b[i, 1])[0]
                     - slow_placements(labels[i], probabilities_a[i, 1])[0])
    assert result["ci"] == pytest.approx(np.percentile(draws, [2.5, 97.5]), abs=0.04)


def test_paired_comparison_pairs_the_images():
    """B = A plus a little noise: the paired interval is narrow, far narrower than either AUC's."""
    probabilities_a, labels = _binary_predictions(seed=4)
    rng = np.random.default_rng(0)
    p_b = np.clip(probabilities_a[:, 1] + rng.normal(0, 0.01, labels.size), 0, 1)
    probabilities_b = np.stack([1 - p_b, p_b], axis=1)
    result = paired_comparison(probabilities_a, probabilities_b, labels, n_bootstrap=30)
    low, high = result["ci"]
    alone = metric_intervals(probabilities_a, labels, n_bootstrap=30)["test_ci"]["auc"]
    assert low <= result["difference"] <= high
    assert high - low < 0.25 * (alone[1] - alone[0])


def test_paired_comparison_of_other_metrics_and_of_three_classes_has_no_p_value():
    probabilities_a, labels = _binary_predictions(seed=1)
    probabilities_b, _ = _binary_predictions(seed=2)
    ap = paired_comparison(probabilities_a, probabilities_b, labels, metric="ap", n_bootstrap=20)
    assert ap["p_value"] is None and "AUC" in ap["note"]
    rng = np.random.default_rng(1)
    labels3 = np.repeat([0, 1, 2], 10)
    p = [rng.dirichlet([1, 1, 1], 30) for _ in range(2)]
    multi = paired_comparison(p[0], p[1], labels3, n_bootstrap=20)
    assert multi["p_value"] is None and "two classes" in multi["note"]
    assert multi["difference"] == pytest.approx(
        compute_metrics(p[1], labels3)["auc"] - compute_metrics(p[0], labels3)["auc"])
    with pytest.raises(SynergicError, match="unknown metric 'sensitivity' for 3 classes"):
        paired_comparison(p[0], p[1], labels3, metric="sensitivity")
    with pytest.raises(SynergicError, match="differ in shape"):
        paired_comparison(p[0], p[1][:5], labels3)


# -- `synergic compare` on two tiny runs ---------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, one_torch_thread):
    """A plain ensemble (lambda = 0) and SDL, the tiny recipe otherwise."""
    from tiny_recipe import TINY_RECIPE

    from synergic.experiment import run
    from synergic.recipe import load_recipe

    folder = tmp_path_factory.mktemp("compare")
    (folder / "tiny.yaml").write_text(TINY_RECIPE)
    runs = {}
    for name, weight in (("ensemble", 0), ("sdl", 1)):
        recipe = load_recipe(folder / "tiny.yaml", [f"train.synergic_weight={weight}"])
        runs[name] = run(recipe, folder / name).run_dir
    return runs


def test_a_run_records_intervals_of_every_metric(two_runs):
    metrics = json.loads((two_runs["sdl"] / "metrics.json").read_text())
    assert metrics["ci"] == {"method": CI_METHOD, "n_bootstrap": 20, "level": 0.95, "seed": 0}
    assert list(metrics["test_ci"]) == list(metrics["test"])
    assert len(metrics["test_components_ci"]) == len(metrics["test_components"]) == 2
    for name, value in metrics["test"].items():
        low, high = metrics["test_ci"][name]
        if value is not None and low is not None:
            assert low <= value <= high


def test_compare_prints_the_difference_interval_and_p_value(two_runs, capsys):
    from synergic.cli import main

    main(["compare", str(two_runs["ensemble"]), str(two_runs["sdl"]), "--n-bootstrap", "30",
          "--json"])
    result = json.loads(capsys.readouterr().out)
    a = json.loads((two_runs["ensemble"] / "metrics.json").read_text())["test"]["auc"]
    b = json.loads((two_runs["sdl"] / "metrics.json").read_text())["test"]["auc"]
    assert {"metric", "a", "b", "difference", "ci", "p_value"} <= set(result)
    assert (result["metric"], result["a"], result["b"]) == ("auc", a, b)
    assert result["difference"] == pytest.approx(b - a)
    assert result["n_bootstrap"] == 30 and len(result["ci"]) == 2
    assert 0.0 <= result["p_value"] <= 1.0 and result["test"] == "delong"
    main(["compare", str(two_runs["ensemble"]), str(two_runs["sdl"]), "--n-bootstrap", "30"])
    text = capsys.readouterr().out
    assert f"  A  {a:.4f}  {two_runs['ensemble']}" in text
    assert f"B - A = {b - a:+.4f}, 95% interval [{result['ci'][0]:+.4f}, " in text
    assert f"DeLong's test of equal AUCs: p = {result['p_value']:.4g}" in text


def test_compare_refuses_runs_with_different_test_sets_in_one_line(two_runs, tmp_path, capsys):
    from synergic.cli import main

    changed = tmp_path / "relabelled"
    shutil.copytree(two_runs["sdl"], changed)
    path = changed / "test_labels.csv"
    lines = path.read_text().splitlines()
    image, label = lines[1].split(",")
    classes = json.loads((changed / "metrics.json").read_text())["classes"]
    other = next(c for c in classes if c != label)
    path.write_text("\n".join([lines[0], f"{image},{other}", *lines[2:]]) + "\n")
    with pytest.raises(SystemExit) as caught:
        main(["compare", str(two_runs["ensemble"]), str(changed)])
    assert caught.value.code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert f"their test sets differ (image '{image}' is {label} in A, {other} in B)" in error
