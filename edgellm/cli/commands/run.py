"""`edgellm run`: complete one prompt, streaming the text to stdout as it is produced."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from edgellm.errors import UserError
from edgellm.session.flags import add_model_flags, add_rpc_flag

NAME = "run"
HELP = "complete one prompt with a model, streaming the text to stdout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("-p", "--prompt", help="the prompt; - reads it from stdin")
    prompt.add_argument("-f", "--file", help="read the prompt from a file")
    parser.add_argument("--json", action="store_true",
                        help="after the text, print one JSON line with token counts, timings and settings")
    add_rpc_flag(parser, "split the model across this machine and these workers (`edgellm worker`), as `edgellm "
                         "plan --rpc` shows")
    add_model_flags(parser)


def read_prompt(args: argparse.Namespace) -> str:
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read the prompt file {args.file}: {getattr(error, 'strerror', None) or error}")
    if args.prompt == "-":
        return sys.stdin.read()
    if args.prompt is None:
        raise UserError("no prompt: pass -p TEXT, -p - to read stdin, or -f FILE")
    return args.prompt


def main(args: argparse.Namespace) -> int:
    from edgellm.session import opening
    from edgellm.cli.opening import plan_and_tell

    settings = opening.settings_from(args)
    prompt = read_prompt(args)
    planned = plan_and_tell(settings)
    if settings.system_prompt:
        print("edgellm: note: run completes the raw prompt; -sys is used by chat", file=sys.stderr)
    loaded = opening.open_model(planned, settings)
    return generate(loaded, opening.generation_options(settings), prompt, as_json=args.json, verbose=settings.verbose)


def generate(loaded, options, prompt: str, as_json: bool, verbose: bool = False) -> int:
    """Stream the completion of `prompt` to stdout; Ctrl-C stops it (exit 130) and keeps what was printed."""
    from edgellm.engine.generate import settings_report
    from edgellm.events import ctrl_c_sets

    from edgellm.session.completion import text_prompt_tokens

    tokens = text_prompt_tokens(loaded, prompt)
    out = sys.stdout
    printed = ""
    with ctrl_c_sets(threading.Event()) as cancel:  # the generation stops between tokens (or mid-prompt)
        generation = loaded.generation(tokens, options, cancel=cancel)
        try:
            for piece in generation:
                out.write(piece)
                out.flush()
                printed = piece
        except UserError:  # a worker of a split lost mid-reply: the text stays, the error goes on a line of its own
            if printed and not printed.endswith("\n"):
                out.write("\n")
            out.flush()
            raise
    stats = generation.stats
    if as_json:
        if printed and not printed.endswith("\n"):
            out.write("\n")
        report = {**stats.as_dict(), "load_ms": round(loaded.load_ms, 1), "model": str(loaded.settings.path),
                  "settings": settings_report(loaded.settings, options)}
        out.write(json.dumps(report) + "\n")
    elif printed and not printed.endswith("\n") and out.isatty():
        out.write("\n")
    out.flush()
    if verbose:
        print(f"edgellm: {stats.as_dict()}", file=sys.stderr)
    if stats.stop_reason == "interrupted":
        print("edgellm: interrupted", file=sys.stderr)
        return 130
    return 0
