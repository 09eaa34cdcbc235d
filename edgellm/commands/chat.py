"""`edgellm chat`: talk to a model in the terminal (the headless REPL), or as a filter over piped lines."""

from __future__ import annotations

import argparse
import sys

from edgellm.options import add_model_flags

NAME = "chat"
HELP = "chat with a model: the full-screen app on a terminal (--headless: a line REPL), one reply per line when piped"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--headless", action="store_true",
                        help="the line REPL, for SSH and serial consoles (no full-screen UI)")
    parser.add_argument("--no-history", action="store_true", help="keep this session out of the history database")
    parser.add_argument("--resume", type=int, metavar="ID", help="continue a saved conversation (see edgellm history)")
    add_model_flags(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm import home, loading
    from edgellm.chat.completion import ChatModel
    from edgellm.chat.history import History
    from edgellm.chat.repl import Repl
    from edgellm.chat.session import ChatSession
    from edgellm.commands.opening import plan_and_tell
    from edgellm.errors import UserError

    settings = loading.settings_from(args)
    if not args.headless and sys.stdin.isatty() and sys.stdout.isatty():
        return _full_screen(args, settings)
    history = None if args.no_history else History(home.history_path())
    try:
        if args.resume is not None and (history is None or history.conversation(args.resume) is None):
            raise UserError(f"no conversation {args.resume}: `edgellm history` lists them" if history else
                            "--resume needs the history: drop --no-history")  # checked before a long model load
        planned = plan_and_tell(settings)
        loaded = loading.open_model(planned, settings)
        interactive = sys.stdin.isatty()
        session = ChatSession(ChatModel.for_model(loaded, planned.choice.spec.architecture), history,
                              model_name=str(planned.choice.path), options=loading.generation_options(settings, chat=True),
                              system_prompt=settings.system_prompt, show_reasoning=interactive)
        repl = Repl(session, interactive=interactive)
        if args.resume is not None:
            repl.show_loaded(args.resume, session.load(args.resume))
        return repl.run()
    finally:
        if history:
            history.close()


def _full_screen(args: argparse.Namespace, settings) -> int:
    """The TUI, opened on the chat with the model the flags name (or the best one stored)."""
    from edgellm import home
    from edgellm.chat.history import History
    from edgellm.errors import UserError
    from edgellm.tui.launch import run_tui

    if args.resume is not None:
        if args.no_history:
            raise UserError("--resume needs the history: drop --no-history")
        history = History(home.history_path())
        try:
            if history.conversation(args.resume) is None:
                raise UserError(f"no conversation {args.resume}: `edgellm history` lists them")
        finally:
            history.close()
    return run_tui(settings, model=settings.model or "", resume=args.resume, use_history=not args.no_history,
                   start="chat")
