"""Draw docs/images/synthetic_lesions.png: 8 benign and 8 malignant synthetic lesions.

Run from the repository root::

    python docs/scripts/make_synthetic_figure.py [--size 128] [--seed 0] [--out FILE.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from synergic.data.datasets.synthetic import SyntheticLesions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("docs/images/synthetic_lesions.png"))
    args = parser.parse_args()

    # The "train" split with the default options, drawn at a larger size so details are visible.
    dataset = SyntheticLesions(split="train", num_images=200, image_size=args.size, seed=args.seed)
    picks = {
        c: [i for i, y in enumerate(dataset.labels) if y == c][: args.per_class] for c in (0, 1)
    }

    fig, axes = plt.subplots(2, args.per_class, figsize=(1.6 * args.per_class, 3.9))
    for row, label in enumerate((0, 1)):
        for col, index in enumerate(picks[label]):
            image, _ = dataset[index]
            ax = axes[row, col]
            ax.imshow(image.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(dataset.ids[index].removeprefix("synthetic_"), fontsize=7)
        axes[row, 0].set_ylabel(dataset.classes[label], fontsize=11)
    fig.suptitle(
        f"synthetic_lesions (seed {args.seed}, train split): top benign, bottom malignant",
        fontsize=10,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
