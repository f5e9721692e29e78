"""The data set ``single_csv``: images listed in one CSV file with a split column.

``root/labels.csv`` has a header ``image,label,split``: the image's path relative to ``root``, its
class name, and ``train``, ``val`` or ``test``. Without ``val`` rows, synergic carves a validation
split out of ``train``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from synergic.data import NoSuchSplit, load_image
from synergic.errors import SynergicError


class SingleCSVDataset:
    """One split of the images listed in ``csv_path``; classes are all labels, sorted."""

    def __init__(self, csv_path: Path, split: str) -> None:
        with csv_path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            if not {"image", "label", "split"} <= set(reader.fieldnames or ()):
                raise SynergicError(f"{csv_path}: the header must be image,label,split")
            rows = list(reader)
        # From every split, so that train, val and test share the same class indices.
        self.classes = sorted({row["label"] for row in rows})
        chosen = [row for row in rows if row["split"] == split]
        if not chosen and split == "val":
            raise NoSuchSplit(f"{csv_path} has no validation rows")
        if not chosen:
            raise SynergicError(f"{csv_path} has no rows with split '{split}'")
        self.folder = csv_path.parent
        self.ids = [row["image"] for row in chosen]
        self.labels = [self.classes.index(row["label"]) for row in chosen]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        return load_image(self.folder / self.ids[index]), self.labels[index]


def single_csv(*, root: str | None, split: str, csv_name: str = "labels.csv") -> SingleCSVDataset:
    """Images listed in root/labels.csv with columns image,label,split (option: csv_name)."""
    if root is None:
        raise SynergicError(f"data set 'single_csv' needs data.root: the folder with {csv_name}")
    csv_path = Path(root) / csv_name
    if not csv_path.is_file():
        raise SynergicError(f"{csv_path} not found: set data.root to the folder with {csv_name}")
    return SingleCSVDataset(csv_path, split)
