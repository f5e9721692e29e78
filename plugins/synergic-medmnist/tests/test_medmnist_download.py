"""Downloading against a local HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
from synergic.errors import SynergicError

import synergic_medmnist.dataset as dataset_module
from synergic_medmnist import medmnist_dataset
from synergic_medmnist.download import fetch_with_urllib, file_md5
from synergic_medmnist.flags import FLAGS, official_url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest output clean
        pass


class _ShortBodyHandler(_QuietHandler):
    """Promises more bytes than it sends, like a connection dropped mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5000")
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.close_connection = True


@pytest.fixture
def serve(tmp_path):
    """``serve(handler=_QuietHandler) -> base URL`` of a server for ``tmp_path / "served"``."""
    servers = []

    def start(handler=_QuietHandler):
        served = tmp_path / "served"
        served.mkdir(exist_ok=True)
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(served))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_fetches_a_missing_file_from_url(tmp_path, write_npz, serve):
    base = serve()
    source, arrays = write_npz(tmp_path / "served" / "dermamnist.npz", rgb=True, num_classes=7)
    root = tmp_path / "data"

    data = medmnist_dataset(
        root=root,
        split="train",
        flag="dermamnist",
        download=True,
        url=f"{base}/dermamnist.npz",
        md5=file_md5(source),
        progress=False,
    )

    assert (root / "dermamnist.npz").read_bytes() == source.read_bytes()
    assert not list(root.glob("*.part"))
    assert len(data) == len(arrays["train_labels"])
    assert data.ids[12] == "dermamnist_train_00012"

    # Present now: a second call reads it even with the server gone.
    source.unlink()
    assert (
        len(
            medmnist_dataset(
                root=root,
                split="val",
                flag="dermamnist",
                download=True,
                url=f"{base}/dermamnist.npz",
                progress=False,
            )
        )
        == 6
    )


def test_a_wrong_md5_deletes_the_download(tmp_path, write_npz, serve):
    base = serve()
    write_npz(tmp_path / "served" / "pathmnist.npz", rgb=True, num_classes=9)
    root = tmp_path / "data"
    with pytest.raises(SynergicError) as error:
        medmnist_dataset(
            root=root,
            split="train",
            flag="pathmnist",
            download=True,
            url=f"{base}/pathmnist.npz",
            md5="0" * 32,
            progress=False,
        )
    message = str(error.value)
    assert "expected " + "0" * 32 in message and "\n" not in message
    assert not (root / "pathmnist.npz").exists()


def test_a_missing_remote_file_is_a_one_line_error(tmp_path, serve):
    base = serve()
    root = tmp_path / "data"
    with pytest.raises(SynergicError) as error:
        medmnist_dataset(
            root=root,
            split="train",
            flag="octmnist",
            download=True,
            url=f"{base}/nothing-here.npz",
            progress=False,
        )
    message = str(error.value)
    assert "404" in message and f"{base}/nothing-here.npz" in message and "\n" not in message
    assert not (root / "octmnist.npz").exists()


def test_the_official_record_and_md5_are_used_without_url(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, dest, *, md5=None, progress=True):
        calls.append((url, dest, md5))
        raise SynergicError("stop here")

    monkeypatch.setattr(dataset_module, "download_file", fake_download)
    with pytest.raises(SynergicError, match="stop here"):
        medmnist_dataset(root=tmp_path, split="train", flag="bloodmnist", size=128, download=True)
    official_md5 = FLAGS["bloodmnist"].md5[128]
    expected_dest = tmp_path / "bloodmnist_128.npz"
    assert calls == [(official_url("bloodmnist", 128), expected_dest, official_md5)]


def test_urllib_fallback_writes_through_a_part_file(tmp_path, serve):
    base = serve()
    payload = bytes(range(256)) * 5000
    (tmp_path / "served" / "blob.npz").write_bytes(payload)
    dest = tmp_path / "out" / "blob.npz"
    dest.parent.mkdir()

    fetch_with_urllib(f"{base}/blob.npz", dest, progress=False)

    assert dest.read_bytes() == payload
    assert file_md5(dest) == hashlib.md5(payload).hexdigest()
    assert not (tmp_path / "out" / "blob.npz.part").exists()


def test_urllib_fallback_refuses_a_short_body(tmp_path, serve):
    base = serve(_ShortBodyHandler)
    dest = tmp_path / "short.npz"
    with pytest.raises(SynergicError, match="1000 of 5000 bytes"):
        fetch_with_urllib(f"{base}/short.npz", dest, progress=False)
    assert not dest.exists() and not (tmp_path / "short.npz.part").exists()


def test_urllib_fallback_reports_http_errors(tmp_path, serve):
    base = serve()
    with pytest.raises(SynergicError, match="HTTP 404"):
        fetch_with_urllib(f"{base}/absent.npz", tmp_path / "absent.npz", progress=False)
    assert not list(tmp_path.glob("absent.npz*"))
