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


# -- more than two classes: one-vs-rest ----------------------------------------------------------

CLASSES = ["nevus", "melanoma", "keratosis"]


def _class_curves(labels: np.ndarray, seed: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Softmax outputs of three models of different skill on the same ``labels``."""
    rng = np.random.default_rng(seed)
    curves = {}
    for name, skill in [("SDL (aggregate)", 2.0), ("component 1", 1.0), ("component 2", 0.5)]:
        logits = rng.normal(size=(labels.size, len(CLASSES))) + skill * np.eye(len(CLASSES))[labels]
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        curves[name] = (probabilities, labels)
    return curves


def _legends(figure) -> dict[str, list[str]]:
    return {axes.get_title(): [text.get_text() for text in axes.get_legend().get_texts()]
            for axes in figure.axes}


def test_one_vs_rest_panels_carry_each_classes_auc_and_ap():
    from synergic.plots import one_vs_rest_figure

    labels = np.array([0, 1, 2, 2, 1, 0, 2, 0, 1, 2] * 4)
    curves = _class_curves(labels)
    roc = _legends(one_vs_rest_figure(curves, CLASSES, "roc", "ROC"))
    pr = _legends(one_vs_rest_figure(curves, CLASSES, "pr", "PR"))
    assert list(roc) == list(pr) == [f"{c} vs rest" for c in CLASSES]
    for name, (probabilities, _) in curves.items():
        aucs = []
        for k, class_name in enumerate(CLASSES):
            auc = skm.roc_auc_score(labels == k, probabilities[:, k])
            ap = skm.average_precision_score(labels == k, probabilities[:, k])
            assert f"{name} (AUC = {auc:.3f})" in roc[f"{class_name} vs rest"]
            assert f"{name} (AP = {ap:.3f})" in pr[f"{class_name} vs rest"]
            aucs.append(auc)
        # The panels are scikit-learn's one-vs-rest: their mean is the run's macro AUC.
        assert np.mean(aucs) == pytest.approx(
            skm.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert roc["nevus vs rest"][0] == "chance"
    assert len(set(roc["melanoma vs rest"])) == 4  # chance + three different curves


def test_one_vs_rest_leaves_out_absent_classes_with_a_note(tmp_path):
    from synergic.plots import one_vs_rest, one_vs_rest_figure, plot_roc_one_vs_rest

    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1])  # no keratosis in this test set
    curves = _class_curves(labels)
    drawable, skipped = one_vs_rest(curves, CLASSES)
    assert list(drawable) == ["nevus", "melanoma"]
    assert skipped == {"keratosis": "no test image"}
    scores, is_melanoma = drawable["melanoma"]["component 1"]
    assert np.array_equal(scores, curves["component 1"][0][:, 1])
    assert is_melanoma.tolist() == (labels == 1).tolist()
    figure = one_vs_rest_figure(curves, CLASSES, "pr", "PR")
    assert [axes.get_title() for axes in figure.axes] == ["nevus vs rest", "melanoma vs rest"]
    assert "not drawn: keratosis (no test image)" in [text.get_text() for text in figure.texts]

    only_nevus = {"model": (curves["component 1"][0], np.zeros(8, dtype=np.int64))}
    assert one_vs_rest(only_nevus, CLASSES)[1] == {
        "nevus": "every test image is of it", "melanoma": "no test image",
        "keratosis": "no test image"}
    target = tmp_path / "roc.png"
    with pytest.raises(SynergicError, match="no class has a one-vs-rest curve"):
        plot_roc_one_vs_rest(only_nevus, CLASSES, target)
    assert not target.exists()


def test_one_vs_rest_rejects_bad_inputs(tmp_path):
    from synergic.plots import one_vs_rest, plot_pr_one_vs_rest

    labels = np.array([0, 1, 2, 0])
    probabilities = np.full((4, 3), 1 / 3)
    with pytest.raises(SynergicError, match=r"shape \(4, 2\), expected \[N, 3\]"):
        one_vs_rest({"x": (probabilities[:, :2], labels)}, CLASSES)
    with pytest.raises(SynergicError, match="4 rows of probabilities but 3 labels"):
        one_vs_rest({"x": (probabilities, labels[:3])}, CLASSES)
    with pytest.raises(SynergicError, match="class indices 0..2"):
        one_vs_rest({"x": (probabilities, np.array([0, 1, 3, 0]))}, CLASSES)
    # Entries may score different images (rows of a report): each panel takes those it can.
    drawable, skipped = one_vs_rest({"x": (probabilities, labels),
                                     "y": (probabilities[:2], np.array([0, 0]))}, CLASSES)
    assert {c: list(binary) for c, binary in drawable.items()} == {
        "nevus": ["x"], "melanoma": ["x"], "keratosis": ["x"]} and not skipped
    with pytest.raises(SynergicError, match="no curves"):
        plot_pr_one_vs_rest({}, CLASSES, tmp_path / "pr.png")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_three_class_run_writes_one_vs_rest_roc_and_pr(tmp_path):
    """A folder data set of three classes of tiny PNGs, trained with the tiny model."""
    import json

    import yaml
    from tiny_recipe import TINY_RECIPE

    from synergic.experiment import run
    from synergic.recipe import load_recipe

    rng = np.random.default_rng(0)
    for split, count in [("train", 8), ("test", 4)]:
        for label, class_name in enumerate(CLASSES):
            folder = tmp_path / "images" / split / class_name
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
                pixels[..., label] = 255  # each class its own colour channel
                Image.fromarray(pixels).save(folder / f"{class_name}_{k}.png")
    recipe = yaml.safe_load(TINY_RECIPE)
    recipe["data"] = {"dataset": "folder", "root": str(tmp_path / "images"), "image_size": 32,
                      "validation_fraction": 0.25, "cache": False}
    (tmp_path / "three.yaml").write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    run(load_recipe(tmp_path / "three.yaml"), run_dir)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sorted(metrics["classes"]) == sorted(CLASSES)
    for name in ("roc.png", "pr.png"):
        _assert_png(run_dir / name)
        with Image.open(run_dir / name) as image:
            width, height = image.size
        # three panels side by side, not the binary plot's single square axes
        assert width > 2 * height
