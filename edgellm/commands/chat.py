"""`edgellm chat`: talk to a model in the terminal (the headless REPL), or as a filter over piped lines."""

from __future__ import annotations

import argparse
import sys

from edgellm.options import add_model_flags

NAME = "chat"
HELP = "chat with a model: a line REPL on a terminal, one reply per line when stdin is piped"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--headless", action="store_true",
                        help="the line REPL, for SSH and serial consoles (no full-screen UI)")
    parser.add_argument("--no-history", action="store_true", help="keep this session out of the history database")
    parser.add_argument("--resume", type=int, metavar="ID", help="continue a saved conversation (see edgellm history)")
    add_model_flags(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm import home, loading
    from edgellm.chat.engine import ChatEngine
    from edgellm.chat.history import History, HistoryError
    from edgellm.chat.repl import Repl, Session
    from edgellm.engine.generate import Sampling
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.model import load
    from edgellm.errors import UserError

    settings = loading.settings_from(args)
    choice, load_settings = loading.planned_model(settings)
    plan = choice.plan
    history = None
    if not args.no_history:
        try:
            history = History(home.history_path())
        except HistoryError as error:
            raise UserError(str(error)) from None
    loaded = load(load_settings, LlamaLog(home.log_path(), echo=settings.verbose))
    sampling = Sampling(settings.temp, settings.top_k, settings.top_p, settings.min_p, settings.repeat_penalty)
    engine = ChatEngine.for_model(loaded, choice.spec.architecture, sampling=sampling, max_tokens=settings.n_predict,
                                  ignore_eos=settings.ignore_eos)
    session = Session(model=str(choice.path), system_prompt=settings.system_prompt, settings={
        "n_ctx": plan.n_ctx, "n_gpu_layers": plan.n_gpu_layers, "kv": plan.kv, "temp": settings.temp,
        "top_k": settings.top_k, "top_p": settings.top_p, "min_p": settings.min_p,
        "repeat_penalty": settings.repeat_penalty, "seed": settings.seed, "n_predict": settings.n_predict,
        "template": engine.template.name})
    repl = Repl(engine, history, session, interactive=sys.stdin.isatty())
    if args.resume is not None:
        if repl.command(f"/load {args.resume}") is None and repl.session.conversation_id != args.resume:
            raise UserError(f"no conversation {args.resume}: `edgellm history` lists them")
    try:
        return repl.run()
    finally:
        if history:
            history.close()
