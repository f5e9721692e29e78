"""Fabricated ISIC challenge data sets in their official layouts, for tests.

Each ``make_isicYYYY(root, ...)`` writes tiny JPEGs and the official CSVs (official headers, CRLF
line ends and the other quirks of the real files, plus the files the real folders hold beside the
images) under ``root`` and returns ``root``. Rows are given as ``{image id: class name}`` per
split, in file order; an image is a solid colour that depends on its class, so a model can learn
the labels. ``tests/challenge_server.archives_of(root)`` turns a layout into the published files;
:func:`publishing` serves them, :func:`assert_downloads_once` checks a download from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from challenge_server import ChallengeServer, archives_of, serving
from PIL import Image

ISIC2017_ROWS = {
    "train": {
        "ISIC_0000000": "nevus", "ISIC_0000001": "melanoma",
        "ISIC_0000002": "seborrheic_keratosis", "ISIC_0000003": "nevus",
        "ISIC_0000004": "melanoma", "ISIC_0000005": "seborrheic_keratosis",
    },
    "val": {
        "ISIC_0001769": "nevus", "ISIC_0001852": "melanoma",
        "ISIC_0001871": "seborrheic_keratosis",
    },
    "test": {
        "ISIC_0012086": "nevus", "ISIC_0012092": "melanoma", "ISIC_0012095": "seborrheic_keratosis",
        "ISIC_0012134": "nevus",
    },
}
"""The default rows of :func:`make_isic2017`: every class in every split."""

ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")

ISIC2018_ROWS = {
    "train": {
        "ISIC_0024306": "NV", "ISIC_0024307": "NV", "ISIC_0024308": "MEL",
        "ISIC_0024309": "BCC", "ISIC_0024310": "AKIEC", "ISIC_0024311": "BKL",
        "ISIC_0024312": "DF", "ISIC_0024313": "VASC",
    },
    "val": {"ISIC_0034321": "NV", "ISIC_0034322": "MEL", "ISIC_0034323": "BKL"},
    "test": {
        "ISIC_0034524": "NV", "ISIC_0034525": "MEL", "ISIC_0034526": "DF", "ISIC_0034527": "VASC",
    },
}
"""The default rows of :func:`make_isic2018`: every class in train."""

ISIC2018_LESIONS = {
    "ISIC_0024306": "HAM_0000118", "ISIC_0024307": "HAM_0000118", "ISIC_0024308": "HAM_0002730",
    "ISIC_0024309": "HAM_0002730", "ISIC_0024310": "HAM_0005678",
}
"""The default lesion groupings of :func:`make_isic2018` (three training images are in none)."""

_SHADES = {  # one colour per class name, so that a tiny model can tell them apart
    "nevus": (200, 150, 110), "melanoma": (40, 20, 15), "seborrheic_keratosis": (120, 90, 40),
    "MEL": (40, 20, 15), "NV": (200, 150, 110), "BCC": (220, 190, 200), "AKIEC": (210, 80, 70),
    "BKL": (120, 90, 40), "DF": (150, 110, 90), "VASC": (180, 20, 60),
    "benign": (200, 150, 110), "malignant": (40, 20, 15),
    "AK": (210, 80, 70), "SCC": (230, 120, 150), "UNK": (90, 160, 90),
}


def write_jpeg(path: Path, color=(200, 40, 40), size=(16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def write_csv(path: Path, lines: list[str], *, crlf: bool = True, bom: bool = False,
              final_newline: bool = True) -> Path:
    """``lines`` joined by CRLF (or LF), with a UTF-8 BOM and a final line end when asked."""
    end = "\r\n" if crlf else "\n"
    text = end.join(lines) + (end if final_newline else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def _image(path: Path, label: str, index: int, image_size: int, images: dict | None) -> None:
    """A solid ``label``-coloured JPEG, or a copy of ``images[label][index % n]`` (real files)."""
    if images:
        sources = images[label]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Path(sources[index % len(sources)]).read_bytes())
        return
    red, green, blue = _SHADES.get(label, (128, 128, 128))
    write_jpeg(path, (red, green, (blue + 7 * index) % 256), (image_size, image_size))


def _licensed_folder(folder: Path, attribution: str) -> Path:
    """``folder`` with the ATTRIBUTION.txt and LICENSE.txt that the 2018 and 2019 archives hold
    beside the images."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ATTRIBUTION.txt").write_text(attribution + "\n")
    (folder / "LICENSE.txt").write_text("CC BY-NC 4.0\n")
    return folder


def _one_hot_line(image_id: str, label: str, columns) -> str:
    """A one-hot ground-truth row: ``image_id`` then ``1.0`` under ``label``, ``0.0`` elsewhere."""
    return image_id + "," + ",".join(str(float(code == label)) for code in columns)


def _lesion_csv(path: Path, header: str, row: str, ids, lesions: dict[str, str], *,
                crlf: bool) -> Path:
    """A CSV with ``header`` and a ``row`` per image id, ``row`` having ``{image}`` and
    ``{lesion}`` filled in (the lesion id blank when ``lesions`` has none), as the 2018 lesion
    groupings and the 2019 metadata are."""
    lines = [row.format(image=image_id, lesion=lesions.get(image_id, "")) for image_id in ids]
    return write_csv(path, [header, *lines], crlf=crlf)


ISIC2017_FILES = {
    "train": ("ISIC-2017_Training_Data", "ISIC-2017_Training_Part3_GroundTruth.csv"),
    "val": ("ISIC-2017_Validation_Data", "ISIC-2017_Validation_Part3_GroundTruth.csv"),
    "test": ("ISIC-2017_Test_v2_Data", "ISIC-2017_Test_v2_Part3_GroundTruth.csv"),
}


def make_isic2017(root: Path, rows: dict[str, dict[str, str]] | None = None, *,
                  image_size: int = 16, crlf: bool = True, bom: bool = False,
                  final_newline: bool = True, images: dict | None = None) -> Path:
    """ISIC 2017 Part 3 under ``root``: per split (``rows``, default :data:`ISIC2017_ROWS`,
    labels ``nevus``/``melanoma``/``seborrheic_keratosis``) its image folder, with a
    ``_superpixels.png`` per image and a ``*_metadata.csv`` as in the real folders, and its
    ground-truth CSV (``image_id,melanoma,seborrheic_keratosis``, ``0.0``/``1.0``).
    ``images`` (``{label: [jpeg paths]}``) copies real images instead of solid colours."""
    for split, split_rows in (rows or ISIC2017_ROWS).items():
        folder_name, csv_name = ISIC2017_FILES[split]
        folder = root / folder_name
        lines = ["image_id,melanoma,seborrheic_keratosis"]
        for index, (image_id, label) in enumerate(split_rows.items()):
            _image(folder / f"{image_id}.jpg", label, index, image_size, images)
            Image.new("RGB", (4, 4), (index, 0, 0)).save(folder / f"{image_id}_superpixels.png")
            lines.append(
                f"{image_id},{float(label == 'melanoma')},{float(label == 'seborrheic_keratosis')}"
            )
        write_csv(
            folder / f"{folder_name}_metadata.csv",
            ["image_id,age_approximate,sex"] + [f"{i},55,female" for i in split_rows],
        )
        write_csv(root / csv_name, lines, crlf=crlf, bom=bom, final_newline=final_newline)
    return root


def isic2018_names(split: str) -> tuple[str, str]:
    """The split's image folder and ground-truth folder (which holds ``<folder>.csv``)."""
    word = {"train": "Training", "val": "Validation", "test": "Test"}[split]
    return f"ISIC2018_Task3_{word}_Input", f"ISIC2018_Task3_{word}_GroundTruth"


def make_isic2018(root: Path, rows: dict[str, dict[str, str]] | None = None, *,
                  lesions: dict[str, str] | None = None, groupings: bool = True,
                  image_size: int = 16, crlf: bool = True, bom: bool = False,
                  final_newline: bool = True, images: dict | None = None) -> Path:
    """ISIC 2018 Task 3 under ``root``: per split (``rows``, default :data:`ISIC2018_ROWS`,
    labels the class codes) its ``_Input`` folder with ATTRIBUTION.txt and LICENSE.txt, and its
    ``_GroundTruth`` folder with the one-hot CSV (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``); with
    ``groupings``, ``ISIC2018_Task3_Training_LesionGroupings.csv`` from ``lesions`` (default
    :data:`ISIC2018_LESIONS`; a training image without a lesion gets an empty lesion_id).
    ``images`` (``{label: [jpeg paths]}``) copies real images instead of solid colours."""
    rows = rows or ISIC2018_ROWS
    for split, split_rows in rows.items():
        input_name, truth_name = isic2018_names(split)
        for name in (input_name, truth_name):
            _licensed_folder(root / name, "HAM10000 (c) ViDIR Group, CC BY-NC")
        lines = ["image," + ",".join(ISIC2018_CLASSES)]
        for index, (image_id, label) in enumerate(split_rows.items()):
            _image(root / input_name / f"{image_id}.jpg", label, index, image_size, images)
            lines.append(_one_hot_line(image_id, label, ISIC2018_CLASSES))
        write_csv(root / truth_name / f"{truth_name}.csv", lines, crlf=crlf, bom=bom,
                  final_newline=final_newline)
    if groupings and "train" in rows:
        _lesion_csv(root / "ISIC2018_Task3_Training_LesionGroupings.csv",
                    "image,lesion_id,diagnosis_confirm_type", "{image},{lesion},histopathology",
                    rows["train"], ISIC2018_LESIONS if lesions is None else lesions, crlf=crlf)
    return root


ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")

ISIC2019_ROWS = {
    "train": {
        "ISIC_0000000_downsampled": "NV", "ISIC_0000001": "NV", "ISIC_0000002": "MEL",
        "ISIC_0000004": "MEL", "ISIC_0010491": "BCC", "ISIC_0024329": "AK", "ISIC_0024331": "BKL",
        "ISIC_0024318": "DF", "ISIC_0024370": "VASC", "ISIC_0024405": "SCC",
        "ISIC_0024406": "SCC", "ISIC_0024500": "NV",
    },
    "test": {
        "ISIC_0034321": "NV", "ISIC_0034322": "MEL", "ISIC_0034323": "UNK", "ISIC_0034324": "SCC",
        "ISIC_0034325": "UNK", "ISIC_0034326": "BCC",
    },
}
"""The default rows of :func:`make_isic2019`: every class in train, a ``_downsampled`` name, two
test images labelled UNK."""

ISIC2019_LESIONS = {
    "ISIC_0000001": "MSK4_0011169", "ISIC_0024500": "MSK4_0011169",
    "ISIC_0024405": "BCN_0003925", "ISIC_0024406": "BCN_0003925", "ISIC_0000002": "HAM_0000871",
}
"""The default lesion ids of :func:`make_isic2019` (the other training images have none)."""


def make_isic2019(root: Path, rows: dict[str, dict[str, str]] | None = None, *,
                  lesions: dict[str, str] | None = None, metadata: bool = True,
                  test_ground_truth: bool = True, image_size: int = 16, crlf: bool = True,
                  bom: bool = False, images: dict | None = None) -> Path:
    """ISIC 2019 under ``root``: ``ISIC_2019_Training_Input/`` (with ATTRIBUTION.txt and
    LICENSE.txt) and ``ISIC_2019_Training_GroundTruth.csv`` (``image,MEL,...,SCC,UNK``, one-hot
    ``0.0``/``1.0``); with ``metadata``, ``ISIC_2019_Training_Metadata.csv``
    (``image,age_approx,anatom_site_general,lesion_id,sex``; lesion ids from ``lesions``, default
    :data:`ISIC2019_LESIONS`, blank for the others); ``ISIC_2019_Test_Input/`` and, with
    ``test_ground_truth``, ``ISIC_2019_Test_GroundTruth.csv`` (with the extra ``score_weight``
    column). ``rows`` (default :data:`ISIC2019_ROWS`) label with the class codes or ``UNK``."""
    rows = rows or ISIC2019_ROWS
    columns = (*ISIC2019_CLASSES, "UNK")
    for split, split_rows in rows.items():
        word = {"train": "Training", "test": "Test"}[split]
        folder = _licensed_folder(root / f"ISIC_2019_{word}_Input",
                                  "ISIC 2019: BCN_20000, HAM10000, MSK")
        extra = ",score_weight" if split == "test" else ""
        lines = ["image," + ",".join(columns) + extra]
        for index, (image_id, label) in enumerate(split_rows.items()):
            _image(folder / f"{image_id}.jpg", label, index, image_size, images)
            lines.append(_one_hot_line(image_id, label, columns) + (",1.0" if extra else ""))
        if split == "train" or test_ground_truth:
            write_csv(root / f"ISIC_2019_{word}_GroundTruth.csv", lines, crlf=crlf, bom=bom)
    if metadata and "train" in rows:
        _lesion_csv(root / "ISIC_2019_Training_Metadata.csv",
                    "image,age_approx,anatom_site_general,lesion_id,sex",
                    "{image},55.0,anterior torso,{lesion},female",
                    rows["train"], ISIC2019_LESIONS if lesions is None else lesions, crlf=crlf)
    return root


ISIC2020_ROWS = {
    # image_name: (patient_id, lesion_id, class name)
    "ISIC_2637011": ("IP_7281079", "IL_7972535", "benign"),
    "ISIC_0015719": ("IP_7281079", "IL_7972535", "benign"),
    "ISIC_0052212": ("IP_7281079", "IL_4649854", "malignant"),
    "ISIC_0068279": ("IP_7282190", "IL_9087444", "benign"),
    "ISIC_0074268": ("IP_7282190", "IL_3020345", "benign"),
    "ISIC_0074311": ("IP_7283301", "IL_5556453", "malignant"),
    "ISIC_0074542": ("IP_7283301", "", "benign"),
    "ISIC_0075663": ("IP_7284412", "IL_1207365", "benign"),
    "ISIC_0075914": ("IP_7284412", "IL_1207365", "benign"),
    "ISIC_0076262": ("IP_7284412", "IL_6811427", "malignant"),
    "ISIC_0076545": ("IP_7285523", "IL_4108766", "benign"),
    "ISIC_0076742": ("IP_7285523", "IL_9331522", "benign"),
    "ISIC_0076995": ("IP_7288856", "IL_2581945", "benign"),
    "ISIC_0077472": ("IP_7288856", "IL_2581945", "malignant"),
}
"""The default rows of :func:`make_isic2020`: six patients, of whom IP_7284412 and IP_7288856
hash below 20 (the default test split); one image without a lesion id."""

ISIC2020_DUPLICATES = [("ISIC_2637011", "ISIC_0015719"), ("ISIC_0075663", "ISIC_0075914"),
                       ("ISIC_9999999", "ISIC_9999998")]
"""The default duplicate pairs of :func:`make_isic2020` (the last names no image of the set)."""


def make_isic2020(root: Path, rows: dict[str, tuple[str, str, str]] | None = None, *,
                  duplicates: list[tuple[str, str]] | None = None, version: int = 2,
                  image_size: int = 16, crlf: bool = False, bom: bool = False,
                  images: dict | None = None) -> Path:
    """SIIM-ISIC 2020 under ``root``: ``train/`` (as ISIC_2020_Training_JPEG.zip unpacks),
    the ground truth (``version`` 2: ``ISIC_2020_Training_GroundTruth_v2.csv`` with
    ``lesion_id``; 1: ``ISIC_2020_Training_GroundTruth.csv`` without) and, unless
    ``duplicates=[]``, ``ISIC_2020_Training_Duplicates.csv`` (default
    :data:`ISIC2020_DUPLICATES`). ``rows`` (default :data:`ISIC2020_ROWS`) map an image name to
    ``(patient_id, lesion_id, "benign" | "malignant")``."""
    rows = rows or ISIC2020_ROWS
    header = ["image_name", "patient_id", "lesion_id", "sex", "age_approx",
              "anatom_site_general_challenge", "diagnosis", "benign_malignant", "target"]
    if version == 1:
        header.remove("lesion_id")
    lines = [",".join(header)]
    for index, (image_id, (patient, lesion, label)) in enumerate(rows.items()):
        _image(root / "train" / f"{image_id}.jpg", label, index, image_size, images)
        cells = {"image_name": image_id, "patient_id": patient, "lesion_id": lesion,
                 "sex": "male", "age_approx": "45.0", "anatom_site_general_challenge": "torso",
                 "diagnosis": "melanoma" if label == "malignant" else "nevus",
                 "benign_malignant": label, "target": str(int(label == "malignant"))}
        lines.append(",".join(cells[column] for column in header))
    name = "ISIC_2020_Training_GroundTruth_v2.csv" if version == 2 else \
        "ISIC_2020_Training_GroundTruth.csv"
    write_csv(root / name, lines, crlf=crlf, bom=bom)
    duplicates = ISIC2020_DUPLICATES if duplicates is None else duplicates
    if duplicates:
        write_csv(root / "ISIC_2020_Training_Duplicates.csv",
                  ["image_name_1,image_name_2"] + [f"{a},{b}" for a, b in duplicates], crlf=crlf)
    return root


# ------------------------------------------------------------------------------------- downloads


@contextmanager
def publishing(layout: Path, year: str, monkeypatch, *,
               renamed: dict[str, str] | None = None) -> Iterator[ChallengeServer]:
    """A :class:`~challenge_server.ChallengeServer` on 127.0.0.1 publishing ``layout`` under
    ``/<year>/`` as the challenge does (:func:`~challenge_server.archives_of`), with the
    published names in ``renamed`` (old -> new) changed."""
    published = archives_of(layout)
    for old, new in (renamed or {}).items():
        published[new] = published.pop(old)
    with serving(ChallengeServer(published, year), monkeypatch) as server:
        yield server


def assert_downloads_once(module, server: ChallengeServer, root: Path) -> Path:
    """``server`` publishes ``module.DOWNLOAD_FILES``; ``module.download(root)`` from it requests
    each once and leaves no archive, partial file or half-unpacked folder; a second call requests
    nothing. Returns ``root``."""
    assert sorted(server.files) == sorted(module.DOWNLOAD_FILES)
    assert module.download(root, base_url=server.url, progress=False) == root
    assert sorted(server.names_requested()) == sorted(module.DOWNLOAD_FILES)
    assert [path.name for pattern in ("*.zip", "*.part", ".*.unpacking")
            for path in root.glob(pattern)] == []
    server.requests.clear()
    module.download(root, base_url=server.url, progress=False)
    assert server.requests == []
    return root


def download_from(server: ChallengeServer, module, monkeypatch) -> None:
    """Make ``module.download(root)``, as the factory's ``download=True`` calls it, fetch from
    ``server`` without a progress bar."""
    real = module.download
    monkeypatch.setattr(module, "download",
                        lambda root: real(root, base_url=server.url, progress=False))
