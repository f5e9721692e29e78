"""The ``data`` command group: data-set utilities."""

from __future__ import annotations

from pathlib import Path

import click

from synergic.cli.output import console

__all__ = ["data", "download"]


@click.group()
def data() -> None:
    """Data-set utilities."""


@data.command()
@click.argument("name", type=click.Choice(["isic2016"]))
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Where to put it (default: the user cache, or $SYNERGIC_DATA_DIR).")
@click.option("--base-url", hidden=True, help="Fetch the files from this URL (a mirror; tests).")
def download(name: str, root: Path | None, base_url: str | None) -> None:
    """Download a data set (resumable; does nothing if it is already complete)."""
    from synergic.data.download import ISIC2016_BASE_URL, download_isic2016

    folder = download_isic2016(root, base_url=base_url or ISIC2016_BASE_URL, progress=True)
    console().print(f"{name} is ready in {folder}")
