"""Where edgellm's files are: EDGELLM_HOME, the one directory everything edgellm writes lives under, and the data
shipped with it.

EDGELLM_HOME's layout:
    config.toml     defaults for the command-line flags
    models/         the model store (downloaded GGUF files)
    history.db      chat history (SQLite)
    images/         images sent in chats, by content: images/<2 hex>/<sha256>.<png|jpeg|gif|bmp>, each kept once
    bench/          `edgellm bench` results, one JSON file per device
    logs/           edgellm.log (llama.cpp's own log goes here unless -v)
    cache/specs/    model specs read from GGUF headers

The data shipped with edgellm lives in the package itself (edgellm/data).
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11's; 3.10 has the same class in importlib.abc
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable as Traversable
    else:
        from importlib.abc import Traversable as Traversable

HOME_ENV = "EDGELLM_HOME"


def home() -> Path:
    """The state root: $EDGELLM_HOME, else the platform's user data directory (~/.local/share/edgellm)."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("edgellm", appauthor=False))


def config_path() -> Path:
    return home() / "config.toml"


def models_dir() -> Path:
    return home() / "models"


def history_path() -> Path:
    return home() / "history.db"


def images_dir() -> Path:
    """The image store: every image a conversation holds, one file per content (edgellm.storage.images)."""
    return home() / "images"


def log_path() -> Path:
    return home() / "logs" / "edgellm.log"


def data_dir() -> Traversable:
    """The data shipped inside the package (edgellm/data: the built-in device profiles, the catalog), read through
    importlib.resources, so it is found the same way in a checkout, an installed wheel and the single binary."""
    return files("edgellm") / "data"
