"""`edgellm run`: complete one prompt, streaming the text to stdout as it is produced."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from edgellm import home
from edgellm.errors import UserError
from edgellm.options import add_model_flags

NAME = "run"
HELP = "complete one prompt with a model, streaming the text to stdout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("-p", "--prompt", help="the prompt; - reads it from stdin")
    prompt.add_argument("-f", "--file", help="read the prompt from a file")
    parser.add_argument("--json", action="store_true",
                        help="after the text, print one JSON line with token counts, timings and settings")
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
    from edgellm import loading

    settings = loading.settings_from(args)
    prompt = read_prompt(args)
    _, load_settings = loading.planned_model(settings)
    if settings.system_prompt:
        print("edgellm: note: run completes the raw prompt; -sys is used by chat", file=sys.stderr)
    return generate(load_settings, settings, prompt, as_json=args.json)


def generate(load_settings, settings, prompt: str, as_json: bool) -> int:
    from edgellm.engine.generate import Generation, Sampling
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.model import load

    loaded = load(load_settings, LlamaLog(home.log_path(), echo=settings.verbose))
    tokens = loaded.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    if len(tokens) >= load_settings.n_ctx:
        raise UserError(f"the prompt is {len(tokens)} tokens, which does not leave room in the {load_settings.n_ctx}-"
                        f"token context; raise -c or shorten the prompt")
    sampling = Sampling(settings.temp, settings.top_k, settings.top_p, settings.min_p, settings.repeat_penalty)
    cancel = threading.Event()  # Ctrl-C sets it: the generation stops between tokens (or mid-prompt), no exception
    generation = Generation(loaded.llm, tokens, sampling, settings.n_predict, ignore_eos=settings.ignore_eos,
                            cancel=cancel)
    out = sys.stdout
    printed = ""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        for piece in generation:
            out.write(piece)
            out.flush()
            printed = piece
    finally:
        signal.signal(signal.SIGINT, previous)
    stats = generation.stats
    interrupted = stats.stop_reason == "interrupted"
    if as_json:
        if printed and not printed.endswith("\n"):
            out.write("\n")
        report = {**stats.as_dict(), "load_ms": round(loaded.load_ms, 1), "model": str(load_settings.path),
                  "settings": {
                      "n_ctx": load_settings.n_ctx, "n_predict": settings.n_predict, "threads": load_settings.n_threads,
                      "n_gpu_layers": load_settings.n_gpu_layers, "n_batch": load_settings.n_batch,
                      "flash_attn": load_settings.flash_attn,
                      "kv": load_settings.kv, "temp": settings.temp, "top_k": settings.top_k, "top_p": settings.top_p,
                      "min_p": settings.min_p, "repeat_penalty": settings.repeat_penalty, "seed": settings.seed,
                      "ignore_eos": settings.ignore_eos}}
        out.write(json.dumps(report) + "\n")
    elif printed and not printed.endswith("\n") and out.isatty():
        out.write("\n")
    out.flush()
    if settings.verbose:
        print(f"edgellm: {stats.as_dict()}", file=sys.stderr)
    if interrupted:
        print("edgellm: interrupted", file=sys.stderr)
        return 130
    return 0
