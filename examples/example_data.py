"""Write a small generated medical data set to disk: white blood cells in a blood smear.

Three classes, drawn the way a haematology atlas describes them, with enough variation that they
overlap a little:

* ``eosinophil``: a nucleus of two lobes, cytoplasm full of orange-red granules;
* ``lymphocyte``: a small cell almost filled by one round, dark nucleus;
* ``neutrophil``: a nucleus of three to five small lobes, pale pink cytoplasm.

Each image is a pale field of red blood cells with one white cell near the middle. The data set
is written in one of the two layouts that synergic reads without any code:

* ``folder``: ``ROOT/train/<class>/<image>.png`` and ``ROOT/test/<class>/<image>.png``
  (data set ``folder``);
* ``csv``: ``ROOT/images/<image>.png`` with ``ROOT/train.csv`` and ``ROOT/test.csv``, columns
  ``image,label`` (data set ``csv``).

Run it on its own to look at the images::

    python examples/example_data.py runs/blood-cells-data --layout folder
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("eosinophil", "lymphocyte", "neutrophil")


def _disc(yy, xx, cy, cx, radius, softness=1.2):
    """1 inside a disc, 0 outside, with a soft edge ``softness`` pixels wide."""
    distance = np.hypot(yy - cy, xx - cx)
    return 1.0 / (1.0 + np.exp((distance - radius) / softness))


def _paint(image, mask, colour):
    image *= 1.0 - mask[..., None]
    image += mask[..., None] * np.asarray(colour, dtype=np.float64)


def draw_cell(label: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One image ``[size, size, 3]`` uint8 of class ``label`` (an index into ``CLASSES``)."""
    s = size / 64.0  # every length below is in pixels of a 64 x 64 image
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    background = np.array([236, 222, 226]) + rng.normal(0, 6, 3)
    image = np.ones((size, size, 3)) * background

    # Red blood cells: pale pink discs with a lighter centre, anywhere in the field.
    for _ in range(rng.integers(5, 10)):
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(6, 8) * s
        _paint(image, 0.8 * _disc(yy, xx, cy, cx, radius), (222, 160, 170))
        _paint(image, 0.5 * _disc(yy, xx, cy, cx, radius * 0.45), (232, 196, 202))

    # The white cell: cytoplasm, then the nucleus lobes on top.
    cy, cx = size / 2 + rng.normal(0, 3 * s, 2)
    name = CLASSES[label]
    cell_radius = {"eosinophil": 15, "lymphocyte": 10.5, "neutrophil": 15}[name]
    cell_radius *= rng.uniform(0.88, 1.12) * s
    cytoplasm = {"eosinophil": (236, 170, 140), "lymphocyte": (200, 196, 232),
                 "neutrophil": (226, 200, 214)}[name]
    cell = _disc(yy, xx, cy, cx, cell_radius)
    _paint(image, cell, np.asarray(cytoplasm) + rng.normal(0, 8, 3))

    if name == "eosinophil":  # coarse orange-red granules, more or fewer
        for _ in range(int(rng.uniform(25, 60))):
            angle, r = rng.uniform(0, 2 * np.pi), cell_radius * np.sqrt(rng.uniform(0, 0.9))
            gy, gx = cy + r * np.sin(angle), cx + r * np.cos(angle)
            _paint(image, 0.8 * _disc(yy, xx, gy, gx, 1.3 * s, 0.6), (214, 92, 60))
    elif name == "neutrophil":  # faint fine granules
        image += cell[..., None] * rng.normal(0, 6, (size, size, 1))

    nucleus = np.array([96, 52, 140]) + rng.normal(0, 10, 3)
    if name == "lymphocyte":
        lobes = [(0.0, 0.0, cell_radius * rng.uniform(0.72, 0.85))]
    else:
        count = int(rng.integers(2, 4)) if name == "eosinophil" else int(rng.integers(3, 6))
        count = min(count, 2) if name == "eosinophil" and rng.uniform() < 0.8 else count
        start = rng.uniform(0, 2 * np.pi)
        spread = 0.55 * cell_radius
        lobes = []
        for k in range(count):  # lobes along an arc, as in a segmented nucleus
            angle = start + k * (2.2 / max(count - 1, 1)) + rng.normal(0, 0.15)
            lobes.append((spread * np.sin(angle), spread * np.cos(angle),
                          cell_radius * rng.uniform(0.28, 0.36)))
    for dy, dx, radius in lobes:
        _paint(image, 0.95 * _disc(yy, xx, cy + dy, cx + dx, radius), nucleus)

    image += rng.normal(0, 4, image.shape)  # camera noise
    return np.clip(image, 0, 255).round().astype(np.uint8)


def generate(per_class: int, *, size: int = 64, seed: int = 0):
    """``(images, labels)``: ``per_class`` images of each class, uint8 ``[N, size, size, 3]``."""
    rng = np.random.default_rng(seed)
    labels = [label for label in range(len(CLASSES)) for _ in range(per_class)]
    images = np.stack([draw_cell(label, rng, size) for label in labels])
    return images, np.asarray(labels)


def write_dataset(
    root: str | Path,
    *,
    layout: str = "folder",
    train_per_class: int = 40,
    test_per_class: int = 15,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write the train and test splits under ``root`` in the ``folder`` or ``csv`` layout."""
    if layout not in ("folder", "csv"):
        raise ValueError(f"layout must be 'folder' or 'csv', got {layout!r}")
    root = Path(root)
    for split, per_class, split_seed in (
        ("train", train_per_class, seed), ("test", test_per_class, seed + 1)
    ):
        images, labels = generate(per_class, size=size, seed=split_seed)
        rows = []
        for index, (image, label) in enumerate(zip(images, labels)):
            name = f"{split}_{index:04d}.png"
            if layout == "folder":
                path = root / split / CLASSES[label] / name
            else:
                path = root / "images" / name
                rows.append((f"images/{name}", CLASSES[label]))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
        if layout == "csv":
            with (root / f"{split}.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["image", "label"])
                writer.writerows(rows)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write the data set into")
    parser.add_argument("--layout", choices=["folder", "csv"], default="folder")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=15)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_dataset(
        args.root, layout=args.layout, train_per_class=args.train_per_class,
        test_per_class=args.test_per_class, size=args.size, seed=args.seed,
    )
    total = len(CLASSES) * (args.train_per_class + args.test_per_class)
    print(f"wrote {total} images ({', '.join(CLASSES)}) to {args.root} in the {args.layout} layout")


if __name__ == "__main__":
    main()
