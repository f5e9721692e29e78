from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from synergic.errors import SynergicError
from synergic.plots import curve_label, curve_labels, plot_pr, plot_roc


def _curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    labels = np.array([0, 1] * 20)
    curves = {}
    for name, signal in [("SDL (aggregate)", 0.5), ("component 1", 0.3), ("component 2", 0.2)]:
        curves[name] = (np.clip(signal * labels + rng.uniform(0, 1 - signal, 40), 0, 1), labels)
    return curves


def _assert_png(path) -> None:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert width > 100 and height > 100


@pytest.mark.parametrize("plot", [plot_roc, plot_pr])
def test_plots_write_a_png_and_leave_no_temporary_file(plot, tmp_path):
    backend_before = matplotlib.get_backend()
    target = tmp_path / "figures" / "curve.png"
    assert plot(_curves(), target, title="ISIC 2016 test") == target
    _assert_png(target)
    assert [p.name for p in target.parent.iterdir()] == ["curve.png"]
    assert matplotlib.get_backend() == backend_before


def test_a_failed_plot_keeps_the_previous_file(tmp_path):
    target = tmp_path / "roc.png"
    plot_roc(_curves(), target)
    before = target.read_bytes()
    one_class = {"broken": (np.array([0.2, 0.9]), np.array([1, 1]))}
    with pytest.raises(SynergicError, match="only one class"):
        plot_roc(one_class, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]


def test_legend_labels_carry_each_curves_auc_and_ap():
    curves = _curves()
    roc_labels = curve_labels(curves, "roc")
    pr_labels = curve_labels(curves, "pr")
    assert list(roc_labels) == list(curves)
    for name, (scores, labels) in curves.items():
        auc = skm.roc_auc_score(labels, scores)
        ap = skm.average_precision_score(labels, scores)
        assert roc_labels[name] == f"{name} (AUC = {auc:.3f})"
        assert pr_labels[name] == f"{name} (AP = {ap:.3f})"
    # The curves differ, so the labels must too: a label that ignored its data would not.
    assert len(set(roc_labels.values())) == 3


def test_curve_label_formats():
    assert curve_label("SDL (aggregate)", "AUC", 0.81849) == "SDL (aggregate) (AUC = 0.818)"
    assert curve_label("component 1", "AP", float("nan")) == "component 1 (AP = n/a)"


def test_rejects_bad_curves(tmp_path):
    with pytest.raises(SynergicError, match="no curves"):
        plot_roc({}, tmp_path / "empty.png")
    with pytest.raises(SynergicError, match="3 scores but 2 labels"):
        plot_pr({"x": (np.array([0.1, 0.5, 0.9]), np.array([0, 1]))}, tmp_path / "x.png")
    with pytest.raises(SynergicError, match="kind"):
        curve_labels(_curves(), "det")
