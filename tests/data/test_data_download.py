"""Downloading: the generic helpers of synergic.data.download, through ISIC 2016 (the other
years' downloads are tested beside their data sets), from a local HTTP server that serves files
in the official format (tests/challenge_server.py)."""

from __future__ import annotations

import io
import socket
import zipfile

import pytest
from challenge_server import ChallengeServer, jpeg_bytes, serving, zip_bytes

from synergic.data.datasets import isic2016 as isic
from synergic.data.download import ISIC2016_FILES, download_isic2016, fetch
from synergic.errors import SynergicError

TRAIN_ZIP, TRAIN_CSV, TEST_ZIP, TEST_CSV = ISIC2016_FILES
TRAIN_ROWS = {"ISIC_0000000": "benign", "ISIC_0000001": "malignant", "ISIC_0000002": "benign"}
TEST_ROWS = {"ISIC_0000010": "0.0", "ISIC_0000011": "1.0"}


def csv_bytes(rows: dict[str, str]) -> bytes:
    return "\r\n".join(f"{k},{v}" for k, v in rows.items()).encode()  # CRLF, no final newline


def official_files() -> dict[str, bytes]:
    return {
        TRAIN_ZIP: zip_bytes(isic.TRAIN_IMAGES, TRAIN_ROWS),
        TRAIN_CSV: csv_bytes(TRAIN_ROWS),
        TEST_ZIP: zip_bytes(isic.TEST_IMAGES, TEST_ROWS),
        TEST_CSV: csv_bytes(TEST_ROWS),
    }


class FakeChallengeServer(ChallengeServer):
    """Serves the ISIC 2016 files under ``/2016/`` (tests/test_cli.py uses it too)."""

    def __init__(self) -> None:
        super().__init__(official_files(), "2016")


@pytest.fixture
def server(monkeypatch):
    with serving(FakeChallengeServer(), monkeypatch) as fake:
        yield fake


def test_the_old_names_are_the_isic2016_module_s():
    from synergic.data import download

    assert download.download_isic2016 is isic.download
    assert (download.ISIC2016_BASE_URL, download.ISIC2016_FILES) == (
        isic.BASE_URL, isic.DOWNLOAD_FILES
    )
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        download.nothing  # noqa: B018


def test_download_unpacks_and_loads(server, tmp_path):
    root = tmp_path / "isic2016"
    assert download_isic2016(root, base_url=server.url, progress=False) == root
    train = isic.isic2016(root=root, split="train")
    test = isic.isic2016(root=root, split="test")
    assert (train.ids, train.labels) == (list(TRAIN_ROWS), [0, 1, 0])
    assert (test.ids, test.labels) == (list(TEST_ROWS), [0, 1])
    assert train[2][0].size == (16, 16)
    assert sorted(server.names_requested()) == sorted(ISIC2016_FILES)
    leftovers = [p.name for p in root.iterdir() if p.suffix in (".zip", ".part", ".unpacking")]
    assert leftovers == []


def test_a_second_call_makes_no_request(server, tmp_path):
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    server.requests.clear()
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert server.requests == []


def test_an_interrupted_download_resumes_with_range(server, tmp_path):
    body = server.files[TRAIN_ZIP]
    half = len(body) // 2
    (tmp_path / f"{TRAIN_ZIP}.part").write_bytes(body[:half])
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert (TRAIN_ZIP, f"bytes={half}-") in server.requests
    assert len(isic.isic2016(root=tmp_path, split="train")) == 3


def test_a_server_without_range_support_restarts_the_file(server, tmp_path):
    server.support_range = False
    (tmp_path / f"{TRAIN_ZIP}.part").write_bytes(b"stale bytes from another file")
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert (TRAIN_ZIP, "bytes=29-") in server.requests  # asked, got 200, started over
    assert len(isic.isic2016(root=tmp_path, split="train")) == 3


def test_a_dropped_connection_keeps_the_part_and_the_next_call_resumes(server, tmp_path):
    total = len(server.files[TEST_ZIP])
    server.drop_after[TEST_ZIP] = 100
    with pytest.raises(SynergicError, match=rf"connection closed after 100 of {total} bytes"):
        download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert (tmp_path / f"{TEST_ZIP}.part").stat().st_size == 100
    assert not (tmp_path / TEST_ZIP).exists()
    assert not (tmp_path / isic.TEST_IMAGES).exists()
    assert len(isic.isic2016(root=tmp_path, split="train")) == 3  # the finished split is usable

    server.drop_after.clear()
    server.requests.clear()
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert server.requests == [(TEST_ZIP, "bytes=100-")]
    assert len(isic.isic2016(root=tmp_path, split="test")) == 2


def test_a_complete_part_file_is_accepted_on_416(server, tmp_path):
    (tmp_path / f"{TEST_CSV}.part").write_bytes(server.files[TEST_CSV])
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert (TEST_CSV, f"bytes={len(server.files[TEST_CSV])}-") in server.requests
    assert isic.isic2016(root=tmp_path, split="test").labels == [0, 1]


def test_a_corrupt_zip_is_rejected_and_fetched_again_next_time(server, tmp_path):
    server.files[TRAIN_ZIP] = b"<html>Access denied</html>"
    with pytest.raises(SynergicError, match=rf"{TRAIN_ZIP} is not a valid zip archive"):
        download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / TRAIN_ZIP).exists()
    assert not (tmp_path / isic.TRAIN_IMAGES).exists()
    assert not (tmp_path / f".{isic.TRAIN_IMAGES}.complete").exists()

    server.files[TRAIN_ZIP] = zip_bytes(isic.TRAIN_IMAGES, TRAIN_ROWS)
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert len(isic.isic2016(root=tmp_path, split="train")) == 3


def test_a_zip_with_a_damaged_member_fails_its_crc_check(server, tmp_path):
    body = bytearray(zip_bytes(isic.TRAIN_IMAGES, TRAIN_ROWS, compression=zipfile.ZIP_STORED))
    body[200] ^= 0xFF  # inside the first stored JPEG: the structure is intact, the CRC is not
    server.files[TRAIN_ZIP] = bytes(body)
    with pytest.raises(SynergicError, match=r"not a valid zip archive \(member .* fails its CRC"):
        download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / isic.TRAIN_IMAGES).exists()


def test_a_zip_escaping_the_folder_is_refused(server, tmp_path):
    root = tmp_path / "root"
    server.files[TRAIN_ZIP] = zip_bytes(
        isic.TRAIN_IMAGES, TRAIN_ROWS, extra={"../evil.jpg": b"x"}
    )
    with pytest.raises(SynergicError, match=r"refusing to unpack .*'\.\./evil\.jpg'"):
        download_isic2016(root, base_url=server.url, progress=False)
    assert not (tmp_path / "evil.jpg").exists()
    assert not (root / isic.TRAIN_IMAGES).exists()


def test_an_archive_missing_images_is_reported(server, tmp_path):
    server.files[TEST_ZIP] = zip_bytes(isic.TEST_IMAGES, ["ISIC_0000010"])
    with pytest.raises(SynergicError, match=r"test data is incomplete: 1 images .* for 2 rows"):
        download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / f".{isic.TEST_IMAGES}.complete").exists()


def test_a_flat_archive_is_accepted(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for image_id in TEST_ROWS:
            archive.writestr(f"{image_id}.jpg", jpeg_bytes(10))
        archive.writestr("__MACOSX/._ISIC_0000010.jpg", b"resource fork")
    server.files[TEST_ZIP] = buffer.getvalue()
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert len(isic.isic2016(root=tmp_path, split="test")) == 2


def test_a_copy_unpacked_by_hand_is_not_downloaded(server, tmp_path, make_isic_layout):
    make_isic_layout(tmp_path, TRAIN_ROWS, TEST_ROWS)
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert server.requests == []


def test_http_errors_are_one_line(server, tmp_path):
    del server.files[TRAIN_CSV]
    with pytest.raises(SynergicError) as caught:
        download_isic2016(tmp_path, base_url=server.url, progress=False)
    message = str(caught.value)
    assert message.startswith(f"could not download {server.url}{TRAIN_CSV}: HTTP 404")
    assert message.endswith(f"check your network or download by hand into {tmp_path}")
    assert "\n" not in message


def test_an_unreachable_server(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/2016/"
    with pytest.raises(SynergicError, match=rf"could not download {url}{TRAIN_CSV}: .*refused"):
        download_isic2016(tmp_path / "root", base_url=url, progress=False)
    assert [p.name for p in (tmp_path / "root").iterdir()] == []


def test_progress_bars_go_to_stderr(server, tmp_path, capsys):
    download_isic2016(tmp_path, base_url=server.url, progress=True)
    assert f"unpacking {TRAIN_ZIP}" in capsys.readouterr().err


def test_fetch_a_single_file(server, tmp_path):
    dest = tmp_path / "sub" / "labels.csv"
    assert fetch(server.url + TEST_CSV, dest, progress=False) == dest
    assert dest.read_bytes() == server.files[TEST_CSV]
    server.requests.clear()
    fetch(server.url + TEST_CSV, dest, progress=False)
    assert server.requests == []


def test_root_defaults_to_the_data_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGIC_DATA_DIR", str(tmp_path / "all-data"))
    root = download_isic2016(base_url=server.url.rstrip("/"), progress=False)
    assert root == tmp_path / "all-data" / "isic2016"
    assert len(isic.isic2016(root=None, split="test")) == 2


def test_an_archive_with_stray_top_level_files(server, tmp_path):
    server.files[TEST_ZIP] = zip_bytes(
        isic.TEST_IMAGES, TEST_ROWS, extra={"LICENSE.txt": b"CC0", "__MACOSX/._x": b"fork"}
    )
    download_isic2016(tmp_path, base_url=server.url, progress=False)
    assert len(isic.isic2016(root=tmp_path, split="test")) == 2
    assert not (tmp_path / isic.TEST_IMAGES / "__MACOSX").exists()


@pytest.mark.parametrize("year", ["2016", "2017", "2018", "2019", "2020"])
def test_a_complete_copy_one_folder_down_is_not_downloaded_again(year, tmp_path, isic_layout):
    """`synergic data download isicYYYY --root D` with the files in D/isicYYYY_download/: one
    line naming that folder, nothing fetched (the loader points at it the same way)."""
    import importlib
    import shutil

    import isic_layouts
    from click.testing import CliRunner

    from synergic.cli import cli

    module = importlib.import_module(f"synergic.data.datasets.isic{year}")
    root = tmp_path / "D"
    copy = root / f"isic{year}_download"
    if year == "2016":
        shutil.copytree(isic_layout, copy)
    else:
        getattr(isic_layouts, f"make_isic{year}")(copy)
    if year == "2019":  # a copy from before the test ground truth was published is a copy
        (copy / "ISIC_2019_Test_GroundTruth.csv").unlink()
    # Port 9 (discard) refuses: any request would fail with another message.
    result = CliRunner().invoke(cli, ["data", "download", f"isic{year}", "--root", str(root),
                                      "--base-url", "http://127.0.0.1:9/"])
    assert result.exit_code != 0
    assert str(result.exception) == (
        f"ISIC {year} is already in {copy} (every official file), not in {root}: set data.root "
        f"to {copy}, or run 'synergic data download isic{year} --root {copy}' to check that "
        "copy; nothing was downloaded"
    )
    assert sorted(path.name for path in root.iterdir()) == [copy.name]
    # A root holding part of the files (an interrupted download) is completed as before.
    images = module.IMAGES if year == "2020" else module.SPLIT_FILES["train"][0]
    (root / images).mkdir()
    with pytest.raises(SynergicError, match="could not download http://127.0.0.1:9/"):
        module.download(root, base_url="http://127.0.0.1:9/", progress=False)


def test_the_mirror_option_is_in_the_help():
    from click.testing import CliRunner

    from synergic.cli import cli

    result = CliRunner().invoke(cli, ["data", "download", "--help"])
    assert result.exit_code == 0
    assert "--base-url URL" in result.output and "mirror" in result.output
