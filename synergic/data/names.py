"""File names in outputs: every name a filesystem can hold, written as valid UTF-8.

On Linux a file name is bytes. Python hands it over as ``str`` by decoding it as UTF-8 with the
``surrogateescape`` error handler (:pep:`383`): each byte that is not part of valid UTF-8 becomes
a lone surrogate ``\\udc80``..``\\udcff``. Such a string cannot be encoded as UTF-8, so a CSV,
JSON or Markdown file (or a terminal) that is handed it fails; names like these come from old
zip archives made on Windows (cp437, cp1252, Shift-JIS names).

:func:`printable_name` is the one representation synergic writes: a name that is valid UTF-8
stays exactly as it is, and each byte that is not becomes the four characters ``\\xNN`` (two
lower-case hex digits), which is Python's ``backslashreplace`` applied to the raw bytes::

    b"lesion\\xe9.jpg"  (latin-1 "é")   ->  "lesion\\\\xe9.jpg"   shown as  lesion\\xe9.jpg

A lone surrogate that ``surrogateescape`` cannot have made (``\\ud800``..``\\udc7f``,
``\\udd00``..``\\udfff``: only strings built in code hold them) becomes ``\\uNNNN``.

:func:`name_bytes` is the inverse, for users who need the bytes back (to open the file). It is
exact for every name that does not itself contain the text ``\\x`` followed by two hex digits
80..ff, which a name that is valid UTF-8 could hold (``a\\xff.png`` typed with a backslash). Such
a name and the name with the byte 0xff print the same; within one data set the two would get the
same id, which :class:`~synergic.data.datasets.base.FileImageDataset` refuses as a repeated id,
so inside a run the printed names always identify one file each.
"""

from __future__ import annotations

import codecs
import os
import re

__all__ = ["printable_name", "name_bytes", "printable_streams", "ERROR_HANDLER", "CsvWriter"]

ERROR_HANDLER = "synergic.printable"
"""The name of the codec error handler that :func:`printable_streams` installs."""

_SURROGATES = re.compile("[\ud800-\udfff]+")
_NOT_FROM_BYTES = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def printable_name(name: str | bytes | os.PathLike) -> str:
    """``name`` as valid UTF-8 text: unchanged when it is valid UTF-8, else each byte that is not
    valid UTF-8 written as ``\\xNN`` (see the module docstring).

    Args:
        name: a file name or path: ``str`` as Python's file functions give it (``os.listdir``,
            ``Path.iterdir``, ``sys.argv``: undecodable bytes as ``\\udcNN`` surrogates),
            ``bytes``, or a path object.

    Returns:
        A ``str`` that ``.encode("utf-8")`` accepts; ``name`` itself when it is a ``str`` that is
        valid UTF-8 already, so applying the function twice changes nothing.
    """
    name = os.fspath(name)
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    name = _NOT_FROM_BYTES.sub(lambda match: f"\\u{ord(match.group()):04x}", name)
    # The bytes the name stands for, then Python's own backslashreplace on the undecodable ones.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def name_bytes(printable: str) -> bytes:
    """The file-name bytes that :func:`printable_name` wrote as ``printable``.

    ``\\xNN`` escapes with NN in 80..ff become that byte, everything else is encoded as UTF-8;
    ``os.fsdecode(name_bytes(p))`` gives the ``str`` to open the file with. Exact unless the
    original name held the text ``\\x80``..``\\xff`` itself (see the module docstring).
    """
    parts = _ESCAPED_BYTE.split(printable)
    # split() alternates text and the captured hex digits: text, hex, text, hex, ..., text
    return b"".join(
        bytes([int(part, 16)]) if index % 2 else part.encode("utf-8", "surrogateescape")
        for index, part in enumerate(parts)
    )


def _printable_error(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start:error.end]
    text = _SURROGATES.sub(lambda match: printable_name(match.group()), bad)
    # What printable_name made is ASCII; anything else this stream's encoding lacks: \uNNNN.
    return text.encode("ascii", "backslashreplace").decode("ascii"), error.end


def printable_streams(*streams) -> None:
    """Let text streams (``sys.stdout``, ``sys.stderr``) print any file name: characters their
    encoding lacks are written as :func:`printable_name` writes them (``\\xNN`` for the bytes of
    a name that is not UTF-8) instead of raising :class:`UnicodeEncodeError`. Streams without
    ``reconfigure`` (not a :class:`io.TextIOWrapper`) are left as they are."""
    try:
        codecs.lookup_error(ERROR_HANDLER)
    except LookupError:
        codecs.register_error(ERROR_HANDLER, _printable_error)
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors=ERROR_HANDLER)
            except (ValueError, OSError):  # a closed or detached stream
                pass


class CsvWriter:
    """``csv.writer`` for synergic's output files: UTF-8 text, ``\\n`` line ends, fields quoted
    only where needed, and every name a filesystem can hold round-tripping through ``csv.reader``.

    Python before 3.13 quotes a field that holds ``\\n`` but not one that holds a lone ``\\r``
    when the line end is ``\\n``; a reader then splits the row there. A row with a ``\\r`` in
    any field is therefore written with every field quoted.

    >>> import io; text = io.StringIO()
    >>> CsvWriter(text).writerow(["a\\rb.png", 0.5])
    >>> text.getvalue()
    '"a\\rb.png","0.5"\\n'
    """

    def __init__(self, stream) -> None:
        import csv

        self._minimal = csv.writer(stream, lineterminator="\n")
        self._quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row) -> None:
        row = list(row)
        if any(isinstance(field, str) and "\r" in field for field in row):
            self._quoted.writerow(row)
        else:
            self._minimal.writerow(row)

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)
