"""The bad-input catalogue: every mistake a user can make in a recipe, a data set or a run folder
ends with one line on stderr that names the file or key and says what to do, a non-zero exit, no
traceback, and nothing that could be taken for a result (no run folder at all when the failure
comes before training). And images as they come, in every mode, train end to end.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RESULTS = ("metrics.json", "predictions.csv")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- helpers ----------------------------------------------------------------------------------


def invoke(args: list, capsys) -> tuple[int, str, str]:
    """``synergic ARGS`` in this process, as the console script runs it."""
    from synergic.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(code: int, err: str, *needles: str) -> str:
    """The error line of a refused command; checks it is the only one, last, without traceback."""
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def run_refused(args: list, capsys, output: Path, *needles: str) -> str:
    """Run, expect a refusal before training: no run folder may appear."""
    code, _, err = invoke(["run", *args, "--output", output], capsys)
    line = refused(code, err, *needles)
    assert not output.exists(), f"{output} was created: {sorted(p.name for p in output.iterdir())}"
    return line


def noise_image(size=(16, 16), seed=0, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def jpeg_bytes(seed=0, size=(40, 40)) -> bytes:
    buffer = io.BytesIO()
    noise_image(size, seed).save(buffer, format="JPEG")
    return buffer.getvalue()


MODEL_AND_TRAIN = """\
model:
  components: 2
  backbone: {name: test_efficientnet, pretrained: false}
  head: {hidden: 16}
  synergic_head: {name: mlp, options: {hidden: 16}}
train:
  iterations: 3
  batch_size: 4
  device: cpu
  eval_every: 0
  checkpoint_every: 0
  log_every: 1
  eval_batch_size: 8
"""


def write_recipe(path: Path, data_section: str) -> Path:
    path.write_text("name: bad-input\n" + data_section + MODEL_AND_TRAIN)
    return path


@pytest.fixture
def folder_data(tmp_path) -> Path:
    """root/{train,test}/{benign,malignant}/*.png: 4 + 4 training and 2 + 2 test images."""
    root = tmp_path / "images"
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(("benign", "malignant")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                noise_image(seed=100 * label + 10 * k + len(split)).save(folder / f"{name}_{k}.png")
    return root


@pytest.fixture
def folder_recipe(tmp_path, folder_data) -> Path:
    cache = tmp_path / "cache"
    return write_recipe(
        tmp_path / "folder.yaml",
        f"data:\n  dataset: folder\n  root: {folder_data}\n  image_size: 32\n  cache_dir: {cache}\n",
    )


@pytest.fixture
def csv_data(tmp_path) -> Path:
    root = tmp_path / "listed"
    root.mkdir()
    rows = {"train": [], "test": []}
    for split, count in (("train", 4), ("test", 2)):
        for label in ("benign", "malignant"):
            for k in range(count):
                name = f"{split}_{label}_{k}.png"
                noise_image(seed=len(rows[split]) + 7 * len(split)).save(root / name)
                rows[split].append(f"{name},{label}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("image,label\n" + "\n".join(lines) + "\n")
    return root


def csv_recipe(tmp_path: Path, root: Path, options: str = "") -> Path:
    return write_recipe(
        tmp_path / "csv.yaml",
        f"data:\n  dataset: csv\n  root: {root}\n  image_size: 32\n  cache: false\n"
        f"  options: {{train_csv: train.csv, test_csv: test.csv{options}}}\n",
    )


# -- the recipe ----------------------------------------------------------------------------------


def test_yaml_syntax_error_names_line_and_column(tiny_recipe, tmp_path, capsys):
    text = tiny_recipe.read_text().replace("  batch_size: 4\n", "  batch_size: [4\n")
    tiny_recipe.write_text(text)
    line = run_refused([tiny_recipe], capsys, tmp_path / "out", f"{tiny_recipe}:", "YAML syntax error")
    assert re.search(re.escape(str(tiny_recipe)) + r":\d+:\d+: YAML syntax error", line), line


def test_unknown_key_suggests_the_right_one(tiny_recipe, tmp_path, capsys):
    tiny_recipe.write_text(tiny_recipe.read_text().replace("batch_size:", "batchsize:"))
    run_refused(
        [tiny_recipe], capsys, tmp_path / "out",
        f"{tiny_recipe}: unknown key 'train.batchsize' (did you mean 'train.batch_size'?)",
    )


def test_unknown_key_given_with_set(tiny_recipe, tmp_path, capsys):
    run_refused(
        [tiny_recipe, "--set", "trian.iterations=4"], capsys, tmp_path / "out",
        "--set trian.iterations=4: unknown key 'trian'",
    )


def test_wrong_type(tiny_recipe, tmp_path, capsys):
    run_refused(
        [tiny_recipe, "--set", "train.iterations=many"], capsys, tmp_path / "out",
        "--set train.iterations=many: train.iterations: 'many' is not allowed: must be a valid integer",
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.batch_size=0", "train.batch_size: 0 is not allowed: must be >= 1"),
        ("train.optimizer.lr=-0.01", "train.optimizer.lr: -0.01 is not allowed: must be > 0"),
        ("train.synergic_weight=-1", "train.synergic_weight: -1 is not allowed: must be >= 0"),
        ("model.components=0", "model.components: 0 is not allowed: must be >= 1"),
        ("data.image_size=8", "data.image_size: 8 is not allowed: must be >= 16"),
        ("train.iterations=0", "train.iterations: 0 is not allowed: must be >= 1"),
        ("train.optimizer.lr=.nan", "train.optimizer.lr: nan is not allowed"),
    ],
)
def test_out_of_range_values(tiny_recipe, tmp_path, capsys, override, expected):
    run_refused([tiny_recipe, "--set", override], capsys, tmp_path / "out", f"--set {override}: {expected}")


def test_out_of_range_value_in_the_file_names_the_file(tiny_recipe, tmp_path, capsys):
    tiny_recipe.write_text(tiny_recipe.read_text().replace("batch_size: 4", "batch_size: 0"))
    run_refused([tiny_recipe], capsys, tmp_path / "out", f"{tiny_recipe}: train.batch_size: 0 is not allowed")


@pytest.mark.parametrize(
    ("backbone", "size", "expected"),
    [
        ("test_convnext", 16, "data.image_size 16 is too small for backbone 'test_convnext'"),
        ("test_vit", 24, "data.image_size 24 does not suit backbone 'test_vit'"),
    ],
)
def test_image_size_the_backbone_cannot_take(tiny_recipe, tmp_path, capsys, backbone, size, expected):
    line = run_refused(
        [tiny_recipe, "--set", f"model.backbone.name={backbone}", "--set", f"data.image_size={size}"],
        capsys, tmp_path / "out", expected, "use a larger data.image_size",
    )
    assert len(line) < 400


@pytest.mark.parametrize(
    ("key", "typo", "suggestion"),
    [
        ("data.dataset", "synthetic_lesion", "synthetic_lesions"),
        ("model.backbone.name", "test_efficientnt", "test_efficientnet"),
        ("train.sampler.name", "balance", "balanced"),
        ("model.aggregator", "sum_softmx", "sum_softmax"),
    ],
)
def test_unknown_registry_name_suggests_the_closest(tiny_recipe, tmp_path, capsys, key, typo, suggestion):
    run_refused(
        [tiny_recipe, "--set", f"{key}={typo}"], capsys, tmp_path / "out",
        f"{key}:", f"'{typo}'", f"did you mean '{suggestion}'?",
    )


def test_a_missing_recipe_file(tmp_path, capsys):
    run_refused([tmp_path / "nope.yaml"], capsys, tmp_path / "out", "nope.yaml")


# -- image files in a data set -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("corrupt.jpg", "corrupt", "cannot decode image"),
        ("truncated.jpg", "truncated", "truncated or corrupt"),
        ("empty.png", b"", "image file is empty (0 bytes)"),
        ("notes.png", b"these are my notes, not a picture\n", "not an image"),
    ],
)
def test_a_bad_image_file_is_named(folder_recipe, folder_data, tmp_path, capsys, name, content, expected):
    data = jpeg_bytes(seed=3)
    if content == "corrupt":  # the compressed data replaced by noise, headers and end intact
        start = data.index(b"\xff\xda") + 20  # past the start-of-scan header
        noise = np.random.default_rng(3).integers(0, 256, len(data) - start - 2, dtype=np.uint8)
        content = data[:start] + noise.tobytes() + data[-2:]
    elif content == "truncated":
        content = data[: len(data) // 2]
    bad = folder_data / "train" / "malignant" / name
    bad.write_bytes(content)
    line = run_refused([folder_recipe], capsys, tmp_path / "out", str(bad), expected)
    if name != "notes.png":
        assert "re-download or delete it" in line
    assert not list((tmp_path / "cache").glob("**/*.npy")), "a failed decode left a cache entry"


def test_a_bad_image_decoded_in_a_worker_process_is_still_one_line(
    folder_recipe, folder_data, tmp_path
):
    # A process of its own: an exception from a DataLoader worker leaves PyTorch's worker
    # shutdown waiting seconds when the iterator is collected, which a command never does.
    import os
    import subprocess
    import sys

    bad = folder_data / "train" / "benign" / "zero.png"
    bad.write_bytes(b"")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SYNERGIC_DISABLE_PLUGINS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "synergic", "run", str(folder_recipe), "--set", "train.num_workers=2",
         "--output", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    refused(
        result.returncode, result.stderr,
        f"error: image file is empty (0 bytes): {bad}; re-download or delete it",
    )
    assert not (tmp_path / "out").exists()


def test_a_bad_test_image_is_found_before_training(folder_recipe, folder_data, tmp_path, capsys):
    bad = folder_data / "test" / "benign" / "zero.jpg"
    bad.write_bytes(b"")
    run_refused([folder_recipe], capsys, tmp_path / "out", str(bad), "image file is empty")


def test_a_class_folder_without_training_images(folder_recipe, folder_data, tmp_path, capsys):
    (folder_data / "train" / "nevus").mkdir()
    run_refused(
        [folder_recipe], capsys, tmp_path / "out",
        f"class folder {folder_data / 'train' / 'nevus'} has no images", "add images or remove the folder",
    )


def test_a_test_class_the_training_set_lacks(folder_recipe, folder_data, tmp_path, capsys):
    (folder_data / "test" / "benign").rename(folder_data / "test" / "benigm")
    run_refused(
        [folder_recipe], capsys, tmp_path / "out", "is not a class of", "did you mean 'benign'?"
    )


def test_a_missing_data_root(folder_recipe, folder_data, tmp_path, capsys):
    import shutil

    shutil.rmtree(folder_data)
    run_refused([folder_recipe], capsys, tmp_path / "out", f"data.root {folder_data} is not a folder")


# -- CSV data sets ---------------------------------------------------------------------------------


def test_csv_row_whose_image_is_missing(csv_data, tmp_path, capsys):
    with (csv_data / "train.csv").open("a") as handle:
        handle.write("lost_image,benign\n")
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        "image for 'lost_image'", f"{csv_data / 'train.csv'} line 10", "not found",
    )


def test_csv_without_the_label_column(csv_data, tmp_path, capsys):
    text = (csv_data / "train.csv").read_text().replace("image,label", "image,diagnosis", 1)
    (csv_data / "train.csv").write_text(text)
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"{csv_data / 'train.csv'} has no column 'label' (its columns: image, diagnosis)",
        "set data.options.label_column",
    )


def test_csv_with_an_unknown_label(csv_data, tmp_path, capsys):
    text = (csv_data / "test.csv").read_text().replace("test_benign_1.png,benign", "test_benign_1.png,benigh")
    (csv_data / "test.csv").write_text(text)
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"{csv_data / 'test.csv'} line 3: unknown label 'benigh'", "classes: benign, malignant",
    )


def test_csv_with_a_duplicated_id(csv_data, tmp_path, capsys):
    with (csv_data / "train.csv").open("a") as handle:
        handle.write("train_benign_0.png,malignant\n")
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"{csv_data / 'train.csv'}: image id 'train_benign_0.png' appears twice (lines 2 and 10)",
    )


def test_csv_class_with_no_training_image(csv_data, tmp_path, capsys):
    recipe = csv_recipe(tmp_path, csv_data, ", classes: [benign, malignant, melanoma]")
    run_refused(
        [recipe], capsys, tmp_path / "out",
        "class 'melanoma' has no image; every class needs training images",
    )


def test_csv_classes_option_of_the_wrong_type(csv_data, tmp_path, capsys):
    # The message holds [brackets]: they must be printed, not read as console markup.
    recipe = csv_recipe(tmp_path, csv_data, ", classes: benign")
    run_refused([recipe], capsys, tmp_path / "out", "e.g. [benign, malignant]")


def test_a_missing_csv_file(csv_data, tmp_path, capsys):
    (csv_data / "test.csv").unlink()
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"data set 'csv': test_csv file not found: {csv_data / 'test.csv'}",
    )


# -- ISIC 2016 layout ------------------------------------------------------------------------------


TRAIN_CSV = "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"
TEST_CSV = "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"


@pytest.fixture
def isic_root(tmp_path) -> Path:
    """A fabricated ISIC 2016 layout (official file names, headerless CRLF CSVs)."""
    root = tmp_path / "isic2016"
    splits = {
        ("ISBI2016_ISIC_Part3_Training_Data", TRAIN_CSV): {
            f"ISIC_000000{k}": ("benign", "malignant")[k % 2] for k in range(6)
        },
        ("ISBI2016_ISIC_Part3_Test_Data", TEST_CSV): {f"ISIC_000001{k}": f"{k % 2}.0" for k in range(4)},
    }
    for (folder, csv_name), rows in splits.items():
        (root / folder).mkdir(parents=True)
        for k, image_id in enumerate(rows):
            noise_image(seed=k).save(root / folder / f"{image_id}.jpg")
        (root / csv_name).write_bytes("\r\n".join(f"{i},{label}" for i, label in rows.items()).encode())
    return root


def isic_recipe(tmp_path: Path, root: Path) -> Path:
    return write_recipe(
        tmp_path / "isic.yaml",
        f"data:\n  dataset: isic2016\n  root: {root}\n  image_size: 32\n  cache: false\n",
    )


def test_isic_csv_with_an_unknown_label(isic_root, tmp_path, capsys):
    path = isic_root / TRAIN_CSV
    path.write_bytes(path.read_bytes().replace(b"ISIC_0000003,malignant", b"ISIC_0000003,melanoma"))
    run_refused(
        [isic_recipe(tmp_path, isic_root)], capsys, tmp_path / "out",
        f"{path} line 4: unknown label 'melanoma' for ISIC_0000003; expected benign/malignant or 0/1"
        "; fix the file or re-download it",
    )


def test_isic_csv_with_a_duplicated_id(isic_root, tmp_path, capsys):
    path = isic_root / TEST_CSV
    path.write_bytes(path.read_bytes() + b"\r\nISIC_0000011,0.0")
    run_refused(
        [isic_recipe(tmp_path, isic_root)], capsys, tmp_path / "out",
        f"{path}: image id ISIC_0000011 appears twice (lines 2 and 5); fix the file or "
        "re-download it",
    )


def test_isic_without_its_test_csv(isic_root, tmp_path, capsys):
    (isic_root / TEST_CSV).unlink()
    run_refused(
        [isic_recipe(tmp_path, isic_root)], capsys, tmp_path / "out",
        f"ISIC 2016 not found at {isic_root} (missing {TEST_CSV})",
        "run 'synergic data download isic2016' or set data.root",
    )


def test_isic_image_listed_but_missing(isic_root, tmp_path, capsys):
    missing = isic_root / "ISBI2016_ISIC_Part3_Training_Data" / "ISIC_0000002.jpg"
    missing.unlink()
    run_refused([isic_recipe(tmp_path, isic_root)], capsys, tmp_path / "out", f"ISIC 2016 image {missing} is missing")


# -- the output folder -------------------------------------------------------------------------------


def test_an_output_folder_holding_another_run_is_refused(tiny_recipe, tmp_path, capsys):
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "recipe.yaml").write_text("name: earlier\n")
    (other / "metrics.json").write_text("{}\n")
    code, _, err = invoke(["run", tiny_recipe, "--output", other], capsys)
    refused(
        code, err, f"output directory {other} already holds another run: use --resume to continue "
        "it, --overwrite to replace it, or another --output",
    )
    assert sorted(p.name for p in other.iterdir()) == ["checkpoints", "metrics.json", "recipe.yaml"]
    assert (other / "recipe.yaml").read_text() == "name: earlier\n"


def test_overwrite_never_deletes_files_that_are_not_a_run(tiny_recipe, tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("...")
    for flags in ([], ["--overwrite"]):
        code, _, err = invoke(["run", tiny_recipe, "--output", folder, *flags], capsys)
        refused(code, err, f"output directory {folder}")
        assert [p.name for p in folder.iterdir()] == ["chapter1.tex"]


def test_overwrite_replaces_a_run(tiny_recipe, tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text("name: earlier\n")
    (run_dir / "metrics.json").write_text('{"stale": true}\n')
    code, _, err = invoke(["run", tiny_recipe, "--output", run_dir, "--overwrite"], capsys)
    assert code == 0, err
    assert '"stale"' not in (run_dir / "metrics.json").read_text()


@pytest.mark.parametrize("state", ["absent", "empty"])
def test_resume_with_nothing_to_resume(tiny_recipe, tmp_path, capsys, state):
    run_dir = tmp_path / "run"
    if state == "empty":
        run_dir.mkdir()
    code, _, err = invoke(["run", tiny_recipe, "--output", run_dir, "--resume"], capsys)
    what = "does not exist" if state == "absent" else "is empty"
    refused(code, err, f"nothing to resume: {run_dir} {what}; drop --resume to start a new run there")
    assert run_dir.exists() == (state == "empty")
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_resume_command_on_a_folder_without_a_run(tmp_path, capsys):
    code, _, err = invoke(["resume", tmp_path / "nothing"], capsys)
    refused(code, err, f"nothing to resume: {tmp_path / 'nothing'} holds no synergic run (no recipe.yaml)")
    assert not (tmp_path / "nothing").exists()


def test_resume_needs_an_output(tiny_recipe, capsys):
    code, _, err = invoke(["run", tiny_recipe, "--resume"], capsys)
    refused(code, err, "--resume needs --output")


# -- images as they come ---------------------------------------------------------------------------


def write_images_of_every_kind(folder: Path, seed: int) -> list[str]:
    """One image per mode a medical collection mixes; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = noise_image((24, 20), seed)
    rgb.convert("L").save(folder / "grey.png")
    rgb.convert("1").save(folder / "bilevel.png")
    rgb.convert("RGBA").save(folder / "alpha.png")
    rgb.convert("LA").save(folder / "grey_alpha.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png", transparency=0)
    Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)).save(folder / "scan16.png")
    rgb.convert("CMYK").save(folder / "print.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(folder / "phone.jpg", exif=exif)
    noise_image((1600, 1200), seed).save(folder / "large.jpg", quality=70)
    rgb.save(folder / "plain.bmp")
    rgb.save(folder / "scan.tif")
    return sorted(p.name for p in folder.iterdir())


def test_images_of_every_kind_train_end_to_end(tmp_path, capsys):
    root = tmp_path / "mixed"
    names = {}
    for split in ("train", "test"):
        for k, label in enumerate(("benign", "malignant")):
            names[split, label] = write_images_of_every_kind(root / split / label, seed=2 * k + len(split))
    # The modes really are what the test claims.
    modes = {Image.open(root / "train" / "benign" / n).mode for n in names["train", "benign"]}
    assert {"L", "1", "RGBA", "LA", "P", "CMYK", "RGB"} <= modes and modes & {"I;16", "I"}

    recipe = write_recipe(
        tmp_path / "mixed.yaml",
        f"data:\n  dataset: folder\n  root: {root}\n  image_size: 32\n  cache: false\n",
    )
    run_dir = tmp_path / "run"
    code, _, err = invoke(["run", recipe, "--output", run_dir], capsys)
    assert code == 0, err
    lines = (run_dir / "predictions.csv").read_text().splitlines()
    expected = sorted(f"{label}/{n}" for (split, label), ns in names.items() if split == "test" for n in ns)
    assert sorted(line.split(",")[0] for line in lines[1:]) == expected


# -- weights from other trainers ------------------------------------------------------------------


def write_marker(path):
    Path(path).write_text("the weights file ran code")


class RunsCodeWhenLoaded:
    """Pickles as a call of write_marker: a plain ``torch.load`` of the file writes a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (write_marker, (str(self.marker),))


def test_a_weights_file_that_pickles_code_is_refused_before_training(tiny_recipe, tmp_path, capsys):
    import timm
    import torch

    marker = tmp_path / "marker.txt"
    weights = tmp_path / "checkpoint.pth.tar"
    state = timm.create_model("test_efficientnet", num_classes=0).state_dict()
    torch.save({"state_dict": state, "hook": RunsCodeWhenLoaded(marker)}, weights)
    run_refused(
        [tiny_recipe, "--set", f"model.backbone.weights={weights}"], capsys, tmp_path / "out",
        f"weights file {weights} pickles {write_marker.__module__}.write_marker",
        "re-save the state dict alone with torch.save(model.state_dict(), PATH)",
    )
    assert not marker.exists()


def test_a_weights_key_the_checkpoint_lacks_is_refused_before_training(
    tiny_recipe, tmp_path, capsys
):
    import argparse

    import timm
    import torch

    weights = tmp_path / "last.pth.tar"
    state = timm.create_model("test_efficientnet", num_classes=0).state_dict()
    torch.save(
        {"epoch": 3, "args": argparse.Namespace(model="test_efficientnet"), "state_dict": state,
         "state_dict_ema": state},
        weights,
    )
    run_refused(
        [tiny_recipe, "--set", f"model.backbone.weights={weights}",
         "--set", "model.backbone.weights_key=model_ema"],
        capsys, tmp_path / "out",
        "has no key 'model_ema'",
        "set model.backbone.weights_key to one of state_dict, state_dict_ema",
    )


# -- files beside images, the same image twice, labels edited by people, ISIC nesting (issue 12) --


def apple_double() -> bytes:
    """A macOS AppleDouble sidecar: 4 KB that start with the bytes 00 05 16 07."""
    return b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ".ljust(4096, b"\x00")


def test_sidecars_beside_images_are_not_trained_on(folder_recipe, folder_data, tmp_path, capsys):
    import csv

    from synergic.data.listing import ImageListingWarning

    for split in ("train", "test"):
        for label in ("benign", "malignant"):
            folder = folder_data / split / label
            (folder / f"._{label}_0.png").write_bytes(apple_double())
            (folder / "Thumbs.db").write_bytes(bytes(64))
    (folder_data / "train" / "__MACOSX" / "benign").mkdir(parents=True)
    (folder_data / "train" / "__MACOSX" / "benign" / "._benign_0.png").write_bytes(apple_double())
    (folder_data / "test" / "benign" / "again").symlink_to(
        folder_data / "test" / "benign", target_is_directory=True
    )
    run_dir = tmp_path / "run"
    with pytest.warns(ImageListingWarning, match=r"benign/again is .*benign, reached twice"):
        code, _, err = invoke(["run", folder_recipe, "--output", run_dir], capsys)
    assert code == 0, err
    with (run_dir / "predictions.csv").open(newline="") as handle:
        images = sorted(row[0] for row in list(csv.reader(handle))[1:])
    names = ("benign", "malignant")
    assert images == sorted(f"{label}/{label}_{k}.png" for label in names for k in range(2))


def test_csv_with_blank_labels(csv_data, tmp_path, capsys):
    path = csv_data / "train.csv"
    path.write_text(path.read_text().replace(",benign\n", ",\n", 2))
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"{path}: no label in column 'label' on lines 2, 3 (2 rows)", "remove the rows",
    )


def test_csv_with_a_label_in_two_spellings(csv_data, tmp_path, capsys):
    path = csv_data / "train.csv"
    text = path.read_text()
    path.write_text(text.replace("malignant_1.png,malignant", "malignant_1.png,Malignant"))
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"{path}: label 'Malignant' on line 7 and 'malignant' on 3 rows differ only in letter case",
        "(did you mean 'malignant'?)",
    )


def test_csv_row_naming_a_macos_sidecar(csv_data, tmp_path, capsys):
    (csv_data / "._test_benign_0.png").write_bytes(apple_double())
    with (csv_data / "test.csv").open("a") as handle:
        handle.write("._test_benign_0.png,benign\n")
    run_refused(
        [csv_recipe(tmp_path, csv_data)], capsys, tmp_path / "out",
        f"{csv_data / 'test.csv'} line 6: '._test_benign_0.png' is a macOS AppleDouble sidecar",
        "remove the row",
    )


def test_class_folders_in_two_spellings(folder_recipe, folder_data, tmp_path, capsys):
    (folder_data / "train" / "Benign").mkdir()
    noise_image(seed=99).save(folder_data / "train" / "Benign" / "extra.png")
    run_refused(
        [folder_recipe], capsys, tmp_path / "out",
        f"class folders {folder_data / 'train' / 'Benign'}/ (1 image) and",
        "differ only in letter case or surrounding spaces (did you mean 'benign'?)",
    )


def test_a_class_folder_outside_the_classes_option(folder_recipe, folder_data, tmp_path, capsys):
    run_refused(
        [folder_recipe, "--set", "data.options.classes=[malignant, naevus]"], capsys,
        tmp_path / "out",
        "data.options.classes names 'naevus' but", "its class folders: benign, malignant",
    )
    run_refused(
        [folder_recipe, "--set", "data.options.classes=[malignant]"], capsys, tmp_path / "out",
        f"class folder {folder_data / 'train' / 'benign'} is not a class of data.options.classes",
    )


def test_one_image_in_two_class_folders(folder_recipe, folder_data, tmp_path, capsys):
    (folder_data / "train" / "malignant" / "also.png").symlink_to(
        folder_data / "train" / "benign" / "benign_1.png"
    )
    run_refused(
        [folder_recipe], capsys, tmp_path / "out",
        "are the same file (through a link) in two classes, 'benign' and 'malignant'",
    )


def test_isic_unpacked_one_folder_too_deep(isic_root, tmp_path, capsys):
    folder = isic_root / "ISBI2016_ISIC_Part3_Training_Data"
    nested = folder / folder.name
    nested.mkdir()
    for image in sorted(folder.glob("*.jpg")):
        image.rename(nested / image.name)
    run_refused(
        [isic_recipe(tmp_path, isic_root)], capsys, tmp_path / "out",
        f"the images were unpacked one folder too deep, into {nested}; move them up into {folder}",
    )


def test_isic_one_level_below_data_root(isic_root, tmp_path, capsys):
    (isic_root.parent / "__MACOSX").mkdir()
    run_refused(
        [isic_recipe(tmp_path, isic_root.parent)], capsys, tmp_path / "out",
        f"ISIC 2016 not found at {isic_root.parent}", f"set data.root to {isic_root}",
    )


# -- file names in outputs, and run files edited by hand (docs/data.md, "File names in outputs") --


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run; tests copy it before changing its files."""
    from synergic.experiment import run
    from synergic.recipe import load_recipe
    from tiny_recipe import TINY_RECIPE

    base = tmp_path_factory.mktemp("finished")
    (base / "tiny.yaml").write_text(TINY_RECIPE)
    run(load_recipe(base / "tiny.yaml"), base / "run")
    return base / "run"


def _edit_predictions(run_dir: Path) -> str:
    """predictions.csv as a writer joining by hand wrote a name with a comma."""
    lines = (run_dir / "predictions.csv").read_text().splitlines()
    image, *rest = lines[1].split(",")
    lines[1] = ",".join(["lesion 7, left arm.jpg", *rest])
    (run_dir / "predictions.csv").write_text("\n".join(lines) + "\n")
    return "row 2 has 4 fields where the header has 3"


def _not_utf8(run_dir: Path) -> str:
    path = run_dir / "predictions.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\n\xff", 1))
    return "is not a UTF-8 CSV file"


def _labels_header(run_dir: Path) -> str:
    path = run_dir / "test_labels.csv"
    path.write_text(path.read_text().replace("image,label", "id,class", 1))
    return "expected image,label"


def _unknown_label(run_dir: Path) -> str:
    path = run_dir / "test_labels.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",Melanoma?"
    path.write_text("\n".join(lines) + "\n")
    return "test label 'Melanoma?' is neither a class"


def _not_a_number(run_dir: Path) -> str:
    path = run_dir / "predictions.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",n/a"
    path.write_text("\n".join(lines) + "\n")
    return "a probability is not a number"


@pytest.mark.parametrize("edit", [_edit_predictions, _not_utf8, _labels_header, _unknown_label,
                                  _not_a_number])
def test_report_on_run_files_edited_by_hand_notes_them(finished_run, tmp_path, capsys, edit):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    needle = edit(run_dir)
    code, out, err = invoke(["report", run_dir, "--output", tmp_path / "report.md"], capsys)
    assert code == 0 and "Traceback" not in err, err
    notes = [line for line in out.splitlines() if line.startswith("note: ROC:")]
    assert len(notes) == 1 and needle in notes[0], out
    assert not (tmp_path / "report_roc.png").exists()


def test_predict_names_files_of_any_name_in_its_csv(finished_run, tmp_path, capsys):
    import csv
    import os

    folder = tmp_path / "new"
    folder.mkdir()
    names = [b"lesion 7, left arm.png", b'quote "x".png', b"=HYPERLINK(1).png"]
    try:
        os.close(os.open(os.fsencode(folder) + b"/probe \xff", os.O_WRONLY | os.O_CREAT))
        os.remove(os.fsencode(folder) + b"/probe \xff")
        names.append(b"old zip \xe9.png")
    except OSError:
        pass  # this filesystem holds UTF-8 names only
    files = []
    for k, name in enumerate(names):
        path = os.fsdecode(os.fsencode(folder) + b"/" + name)
        noise_image(seed=k).save(path, format="PNG")
        files.append(path)
    code, out, err = invoke(["predict", finished_run, *files], capsys)
    assert code == 0, err
    rows = list(csv.reader(out.splitlines(), strict=True))
    from synergic.data.names import printable_name

    assert [row[0] for row in rows[1:]] == [printable_name(f) for f in files]
    assert all(len(row) == len(rows[0]) for row in rows)
