"""The `edgellm` command line: parse, dispatch to a command module, turn EdgellmErrors into one line and their exit
code (2 for bad input).

Start-up stays light: command modules import llama_cpp, Textual or psutil inside the functions that need them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from edgellm import __version__
from edgellm.errors import EdgellmError
from edgellm.events import Notice
from edgellm.storage import disk

EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to look, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    from edgellm.cli.commands import (
        bench,
        chat,
        completion,
        convert,
        doctor,
        embed,
        export,
        history,
        hw,
        import_model,
        ls,
        plan,
        pull,
        quantize,
        recommend,
        rm,
        run,
        serve,
        worker,
    )

    parser = Parser(
        prog="edgellm", description="Run GGUF language models on your own hardware, fitted to it.", allow_abbrev=False
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="show the version and exit (with --verbose: how this build of llama.cpp was made)",
    )
    parser.add_argument("--verbose", action="store_true", dest="version_verbose", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in (
        run,
        chat,
        embed,
        serve,
        pull,
        convert,
        quantize,
        recommend,
        ls,
        rm,
        import_model,
        history,
        export,
        plan,
        bench,
        hw,
        doctor,
        worker,
        completion,
    ):
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP, allow_abbrev=False)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main, command_parser=sub, root_parser=parser)
    return parser


def warn(notice: Notice) -> None:
    print(f"edgellm: {notice.kind}: {notice.text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    disk.report = warn  # a write edgellm can do without failed: one line on stderr (the TUI shows its own)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if args.version_verbose and not args.version:
        parser.error("--verbose goes with --version (edgellm --version --verbose)")
    if args.version:
        print(version_text(args.version_verbose))
        return 0
    try:
        if handler is None:
            return _no_command(parser, args)
        return handler(args)
    except EdgellmError as error:
        from edgellm.cli.words import explain

        sys.stdout.flush()
        print(f"edgellm: error: {explain(error)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("\nedgellm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`edgellm run ... | head`): stop quietly, as other Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def version_text(verbose: bool) -> str:
    """`edgellm 0.1.0`; verbose: the Python, and how llama.cpp was built (commit, CMake flags, CPU variants)."""
    if not verbose:
        return f"edgellm {__version__}"
    import platform

    from edgellm.hw import buildconfig

    build = buildconfig.read_build_info() or {}
    frozen = "single binary" if getattr(sys, "frozen", False) else "Python package"
    lines = [
        f"edgellm {__version__} ({frozen}, Python {platform.python_version()}, {platform.machine()})",
        f"llama-cpp-python {build.get('llama_cpp_python', 'unknown')}, backend {build.get('backend', 'unknown')}",
        f"llama.cpp commit: {build.get('llama_cpp_commit', 'not recorded')}",
        f"CMake flags: {' '.join(build.get('cmake_args', [])) or 'not recorded'}",
    ]
    if build.get("cpu_variants"):
        here = buildconfig.cpu_variant(buildconfig.cpu_flags_of_this_machine())
        lines.append(
            f"CPU variants: {' '.join(build['cpu_variants'])} (left out: "
            f"{' '.join(build.get('left_out_variants', [])) or 'none'}); this CPU gets {here or 'none'}"
        )
    else:
        lines.append(f"CPU kernels: {' '.join(build.get('cpu_features', [])) or 'not recorded'}")
    if build.get("pyinstaller"):
        lines.append(f"built with PyInstaller {build['pyinstaller']} on {build.get('built_at', '?')}")
    return "\n".join(lines)


def _no_command(parser: Parser, args: argparse.Namespace) -> int:
    """`edgellm` alone opens the TUI on a terminal, and prints the help anywhere else."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        parser.print_help()
        return 0
    from edgellm.session.flags import flags_of
    from edgellm.tui.launch import run_tui

    return run_tui(flags_of(args))
