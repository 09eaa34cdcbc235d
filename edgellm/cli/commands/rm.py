"""`edgellm rm NAME`: forget a stored model, deleting its files only if edgellm downloaded them."""

from __future__ import annotations

import argparse

NAME = "rm"
HELP = "remove a model from the store (files used in place are left alone)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="store name (owner/repo:QUANT) or alias, as `edgellm ls` shows")


def main(args: argparse.Namespace) -> int:
    from edgellm.storage import store

    model, deleted = store.remove(args.name)
    print(f"removed {model.name}" + ("" if deleted else " (its files were not downloaded by edgellm: left in place)"))
    return 0
