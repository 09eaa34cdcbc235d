"""Where the data shipped with edgellm lives: `edgellm/models` when installed, the repo's `models/` in a checkout."""

from __future__ import annotations

import sys
from pathlib import Path


def data_dir() -> Path:
    bundled = getattr(sys, "_MEIPASS", None)  # a PyInstaller binary unpacks its data here
    candidates = [Path(bundled) / "edgellm" / "models"] if bundled else []
    package = Path(__file__).resolve().parent.parent  # edgellm/
    candidates += [package / "models", package.parent / "models"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-1]
