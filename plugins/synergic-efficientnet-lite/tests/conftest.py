from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# The tests run against this source tree whether or not the plugin is installed; only the
# entry-point test needs the installed distribution (and skips without it).
if importlib.util.find_spec("synergic_efficientnet_lite") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
