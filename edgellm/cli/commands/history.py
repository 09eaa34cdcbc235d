"""`edgellm history [--json]` lists saved conversations; `edgellm history rm ID` deletes one."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgellm.session.history import History

NAME = "history"
HELP = "list saved conversations (history rm ID deletes one)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["rm"], help="rm: delete the conversation ID")
    parser.add_argument("id", nargs="?", type=int, help="conversation id (with rm)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


def open_history() -> History:
    """The history database; a HistoryUnavailable (a EdgellmError) names the way out when it cannot be used."""
    from edgellm import paths
    from edgellm.session.history import History

    return History(paths.history_path())


def main(args: argparse.Namespace) -> int:
    from edgellm.errors import EdgellmError

    history = open_history()
    try:
        if args.action == "rm":
            if args.id is None:
                raise EdgellmError("history rm needs a conversation id: `edgellm history` lists them")
            if not history.delete(args.id):
                raise EdgellmError(f"no conversation {args.id}: `edgellm history` lists them")
            print(f"deleted conversation {args.id}")
            return 0
        conversations = history.conversations()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": c.id,
                            "title": c.title,
                            "model": c.model,
                            "created": c.created,
                            "updated": c.updated,
                            "message_count": c.message_count,
                        }
                        for c in conversations
                    ],
                    indent=2,
                )
            )
            return 0
        if not conversations:
            print("no saved conversations")
        for c in conversations:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated))
            print(f"{c.id:>5}  {when}  {c.message_count:>3} messages  {c.title or '(untitled)'}  [{c.model}]")
        return 0
    finally:
        history.close()
