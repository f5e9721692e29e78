"""A fake ISIC challenge file server on 127.0.0.1 for the download tests of every data set.

``ChallengeServer(files, year)`` serves ``files`` (name -> bytes) under ``/<year>/`` like the
challenge's S3 bucket: ``Content-Length``, ``Range`` requests answered with ``206`` (or ignored
when ``support_range`` is off), ``416`` past the end, and connections that drop after
``drop_after[name]`` bytes. :func:`archives_of` turns a folder in an official layout (built by
``tests/isic_layouts.py``) into the files the challenge publishes: each top folder as
``<folder>.zip`` holding ``<folder>/...``, each top file as it is.
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image


def jpeg_bytes(shade: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (shade % 256, 90, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def zip_bytes(folder: str, image_ids, *, extra: dict[str, bytes] | None = None,
              compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip like the official ones: one top folder holding ``<id>.jpg`` files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for index, image_id in enumerate(image_ids):
            archive.writestr(f"{folder}/{image_id}.jpg", jpeg_bytes(40 * index))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_folder(folder: Path) -> bytes:
    """``folder`` zipped as the challenge does: members ``<folder name>/<file>``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def archives_of(layout: Path) -> dict[str, bytes]:
    """The published files of an unpacked official layout: ``<folder>.zip`` per top folder,
    top files as they are."""
    files = {}
    for path in sorted(layout.iterdir()):
        if path.is_dir():
            files[f"{path.name}.zip"] = zip_folder(path)
        else:
            files[path.name] = path.read_bytes()
    return files


class ChallengeServer:
    """Serves ``files`` under ``/<year>/`` on 127.0.0.1, honouring ``Range`` when
    ``support_range`` is set; ``requests`` records ``(name, Range header)``."""

    def __init__(self, files: dict[str, bytes], year: str = "2016") -> None:
        self.files = dict(files)
        self.requests: list[tuple[str, str | None]] = []
        self.support_range = True
        self.drop_after: dict[str, int] = {}  # name -> bytes sent before the connection drops
        state = self
        prefix = f"/{year}/"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.removeprefix(prefix)
                byte_range = self.headers.get("Range")
                state.requests.append((name, byte_range))
                body = state.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if byte_range and state.support_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", byte_range).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: state.drop_after.get(name, len(payload))])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}"
        # a short poll interval: shutdown() waits for one poll, 0.5 s by default
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def names_requested(self) -> list[str]:
        return [name for name, _ in self.requests]


@contextmanager
def serving(server: ChallengeServer, monkeypatch):
    """Run ``server`` for the duration of the block, with proxies bypassed for 127.0.0.1."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join()
