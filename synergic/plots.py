"""ROC and precision-recall plots in the style of the SDL paper's Fig. 3.

One curve per entry (for example ``"SDL (aggregate)"``, ``"component 1"``, ``"component 2"``),
with its AUC or AP in the legend. Figures are drawn on matplotlib's Agg canvas directly, without
``pyplot``, so plotting changes no global state (no backend switch, no open figures) for code
that shares the process, and works without a display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn import metrics as skm

from synergic.errors import SynergicError

__all__ = ["curve_label", "curve_labels", "plot_pr", "plot_roc"]

#: ``{name: (positive-class probabilities [N], labels [N])}``; a label is 1 (or True) for a
#: positive case and 0 (or False) for a negative one.
Curves = Mapping[str, tuple[np.ndarray, np.ndarray]]


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
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    labels = curve_labels(curves, "roc")
    for name, (scores, is_positive) in _checked(curves).items():
        false_positive_rate, true_positive_rate, _ = skm.roc_curve(is_positive, scores)
        axes.plot(false_positive_rate, true_positive_rate, label=labels[name])
    axes.set_xlabel("False positive rate (1 - specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.legend(loc="lower right")
    return _finish(figure, axes, path, title or "ROC curve")


def plot_pr(curves: Curves, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Write the precision-recall curves of ``curves`` to the PNG file ``path``; returns the path.

    Curves are drawn as steps, the shape whose area is the AP in the legend (scikit-learn's
    ``average_precision_score``, the ISIC scorer's AP).
    """
    figure, axes = _new_axes()
    labels = curve_labels(curves, "pr")
    for name, (scores, is_positive) in _checked(curves).items():
        precision, recall, _ = skm.precision_recall_curve(is_positive, scores)
        # Recall comes in decreasing order; each point's precision holds down to the next recall,
        # which is the rectangle that average_precision_score sums (as in sklearn's own display).
        axes.step(recall, precision, where="post", label=labels[name])
    axes.set_xlabel("Recall (sensitivity)")
    axes.set_ylabel("Precision")
    axes.legend(loc="lower left")
    return _finish(figure, axes, path, title or "Precision-recall curve")


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


def _finish(figure: Figure, axes, path: str | os.PathLike[str], title: str) -> Path:
    axes.set_title(title)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_aspect("equal")
    axes.grid(True, linewidth=0.5, alpha=0.4)
    figure.tight_layout()
    return _write_atomically(figure, Path(path))


def _write_atomically(figure: Figure, path: Path) -> Path:
    # A reader (a dashboard, a half-finished copy) never sees a truncated PNG: write next to the
    # target, then rename over it in one step.
    from synergic.training.checkpoint import atomic_write

    atomic_write(path, lambda stream: figure.savefig(stream, format="png"))
    return path
