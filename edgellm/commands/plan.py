"""`edgellm plan`: the settings edgellm would choose for a model on a machine, and the memory budget behind them."""

from __future__ import annotations

import argparse
import json

from edgellm.options import add_model_flags

NAME = "plan"
HELP = "show the chosen n_gpu_layers, context, threads and KV cache, with the memory budget behind them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME|FILE",
                        help="plan for another machine: a built-in profile (raspberry-pi-5-8gb, "
                             "jetson-orin-nano-8gb, ...) or a file saved with `edgellm hw --json`")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (sizes in bytes)")
    add_model_flags(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm import loading
    from edgellm.plan import report

    settings = loading.settings_from(args)
    profile = loading.profile_named(args.profile)
    choice = loading.choose_model(settings, profile)
    if args.json:
        data = report.to_dict(choice.plan, choice.spec, profile)
        if choice.alternatives:
            data["quant"] = choice.spec.file_type
            data["considered"] = list(choice.alternatives)
        print(json.dumps(data, indent=2))
        return 0
    if choice.alternatives:
        print("Quants considered (best first):")
        print("\n".join(f"  {line}" for line in choice.alternatives))
        print()
    print(report.render(choice.plan, choice.spec, profile))
    return 0
