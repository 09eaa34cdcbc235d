"""The command line as data: each command's usage, arguments, defaults and help, read from the argparse parsers.

The CLI reference page (cli/reference.py) and the shell completion scripts (cli/completion.py) are both written from
this, so neither can drift from the parsers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from edgellm.session.flags import MODEL_FLAGS


@dataclass(frozen=True)
class Argument:
    """One argument of a command: its spellings (empty for a positional), what it takes, its default and help."""

    flags: tuple[str, ...]
    dest: str
    metavar: str | None  # what the argument takes (None: a switch, no value)
    choices: tuple[str, ...]
    default: str | None  # as text; None when there is none to show
    help: str
    group: str

    @property
    def positional(self) -> bool:
        return not self.flags

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None


@dataclass(frozen=True)
class Command:
    """A command: `edgellm NAME`, or the program itself with name ''."""

    name: str
    help: str
    usage: str
    arguments: tuple[Argument, ...]

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(flag for argument in self.arguments for flag in argument.flags)


# config.toml can set the common flags, so argparse holds no default for them: the reference shows the table's
_COMMON_DEFAULTS = {flag.dest: flag.default for flag in MODEL_FLAGS}
_COMMON_CHOICES = {flag.dest: flag.choices for flag in MODEL_FLAGS}


def _default_text(action: argparse.Action) -> str | None:
    default = action.default
    if default is None or default is argparse.SUPPRESS:
        default = _COMMON_DEFAULTS.get(action.dest)
    if default is None or isinstance(default, bool) or default is argparse.SUPPRESS:
        return None
    if isinstance(default, (list, tuple)):
        return ",".join(str(item) for item in default) or None
    return str(default)


def _metavar(action: argparse.Action) -> str | None:
    if action.nargs == 0:  # store_true, store_const, count, help, version
        return None
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "|".join(str(choice) for choice in action.choices)
    return action.dest.upper() if action.option_strings else action.dest


def _help_text(action: argparse.Action, prog: str) -> str:
    """The help as `--help` shows it: argparse's %-placeholders (%(default)s, %(prog)s...) filled in."""
    if not action.help:
        return ""
    params = dict(vars(action), prog=prog)
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(choice) for choice in params["choices"])
    return " ".join((action.help % params).split())


def _arguments(parser: argparse.ArgumentParser) -> tuple[Argument, ...]:
    found: list[Argument] = []
    for group in parser._action_groups:  # argparse keeps its groups private; this is its documented grouping
        title = group.title or ""
        for action in group._group_actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            found.append(
                Argument(
                    flags=tuple(action.option_strings),
                    dest=action.dest,
                    metavar=_metavar(action),
                    choices=tuple(str(choice) for choice in action.choices or ())
                    or tuple(_COMMON_CHOICES.get(action.dest, ())),
                    default=_default_text(action),
                    help=_help_text(action, parser.prog),
                    group=title,
                )
            )
    return tuple(found)


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage:").split())


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The program (name '') and each of its commands, in the order `edgellm --help` lists them."""
    found = [Command("", parser.description or "", _usage(parser), _arguments(parser))]
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            found.append(Command(name, helps.get(name, sub.description or ""), _usage(sub), _arguments(sub)))
    return found
