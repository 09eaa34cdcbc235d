"""`edgellm embed`: the embedding of each text, one JSON array per line (or one JSON object with --json), computed by a
model in llama.cpp's embedding mode."""

from __future__ import annotations

import argparse
import json
import sys

from edgellm.cli.arguments import add_model_flags, argument_type
from edgellm.errors import EdgellmError
from edgellm.session.flags import MODEL_FLAGS, positive_int

NAME = "embed"
HELP = "print the embedding of each text, one JSON array per line, computed by a model in embedding mode"
MODEL_DESTS = ("model", "threads", "gpu_layers", "verbose")  # the common flags that mean something here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="*", metavar="TEXT", help="a text to embed (each its own vector)")
    parser.add_argument("-f", "--file", help="embed each non-empty line of this file, after any TEXT (- reads stdin)")
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scale each vector to length 1, so that a dot product of two is their cosine",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object instead: {"model", "dimensions", "embeddings", "prompt_tokens"}',
    )
    parser.add_argument(
        "-c",
        "--ctx-size",
        dest="n_ctx",
        type=argument_type(positive_int),
        metavar="N",
        help="the longest text in tokens, a longer one is cut to it (default: the model's trained context up to "
        "8192; for a language model what 512 MiB of logits allow, 512 tokens for Gemma 3)",
    )
    add_model_flags(parser, leave_out=tuple(flag.dest for flag in MODEL_FLAGS if flag.dest not in MODEL_DESTS))


def read_texts(args: argparse.Namespace) -> list[str]:
    """The texts asked for: each TEXT, then each non-empty line of -f FILE; one line naming the problem when there
    is none or the file cannot be read."""
    from edgellm.cli.commands.run import read_text

    texts: list[str] = list(args.text)
    if args.file:
        content = sys.stdin.read() if args.file == "-" else read_text(args.file, "the file of texts")
        lines = [line for line in content.splitlines() if line.strip()]
        if not lines:
            where = "stdin" if args.file == "-" else args.file
            raise EdgellmError(f"{where} has no text to embed: give one text per line")
        texts += lines
    if not texts:
        raise EdgellmError("nothing to embed: pass TEXT ..., or -f FILE with one text per line (- reads stdin)")
    return texts


def main(args: argparse.Namespace) -> int:
    from edgellm.api.openai import normalize
    from edgellm.session.embedding import open_embedding
    from edgellm.session.flags import flags_of

    flags = flags_of(args)
    if not flags.model:
        raise EdgellmError("no model: pass -m MODEL (a GGUF file, or a stored model's name: `edgellm ls`)")
    texts = read_texts(args)
    embedder = open_embedding(flags, args.n_ctx)
    try:
        result = embedder.embed(texts)
        dimensions, model = embedder.dimensions, str(embedder.local.params.path)
    finally:
        embedder.close()
    vectors = [normalize(vector) for vector in result.vectors] if args.normalize else result.vectors
    out = sys.stdout
    if args.json:
        record = {
            "model": model,
            "dimensions": dimensions,
            "embeddings": vectors,
            "prompt_tokens": result.prompt_tokens,
        }
        out.write(json.dumps(record) + "\n")
    else:
        out.writelines(json.dumps(vector) + "\n" for vector in vectors)
    out.flush()
    if flags.verbose:
        print(
            f"edgellm: {len(texts)} texts, {result.prompt_tokens} tokens in {result.seconds:.2f} s",
            file=sys.stderr,
        )
    return 0
