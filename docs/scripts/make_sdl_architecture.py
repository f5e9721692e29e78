"""Draw docs/images/sdl_architecture.png: the SDL^2 model, after the paper's Fig. 2.

Run from the repository root::

    python docs/scripts/make_sdl_architecture.py [--out FILE.png]

The two input images are generated lesions (``synthetic_lesions``), one benign and one malignant,
so the pair's synergic label is 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from synergic.data.datasets.synthetic import synthetic_lesions

COLOUR_A = "#d6e6f5"  # DCNN-A
COLOUR_B = "#fbe3cf"  # DCNN-B
COLOUR_S = "#d9f0d3"  # synergic network
COLOUR_LOSS = "#f2f2f2"
EDGE = "#444444"
GRADIENT = "#c0392b"


def box(ax, x, y, w, h, text, colour, *, size=10.5, weight="normal"):
    """A rounded box with its lower-left corner at (x, y); returns its centre and half sizes."""
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=colour, edgecolor=EDGE, linewidth=1.1,
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight)
    return x, y, w, h


def arrow(ax, start, end, *, colour=EDGE, style="-|>", dashed=False, rad=0.0, width=1.3):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle=style, mutation_scale=13, color=colour, linewidth=width,
            linestyle=(0, (4, 3)) if dashed else "-", connectionstyle=f"arc3,rad={rad}",
            shrinkA=2, shrinkB=2,
        )
    )


def right(b):
    x, y, w, h = b
    return (x + w, y + h / 2)


def left(b):
    x, y, w, h = b
    return (x, y + h / 2)


def top(b):
    x, y, w, h = b
    return (x + w / 2, y + h)


def bottom(b):
    x, y, w, h = b
    return (x + w / 2, y)


def pick_images(size: int = 128):
    dataset = synthetic_lesions(split="train", num_train=40, image_size=size, seed=0)
    benign = next(i for i, y in enumerate(dataset.labels) if y == 0)
    malignant = next(i for i, y in enumerate(dataset.labels) if y == 1)
    return [dataset[i][0].permute(1, 2, 0).numpy() for i in (benign, malignant)]


def draw(out: Path) -> None:
    fig = plt.figure(figsize=(15, 7.8))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 15)
    ax.set_ylim(-0.4, 7.4)
    ax.axis("off")

    image_i, image_j = pick_images()
    row_a, row_b, row_s = 5.6, 1.0, 3.3  # vertical centres of the three rows
    h = 0.9

    # Input layer: a pair of images.
    for image, yc, name, label in (
        (image_i, row_a, r"$\mathbf{x}_i$", r"$y_i$ = benign"),
        (image_j, row_b, r"$\mathbf{x}_j$", r"$y_j$ = malignant"),
    ):
        inset = fig.add_axes((0.3 / 15, (yc - 0.75 + 0.4) / 7.8, 1.5 / 15, 1.5 / 7.8))
        inset.imshow(image)
        inset.set_xticks([])
        inset.set_yticks([])
        ax.text(1.05, yc + 0.85, name + ", " + label, ha="center", va="bottom", fontsize=11)
    ax.text(1.05, 7.15, "input layer\n(a pair of images)", ha="center", va="top", fontsize=11,
            weight="bold")

    rows = {}
    for yc, colour, name, theta, image_name, label in (
        (row_a, COLOUR_A, "DCNN-A", "A", "i", r"y_i"),
        (row_b, COLOUR_B, "DCNN-B", "B", "j", r"y_j"),
    ):
        y = yc - h / 2
        backbone = box(ax, 2.3, y, 2.2, h, "ResNet-50\n(pretrained, no classifier)", colour,
                       size=10)
        fc1 = box(ax, 5.0, y, 1.3, h, "FC 1024", colour)
        fc2 = box(ax, 6.8, y, 1.1, h, "FC K", colour)
        soft = box(ax, 8.4, y, 1.2, h, "softmax", colour)
        loss = box(ax, 10.2, y, 2.1, h,
                   rf"$\ell^{{({theta})}}$: cross-entropy" + "\n" + rf"with ${label}$ (eq. 1)",
                   COLOUR_LOSS, size=10)
        arrow(ax, (1.85, yc), left(backbone))
        for a, b in ((backbone, fc1), (fc1, fc2), (fc2, soft), (soft, loss)):
            arrow(ax, right(a), left(b))
        ax.text(2.3, yc + h / 2 + 0.12, rf"{name}  ($\theta^{{({theta})}}$)", fontsize=11.5,
                weight="bold", va="bottom")
        rows[theta] = fc1
        ax.text(9.9, yc + 0.1, rf"$\mathbf{{P}}^{{({theta})}}$", fontsize=11,
                ha="center", va="bottom")

    # The synergic network, between the two components.
    y = row_s - h / 2
    concat = box(ax, 6.8, y, 2.1, h, "embedding\n" + r"$\mathbf{f}_{i\circ j}$ (concatenate)",
                 COLOUR_S, size=10)
    learn = box(ax, 9.4, y, 1.6, h, "FC\n(learning layer)", COLOUR_S, size=10)
    output = box(ax, 11.5, y, 1.4, h, "FC 1\n+ sigmoid", COLOUR_S, size=10)
    loss_s = box(ax, 13.2, y - 0.35, 1.65, h + 0.7,
                 r"$\ell^{(S)}$: binary" + "\ncross-entropy\nwith " + r"$y_S$" + "\n(eq. 3, 4)",
                 COLOUR_LOSS, size=10)
    for a, b in ((concat, learn), (learn, output), (output, loss_s)):
        arrow(ax, right(a), left(b))
    ax.text(6.8, row_s + h / 2 + 0.1, r"synergic network ($\theta^{(S)}$)", fontsize=11.5,
            weight="bold", va="bottom")

    # Deep features f_i, f_j (output of FC 1024) into the synergic network.
    arrow(ax, bottom(rows["A"]), (7.2, row_s + h / 2), rad=0.25)
    arrow(ax, top(rows["B"]), (7.2, row_s - h / 2), rad=-0.25)
    ax.text(5.95, row_a - 1.15, r"$\mathbf{f}_i$", fontsize=13)
    ax.text(5.95, row_b + 0.95, r"$\mathbf{f}_j$", fontsize=13)

    # The synergic label and the gradient it sends back into both components (eq. 5).
    ax.text(14.02, row_s + 1.05, r"$y_S = 1$ if $y_i = y_j$" + "\nelse 0 (here 0)",
            ha="center", va="bottom", fontsize=10)
    arrow(ax, (12.2, row_s + h / 2), (4.0, row_a - h / 2), colour=GRADIENT, dashed=True,
          rad=0.12, width=1.5)
    arrow(ax, (12.2, row_s - h / 2), (4.0, row_b + h / 2), colour=GRADIENT, dashed=True,
          rad=-0.12, width=1.5)
    ax.text(3.0, row_s + 0.25, r"$\Delta^{(A)} = \partial\ell^{(A)}/\partial\theta^{(A)}"
            r" + \lambda\,\Delta^{(S)}$", fontsize=11.5, color=GRADIENT)
    ax.text(3.0, row_s - 0.45, r"$\Delta^{(B)} = \partial\ell^{(B)}/\partial\theta^{(B)}"
            r" + \lambda\,\Delta^{(S)}$", fontsize=11.5, color=GRADIENT)
    ax.text(3.0, row_s - 1.0, "synergic error, back-propagated (eq. 5)", fontsize=10,
            color=GRADIENT, style="italic")

    # Test time (eq. 6).
    ax.text(11.25, -0.2,
            r"test: class $= \arg\max_k \sum_i p_k^{(i)}$  (sum of the softmax outputs, eq. 6)",
            ha="center", fontsize=10.5)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/sdl_architecture.png"))
    args = parser.parse_args()
    draw(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
