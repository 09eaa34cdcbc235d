"""`edgellm export ID --format md|json`: one saved conversation, as Markdown or JSON, on stdout."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "export"
HELP = "print a saved conversation as Markdown or JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="conversation id (see edgellm history)")
    parser.add_argument("--format", choices=["md", "json"], default="md", help="md (default) or json")


def main(args: argparse.Namespace) -> int:
    from edgellm.cli.commands.history import open_history
    from edgellm.errors import EdgellmError

    history = open_history()
    try:
        conversation = history.conversation(args.id)
        if conversation is None:
            raise EdgellmError(f"no conversation {args.id}: `edgellm history` lists them")
        messages = history.messages(args.id)
    finally:
        history.close()
    if args.format == "json":
        out = []
        for m in messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.role == "assistant":
                item.update(interrupted=m.interrupted, timings=m.timings.as_dict() if m.timings else None)
                if m.reasoning:
                    item["reasoning"] = m.reasoning
            out.append(item)
        print(
            json.dumps(
                {
                    "id": conversation.id,
                    "title": conversation.title,
                    "model": conversation.model,
                    "settings": conversation.settings,
                    "created": conversation.created,
                    "updated": conversation.updated,
                    "messages": out,
                },
                indent=2,
            )
        )
        return 0
    lines = [
        f"# {conversation.title or 'Conversation ' + str(conversation.id)}",
        "",
        f"Model: `{conversation.model}`",
        "",
    ]
    for m in messages:
        heading = {"system": "System", "user": "User", "assistant": "Assistant"}[m.role]
        lines += [f"## {heading}" + (" (interrupted)" if m.interrupted else ""), ""]
        if m.reasoning:
            lines += ["<details><summary>Reasoning</summary>", "", m.reasoning, "", "</details>", ""]
        lines += [m.content, ""]
    print("\n".join(lines).rstrip())
    return 0
