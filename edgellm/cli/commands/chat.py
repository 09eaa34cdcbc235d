"""`edgellm chat`: talk to a model in the terminal (the headless REPL), or as a filter over piped lines."""

from __future__ import annotations

import argparse
import sys

from edgellm.cli.arguments import add_model_flags, add_rpc_flag

NAME = "chat"
HELP = "chat with a model: the full-screen app on a terminal (--headless: a line REPL), one reply per line when piped"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--headless", action="store_true", help="the line REPL, for SSH and serial consoles (no full-screen UI)"
    )
    parser.add_argument("--no-history", action="store_true", help="keep this session out of the history database")
    parser.add_argument("--resume", type=int, metavar="ID", help="continue a saved conversation (see edgellm history)")
    add_rpc_flag(
        parser,
        "split the model across this machine and these workers (`edgellm worker`), as `edgellm "
        "plan --rpc` shows; a worker lost mid-reply ends that reply, the chat goes on once it is back",
    )
    add_model_flags(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm import paths
    from edgellm.cli.host import open_host
    from edgellm.cli.repl import Repl
    from edgellm.session.flags import flags_of
    from edgellm.session.history import History

    flags = flags_of(args)
    _check_resume(args.resume, args.no_history)  # before a long model load
    if not args.headless and sys.stdin.isatty() and sys.stdout.isatty():
        from edgellm.tui.launch import run_tui

        return run_tui(
            flags, model=flags.model or "", resume=args.resume, use_history=not args.no_history, start="chat"
        )
    history = None if args.no_history else History.open_or_none(paths.history_path())
    try:
        host, planned = open_host(flags)
        host.load(planned)
        interactive = sys.stdin.isatty()
        session = host.chat(history, show_reasoning=interactive)
        repl = Repl(session, interactive=interactive)
        if args.resume is not None:
            repl.show_loaded(args.resume, session.load(args.resume))
        return repl.run()
    finally:
        if history:
            history.close()


def _check_resume(resume: int | None, no_history: bool) -> None:
    """--resume names a saved conversation, and the history is on."""
    from edgellm import paths
    from edgellm.errors import EdgellmError
    from edgellm.session.history import History

    if resume is None:
        return
    if no_history:
        raise EdgellmError("--resume needs the history: drop --no-history")
    history = History(paths.history_path())
    try:
        if history.conversation(resume) is None:
            raise EdgellmError(f"no conversation {resume}: `edgellm history` lists them")
    finally:
        history.close()
