"""Where synergic keeps downloaded data sets."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root(name: str) -> Path:
    """The folder a built-in data set lives in when a recipe gives no ``data.root``.

    ``$SYNERGIC_DATA_DIR/<name>`` when that variable is set, else
    ``$XDG_CACHE_HOME/synergic/<name>``, else ``~/.cache/synergic/<name>``. Nothing is created.
    """
    data_dir = os.environ.get("SYNERGIC_DATA_DIR")
    if data_dir:
        return Path(data_dir).expanduser() / name
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "synergic" / name
