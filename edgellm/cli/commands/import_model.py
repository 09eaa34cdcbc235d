"""`edgellm import PATH`: use a GGUF file where it is, under a store name and alias (nothing is copied)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import"
HELP = "add a GGUF file to the store in place (never copied or downloaded again)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .gguf file (the first part of a split model)")


def main(args: argparse.Namespace) -> int:
    from edgellm.storage import store

    model = store.import_path(Path(args.path))
    print(f"imported {model.name} (alias {model.alias})")
    return 0
