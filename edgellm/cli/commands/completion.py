"""`edgellm completion bash|zsh|fish`: print a shell completion script (commands, flags, choices, stored models)."""

from __future__ import annotations

import argparse

from edgellm.cli.completion import SHELLS

NAME = "completion"
HELP = 'print a shell completion script: eval "$(edgellm completion bash)" (or zsh; fish: see the reference)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", nargs="?", choices=SHELLS, help="the shell to complete in")
    parser.add_argument(
        "--models", action="store_true", help="print the stored models' names, one a line (what the scripts call)"
    )


def main(args: argparse.Namespace) -> int:
    from edgellm.errors import EdgellmError

    if args.models:
        from edgellm.storage import store

        names: set[str] = set()
        for model in store.load_models().values():
            names.update(name for name in (model.name, model.alias) if name)
        print("\n".join(sorted(names)))
        return 0
    if args.shell is None:
        raise EdgellmError("completion needs a shell: edgellm completion bash, zsh or fish")
    from edgellm.cli.completion import script

    print(script(args.shell, args.root_parser), end="")  # the whole command line's parser, set by cli/main.py
    return 0
