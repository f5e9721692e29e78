"""Run the ISIC Challenge's official scorer (``isic-challenge-scoring``) on synergic's predictions.

synergic writes ``predictions.csv`` with the header ``image,benign,malignant`` and one row of
aggregate class probabilities per image. The ISIC 2016 (Part 3, lesion classification) test ground
truth is a headerless CSV of ``ISIC_0000003,0.0`` rows (1.0 = malignant) with CRLF line ends. The
scorer (version 5.x) knows neither year-specific format: its ``classification`` command wants a
truth CSV with a header ``image,<category>,...`` holding one-hot values and a prediction CSV with
the same columns. :func:`score_with_isic` converts both, runs the scorer, and returns the
scorer's per-category metrics for ``malignant`` under synergic's metric names.

The later challenges (2017-2020) go through the same door, :func:`score_classification`: a truth
CSV in the official layout (``image_id,melanoma,seborrheic_keratosis`` for 2017, one-hot
``image,MEL,...`` for 2018 and 2019, ``image_name,...,target`` for 2020) and a submission CSV as
``synergic predict --format isicYYYY`` writes it are rewritten with the scorer's ``image`` column
(:func:`write_scorer_table`), and the scorer's whole result comes back: per-category metrics,
their macro averages, the aggregate balanced multiclass accuracy and the overall score.

The scorer is found in one of two ways:

- ``SYNERGIC_ISIC_SCORER_PYTHON=/path/to/python``: run it in a subprocess with that interpreter
  (``python -m isic_challenge_scoring -o json classification TRUTH PRED``). Its own environment
  keeps the scorer's pins (``pandas<3``) away from synergic's. This wins when set.
- otherwise, by importing ``isic_challenge_scoring`` in the current interpreter.

Set up the separate environment with::

    python3 -m venv /work/scorer-venv
    /work/scorer-venv/bin/pip install isic-challenge-scoring 'pandas<3'
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

SCORER_PYTHON_ENV = "SYNERGIC_ISIC_SCORER_PYTHON"
#: The categories of the scorer files, in the column order of synergic's predictions.csv.
CATEGORIES = ("benign", "malignant")
POSITIVE_CATEGORY = "malignant"
#: The scorer's per-category metric name -> synergic's name (``compute_metrics`` with
#: ``positive_class`` = malignant). The scorer's dice, ppv, npv and auc_sens_80 have no
#: counterpart in synergic; synergic's ap_trapezoid has none in the scorer.
SCORER_TO_SYNERGIC = {
    "ap": "ap",
    "auc": "auc",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}


class ScorerUnavailable(RuntimeError):
    """The ISIC scorer can be neither imported nor run through ``SYNERGIC_ISIC_SCORER_PYTHON``."""


def scorer_unavailable_reason() -> str | None:
    """Why the scorer cannot run here, or ``None`` when it can.

    A ``SYNERGIC_ISIC_SCORER_PYTHON`` that points nowhere is a configuration error, not a reason
    to skip: :func:`score_with_isic` raises for it.
    """
    if os.environ.get(SCORER_PYTHON_ENV):
        return None
    if importlib.util.find_spec("isic_challenge_scoring") is not None:
        return None
    return (
        f"isic-challenge-scoring is not importable here and {SCORER_PYTHON_ENV} is not set "
        f"(point it at a python with `pip install isic-challenge-scoring 'pandas<3'`)"
    )


def isic_scorer_version() -> str:
    """The version of the scorer that :func:`score_with_isic` would run."""
    python = os.environ.get(SCORER_PYTHON_ENV)
    if python:
        return _run_scorer_python(
            python, ["-c", "import isic_challenge_scoring as s; print(s.__version__)"]
        ).strip()
    _require_importable()
    import isic_challenge_scoring

    return str(isic_challenge_scoring.__version__)


def read_isic2016_ground_truth(path: Path) -> dict[str, float]:
    """``{image id: 1.0 if malignant else 0.0}`` from an ISIC 2016 Part 3 ground-truth CSV.

    Accepts the test-set format (``ISIC_0000003,0.0``, no header, CRLF, no final newline) and the
    training-set one (``ISIC_0000000,benign``); a header row, if any, is skipped.
    """
    truth: dict[str, float] = {}
    with Path(path).open(newline="") as stream:
        for row_number, row in enumerate(csv.reader(stream)):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise ValueError(f"{path}: row {row_number + 1} has no label: {row!r}")
            image, value = row[0].strip(), row[1].strip().lower()
            if value in CATEGORIES:
                truth[image] = float(value == POSITIVE_CATEGORY)
                continue
            try:
                number = float(value)
            except ValueError:
                if row_number == 0:
                    continue  # a header
                raise ValueError(f"{path}: row {row_number + 1} has label {row[1]!r}") from None
            if number not in (0.0, 1.0):
                raise ValueError(f"{path}: row {row_number + 1} has label {number}, not 0 or 1")
            truth[image] = number
    if not truth:
        raise ValueError(f"{path}: no ground-truth rows")
    return truth


def write_scorer_ground_truth(truth: dict[str, float], path: Path) -> None:
    """Write ``truth`` as the scorer's truth CSV: ``image,benign,malignant`` one-hot rows."""
    with Path(path).open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["image", *CATEGORIES])
        for image, malignant in truth.items():
            writer.writerow([image, repr(1.0 - malignant), repr(malignant)])


def write_scorer_predictions(predictions_csv: Path, path: Path) -> None:
    """Copy synergic's ``predictions.csv`` into the scorer's prediction CSV.

    Values are copied as the same strings, so the scorer parses exactly what synergic wrote.
    """
    with Path(predictions_csv).open(newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {"image", *CATEGORIES} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{predictions_csv}: header {reader.fieldnames} lacks {sorted(missing)}; "
                f"expected image,benign,malignant"
            )
        rows = [[row["image"], *(row[c] for c in CATEGORIES)] for row in reader]
    with Path(path).open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["image", *CATEGORIES])
        writer.writerows(rows)


def read_table(path: Path, id_column: str, columns: tuple[str, ...]) -> dict[str, list[str]]:
    """``{image id: [value text per column]}`` of a CSV with a header naming ``id_column`` and
    ``columns`` (other columns, e.g. 2020's ``patient_id``, are ignored); values stay strings, so
    the scorer parses exactly what was written."""
    with Path(path).open(newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {id_column, *columns} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: header {reader.fieldnames} lacks {sorted(missing)}")
        return {row[id_column]: [row[c] for c in columns] for row in reader}


def write_scorer_table(table: dict[str, list[str]], columns: tuple[str, ...], path: Path) -> None:
    """Write ``table`` (:func:`read_table`) as the scorer reads it: ``image,<columns>``."""
    with Path(path).open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["image", *columns])
        writer.writerows([image, *values] for image, values in table.items())


def score_classification(
    truth: dict[str, list[str]],
    predictions: dict[str, list[str]],
    categories: tuple[str, ...],
    metric: str = "balanced_accuracy",
) -> dict:
    """Run the scorer's ``classification`` command on ``truth`` and ``predictions`` (tables of
    :func:`read_table` over ``categories``) with its target ``metric`` (``balanced_accuracy``,
    ``auc`` or ``ap``).

    Returns:
        ``{"overall": float, "per_category": {metric: {category: float}}, "macro_average":
        {metric: float}, "aggregate": {"balanced_accuracy": float}}``, the scorer's
        ``to_dict(rocs=False)``.

    Raises:
        ScorerUnavailable: the scorer cannot be run; RuntimeError: it rejects the files.
    """
    with tempfile.TemporaryDirectory(prefix="isic-scorer-") as workdir:
        truth_path = Path(workdir) / "truth.csv"
        prediction_path = Path(workdir) / "predictions.csv"
        write_scorer_table(truth, categories, truth_path)
        write_scorer_table(predictions, categories, prediction_path)
        python = os.environ.get(SCORER_PYTHON_ENV)
        if python:
            output = _run_scorer_python(
                python,
                ["-m", "isic_challenge_scoring", "-o", "json", "classification",
                 str(truth_path), str(prediction_path), "-m", metric],
                cwd=workdir,
            )
            return json.loads(output)
        return _score_in_process(truth_path, prediction_path, metric)


def _score_in_process(truth_path: Path, prediction_path: Path, metric: str) -> dict:
    _require_importable()
    from isic_challenge_scoring import ClassificationMetric, ClassificationScore, ScoreError

    with warnings.catch_warnings():
        # pandas deprecation notices from inside the scorer (DataFrame.applymap) are not ours.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            score = ClassificationScore.from_file(
                truth_path, prediction_path, ClassificationMetric(metric)
            )
        except ScoreError as error:
            raise RuntimeError(f"the ISIC scorer rejected the files: {error}") from error
    return json.loads(json.dumps(score.to_dict(rocs=False), default=float))


def score_with_isic(predictions_csv: Path, ground_truth_csv: Path) -> dict[str, float]:
    """Score synergic's ``predictions.csv`` against ISIC 2016 ground truth with the ISIC scorer.

    Returns the scorer's ``malignant`` per-category metrics under synergic's names
    (:data:`SCORER_TO_SYNERGIC`): ``ap``, ``auc``, ``accuracy``, ``sensitivity``,
    ``specificity``. Raises :class:`ScorerUnavailable` when the scorer cannot be run and
    ``RuntimeError`` when it rejects the files (missing or extra images, bad values).
    """
    truth = read_isic2016_ground_truth(Path(ground_truth_csv))
    truth_table = {image: [repr(1.0 - malignant), repr(malignant)]
                   for image, malignant in truth.items()}
    predictions = read_table(Path(predictions_csv), "image", CATEGORIES)
    # The target metric only picks the scorer's "overall" number; the per-category table is the
    # same for all.
    per_category = score_classification(truth_table, predictions, CATEGORIES, "ap")["per_category"]
    return {ours: float(per_category[theirs][POSITIVE_CATEGORY])
            for theirs, ours in SCORER_TO_SYNERGIC.items()}


def _run_scorer_python(python: str, arguments: list[str], cwd: str | None = None) -> str:
    if not Path(python).is_file():
        raise ScorerUnavailable(f"{SCORER_PYTHON_ENV}={python} is not a file")
    # cwd must not be the scorer's package folder: its types.py would shadow the stdlib's.
    result = subprocess.run(
        [python, *arguments],
        capture_output=True,
        text=True,
        cwd=cwd or tempfile.gettempdir(),
        # The scorer's pandas deprecation notices would bury its one-line errors.
        env={**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"the ISIC scorer ({python} {' '.join(arguments[:2])}) failed with exit code "
            f"{result.returncode}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def _require_importable() -> None:
    if importlib.util.find_spec("isic_challenge_scoring") is None:
        raise ScorerUnavailable(scorer_unavailable_reason() or "isic_challenge_scoring missing")


if __name__ == "__main__":  # python tests/isic_scorer_support.py PREDICTIONS.csv GROUND_TRUTH.csv
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} PREDICTIONS.csv GROUND_TRUTH.csv")
    scores = score_with_isic(Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps({"scorer_version": isic_scorer_version(), **scores}, indent=2))
