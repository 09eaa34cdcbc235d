"""`edgellm run`: complete one prompt, streaming the text to stdout as it is produced."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from edgellm.cli.arguments import add_model_flags, add_rpc_flag
from edgellm.errors import EdgellmError

if TYPE_CHECKING:
    from edgellm.engine.contract import GenerationOptions
    from edgellm.session.completion import ChatModel

NAME = "run"
HELP = "complete one prompt with a model, streaming the text to stdout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("-p", "--prompt", help="the prompt; - reads it from stdin")
    prompt.add_argument("-f", "--file", help="read the prompt from a file")
    parser.add_argument(
        "--json",
        action="store_true",
        help="after the text, print one JSON line with token counts, timings and settings",
    )
    add_rpc_flag(
        parser,
        "split the model across this machine and these workers (`edgellm worker`), as `edgellm plan --rpc` shows",
    )
    add_model_flags(parser)


def read_prompt(args: argparse.Namespace) -> str:
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise EdgellmError(
                f"cannot read the prompt file {args.file}: {getattr(error, 'strerror', None) or error}"
            ) from None
    if args.prompt == "-":
        return sys.stdin.read()
    if args.prompt is None:
        raise EdgellmError("no prompt: pass -p TEXT, -p - to read stdin, or -f FILE")
    prompt: str = args.prompt  # -p TEXT
    return prompt


def main(args: argparse.Namespace) -> int:
    from edgellm.cli.host import open_host
    from edgellm.session.flags import flags_of

    flags = flags_of(args)
    prompt = read_prompt(args)
    host, planned = open_host(flags)
    if flags.system_prompt:
        print("edgellm: note: run completes the raw prompt; -sys is used by chat", file=sys.stderr)
    model = host.load(planned)
    return generate(model, flags.generation_options(), prompt, as_json=args.json, verbose=flags.verbose)


def generate(model: ChatModel, options: GenerationOptions, prompt: str, as_json: bool, verbose: bool = False) -> int:
    """Stream the raw completion of `prompt` to stdout (the server's /v1/completions path); Ctrl-C stops it (exit
    130) and keeps what was printed."""
    from edgellm.engine.contract import settings_record
    from edgellm.events import ctrl_c_sets
    from edgellm.session.events import Reply

    prepared = model.prepare_text(prompt)
    reply = Reply()
    out = sys.stdout
    printed = ""
    with ctrl_c_sets(threading.Event()) as cancel:  # the generation stops between tokens (or mid-prompt)
        pieces = model.stream(prepared, reply, options, cancel)
        try:
            for piece in pieces:
                out.write(piece.text)
                out.flush()
                printed = piece.text
        except EdgellmError:  # a worker of a split lost mid-reply: the text stays, the error goes on a line of its own
            if printed and not printed.endswith("\n"):
                out.write("\n")
            out.flush()
            raise
        finally:
            pieces.close()
    stats = reply.stats
    assert stats is not None
    if as_json:
        if printed and not printed.endswith("\n"):
            out.write("\n")
        engine = model.model
        record = {
            **stats.as_dict(),
            "load_ms": round(engine.load_ms, 1),
            "model": str(engine.params.path),
            "settings": settings_record(engine.params, options),
        }
        out.write(json.dumps(record) + "\n")
    elif printed and not printed.endswith("\n") and out.isatty():
        out.write("\n")
    out.flush()
    if verbose:
        print(f"edgellm: {stats.as_dict()}", file=sys.stderr)
    if stats.stop_reason == "interrupted":
        print("edgellm: interrupted", file=sys.stderr)
        return 130
    return 0
