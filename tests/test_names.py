"""File names in outputs: every name a filesystem can hold round-trips through predictions.csv,
test_labels.csv, ``synergic predict`` and ``synergic report`` (synergic.data.names)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synergic.data.names import name_bytes, printable_name

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the representation ----------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "ISIC_0000000.jpg", "lesion 7, left arm.jpg", 'quote "x".png', "new\nline.png", "ünïcode.png",
    "=cmd|' /C calc'!A0.png", "+1.png", "back\\slash.png", "日本語.jpg", "",
])
def test_a_name_that_is_valid_utf8_is_kept_as_it_is(name):
    assert printable_name(name) is name
    assert name_bytes(name) == name.encode("utf-8")


@pytest.mark.parametrize("raw, shown", [
    (b"lesion\xe9.jpg", "lesion\\xe9.jpg"),                 # latin-1 / cp1252 e-acute
    (b"\x82\xa0\x82\xa2.jpg", "\\x82\\xa0\\x82\\xa2.jpg"),  # Shift-JIS
    (b"caf\xc3\xa9 \xff.png", "café \\xff.png"),            # UTF-8 kept, the stray byte escaped
    (b"cut\xc3", "cut\\xc3"),                               # a multi-byte character cut short
])
def test_bytes_that_are_not_utf8_become_backslash_x_escapes(raw, shown):
    as_python_lists_it = os.fsdecode(raw) if sys.getfilesystemencoding() == "utf-8" else (
        raw.decode("utf-8", "surrogateescape"))
    for given in (as_python_lists_it, raw, Path(as_python_lists_it)):
        assert printable_name(given) == shown
    assert shown.encode("utf-8")  # valid UTF-8: any writer takes it
    assert printable_name(shown) == shown  # idempotent
    assert name_bytes(shown) == raw


def test_name_bytes_inverts_printable_name_on_random_byte_names():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        raw = rng.integers(1, 256, size=int(rng.integers(0, 12)), dtype=np.uint8).tobytes()
        shown = printable_name(raw.decode("utf-8", "surrogateescape"))
        shown.encode("utf-8")
        if b"\\x" not in raw:  # the documented caveat: a literal \xNN in the name itself
            assert name_bytes(shown) == raw, raw


def test_the_caveat_a_literal_backslash_x_prints_like_the_byte():
    assert printable_name(os.fsdecode(b"a\xff")) == printable_name("a\\xff") == "a\\xff"
    assert name_bytes("a\\x41") == b"a\\x41"  # ASCII escapes are never made, never undone


def test_surrogates_that_no_file_name_makes_become_u_escapes():
    assert printable_name("a\ud800b\udcffc") == "a\\ud800b\\xffc"


# -- a data set of awkward names, trained end to end -------------------------------------------


def invoke(args: list) -> tuple[int, str, str]:
    """``synergic ARGS`` in this process, its stdout strict UTF-8 as a pipe or terminal is (so
    a name that is not valid UTF-8 fails there as it would for a user), stderr as Python's."""
    from synergic.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", newline="",
                              write_through=True)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8")


ODD_NAMES = ["lesion 7, left arm.jpg", 'quote "x".png', "new\nline.png", "ünïcode.png",
             "=1+1.png", "plain.png", "carriage\rreturn.png", "tab\tbed.png"]
INVALID_UTF8 = b"scan \xff\xfe old zip.png"


def _image_bytes(seed: int, suffix: str) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
        buffer, format="JPEG" if suffix == ".jpg" else "PNG")
    return buffer.getvalue()


def _write(folder: Path, name: str | bytes, seed: int) -> str | None:
    """Write an image called ``name`` (bytes: as a raw file name); its id, None if refused."""
    raw = os.fsencode(folder) + b"/" + (name if isinstance(name, bytes) else name.encode())
    try:
        handle = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except (OSError, ValueError):
        return None
    with os.fdopen(handle, "wb") as file:
        file.write(_image_bytes(seed, os.path.splitext(os.fsdecode(raw))[1]))
    return printable_name(f"{folder.name}/{os.fsdecode(name) if isinstance(name, bytes) else name}")


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    """A folder data set whose test images carry every awkward name this filesystem holds (one
    class folder has a comma and a quote too), trained with the tiny model."""
    from test_bad_input import MODEL_AND_TRAIN

    base = tmp_path_factory.mktemp("names")
    root = base / "images"
    classes = ("benign", 'malignant, "ulcerated"')
    test_ids = []
    for split in ("train", "test"):
        for label, class_name in enumerate(classes):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for k, name in enumerate(ODD_NAMES + [INVALID_UTF8]):
                image_id = _write(folder, name, seed=1000 * label + 10 * k + len(split))
                if split == "test" and image_id is not None:
                    test_ids.append(image_id)
    if not any("\\x" in i for i in test_ids):
        pytest.skip("this filesystem refuses file names that are not valid UTF-8")
    recipe = base / "odd.yaml"
    recipe.write_text(f"name: odd-names\ndata:\n  dataset: folder\n  root: {root}\n"
                      f"  image_size: 32\n  cache_dir: {base / 'cache'}\n" + MODEL_AND_TRAIN)
    # The run folder's own name is not UTF-8 either: `run` prints it when it is done.
    run_dir = base / os.fsdecode(b"run \xff")
    code, out, err = invoke(["run", recipe, "--output", run_dir])
    assert code == 0, err
    assert "run \\xff" in out
    return run_dir, root, list(classes), test_ids


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, strict=True))


def test_predictions_and_test_labels_hold_every_name(odd_run):
    run_dir, _, classes, test_ids = odd_run
    predictions = read_csv(run_dir / "predictions.csv")
    assert predictions[0] == ["image", *classes]
    assert all(len(row) == 1 + len(classes) for row in predictions)
    assert sorted(row[0] for row in predictions[1:]) == sorted(test_ids)
    for row in predictions[1:]:
        assert sum(float(p) for p in row[1:]) == pytest.approx(1.0)
    labels = read_csv(run_dir / "test_labels.csv")
    assert labels[0] == ["image", "label"]
    assert [row[0] for row in labels[1:]] == [row[0] for row in predictions[1:]]
    assert {row[0]: row[1] for row in labels[1:]} == {i: i.split("/")[0] for i in test_ids}
    assert any(i.startswith("malignant, ") and "\\xff\\xfe" in i for i in test_ids)
    assert any(i.endswith("/=1+1.png") for i in test_ids)  # formula-like names kept verbatim
    splits = read_csv(run_dir / "splits.csv")
    assert sorted(row[0] for row in splits[1:] if row[1] == "test") == sorted(test_ids)


def test_report_reads_the_run(odd_run, tmp_path):
    run_dir, *_ = odd_run
    folder = tmp_path / os.fsdecode(b"reports \xfe")
    code, out, err = invoke(["report", run_dir, "--output", folder / "report.md"])
    assert code == 0, err
    assert f"report: {printable_name(folder / 'report.md')} (1 row)" in out
    assert (folder / "report_roc.png").is_file()  # drawn from predictions.csv + test_labels.csv
    text = (folder / "report.md").read_text(encoding="utf-8")
    assert f"`{printable_name(run_dir)}` (seed 0)" in text


def test_sweep_summary_holds_a_recipe_path_that_is_not_utf8(tmp_path):
    import json

    from synergic.sweep import write_summary

    recipe = os.fsdecode(b"/data/r\xe9cipes/tiny.yaml")
    summary = {"recipe": recipe, "overrides": [f"data.root={recipe}"], "grid": {}, "seeds": 1,
               "select_metric": "ap", "cells": [], "selected": None, "selection_note": "none"}
    json_path, md_path = write_summary(summary, tmp_path)
    written = json.loads(json_path.read_text(encoding="utf-8"))
    assert written["recipe"] == "/data/r\\xe9cipes/tiny.yaml"
    assert written["overrides"] == ["data.root=/data/r\\xe9cipes/tiny.yaml"]
    assert "r\\xe9cipes" in md_path.read_text(encoding="utf-8")


def test_printable_streams_print_any_name():
    from synergic.data.names import printable_streams

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    printable_streams(stream)
    stream.write(os.fsdecode(b"caf\xc3\xa9 \xff\xfe.png") + " \ud800")
    assert raw.getvalue().decode("utf-8") == "café \\xff\\xfe.png \\ud800"
    ascii_raw = io.BytesIO()
    ascii_stream = io.TextIOWrapper(ascii_raw, encoding="ascii", write_through=True)
    printable_streams(ascii_stream, None)
    ascii_stream.write("é" + os.fsdecode(b"\xff"))
    assert ascii_raw.getvalue() == b"\\xe9\\xff"


@pytest.mark.parametrize("to_file", [False, True])
def test_predict_output_holds_every_name(odd_run, tmp_path, to_file):
    run_dir, root, classes, test_ids = odd_run
    output = tmp_path / "predicted.csv"
    args = ["predict", run_dir, root / "test"] + (["--output", output] if to_file else [])
    code, out, err = invoke(args)
    assert code == 0, err
    text = output.read_bytes().decode("utf-8") if to_file else out  # no newline translation
    rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert rows[0] == ["image", *classes, "prediction"]
    prefix = printable_name(root / "test") + "/"
    assert sorted(row[0].removeprefix(prefix) for row in rows[1:]) == sorted(test_ids)
    assert {row[-1] for row in rows[1:]} <= set(classes)
    # The same model and images as the run's own evaluation: the probabilities agree per name.
    saved = {row[0]: [float(p) for p in row[1:]]
             for row in read_csv(run_dir / "predictions.csv")[1:]}
    for row in rows[1:]:
        assert [float(p) for p in row[1:-1]] == pytest.approx(
            saved[row[0].removeprefix(prefix)], abs=1e-6)


def test_two_names_that_print_the_same_are_refused_before_training(tmp_path):
    from synergic.data.datasets.folder import image_folder
    from synergic.errors import SynergicError

    folder = tmp_path / "root" / "train" / "benign"
    folder.mkdir(parents=True)
    if _write(folder, b"a\xff.png", 0) is None:
        pytest.skip("this filesystem refuses file names that are not valid UTF-8")
    _write(folder, "a\\xff.png", 1)
    with pytest.raises(SynergicError, match=r"image id 'benign/a\\xff.png' appears twice"):
        image_folder(root=tmp_path / "root", split="train")


@pytest.mark.parametrize("field", ["a\rb.png", "a\nb.png", "a\r\nb.png", "a,b", 'a"b', "plain"])
def test_the_csv_writer_round_trips_every_line_break(field):
    import csv
    import io

    from synergic.data.names import CsvWriter

    text = io.StringIO(newline="")
    CsvWriter(text).writerows([["image", "p"], [field, 0.25]])
    rows = list(csv.reader(io.StringIO(text.getvalue(), newline="")))
    assert rows == [["image", "p"], [field, "0.25"]]
    if field == "plain":
        assert text.getvalue() == "image,p\nplain,0.25\n"  # quoted only where needed
