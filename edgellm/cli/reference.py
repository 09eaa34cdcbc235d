"""The CLI reference page (docs/reference/cli.md), written from the argparse parsers: every command, its usage, and
each argument with its default and help. `scripts/docs.py` writes it; a test fails when the committed page is stale.
"""

from __future__ import annotations

import argparse

from edgellm.cli.introspect import Argument, Command, commands

HEADER = """\
# Command-line reference

<!-- Written by `scripts/docs.py` from edgellm's own argument parsers: do not edit by hand. -->

Every command and flag of `edgellm`, with its default and help, as `edgellm COMMAND --help` prints them. The common
flags of the commands that load a model (`model and sampling` below) can also be set in `config.toml` under their
long names (see [Configuration](../configuration.md)); a flag on the command line wins. Bad input to any of them is one
line on stderr naming the problem and the way out, and exit code 2.
"""


FOOTER = """\
## Shell completion

`edgellm completion SHELL` prints a completion script written from these same parsers: the commands, each command's
flags, the choices of a flag that has them, the built-in device profiles for `--profile`, and the stored models'
names and aliases for `-m` and `rm` (asked of `edgellm completion --models` as you complete, so a model pulled later
is offered too). Load it once:

```sh
eval "$(edgellm completion bash)"                                   # in ~/.bashrc
eval "$(edgellm completion zsh)"                                    # in ~/.zshrc, after compinit
edgellm completion fish > ~/.config/fish/completions/edgellm.fish   # fish loads it by itself
```
"""


def _spelling(argument: Argument) -> str:
    names = ", ".join(argument.flags) if argument.flags else argument.dest.upper()
    if argument.flags and argument.takes_value:
        names += f" {argument.metavar}"
    return f"`{names}`"


def _line(argument: Argument) -> str:
    text = argument.help.rstrip(".") or "(no help)"
    line = f"- {_spelling(argument)}: {text}"
    if argument.default is not None and "default" not in text:
        line += f" (default: `{argument.default}`)"
    return line


def _section(command: Command) -> list[str]:
    title = f"edgellm {command.name}" if command.name else "edgellm"
    summary = command.help.rstrip(".")
    lines = [f"## `{title}`", "", summary[:1].upper() + summary[1:] + ".", "", "```", command.usage, "```", ""]
    groups: dict[str, list[Argument]] = {}
    for argument in command.arguments:
        if argument.flags and argument.flags[0] in ("-h", "--help"):
            continue
        groups.setdefault("arguments" if argument.positional else argument.group or "options", []).append(argument)
    for group, arguments in groups.items():
        lines += [f"**{group}**", ""] + [_line(argument) for argument in arguments] + [""]
    return lines


def render(parser: argparse.ArgumentParser) -> str:
    """The whole page, in the order `edgellm --help` lists the commands."""
    found = commands(parser)
    lines = HEADER.splitlines() + [""]
    lines += ["Commands: " + ", ".join(f"[`{c.name}`](#edgellm-{c.name})" for c in found if c.name) + ".", ""]
    for command in found:
        lines += _section(command)
    return "\n".join(lines).rstrip() + "\n\n" + FOOTER
