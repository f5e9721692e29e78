"""What the ISIC data sets share (``synergic.data.datasets.isic_files``), checked for every year
that uses it: the message when the files are missing, the CSV quirks that do not matter."""

from __future__ import annotations

import importlib

import pytest
from isic_layouts import make_isic2017, make_isic2018

from synergic.errors import SynergicError


@pytest.mark.parametrize("year", [2016, 2017, 2018, 2019, 2020])
def test_missing_files_say_how_to_get_them(tmp_path, year):
    module = importlib.import_module(f"synergic.data.datasets.isic{year}")
    factory = getattr(module, f"isic{year}")
    with pytest.raises(SynergicError) as caught:
        factory(tmp_path / "empty", split="train")
    assert str(caught.value) == (
        f"ISIC {year} not found at {tmp_path / 'empty'}: run 'synergic data download "
        f"isic{year}' or set data.root"
    )
    assert not (tmp_path / "empty").exists()  # nothing created, nothing downloaded


@pytest.mark.parametrize(("make", "year", "labels"), [
    (make_isic2017, 2017, [0, 1, 2]),
    (make_isic2018, 2018, [1, 0, 4]),
])
@pytest.mark.parametrize("quirks", [
    {"crlf": True, "bom": False, "final_newline": False},
    {"crlf": False, "bom": True, "final_newline": True},
    {"crlf": True, "bom": True, "final_newline": False},
    {"crlf": False, "bom": False, "final_newline": True},
])
def test_line_ends_bom_and_final_newline_do_not_matter(tmp_path, make, year, labels, quirks):
    module = importlib.import_module(f"synergic.data.datasets.isic{year}")
    root = make(tmp_path, **quirks)
    assert getattr(module, f"isic{year}")(root, split="val").labels == labels
