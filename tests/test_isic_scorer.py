"""synergic's metrics against the ISIC Challenge's official scorer: ISIC 2016 (binary, AP), and
the primary metrics of ISIC 2017 (the mean of two one-vs-rest AUCs), 2018 and 2019 (balanced
multiclass accuracy) and 2020 (AUC), each on predictions written by ``synergic predict --format``.

The comparison runs when ``isic_challenge_scoring`` is importable or ``SYNERGIC_ISIC_SCORER_PYTHON``
names a python that has it (see tests/isic_scorer_support.py), and is skipped otherwise. The file
conversions it relies on are tested always.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from isic_scorer_support import (
    SCORER_TO_SYNERGIC,
    isic_scorer_version,
    read_isic2016_ground_truth,
    read_table,
    score_classification,
    score_with_isic,
    scorer_unavailable_reason,
    write_scorer_ground_truth,
    write_scorer_predictions,
)

from synergic.metrics import compute_metrics
from synergic.serving import submission_csv

needs_scorer = pytest.mark.skipif(
    scorer_unavailable_reason() is not None, reason=scorer_unavailable_reason() or ""
)

NUM_IMAGES = 60


def _write_case(directory: Path) -> tuple[Path, Path]:
    """A fixed case: 60 images, 15 malignant, probabilities on a 0.05 grid (so many ties), and
    malignant probabilities of exactly 0.5 for a malignant and a benign image, 0.5000001 and
    0.4999999 beside them. Written as synergic's predictions.csv (rows in reverse order, so the
    scorer has to match images by id) and as the official ISIC 2016 test ground truth (no header,
    CRLF, no final newline)."""
    rng = np.random.default_rng(2016)
    is_malignant = np.zeros(NUM_IMAGES, dtype=bool)
    is_malignant[rng.choice(NUM_IMAGES, size=15, replace=False)] = True
    # Informative but imperfect: malignant cases skew high, benign ones low.
    raw = np.where(
        is_malignant, rng.uniform(0.15, 1.0, NUM_IMAGES), rng.uniform(0.0, 0.75, NUM_IMAGES)
    )
    malignant_text = [f"{round(p * 20) / 20:.2f}" for p in raw]
    benign_text = [f"{1 - round(p * 20) / 20:.2f}" for p in raw]
    malignant_rows = np.flatnonzero(is_malignant)
    benign_rows = np.flatnonzero(~is_malignant)
    specials = {
        malignant_rows[0]: ("0.5", "0.5"),  # malignant at exactly 0.5: a false negative
        benign_rows[0]: ("0.5", "0.5"),  # benign at exactly 0.5: a true negative
        malignant_rows[1]: ("0.5000001", "0.4999999"),  # just above: a true positive
        benign_rows[1]: ("0.5000001", "0.4999999"),  # just above: a false positive
        benign_rows[2]: ("0.4999999", "0.5000001"),  # just below: a true negative
    }
    for row, (malignant, benign) in specials.items():
        malignant_text[row], benign_text[row] = malignant, benign

    ids = [f"ISIC_{9000000 + 7 * i:07d}" for i in range(NUM_IMAGES)]
    predictions = directory / "predictions.csv"
    with predictions.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["image", "benign", "malignant"])
        for i in reversed(range(NUM_IMAGES)):
            writer.writerow([ids[i], benign_text[i], malignant_text[i]])
    ground_truth = directory / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"
    lines = [f"{ids[i]},{float(is_malignant[i]):.1f}" for i in range(NUM_IMAGES)]
    ground_truth.write_bytes("\r\n".join(lines).encode())
    return predictions, ground_truth


def _our_metrics(predictions: Path, ground_truth: Path) -> dict[str, float]:
    truth = read_isic2016_ground_truth(ground_truth)
    with predictions.open(newline="") as stream:
        rows = {row["image"]: row for row in csv.DictReader(stream)}
    images = sorted(truth)
    probabilities = np.array(
        [[float(rows[i]["benign"]), float(rows[i]["malignant"])] for i in images]
    )
    labels = np.array([int(truth[i]) for i in images])
    return compute_metrics(probabilities, labels, positive_class=1)


def test_the_case_exercises_ties_and_the_strict_threshold(tmp_path):
    predictions, ground_truth = _write_case(tmp_path)
    truth = read_isic2016_ground_truth(ground_truth)
    with predictions.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    malignant = np.array([float(r["malignant"]) for r in rows])
    labels = np.array([truth[r["image"]] for r in rows])
    assert len(rows) == NUM_IMAGES and labels.sum() == 15
    assert np.unique(malignant).size < NUM_IMAGES - 20  # plenty of ties
    # A malignant image at exactly 0.5: ">= 0.5" would count it and change sensitivity.
    assert np.any((malignant == 0.5) & (labels == 1))
    ours = _our_metrics(predictions, ground_truth)
    at_or_above = malignant >= 0.5
    assert ours["sensitivity"] < at_or_above[labels == 1].mean()


def test_reads_the_official_2016_ground_truth_format(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_bytes(b"ISIC_0000003,0.0\r\nISIC_0000012,1.0\r\nISIC_0000013,0.0")
    assert read_isic2016_ground_truth(path) == {
        "ISIC_0000003": 0.0,
        "ISIC_0000012": 1.0,
        "ISIC_0000013": 0.0,
    }
    training_style = tmp_path / "training.csv"
    training_style.write_text("ISIC_0000000,benign\nISIC_0000002,malignant\n")
    assert read_isic2016_ground_truth(training_style) == {
        "ISIC_0000000": 0.0,
        "ISIC_0000002": 1.0,
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("ISIC_0000000,0.0\nISIC_0000002,0.7\n")
    with pytest.raises(ValueError, match="row 2"):
        read_isic2016_ground_truth(bad)


def test_writes_the_files_the_scorer_reads(tmp_path):
    truth_path = tmp_path / "scorer_truth.csv"
    write_scorer_ground_truth({"ISIC_0000003": 0.0, "ISIC_0000012": 1.0}, truth_path)
    assert truth_path.read_text().splitlines() == [
        "image,benign,malignant",
        "ISIC_0000003,1.0,0.0",
        "ISIC_0000012,0.0,1.0",
    ]
    ours = tmp_path / "predictions.csv"
    ours.write_text("image,malignant,benign\nISIC_0000003,0.25,0.75\n")
    converted = tmp_path / "scorer_predictions.csv"
    write_scorer_predictions(ours, converted)
    # Columns put in the scorer's order, values kept as the very same strings.
    assert converted.read_text().splitlines() == [
        "image,benign,malignant",
        "ISIC_0000003,0.75,0.25",
    ]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("image,prob\nISIC_0000003,0.25\n")
    with pytest.raises(ValueError, match="lacks"):
        write_scorer_predictions(wrong, converted)


@needs_scorer
def test_compute_metrics_matches_the_isic_scorer(tmp_path):
    predictions, ground_truth = _write_case(tmp_path)
    theirs = score_with_isic(predictions, ground_truth)
    ours = _our_metrics(predictions, ground_truth)
    assert set(theirs) == set(SCORER_TO_SYNERGIC.values())
    for name, value in theirs.items():
        assert math.isclose(ours[name], value, rel_tol=0, abs_tol=1e-9), (
            f"{name}: synergic {ours[name]!r}, ISIC scorer {isic_scorer_version()} {value!r}"
        )
    # The trapezoid AP is not the scorer's and differs from it on this case.
    assert abs(ours["ap_trapezoid"] - theirs["ap"]) > 1e-3


@needs_scorer
def test_the_scorer_rejects_predictions_for_other_images(tmp_path):
    predictions, ground_truth = _write_case(tmp_path)
    ground_truth.write_bytes(b"ISIC_0000003,0.0\r\nISIC_0000012,1.0")
    with pytest.raises(RuntimeError, match="Missing images"):
        score_with_isic(predictions, ground_truth)


@pytest.mark.shared_data
def test_reads_the_real_isic2016_ground_truth_files(isic_sample):
    test_truth = read_isic2016_ground_truth(
        isic_sample / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"
    )
    training_truth = read_isic2016_ground_truth(
        isic_sample / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"
    )
    for truth, path in [(test_truth, "Test"), (training_truth, "Training")]:
        raw = (isic_sample / f"ISBI2016_ISIC_Part3_{path}_GroundTruth.csv").read_bytes()
        assert len(truth) == len(raw.strip().splitlines())  # the unterminated last row too
        assert set(truth.values()) == {0.0, 1.0}
        assert all(image.startswith("ISIC_") for image in truth)


@pytest.mark.shared_data
@needs_scorer
def test_scores_against_the_real_test_ground_truth_file(isic_sample, tmp_path):
    ground_truth = isic_sample / "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"
    images = list(read_isic2016_ground_truth(ground_truth))
    malignant = np.random.default_rng(5).integers(0, 21, len(images)) / 20
    predictions = tmp_path / "predictions.csv"
    predictions.write_text(
        "image,benign,malignant\n"
        + "".join(f"{i},{1 - m:.2f},{m:.2f}\n" for i, m in zip(images, malignant, strict=True))
    )
    theirs = score_with_isic(predictions, ground_truth)
    ours = _our_metrics(predictions, ground_truth)
    for name, value in theirs.items():
        assert math.isclose(ours[name], value, rel_tol=0, abs_tol=1e-9), name


# -- ISIC 2017-2020: the submission file of `synergic predict --format` against the official truth


def _grid_probabilities(rng, labels: np.ndarray, num_classes: int, grid: int = 20) -> np.ndarray:
    """Informative class probabilities on a 1/grid lattice (rows sum to 1): many tied scores
    within a class, and rows whose highest probability is shared (the scorer's "undecided")."""
    logits = rng.normal(size=(labels.size, num_classes)) + 1.4 * np.eye(num_classes)[labels]
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.array([rng.multinomial(grid, row) for row in softmax]) / grid


def _case(seed: int, classes: tuple[str, ...], frequencies: list[float], n: int = 150):
    """Image ids, labels (every class at least twice, the rest drawn with ``frequencies``) and
    probabilities; the rows in the shuffled order of the submission (the scorer sorts by id)."""
    rng = np.random.default_rng(seed)
    present = [k for k, f in enumerate(frequencies) if f > 0]
    labels = np.concatenate([np.repeat(present, 2),
                             rng.choice(len(classes), size=n - 2 * len(present), p=frequencies)])
    rng.shuffle(labels)
    probabilities = _grid_probabilities(rng, labels, len(classes))
    ids = [f"ISIC_{24306 + 3 * i:07d}" for i in range(n)]
    return ids, labels, probabilities


def _submission(tmp_path: Path, challenge: str, classes, ids, probabilities) -> Path:
    rows = [(f"/data/test/{image}.jpg", row) for image, row in zip(ids, probabilities.tolist())]
    path = tmp_path / f"{challenge}_submission.csv"
    path.write_text(submission_csv(challenge, classes, rows[::-1]))
    return path


def _assert_close(ours: float, theirs: float, what: str) -> None:
    assert math.isclose(ours, theirs, rel_tol=0, abs_tol=1e-12), (
        f"{what}: synergic {ours!r}, ISIC scorer {isic_scorer_version()} {theirs!r}"
    )


@needs_scorer
def test_isic2017_task_auc_is_the_scorers_mean_auc_of_the_two_tasks(tmp_path):
    classes = ("nevus", "melanoma", "seborrheic_keratosis")
    tasks = ("melanoma", "seborrheic_keratosis")
    ids, labels, probabilities = _case(2017, classes, [0.69, 0.19, 0.12])
    truth = tmp_path / "ISIC-2017_Test_v2_Part3_GroundTruth.csv"
    truth.write_text("image_id,melanoma,seborrheic_keratosis\n" + "".join(
        f"{image},{float(label == 1)},{float(label == 2)}\n" for image, label in zip(ids, labels)
    ))
    submission = _submission(tmp_path, "isic2017", classes, ids, probabilities)
    assert submission.read_text().startswith("image_id,melanoma,seborrheic_keratosis\n")
    theirs = score_classification(read_table(truth, "image_id", tasks),
                                  read_table(submission, "image_id", tasks), tasks, "auc")
    ours = compute_metrics(probabilities, labels, classes=classes, task_classes=tasks)
    for task in tasks:
        _assert_close(ours[f"auc_{task}"], theirs["per_category"]["auc"][task], f"auc {task}")
    _assert_close(ours["task_auc"], theirs["overall"], "task_auc (the scorer's mean AUC)")


@needs_scorer
@pytest.mark.parametrize("challenge", ["isic2018", "isic2019"])
def test_balanced_accuracy_is_the_scorers_balanced_multiclass_accuracy(tmp_path, challenge):
    if challenge == "isic2018":
        official = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
        frequencies = {"MEL": 0.11, "NV": 0.67, "BCC": 0.05, "AKIEC": 0.03, "BKL": 0.11,
                       "DF": 0.01, "VASC": 0.02}
    else:
        # The scorer cannot score a truth column without images (its auc_sens_80 fails), and the
        # 2019 test set has UNK images: so a 9-class model, UNK included.
        official = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
        frequencies = {"MEL": 0.18, "NV": 0.49, "BCC": 0.13, "AK": 0.03, "BKL": 0.1,
                       "DF": 0.01, "VASC": 0.01, "SCC": 0.03, "UNK": 0.02}
    classes = tuple(sorted(frequencies))  # the model's order is not the challenge's columns
    ids, labels, probabilities = _case(int(challenge[-4:]), classes,
                                       [frequencies[c] for c in classes])
    truth = tmp_path / "GroundTruth.csv"
    truth.write_text(f"image,{','.join(official)}\n" + "".join(
        f"{image},{','.join(str(float(classes[label] == c)) for c in official)}\n"
        for image, label in zip(ids, labels)
    ))
    submission = _submission(tmp_path, challenge, classes, ids, probabilities)
    assert submission.read_text().startswith(f"image,{','.join(official)}\n")
    theirs = score_classification(read_table(truth, "image", official),
                                  read_table(submission, "image", official), official,
                                  "balanced_accuracy")
    ours = compute_metrics(probabilities, labels)
    tied = (probabilities == probabilities.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.sum() >= 5  # the scorer's "undecided" rows are exercised
    _assert_close(ours["balanced_accuracy"], theirs["overall"], "balanced_accuracy")
    _assert_close(ours["balanced_accuracy"], theirs["aggregate"]["balanced_accuracy"],
                  "aggregate balanced_accuracy")


@needs_scorer
def test_isic2020_auc_is_the_scorers_auc_of_the_target(tmp_path):
    classes = ("benign", "malignant")
    ids, labels, probabilities = _case(2020, classes, [0.95, 0.05], n=200)
    truth = tmp_path / "ISIC_2020_Training_GroundTruth.csv"
    truth.write_text("image_name,patient_id,benign_malignant,target\n" + "".join(
        f"{image},IP_{i // 3:07d},{classes[label]},{label}\n"
        for i, (image, label) in enumerate(zip(ids, labels))
    ))
    submission = _submission(tmp_path, "isic2020", classes, ids, probabilities)
    assert submission.read_text().startswith("image_name,target\n")
    theirs = score_classification(read_table(truth, "image_name", ("target",)),
                                  read_table(submission, "image_name", ("target",)), ("target",),
                                  "auc")
    ours = compute_metrics(probabilities, labels)
    _assert_close(ours["auc"], theirs["overall"], "auc")
    _assert_close(ours["ap"], theirs["per_category"]["ap"]["target"], "ap")


def test_submission_files_of_each_challenge(tmp_path):
    rows = [("/x/ISIC_0000001.jpg", [0.25, 0.75]), ("ISIC_0000002.JPG", [0.5, 0.5])]
    assert submission_csv("isic2016", ["benign", "malignant"], rows) == (
        "ISIC_0000001,0.75\nISIC_0000002,0.5\n"
    )
    assert submission_csv("isic2020", ["malignant", "benign"], rows).splitlines() == [
        "image_name,target", "ISIC_0000001,0.25", "ISIC_0000002,0.5",
    ]
    # ISIC 2017 from a model of one binary task: that task's column only.
    assert submission_csv("isic2017", ["other", "seborrheic_keratosis"], rows).splitlines() == [
        "image_id,seborrheic_keratosis", "ISIC_0000001,0.75", "ISIC_0000002,0.5",
    ]
    three = [("a/ISIC_0000003.png", [0.5, 0.2, 0.3])]
    assert submission_csv("isic2017", ["nevus", "melanoma", "seborrheic_keratosis"],
                          three).splitlines() == [
        "image_id,melanoma,seborrheic_keratosis", "ISIC_0000003,0.2,0.3"]
    eight = ("AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC")
    assert submission_csv("isic2019", eight, [("ISIC_0000004.jpg", [0.0] * 5 + [1.0, 0.0, 0.0])]
                          ).splitlines() == [
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK",
        "ISIC_0000004,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"]


@pytest.mark.parametrize(
    ("challenge", "classes", "needed"),
    [
        ("isic2018", ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF"), "exactly the classes MEL, NV"),
        ("isic2019", ("MEL", "NV"), "MEL, NV, BCC, AK, BKL, DF, VASC, SCC, with or without UNK"),
        ("isic2020", ("nevus", "melanoma"), "one of them 'malignant'"),
        ("isic2017", ("benign", "malignant"), "include melanoma and seborrheic_keratosis"),
        ("isic2016", ("benign", "malignant", "other"), "a model of two classes"),
    ],
)
def test_a_run_whose_classes_do_not_fit_the_format_is_a_one_line_error(challenge, classes, needed):
    from synergic.errors import SynergicError

    with pytest.raises(SynergicError) as caught:
        submission_csv(challenge, classes, [("ISIC_0000001.jpg", [0.5] * len(classes))])
    message = str(caught.value)
    assert message.startswith(f"--format {challenge}: the run's classes ({', '.join(classes)})")
    assert needed in message and "\n" not in message
