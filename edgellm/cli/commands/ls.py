"""`edgellm ls [--all] [--json]`: the models in the store (and, with --all, those other tools keep), vision models
marked: those kept with a projector (storage.projectors)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

NAME = "ls"
HELP = "list the stored models (--all: also GGUFs in the Hugging Face cache, LM Studio and llama.cpp's cache)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="also list GGUF files kept by other tools")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def main(args: argparse.Namespace) -> int:
    from edgellm.formatting import gib
    from edgellm.storage import store
    from edgellm.storage.projectors import projector_for

    rows: list[dict[str, Any]] = []
    folder = store.store_dir()
    for model in store.load_models().values():
        rows.append(
            {
                "name": model.name,
                "alias": model.alias,
                "repo": model.repo,
                "quant": model.quant,
                "size": model.size,
                "path": str(model.path(folder)),
                "source": model.source,
                "last_used": model.last_used,
                "projector": _path(projector_for(model.path(folder))),
            }
        )
    if args.all:
        known = {row["path"] for row in rows}
        for found in store.scan_external():
            if str(found.path) not in known:
                rows.append(
                    {
                        "name": found.name,
                        "alias": found.path.name.removesuffix(".gguf"),
                        "repo": found.name.rsplit(":", 1)[0],
                        "quant": found.name.rsplit(":", 1)[1],
                        "size": found.size,
                        "path": str(found.path),
                        "source": found.source,
                        "last_used": None,
                        "projector": _path(projector_for(found.path)),
                    }
                )
    for row in rows:
        row["vision"] = row["projector"] is not None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no models yet: `edgellm recommend` suggests some, `edgellm pull owner/repo` fetches one")
        return 0
    for row in rows:
        used = time.strftime("%Y-%m-%d", time.localtime(row["last_used"])) if row["last_used"] else "never"
        name = row["name"] + (VISION_MARK if row["vision"] else "")
        print(f"{name:<60} {gib(row['size']):>11}  used {used:<10}  {row['source']:<9} {row['path']}")
    return 0


VISION_MARK = " · vision"


def _path(path: Any) -> str | None:
    return None if path is None else str(path)
