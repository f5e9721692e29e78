"""A minimal synergic plugin: the backbone ``small_cnn`` and the data set ``single_csv``."""

from __future__ import annotations

import synergic

__version__ = "0.1.0"


@synergic.hookimpl
def register_backbones(register):
    # Imported inside the hook: discovering plugins (e.g. for `synergic --help`) stays fast.
    from synergic_plugin_example.models import small_cnn

    register("small_cnn", small_cnn)


@synergic.hookimpl
def register_datasets(register):
    from synergic_plugin_example.data import single_csv

    register("single_csv", single_csv)
