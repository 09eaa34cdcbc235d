"""`edgellm convert SRC`: a transformers checkpoint to GGUF, quantized to what fits this machine."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert a Hugging Face transformers checkpoint (safetensors) to GGUF and quantize it"
OUTTYPES = ("auto", "f32", "f16", "bf16", "q8_0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", metavar="SRC", nargs="?", help="a checkpoint folder: config.json, *.safetensors, tokenizer files"
    )
    parser.add_argument("-hf", "--hf-repo", metavar="REPO", help="a transformers repo on the Hub, fetched first")
    parser.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="with -hf, keep the downloaded checkpoint (in EDGELLM_HOME/checkpoints) afterwards",
    )
    parser.add_argument("-o", "--output", metavar="OUT", help="the GGUF to write (default: into the model store)")
    parser.add_argument(
        "--outtype",
        choices=OUTTYPES,
        default="auto",
        help="what the GGUF writer writes; named alone, the file's type, as llama.cpp's converter writes it "
        "(auto: the quant itself when it can, else f16 or bf16, quantized from there)",
    )
    parser.add_argument(
        "--quant",
        metavar="auto|QUANT",
        help="the final quant (Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, ...); auto: the best that fits (the default, unless "
        "--outtype names a type)",
    )
    parser.add_argument(
        "--imatrix",
        metavar="TEXT|FILE",
        nargs="?",
        const="",
        help="quantize with an importance matrix collected on the converted F16/BF16 model: alone, on the "
        "calibration text shipped with edgellm; TEXT, on your text file; FILE, a matrix made for this model",
    )
    parser.add_argument("--profile", metavar="NAME|FILE", help="choose the quant for another machine (see plan)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from edgellm.cli.progress import ProgressLine
    from edgellm.convert.pipeline import convert
    from edgellm.errors import EdgellmError
    from edgellm.hub.refs import parse_ref
    from edgellm.session import opening
    from edgellm.session.flags import config_wishes

    if (args.src is None) == (args.hf_repo is None):
        raise EdgellmError("name one checkpoint: a folder (SRC) or a Hub repo (-hf owner/repo)")
    output = Path(args.output).expanduser() if args.output else None
    profile = opening.profile_named(args.profile)
    report = ProgressLine(show_progress=not args.json)
    conversion, path = convert(
        Path(args.src).expanduser() if args.src else None,
        parse_ref(args.hf_repo).repo if args.hf_repo else None,
        args.quant,
        args.outtype,
        profile,
        output,
        report,
        keep_checkpoint=args.keep_checkpoint,
        wishes=config_wishes(),
        imatrix=args.imatrix,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(path),
                    "name": conversion.name if conversion.in_store else None,
                    "quant": conversion.quant,
                    "outtype": conversion.outtype,
                    "size": path.stat().st_size,
                    "architecture": conversion.config.architecture,
                    "imatrix": conversion.imatrix is not None,
                },
                indent=2,
            )
        )
    else:
        print(path)  # the path last, as pull prints it
    return 0
