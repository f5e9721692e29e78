"""The one image listing (synergic.data.listing): what it skips, each file once, a stable order,
and `synergic predict` on a folder that holds what macOS and Windows leave beside images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from synergic.data.listing import (
    IGNORED_NAMES,
    ImageListingWarning,
    ignored_reason,
    is_ignored,
    list_image_files,
)
from synergic.errors import SynergicError

needs_symlinks = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")


def apple_double(size: int = 4096) -> bytes:
    """A macOS AppleDouble sidecar as the Finder writes it beside ``name.jpg`` as ``._name.jpg``:
    magic 00 05 16 07, version 2, the filler 'Mac OS X', then metadata."""
    header = b"\x00\x05\x16\x07" + b"\x00\x02\x00\x00" + b"Mac OS X        " + b"\x00\x02"
    return header + bytes(size - len(header))


def relative(paths: list[Path], folder: Path) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in paths]


@pytest.fixture
def images(tmp_path, make_jpeg) -> Path:
    """Two real images, and beside them what operating systems and tools leave."""
    folder = tmp_path / "lesions"
    make_jpeg(folder / "ISIC_0000040.jpg")
    make_jpeg(folder / "more" / "ISIC_0000041.JPG")
    (folder / "._ISIC_0000040.jpg").write_bytes(apple_double())
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    (folder / "desktop.ini").write_text("[.ShellClassInfo]\r\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(40))
    (folder / "~$report.jpg").write_bytes(bytes(162))
    (folder / "notes.txt").write_text("not an image")
    for system_folder in ["__MACOSX", ".ipynb_checkpoints", "@eaDir", "$RECYCLE.BIN",
                          "System Volume Information", ".Trash-1000"]:
        make_jpeg(folder / system_folder / "ISIC_0000040.jpg")
    (folder / "__MACOSX" / "._ISIC_0000040.jpg").write_bytes(apple_double())
    return folder


def test_only_the_images_are_listed(images):
    assert (images / "._ISIC_0000040.jpg").read_bytes()[:4] == b"\x00\x05\x16\x07"
    assert (images / "._ISIC_0000040.jpg").stat().st_size == 4096
    listed = list_image_files(images)
    assert relative(listed, images) == ["ISIC_0000040.jpg", "more/ISIC_0000041.JPG"]


def test_extensions_and_recursion(images, make_jpeg):
    make_jpeg(images / "ISIC_0000042.png")
    assert relative(list_image_files(images, extensions=[".PNG"]), images) == ["ISIC_0000042.png"]
    assert relative(list_image_files(images, recursive=False), images) == [
        "ISIC_0000040.jpg", "ISIC_0000042.png"
    ]


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("._ISIC_0000040.jpg", True), (".DS_Store", True), (".ipynb_checkpoints", True),
        ("__MACOSX", True), ("__macosx", True), ("Thumbs.db", True), ("THUMBS.DB", True),
        ("desktop.ini", True), ("@eaDir", True), ("$RECYCLE.BIN", True), ("~$lesions.xlsx", True),
        ("System Volume Information", True), ("ISIC_0000040.jpg", False), ("_x.jpg", False),
        ("thumbs.db.jpg", False), ("__MACOSX_notes", False), ("eaDir", False),
    ],
)
def test_ignored_names(name, ignored):
    assert is_ignored(Path("/data") / name) is ignored
    assert (ignored_reason(name) is not None) is ignored


def test_every_ignored_name_is_documented_in_the_module_and_the_docs():
    import synergic.data.listing as listing

    docs = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    for name in IGNORED_NAMES:
        spelled = {"icon\r": "Icon"}.get(name, name)
        assert spelled.lower() in listing.__doc__.lower(), name
        assert spelled.lower() in docs.lower(), name


def test_sorted_by_relative_posix_path(tmp_path, make_jpeg):
    for name in ["b.jpg", "a/z.jpg", "a.jpg", "a-b.jpg", "B.jpg", "a/b/c.jpg"]:
        make_jpeg(tmp_path / name)
    listed = relative(list_image_files(tmp_path), tmp_path)
    assert listed == sorted(listed)
    assert listed == ["B.jpg", "a-b.jpg", "a.jpg", "a/b/c.jpg", "a/z.jpg", "b.jpg"]


@needs_symlinks
def test_a_folder_reached_twice_through_a_link_is_listed_once(tmp_path, make_jpeg):
    for k in range(3):
        make_jpeg(tmp_path / "benign" / "batch1" / f"b{k}.jpg")
    (tmp_path / "benign" / "batch1-again").symlink_to("batch1", target_is_directory=True)
    with pytest.warns(ImageListingWarning) as caught:
        listed = list_image_files(tmp_path / "benign")
    assert relative(listed, tmp_path / "benign") == [f"batch1/b{k}.jpg" for k in range(3)]
    [warning] = caught
    message = str(warning.message)
    assert "\n" not in message
    assert f"{tmp_path / 'benign' / 'batch1-again'} is {tmp_path / 'benign' / 'batch1'}" in message


@needs_symlinks
def test_a_link_loop_ends(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "a" / "x.jpg")
    (tmp_path / "a" / "loop").symlink_to("..", target_is_directory=True)
    (tmp_path / "a" / "self").symlink_to(".", target_is_directory=True)
    with pytest.warns(ImageListingWarning, match=r"reached twice.*\(2 such paths\)"):
        assert relative(list_image_files(tmp_path), tmp_path) == ["a/x.jpg"]


@needs_symlinks
def test_a_file_linked_twice_is_listed_once(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    (tmp_path / "c.jpg").symlink_to(tmp_path / "a.jpg")
    expected = r"b\.jpg is .*a\.jpg, reached twice .*\(2 such paths\)"
    with pytest.warns(ImageListingWarning, match=expected):
        assert relative(list_image_files(tmp_path), tmp_path) == ["a.jpg"]


@needs_symlinks
def test_a_link_reached_once_is_followed_without_a_warning(tmp_path, make_jpeg, recwarn):
    make_jpeg(tmp_path / "elsewhere" / "x.jpg")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert relative(list_image_files(tmp_path / "data"), tmp_path / "data") == ["linked/x.jpg"]
    assert not [w for w in recwarn if issubclass(w.category, ImageListingWarning)]


@needs_symlinks
def test_a_broken_link_that_looks_like_an_image_is_an_error(tmp_path, make_jpeg):
    make_jpeg(tmp_path / "a.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(SynergicError, match=r"gone\.jpg is a broken link"):
        list_image_files(tmp_path)


def test_files_named_one_by_one(images, tmp_path):
    first = images / "ISIC_0000040.jpg"
    with pytest.warns(ImageListingWarning, match=r"more is .*more, reached twice .*\(3 such"):
        listed = list_image_files([images / "more", first, images, tmp_path / "lesions" / "more"])
    assert listed == [images / "more" / "ISIC_0000041.JPG", first]
    assert list_image_files(images / "notes.txt") == [images / "notes.txt"]  # named: taken as is
    with pytest.raises(SynergicError, match=r"absent\.jpg not found$"):
        list_image_files([first, images / "absent.jpg"])


def test_a_sidecar_named_explicitly_is_skipped_with_one_warning(images):
    with pytest.warns(ImageListingWarning) as caught:
        listed = list_image_files([images / "._ISIC_0000040.jpg", images / "ISIC_0000040.jpg"])
    assert listed == [images / "ISIC_0000040.jpg"]
    [warning] = caught
    assert str(warning.message) == (
        f"skipped {images / '._ISIC_0000040.jpg'}: a macOS AppleDouble sidecar (metadata), "
        "not an image"
    )


@pytest.mark.shared_data
@needs_symlinks
def test_real_isic_images_with_a_mac_copy_beside_them(isic_sample, tmp_path):
    source = isic_sample / "ISBI2016_ISIC_Part3_Training_Data"
    real = sorted(p for p in source.iterdir() if p.suffix == ".jpg")[:3]
    folder = tmp_path / "copied-from-a-mac"
    folder.mkdir()
    for path in real:
        (folder / path.name).symlink_to(path)
        (folder / f"._{path.name}").write_bytes(apple_double())
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / f"._{real[0].name}").write_bytes(apple_double())
    (folder / "again").symlink_to(source, target_is_directory=True)
    with pytest.warns(ImageListingWarning, match="reached twice"):
        listed = list_image_files(folder)
    # The three linked files come first by name; the folder link adds only the other images.
    assert listed[:3] == [folder / p.name for p in real]
    assert all(p.parent == folder / "again" for p in listed[3:])
    assert len(listed) == len([p for p in source.iterdir() if p.suffix == ".jpg"])
    assert len({os.path.realpath(p) for p in listed}) == len(listed)


# -- synergic predict ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from tiny_recipe import TINY_RECIPE

    from synergic.cli import main

    folder = tmp_path_factory.mktemp("listing-run")
    (folder / "tiny.yaml").write_text(TINY_RECIPE)
    try:
        main(["run", str(folder / "tiny.yaml"), "--output", str(folder / "run")])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    return folder / "run"


def predict(run: Path, *paths: Path, capsys) -> tuple[int, list[list[str]], str]:
    import csv

    from synergic.cli import main

    capsys.readouterr()
    try:
        main(["predict", str(run), *map(str, paths)])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, list(csv.reader(out.splitlines())), err


@pytest.mark.usefixtures("one_torch_thread")
def test_predict_on_a_folder_holding_a_sidecar(tiny_run, tmp_path, capsys):
    folder = tmp_path / "new"
    folder.mkdir()
    for k in range(2):
        Image.new("RGB", (40, 40), (60 * k, 90, 120)).save(folder / f"ISIC_00000{40 + k}.jpg")
    (folder / "._ISIC_0000040.jpg").write_bytes(apple_double())
    (folder / "Thumbs.db").write_bytes(bytes(64))
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._ISIC_0000040.jpg").write_bytes(apple_double())

    code, rows, err = predict(tiny_run, folder, capsys=capsys)
    assert code == 0, err
    assert [Path(row[0]).name for row in rows[1:]] == ["ISIC_0000040.jpg", "ISIC_0000041.jpg"]

    # Named explicitly, the sidecar is skipped with one warning line, not read as an image.
    expected = (
        f"skipped {folder / '._ISIC_0000040.jpg'}: a macOS AppleDouble sidecar (metadata), "
        "not an image"
    )
    with pytest.warns(ImageListingWarning) as caught:
        code, rows, err = predict(
            tiny_run, folder / "._ISIC_0000040.jpg", folder / "ISIC_0000041.jpg", capsys=capsys
        )
    assert code == 0, err
    assert [Path(row[0]).name for row in rows[1:]] == ["ISIC_0000041.jpg"]
    assert [str(w.message) for w in caught] == [expected]

    # Nothing but the sidecar: one error line after the warning, no traceback.
    with pytest.warns(ImageListingWarning):
        code, rows, err = predict(tiny_run, folder / "._ISIC_0000040.jpg", capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: no images to classify in ")


# -- the files the ISIC challenges ship beside their images --------------------------------------


def test_predict_lists_one_file_per_image_of_an_isic_folder_and_says_what_it_skipped(tmp_path):
    from isic_layouts import ISIC2017_ROWS, make_isic2017

    from synergic.data.listing import companion_reason
    from synergic.serving import image_files

    root = make_isic2017(tmp_path / "isic2017", {"test": ISIC2017_ROWS["test"]})
    folder = root / "ISIC-2017_Test_v2_Data"
    assert len(list(folder.glob("*_superpixels.png"))) == 4  # the layout is the real one
    expected = [folder / f"{image_id}.jpg" for image_id in ISIC2017_ROWS["test"]]
    with pytest.warns(ImageListingWarning, match=r"^skipped 4 files that the ISIC challenges "
                      r"ship beside their images, not images to classify \(e\.g\. .*"
                      r"ISIC_0012086_superpixels\.png: an ISIC 2017 superpixel map"):
        assert image_files([folder]) == expected
    # Named one by one (a shell's folder/*): the metadata CSV is skipped too.
    with pytest.warns(ImageListingWarning, match=r"^skipped 5 files"):
        assert image_files(sorted(folder.iterdir())) == expected
    # The generic listing (data sets, downloads) is unchanged.
    assert len(list_image_files(folder)) == 8
    for name in ("ISIC_0000000_Segmentation.png", "ISIC_0000000_segmentation.png",
                 "ISIC_0000000_attribute_globules.png", "ISIC-2017_Test_v2_Data_metadata.csv",
                 "LICENSE.txt", "ATTRIBUTION.txt"):
        assert companion_reason(name), name
    for name in ("ISIC_0000000.jpg", "ISIC_0000000_downsampled.jpg", "superpixels.png"):
        assert companion_reason(name) is None, name


def test_a_folder_of_masks_only_holds_no_images_to_classify(tmp_path):
    from synergic.serving import image_files

    folder = tmp_path / "masks"
    folder.mkdir()
    Image.new("L", (4, 4)).save(folder / "ISIC_0000000_segmentation.png")
    with pytest.warns(ImageListingWarning, match="skipped 1 file that"), \
            pytest.raises(SynergicError, match=r"masks holds no images to classify"):
        image_files([folder])


def test_a_submission_refuses_two_files_of_one_image_id():
    from synergic.serving import submission_csv

    rows = [("a/ISIC_0000001.jpg", [0.3, 0.7]), ("b/ISIC_0000001.png", [0.4, 0.6])]
    with pytest.raises(SynergicError) as error:
        submission_csv("isic2020", ["benign", "malignant"], rows)
    assert str(error.value) == (
        "--format isic2020: b/ISIC_0000001.png and a/ISIC_0000001.jpg are both image "
        "ISIC_0000001, and a submission lists each image once: classify one of them"
    )
