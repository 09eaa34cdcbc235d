"""`edgellm quantize MODEL --quant QUANT`: a GGUF quantized again by llama.cpp, with an importance matrix if asked."""

from __future__ import annotations

import argparse

NAME = "quantize"
HELP = "quantize a GGUF model (F16, BF16, or one quantized already) to another quant, with an importance matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .gguf file or a store name (`edgellm ls`)")
    parser.add_argument(
        "--quant",
        metavar="QUANT",
        required=True,
        help="the llama.cpp file type to make: Q4_K_M, Q3_K_M, Q2_K, IQ2_XXS, ... (IQ1_S/M, IQ2_XXS/XS/S/M, IQ3_XXS "
        "and Q2_K_S need --imatrix)",
    )
    parser.add_argument(
        "--imatrix",
        metavar="TEXT|FILE",
        nargs="?",
        const="",
        help="weight the rounding by an importance matrix: alone, collected on the calibration text shipped with "
        "edgellm; TEXT, collected on your text file; FILE, a matrix llama-imatrix or --save-imatrix wrote",
    )
    parser.add_argument(
        "--save-imatrix", metavar="PATH", help="keep the importance matrix collected (llama.cpp's GGUF format)"
    )
    parser.add_argument(
        "--chunks", metavar="N", type=int, help="collect on the first N chunks of 512 tokens only (default: all)"
    )
    parser.add_argument("-o", "--output", metavar="OUT", help="the GGUF to write (default: into the model store)")
    parser.add_argument("-t", "--threads", metavar="N", type=int, help="CPU threads (default: all)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from edgellm.cli.progress import ProgressLine
    from edgellm.convert.quantize_file import check_quant, quantize_file
    from edgellm.errors import EdgellmError
    from edgellm.session import opening

    if args.save_imatrix is not None and args.imatrix is None:
        raise EdgellmError("--save-imatrix keeps a matrix --imatrix collects: pass --imatrix too")
    for flag, value in (("--chunks", args.chunks), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise EdgellmError(f"{flag} takes a whole number of at least 1, not {value}")
    check_quant(args.quant, args.imatrix)  # before the model is looked up
    source, _ = opening.local_model(args.model)
    done = quantize_file(
        source,
        args.quant,
        Path(args.output).expanduser() if args.output else None,
        args.imatrix,
        Path(args.save_imatrix).expanduser() if args.save_imatrix else None,
        ProgressLine(show_progress=not args.json),
        args.threads,
        chunks=args.chunks,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(done.path),
                    "name": done.name,
                    "quant": done.quant,
                    "size": done.path.stat().st_size,
                    "imatrix": args.imatrix is not None,
                    "imatrix_file": str(done.imatrix) if done.imatrix else None,
                    "requantized": done.requantized,
                },
                indent=2,
            )
        )
    else:
        print(done.path)  # the path last, as convert and pull print it
    return 0
