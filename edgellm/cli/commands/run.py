"""`edgellm run`: complete one prompt, streaming the text to stdout as it is produced; or a batch job, one request per
JSON line, answered by the model's slots together (`--batch`)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from edgellm.cli.arguments import add_model_flags, add_parallel_flag, add_rpc_flag
from edgellm.errors import EdgellmError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edgellm.engine.contract import GenerationOptions
    from edgellm.media.images import Image
    from edgellm.session.batch import Tally
    from edgellm.session.completion import ChatModel, ReplyShape

NAME = "run"
HELP = "complete one prompt with a model, streaming the text to stdout; or a JSON-lines file of them (--batch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("-p", "--prompt", help="the prompt; - reads it from stdin")
    prompt.add_argument("-f", "--file", help="read the prompt from a file")
    prompt.add_argument(
        "--batch",
        metavar="FILE.jsonl",
        help="answer every request in FILE (one JSON object per line: a prompt or messages, with its own "
        "max_tokens and sampling), several at once; run again to continue after a stop",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.jsonl",
        help="with --batch: where the answers go, one JSON line per request in input order (default: FILE.out.jsonl)",
    )
    add_parallel_flag(
        parser,
        None,
        "with --batch: requests decoded together (default auto: the most this machine gains from)",
    )
    parser.add_argument(
        "--image",
        action="append",
        metavar="FILE",
        help="an image (PNG, JPEG, GIF or BMP) for a vision model, placed where the prompt says <__media__> or else "
        "before it; repeat for several",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="after the text, print one JSON line with token counts, timings and settings",
    )
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--format",
        choices=["json"],
        help="json: the completion is a JSON object, enforced by a grammar (as Ollama's --format json)",
    )
    shape.add_argument(
        "--json-schema",
        metavar="FILE|JSON",
        help="the completion is JSON valid against this JSON schema (a file, or the schema itself), enforced by a "
        "grammar; a keyword a grammar cannot enforce is refused by name",
    )
    shape.add_argument(
        "--grammar", metavar="FILE", help="the completion matches this GBNF grammar (llama.cpp's grammar format)"
    )
    add_rpc_flag(
        parser,
        "split the model across this machine and these workers (`edgellm worker`), as `edgellm plan --rpc` shows",
    )
    add_model_flags(parser)


def read_prompt(args: argparse.Namespace) -> str:
    if args.file:
        return read_text(args.file, "the prompt file")
    if args.prompt == "-":
        return sys.stdin.read()
    if args.prompt is None:
        raise EdgellmError("no prompt: pass -p TEXT, -p - to read stdin, or -f FILE")
    prompt: str = args.prompt  # -p TEXT
    return prompt


def main(args: argparse.Namespace) -> int:
    from edgellm.cli.host import open_host
    from edgellm.session.flags import flags_of

    if args.batch:
        if args.image:
            raise EdgellmError("--image goes with -p or -f: a --batch request carries no image")
        return run_batch(args)
    if args.output or args.parallel:
        raise EdgellmError(f"{'-o' if args.output else '--parallel'} goes with --batch FILE: pass one, or drop it")
    flags = flags_of(args)
    prompt = read_prompt(args)
    images = read_images(args.image or [])  # a bad image is said before the model loads
    host, planned = open_host(flags)
    if flags.system_prompt:
        print("edgellm: note: run completes the raw prompt; -sys is used by chat", file=sys.stderr)
    shape = reply_shape(args)  # a bad schema or grammar file is said before the model loads
    if images and planned.params.projector is None:
        from edgellm.engine.contract import text_only

        raise text_only(planned.params.path)
    model = host.load(planned)
    options = flags.generation_options()
    return generate(model, options, prompt, as_json=args.json, verbose=flags.verbose, shape=shape, images=images)


def read_images(paths: list[str]) -> list[Image]:
    """--image's files, each checked (ImageRefused names the file and the way out)."""
    from pathlib import Path

    from edgellm.media.images import read_image_file

    return [read_image_file(Path(path).expanduser()) for path in paths]


def reply_shape(args: argparse.Namespace) -> ReplyShape:
    """What --format, --json-schema and --grammar ask the completion to be."""
    from edgellm.grammar.json_schema import check_schema
    from edgellm.session.completion import ReplyShape

    if args.grammar:
        return ReplyShape(grammar=read_text(args.grammar, "--grammar"))
    if args.json_schema:
        given = args.json_schema.strip()
        text = given if given.startswith("{") else read_text(given, "--json-schema")
        try:
            schema = json.loads(text)
        except ValueError as error:
            raise EdgellmError(
                f"--json-schema is not valid JSON ({error}): give a JSON schema or a file of one"
            ) from None
        if not isinstance(schema, dict):
            raise EdgellmError("--json-schema must be a JSON object (a schema)")
        check_schema(schema)
        return ReplyShape(json=True, schema=schema)
    return ReplyShape(json=args.format == "json")


def read_text(path: str, what: str) -> str:
    """A UTF-8 file's text; one line naming `what` it is (a flag, the prompt file) when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise EdgellmError(f"cannot read {what} {path}: {getattr(error, 'strerror', None) or error}") from None


def generate(
    model: ChatModel,
    options: GenerationOptions,
    prompt: str,
    as_json: bool,
    verbose: bool = False,
    shape: ReplyShape | None = None,
    images: Sequence[Image] = (),
) -> int:
    """Stream the raw completion of `prompt` to stdout (the server's /v1/completions path); Ctrl-C stops it (exit
    130) and keeps what was printed. `shape`: a grammar the completion must match."""
    from edgellm.engine.contract import settings_record
    from edgellm.events import ctrl_c_sets
    from edgellm.session.completion import ReplyShape
    from edgellm.session.events import Reply, ToolCallPiece

    prepared = model.constrain(model.prepare_text(prompt, images), shape or ReplyShape(), options)
    options = prepared.options
    reply = Reply()
    out = sys.stdout
    printed = ""
    with ctrl_c_sets(threading.Event()) as cancel:  # the generation stops between tokens (or mid-prompt)
        pieces = model.stream(prepared, reply, options, cancel)
        try:
            for piece in pieces:
                if isinstance(piece, ToolCallPiece):  # a raw prompt offers no tools: none comes
                    continue
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


def run_batch(args: argparse.Namespace) -> int:
    """Answer a JSON-lines file of requests, several at once, showing progress; Ctrl-C stops it (exit 130) with every
    finished answer kept for the next run."""
    from dataclasses import replace
    from pathlib import Path

    from edgellm.cli.host import open_host
    from edgellm.cli.progress import ProgressLine
    from edgellm.session.batch import BatchJob, default_output, journal_path, read_lines
    from edgellm.session.flags import flags_of

    flags = flags_of(args)
    if flags.rpc:
        raise EdgellmError("--batch runs on this machine's batched engine; drop --rpc")
    flags = replace(flags, parallel=args.parallel or "auto")
    source = Path(args.batch)
    output = Path(args.output) if args.output else default_output(source)
    if output.resolve() == source.resolve():
        raise EdgellmError(f"-o {output} is the batch file itself: write the answers elsewhere")
    if not source.is_file():
        raise EdgellmError(f"no batch file {source}: pass a JSON-lines file, one request per line")
    host, planned = open_host(flags)
    lines = read_lines(source, flags.generation_options(), planned.params.n_ctx)  # a bad file before the load
    model = host.load(planned)
    try:
        job = BatchJob(model, lines, output, ProgressLine())  # requests/s, tokens/s and the time left
        if job.kept:
            say(f"{len(job.kept)} of {len(lines)} requests answered already in {output}; answering the rest")
        say(f"{len(job.todo)} requests, {planned.params.parallel} at once; answers go to {output}")
        try:
            progress = job.run()
        except KeyboardInterrupt:
            done = job.progress
            print(file=sys.stderr)
            say(
                f"stopped: {done.done} of {done.total} answered, kept in {journal_path(output)}; "
                f"run the same command again to answer the rest"
            )
            return 130
    finally:
        host.close()
    say(summary(progress, output))
    if args.json:
        print(json.dumps(summary_record(progress, output)))
    return 0


def say(line: str) -> None:
    print(f"edgellm: {line}", file=sys.stderr, flush=True)


def summary(progress: Tally, output: object) -> str:
    failed = f"; {progress.failed} could not be answered (their error is in the output)" if progress.failed else ""
    return (
        f"{progress.answered_now} requests in {progress.elapsed:.1f} s: {progress.requests_per_s:.2f} requests/s, "
        f"{progress.tokens_per_s:.1f} tokens/s ({progress.completion_tokens} tokens written, "
        f"{progress.prompt_tokens} read){failed}; answers in {output}"
    )


def summary_record(progress: Tally, output: object) -> dict[str, object]:
    return {
        "requests": progress.answered_now,
        "skipped": progress.skipped,
        "failed": progress.failed,
        "seconds": round(progress.elapsed, 3),
        "requests_per_s": round(progress.requests_per_s, 3),
        "tokens_per_s": round(progress.tokens_per_s, 2),
        "prompt_tokens": progress.prompt_tokens,
        "completion_tokens": progress.completion_tokens,
        "output": str(output),
    }
