"""ROC and precision-recall plots in the style of the SDL paper's Fig. 3.

One curve per entry (for example ``"SDL (aggregate)"``, ``"component 1"``, ``"component 2"``),
with its AUC or AP in the legend. With more than two classes, :func:`plot_roc_one_vs_rest` and
:func:`plot_pr_one_vs_rest` draw one panel per class, that class against all others (as
scikit-learn's multiclass ROC example), with the same entries in every panel.
:func:`plot_reliability` draws the reliability diagram (calibration) of two-class probabilities.
Figures are drawn on
matplotlib's Agg canvas directly, without ``pyplot``, so plotting changes no global state (no
backend switch, no open figures) for code that shares the process, and works without a display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

from synergic.errors import SynergicError

__all__ = [
    "curve_label",
    "curve_labels",
    "one_vs_rest",
    "one_vs_rest_figure",
    "plot_pr",
    "plot_pr_one_vs_rest",
    "plot_reliability",
    "plot_roc",
    "plot_roc_one_vs_rest",
]

#: ``{name: (positive-class probabilities [N], labels [N])}``; a label is 1 (or True) for a
#: positive case and 0 (or False) for a negative one.
Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]

#: ``{name: (class probabilities [N, K], class indices [N])}``, for :func:`one_vs_rest`.
ClassCurves = Mapping[str, tuple[np.ndarray, np.ndarray]]


def curve_label(name: str, metric: str, value: float) -> str:
    """The legend entry of one curve, e.g. ``"SDL (aggregate) (AUC = 0.818)"``."""
    shown = "n/a" if math.isnan(value) else f"{value:.3f}"
    return f"{name} ({metric} = {shown})"


def curve_labels(curves: Curves, kind: str) -> dict[str, str]:
    """The legend entries of :func:`plot_roc` (``kind="roc"``: ROC AUC) or :func:`plot_pr`
    (``kind="pr"``: average precision), by curve name."""
    if kind not in _SUMMARIES:
        raise SynergicError(f"kind must be 'roc' or 'pr', got {kind!r}")
    metric, summary = _SUMMARIES[kind]
    return {
        name: curve_label(name, metric, float(summary(is_positive, scores)))
        for name, (scores, is_positive) in _checked(curves).items()
    }


_SUMMARIES = {"roc": ("AUC", skm.roc_auc_score), "pr": ("AP", skm.average_precision_score)}


def plot_roc(curves: Curves, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write the ROC curves of ``curves`` to the PNG file ``path``; returns the path.

    The legend gives each curve's ROC AUC; a dashed diagonal marks chance.
    """
    figure, axes = _new_axes()
    _draw(axes, curves, "roc")
    return _finish(figure, axes, path, title or "ROC curve")


def plot_pr(curves: Curves, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write the precision-recall curves of ``curves`` to the PNG file ``path``; returns the path.

    Curves are drawn as steps, the shape whose area is the AP in the legend (scikit-learn's
    ``average_precision_score``, the ISIC scorer's AP).
    """
    figure, axes = _new_axes()
    _draw(axes, curves, "pr")
    return _finish(figure, axes, path, title or "Precision-recall curve")


def plot_reliability(
    curves: Curves,
    path: str | os.PathLike[str],
    n_bins: int = 10,
    title: str | None = None,
) -> Path:
    """Write a reliability diagram of ``curves`` to the PNG file ``path``; returns the path.

    Top: for each entry, the fraction of positive cases against the mean predicted
    probability in ``n_bins`` equal-width bins (``sklearn.calibration.calibration_curve``,
    ``strategy="uniform"``; empty bins are not drawn), with the entry's expected calibration
    error (:func:`synergic.metrics.expected_calibration_error`, same bins) in the legend and a
    dashed diagonal for perfect calibration. Bottom: how many cases fall in each bin, per entry.

    Raises:
        SynergicError: as :func:`plot_roc`, probabilities outside ``[0, 1]``, or ``n_bins < 1``.
    """
    from sklearn.calibration import calibration_curve

    from synergic.metrics import expected_calibration_error

    checked = _checked(curves)
    errors = {
        name: expected_calibration_error(is_positive, scores, n_bins)
        for name, (scores, is_positive) in checked.items()
    }
    figure = Figure(figsize=(5.5, 6.6), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes, counts_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    axes.plot(
        [0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfectly calibrated"
    )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for name, (scores, is_positive) in checked.items():
        fraction_positive, mean_probability = calibration_curve(
            is_positive, scores, n_bins=n_bins, strategy="uniform"
        )
        line, = axes.plot(
            mean_probability, fraction_positive, marker="o", markersize=3,
            label=curve_label(name, "ECE", errors[name]),
        )
        # The bins of calibration_curve: a probability on an inner edge belongs to the lower bin.
        bins = np.searchsorted(edges[1:-1], scores)
        counts_axes.stairs(np.bincount(bins, minlength=n_bins), edges, color=line.get_color())
    axes.set_title(title or "Reliability diagram")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel("Fraction of positive cases")
    axes.grid(True, linewidth=0.5, alpha=0.4)
    axes.legend(loc="upper left", fontsize="small")
    axes.tick_params(labelbottom=False)
    counts_axes.set_xlabel("Mean predicted probability of the positive class")
    counts_axes.set_ylabel("Cases")
    counts_axes.grid(True, linewidth=0.5, alpha=0.4)
    return _write_atomically(figure, Path(path))


def one_vs_rest(
    curves: ClassCurves, classes: Sequence[str]
) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], dict[str, str]]:
    """Split K-class curves into one binary :data:`Curves` per class: that class's probability
    column against ``labels == class`` (one-vs-rest).

    Returns ``(drawable, skipped)``: ``drawable`` maps each class name, in ``classes`` order, to
    its binary curves; ``skipped`` maps each class without a curve to why: no test image of the
    class, or every test image is of it. Entries may score different images (rows of a report);
    a class is drawn for each entry whose labels hold the class and another one.

    Raises:
        SynergicError: no entries, probabilities that are not ``[N, K]`` with ``K = len(classes)``,
            or labels that are not ``N`` class indices in ``0..K-1``.
    """
    if not curves:
        raise SynergicError("no curves to plot: pass at least one {name: (probabilities, labels)}")
    classes = list(classes)
    checked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (probabilities, labels) in curves.items():
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels).ravel()
        if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
            raise SynergicError(
                f"curve {name!r}: probabilities of shape {probabilities.shape}, expected "
                f"[N, {len(classes)}] for the classes {classes}"
            )
        if probabilities.shape[0] != labels.size:
            raise SynergicError(
                f"curve {name!r}: {probabilities.shape[0]} rows of probabilities but "
                f"{labels.size} labels; pass one row per label"
            )
        if labels.size and (not np.issubdtype(labels.dtype, np.integer)
                            or labels.min() < 0 or labels.max() >= len(classes)):
            raise SynergicError(
                f"curve {name!r}: labels must be class indices 0..{len(classes) - 1}"
            )
        checked[name] = (probabilities, labels)
    drawable: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    skipped: dict[str, str] = {}
    for index, class_name in enumerate(classes):
        binary = {}
        for name, (probabilities, labels) in checked.items():
            is_class = labels == index
            if is_class.any() and not is_class.all():
                binary[name] = (probabilities[:, index], is_class)
        if binary:
            drawable[class_name] = binary
        elif any((labels == index).any() for _, labels in checked.values()):
            skipped[class_name] = "every test image is of it"
        else:
            skipped[class_name] = "no test image"
    return drawable, skipped


def plot_roc_one_vs_rest(
    curves: ClassCurves,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Write one-vs-rest ROC curves of K-class predictions to the PNG file ``path``.

    One panel per class (see :func:`one_vs_rest`), each with one curve per entry of ``curves``
    and its ROC AUC (``sklearn.metrics.roc_auc_score`` of that class against the rest) in the
    legend. Classes without a curve are named under the panels. Returns the path.

    Raises:
        SynergicError: as :func:`one_vs_rest`, or when no class has a curve.
    """
    figure = one_vs_rest_figure(curves, classes, "roc", title or "ROC, one class vs the rest")
    return _write_atomically(figure, Path(path))


def plot_pr_one_vs_rest(
    curves: ClassCurves,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Write one-vs-rest precision-recall curves of K-class predictions to the PNG file ``path``.

    As :func:`plot_roc_one_vs_rest`, with each entry's average precision
    (``sklearn.metrics.average_precision_score`` of that class against the rest) in the legend;
    their mean over the classes is the run's ``ap`` metric. Returns the path.

    Raises:
        SynergicError: as :func:`plot_roc_one_vs_rest`.
    """
    figure = one_vs_rest_figure(
        curves, classes, "pr", title or "Precision-recall, one class vs the rest"
    )
    return _write_atomically(figure, Path(path))


def one_vs_rest_figure(
    curves: ClassCurves, classes: Sequence[str], kind: str, title: str
) -> Figure:
    """The matplotlib ``Figure`` that :func:`plot_roc_one_vs_rest` (``kind="roc"``) or
    :func:`plot_pr_one_vs_rest` (``kind="pr"``) writes: panels in up to three columns, titled
    ``"<class> vs rest"``, in ``classes`` order, the classes left out named underneath.

    Raises:
        SynergicError: an unknown ``kind``, inputs :func:`one_vs_rest` refuses, or no class with
            a curve (a test set of one class).
    """
    if kind not in _SUMMARIES:
        raise SynergicError(f"kind must be 'roc' or 'pr', got {kind!r}")
    drawable, skipped = one_vs_rest(curves, classes)
    if not drawable:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise SynergicError(
            f"no class has a one-vs-rest curve ({reasons}); evaluate on a set with several classes"
        )
    columns = min(3, len(drawable))
    rows = math.ceil(len(drawable) / columns)
    figure = Figure(figsize=(4.2 * columns, 4.2 * rows + 0.6), dpi=120)
    FigureCanvasAgg(figure)
    for panel, (class_name, binary) in enumerate(drawable.items()):
        axes = figure.add_subplot(rows, columns, panel + 1)
        _draw(axes, binary, kind, legend_size="small")
        _style(axes, f"{class_name} vs rest")
    figure.suptitle(title)
    bottom = 0.0
    if skipped:
        note = "not drawn: " + "; ".join(f"{name} ({why})" for name, why in skipped.items())
        figure.text(0.5, 0.01, note, ha="center", va="bottom", fontsize="small", wrap=True)
        bottom = 0.5 / figure.get_figheight()
    figure.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    return figure


def _draw(axes, curves: Curves, kind: str, legend_size: str | None = None) -> None:
    labels = curve_labels(curves, kind)
    if kind == "roc":
        axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for name, (scores, is_positive) in _checked(curves).items():
        if kind == "roc":
            false_positive_rate, true_positive_rate, _ = skm.roc_curve(is_positive, scores)
            axes.plot(false_positive_rate, true_positive_rate, label=labels[name])
        else:
            precision, recall, _ = skm.precision_recall_curve(is_positive, scores)
            # Recall comes in decreasing order; each point's precision holds down to the next
            # recall, the rectangle that average_precision_score sums (as sklearn's display).
            axes.step(recall, precision, where="post", label=labels[name])
    if kind == "roc":
        axes.set_xlabel("False positive rate (1 - specificity)")
        axes.set_ylabel("True positive rate (sensitivity)")
        axes.legend(loc="lower right", fontsize=legend_size)
    else:
        axes.set_xlabel("Recall (sensitivity)")
        axes.set_ylabel("Precision")
        axes.legend(loc="lower left", fontsize=legend_size)


def _checked(curves: Curves) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not curves:
        raise SynergicError("no curves to plot: pass at least one {name: (scores, labels)} entry")
    checked = {}
    for name, (scores, labels) in curves.items():
        scores = np.asarray(scores, dtype=np.float64).ravel()
        is_positive = np.asarray(labels).ravel().astype(bool)
        if scores.shape != is_positive.shape:
            raise SynergicError(
                f"curve {name!r}: {scores.size} scores but {is_positive.size} labels; "
                f"pass one positive-class probability per label"
            )
        if is_positive.all() or not is_positive.any():
            raise SynergicError(
                f"curve {name!r}: labels hold only one class, so there is no curve to draw; "
                f"evaluate on a set with both positive and negative cases"
            )
        checked[name] = (scores, is_positive)
    return checked


def _new_axes():
    figure = Figure(figsize=(5.5, 5.0), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    return figure, axes


def _style(axes, title: str) -> None:
    axes.set_title(title)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_aspect("equal")
    axes.grid(True, linewidth=0.5, alpha=0.4)


def _finish(figure: Figure, axes, path: str | os.PathLike[str], title: str) -> Path:
    _style(axes, title)
    figure.tight_layout()
    return _write_atomically(figure, Path(path))


def _write_atomically(figure: Figure, path: Path) -> Path:
    # A reader (a dashboard, a half-finished copy) never sees a truncated PNG: write next to the
    # target, then rename over it in one step.
    from synergic.training.checkpoint import atomic_write

    atomic_write(path, lambda stream: figure.savefig(stream, format="png"))
    return path
