"""The common flags on the command line: argparse's side of session.flags (its table, parsers and defaults)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from edgellm.session.flags import MODEL_FLAGS


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type` from one of the parsers above: its ValueError becomes argparse's one-line error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    return convert


def add_model_flags(parser: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> None:
    """Add the common flags to a subcommand's parser, defaults left unset so config.toml can fill them; the flags
    whose dest is in `leave_out` are not added (a command that has its own, or no use for them)."""
    group = parser.add_argument_group("model and sampling")
    for flag in MODEL_FLAGS:
        if flag.dest in leave_out:
            continue
        if flag.parse is None:
            group.add_argument(*flag.names, dest=flag.dest, action="store_true", default=None, help=flag.help)
        else:
            group.add_argument(
                *flag.names,
                dest=flag.dest,
                type=argument_type(flag.parse),
                default=None,
                metavar=flag.metavar,
                help=flag.help,
            )


def add_min_quality_flag(parser: argparse.ArgumentParser) -> None:
    """--min-quality alone, as the model flags define it: for commands that choose a quant without loading one."""
    (flag,) = [flag for flag in MODEL_FLAGS if flag.dest == "min_quality"]
    assert flag.parse is not None  # it takes a value
    parser.add_argument(
        *flag.names, dest=flag.dest, type=argument_type(flag.parse), metavar=flag.metavar, help=flag.help
    )


def add_rpc_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """`--rpc HOST:PORT[,HOST:PORT...]`: RPC workers (`edgellm worker`), parsed and checked for repeats."""
    from edgellm.engine.endpoint import parse_endpoints

    parser.add_argument("--rpc", type=argument_type(parse_endpoints), metavar="HOST:PORT[,HOST:PORT...]", help=help)


def add_parallel_flag(parser: argparse._ActionsContainer, default: str | None, help: str) -> None:
    """`--parallel N|auto` (`-np`, llama-server's names): sequences decoded together by the batched engine."""
    from edgellm.session.flags import parallel

    parser.add_argument("-np", "--parallel", type=argument_type(parallel), default=default, metavar="N|auto", help=help)
