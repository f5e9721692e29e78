"""The ``data`` command group: data-set utilities."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from synergic.cli.output import console

__all__ = ["DOWNLOADERS", "data", "download"]

DOWNLOADERS = {
    "isic2016": "synergic.data.datasets.isic2016:download",
    "isic2017": "synergic.data.datasets.isic2017:download",
    "isic2018": "synergic.data.datasets.isic2018:download",
    "isic2019": "synergic.data.datasets.isic2019:download",
    "isic2020": "synergic.data.datasets.isic2020:download",
}
"""``synergic data download NAME``: each built-in data set's ``download(root, *, base_url,
progress)``, as ``module:function``, imported only when that data set is downloaded."""


@click.group()
def data() -> None:
    """Data-set utilities."""


@data.command()
@click.argument("name", type=click.Choice(list(DOWNLOADERS)))
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Where to put it (default: the user cache, or $SYNERGIC_DATA_DIR).")
@click.option("--base-url", metavar="URL",
              help="Fetch the official files from this folder URL instead of the ISIC "
                   "archive's (a mirror holding the same file names).")
def download(name: str, root: Path | None, base_url: str | None) -> None:
    """Download a data set (resumable; does nothing if it is already complete, and fetches
    nothing when a complete copy lies one folder away from --root: it says where)."""
    module_name, function_name = DOWNLOADERS[name].split(":")
    module = importlib.import_module(module_name)
    options = {"base_url": base_url} if base_url else {}
    folder = getattr(module, function_name)(root, progress=True, **options)
    console().print(f"{name} is ready in {folder}")
