"""Comparison reports: runs, sweeps and cross-validations side by side, as the SDL paper's Table 1
and Figs. 3-5, with the evidence behind each number.

>>> from synergic.report import write_report
>>> write_report(["runs/lambda", "runs/ensemble"])   # doctest: +SKIP

writes ``runs/report.md`` (by default beside what it reports on: :func:`default_report_path`) and,
beside it, the figures that the runs allow:

- ``report_roc.png``: the ROC curves of the rows (Fig. 3): on one plot for two-class runs, one
  panel per class (that class against the rest) for more;
- ``report_lambda.png``: the metric against lambda (Fig. 4), when rows differ in
  ``train.synergic_weight``; validation and test panels;
- ``report_cv_lambda.png``: the same for sweeps of cross-validations over lambda (``synergic
  sweep --folds``): each cell's mean over its folds with its 95 % t-interval as the error bar;
- ``report_components.png``: the metric against relative training time of SDL^n (Fig. 5), when
  rows differ in ``model.components``; time is relative to the n = 1 row (or the smallest n);
- ``report_calibration.png``: the reliability diagram of the two-class rows.

A *row* is a set of runs whose recipes differ only in their seed (and in keys that do not change
what a run computes, :data:`synergic.sweep.RESULT_NEUTRAL_KEYS`): a cell of a sweep, or runs given
one by one. Its values are the mean and sample standard deviation over those runs; a row of one run
shows the run's own 95 % bootstrap interval (``test_ci`` of its ``metrics.json``) instead. When an
SDL row and an ensemble row (``train.synergic_weight`` > 0 and = 0, recipes otherwise equal) are
on the same test images, a paired comparison of their AUCs follows (``synergic compare``: paired
bootstrap interval and DeLong's test). A cross-validation folder (``synergic cv``) is summarised
from its ``summary.json``. When the runs are on the official ISIC 2016 split
(:func:`paper_applies`), the paper's reported numbers follow as reference rows, marked
"paper (reported)".

Everything is read from the run directories (``recipe.yaml``, ``metrics.json``,
``predictions.csv``, ``log.csv``), except the test labels that the ROC curves need: they come from
a ``label`` column of ``predictions.csv`` or a ``test_labels.csv`` (``image,label``) when the run
has one, else from the run's data set, opened through its recipe (no image is decoded).

The package by concern: :mod:`synergic.report.runs` finds, reads and groups runs;
:mod:`synergic.report.figures` draws; :mod:`synergic.report.markdown` writes the page.
"""

from __future__ import annotations

from synergic.report.markdown import Report, default_report_path, write_report
from synergic.report.runs import (
    ISIC2016_OFFICIAL_COUNTS,
    ReportRun,
    RunGroup,
    find_runs,
    group_runs,
    paper_applies,
    read_test_labels,
    training_seconds,
)

__all__ = [
    "ISIC2016_OFFICIAL_COUNTS",
    "ReportRun",
    "RunGroup",
    "Report",
    "default_report_path",
    "find_runs",
    "group_runs",
    "paper_applies",
    "training_seconds",
    "read_test_labels",
    "write_report",
]
