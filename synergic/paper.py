"""The numbers the SDL paper reports, to hold your runs against.

Zhang, Xie, Wu, Xia: "Skin lesion classification in dermoscopy images using synergic deep
learning", MICCAI 2018 (https://doi.org/10.1007/978-3-030-00934-2_2). All results are on the
ISIC 2016 Part 3 test set (379 images).

The paper does not say how it computed AP. The ISIC 2016 leaderboard it compares against (Table 2)
was scored with scikit-learn < 0.19, whose ``average_precision_score`` was the trapezoid area under
the precision-recall curve: synergic's ``ap_trapezoid``, not its ``ap`` (see docs/metrics.md).
Figures 4 and 5 are plots without numbers in the text; what they show is in
:data:`FIGURE_FINDINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CITATION",
    "ReportedResult",
    "TABLE_1",
    "TABLE_2",
    "PAPER_LAMBDA",
    "FIGURE_FINDINGS",
    "AP_NOTE",
]

CITATION = (
    "Zhang, Xie, Wu, Xia: Skin lesion classification in dermoscopy images using synergic deep "
    "learning, MICCAI 2018"
)


@dataclass(frozen=True)
class ReportedResult:
    """One row of a table of the paper, as printed there."""

    method: str
    """As the paper names it (``ResNet-50^2`` is the ensemble of two ResNet-50s)."""
    table: str
    augmentation: bool | None
    """Table 1's DA column: trained with data augmentation; None where the paper does not say."""
    ap: float
    """The paper's AP; most likely the trapezoid definition, synergic's ``ap_trapezoid``."""
    accuracy: float
    auc: float
    command: str | None = None
    """The synergic command that reproduces the row (None for other teams' entries)."""


#: Table 1: ResNet-50, ResNet-50^2 (two ResNet-50s, summed softmax, lambda = 0) and SDL
#: (lambda = 3), without (DA = N) and with (DA = Y) data augmentation.
TABLE_1: tuple[ReportedResult, ...] = (
    ReportedResult("ResNet-50", "Table 1", False, 0.6102, 0.8496, 0.7742,
                   "synergic run isic2016_resnet50 --set data.augment=false"),
    ReportedResult("ResNet-50", "Table 1", True, 0.6224, 0.8522, 0.7829,
                   "synergic run isic2016_resnet50"),
    ReportedResult("ResNet-50^2", "Table 1", False, 0.6115, 0.8443, 0.7826,
                   "synergic run isic2016_ensemble2 --set data.augment=false"),
    ReportedResult("ResNet-50^2", "Table 1", True, 0.6308, 0.8549, 0.7968,
                   "synergic run isic2016_ensemble2"),
    ReportedResult("SDL", "Table 1", False, 0.6536, 0.8522, 0.8139,
                   "synergic run isic2016_sdl2 --set data.augment=false"),
    ReportedResult("SDL", "Table 1", True, 0.6644, 0.8575, 0.8179,
                   "synergic run isic2016_sdl2"),
)

#: Table 2: SDL against the top five entries of the ISIC 2016 leaderboard (ranked by AP alone).
TABLE_2: tuple[ReportedResult, ...] = (
    ReportedResult("SDL", "Table 2", True, 0.664, 0.858, 0.818, "synergic run isic2016_sdl2"),
    ReportedResult("CUMED", "Table 2", None, 0.637, 0.855, 0.804),
    ReportedResult("GTDL", "Table 2", None, 0.619, 0.813, 0.802),
    ReportedResult("BF-TB", "Table 2", None, 0.598, 0.834, 0.826),
    ReportedResult("ThrunLab", "Table 2", None, 0.563, 0.786, 0.796),
    ReportedResult("Jordan Yap", "Table 2", None, 0.559, 0.844, 0.775),
)

#: The lambda the paper chose on its validation set (Sect. 3.4, Sect. 5, Fig. 4).
PAPER_LAMBDA = 3.0

#: What Figs. 3-5 show, in the paper's words, for the report and the docs.
FIGURE_FINDINGS: dict[str, str] = {
    "fig3": "ROC curves on the test set without DA: SDL above ResNet-50^2 (AUC in Table 1).",
    "fig4": "AP of SDL without DA against lambda: on the validation set it rises monotonically up "
    "to lambda = 3 and falls after it, so lambda = 3 is chosen.",
    "fig5": "AP and relative training time of SDL^n, n = 1..4 (n = 1 is a single ResNet-50; time "
    "relative to it): time grows monotonically with n, AP rises sharply from n = 1 to 2 and "
    "slowly after, so SDL^2 and SDL^3 are suggested.",
}

AP_NOTE = (
    "AP is scikit-learn's average_precision_score (step-wise), what today's ISIC scorer computes; "
    "AP (trapezoid) is the area under the precision-recall curve by the trapezoid rule, what "
    "average_precision_score returned before scikit-learn 0.19 and so what the 2016 leaderboard, "
    "and most likely the paper, reported. The paper's AP is therefore shown in the AP (trapezoid) "
    "column (marked *); see docs/metrics.md."
)
