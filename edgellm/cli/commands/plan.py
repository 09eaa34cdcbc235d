"""`edgellm plan`: the settings edgellm would choose for a model on a machine, and the memory budget behind them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm.cli.arguments import add_model_flags, add_parallel_flag, add_rpc_flag

if TYPE_CHECKING:
    from edgellm.engine.endpoint import Endpoint
    from edgellm.hw.profile import DeviceProfile
    from edgellm.session.flags import Flags
    from edgellm.session.opening import ModelChoice

NAME = "plan"
HELP = "show the chosen n_gpu_layers, context, threads and KV cache, with the memory budget behind them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        metavar="NAME|FILE",
        action="append",
        help="plan for another machine: a built-in profile (raspberry-pi-5-8gb, "
        "jetson-orin-nano-8gb, ...) or a file saved with `edgellm hw --json`. Given twice or "
        "more: plan a split of the model across those machines, the first running edgellm",
    )
    add_rpc_flag(parser, "plan a split of the model across this machine and these workers (`edgellm worker`)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (sizes in bytes)")
    add_parallel_flag(
        parser,
        None,
        "plan a server's batched engine: N sequences (or auto, as `serve` picks) decoding together, each with "
        "the context, in one KV pool the budget counts (default: one sequence, as a chat)",
    )
    add_model_flags(parser)


def main(args: argparse.Namespace) -> int:
    from edgellm.hub.client import offline
    from edgellm.session import opening
    from edgellm.session.flags import flags_of

    flags = flags_of(args)
    profiles = args.profile or []
    if len(profiles) > 1 or args.rpc:
        return show_split(flags, profiles, args.rpc or [], args.json)
    profile = opening.profile_named(profiles[0] if profiles else None)
    if flags.hf_repo and not (flags.offline or offline()):
        remote = plan_remote(flags, profile)
        if remote is not None:
            return show(remote, profile, args.json)
    choice = opening.choose_model(flags, profile)
    return show(choice, profile, args.json, flags)


def plan_remote(flags: Flags, profile: DeviceProfile) -> ModelChoice | None:
    """-hf of a model not yet stored: plan it from the Hub listing and headers, downloading nothing."""
    from edgellm.hub.refs import parse_ref
    from edgellm.session import opening
    from edgellm.session.remote import choose_remote
    from edgellm.storage import store

    assert flags.hf_repo is not None  # main calls this for -hf only
    ref = parse_ref(flags.hf_repo)
    if store.find(ref.name) is not None:
        return None
    remote = choose_remote(ref, profile, flags.wishes())
    assert remote.spec is not None  # planned: choose_remote plans a forced quant too (plan_forced)
    return opening.ModelChoice(
        Path(remote.spec.path), remote.spec, remote.plan, remote.considered if not ref.quant else ()
    )


def show(choice: ModelChoice, profile: DeviceProfile, as_json: bool, flags: Flags | None = None) -> int:
    from edgellm.bench.results import quality_for, speed_of
    from edgellm.cli.words import CLI
    from edgellm.plan import report
    from edgellm.plan.quality import parameters, prior
    from edgellm.session.speculation import plan_speculation
    from edgellm.words import say

    assert choice.plan is not None  # a model for this machine alone (a split is show_split's)
    speed, measured = speed_of(profile, choice.spec, choice.plan)
    quality = quality_for(choice.path.name, choice.spec.file_bytes) or prior(
        choice.spec.file_type, parameters(choice.spec)
    )
    # a stored or local model: how its replies are drafted (a model not yet pulled has no vocabulary here to check)
    drafting = plan_speculation(flags, choice.path, choice.spec, choice.plan, profile) if flags else None
    if as_json:
        data = report.to_dict(choice.plan, choice.spec, profile, speed, measured, CLI, quality)
        if choice.alternatives:
            data["quant"] = choice.spec.file_type
            data["considered"] = [say(line, CLI) for line in choice.alternatives]
        if drafting is not None:
            data["speculation"] = report.speculation_dict(*drafting, CLI)
        print(json.dumps(data, indent=2))
        return 0
    if choice.alternatives:
        print("Quants considered (best first):")
        print("\n".join(f"  {say(line, CLI)}" for line in choice.alternatives))
        print()
    print(report.render(choice.plan, choice.spec, profile, speed, measured, CLI, quality))
    if drafting is not None:
        print()
        print(report.render_speculation(*drafting, CLI))
    return 0


def show_split(flags: Flags, profiles: list[str], endpoints: list[Endpoint], as_json: bool) -> int:
    """`plan --profile A --profile B` or `plan --rpc HOST:PORT,...`: the model's layers shared across machines."""
    from edgellm.cli.words import CLI
    from edgellm.plan.split import to_dict
    from edgellm.session import opening

    planned = opening.plan_split_model(flags, endpoints, profiles)
    path, spec, split = planned.choice.path, planned.choice.spec, planned.split
    assert split is not None  # plan_split_model always splits
    if as_json:
        print(
            json.dumps(
                {
                    "model": {
                        "path": str(path),
                        "architecture": spec.architecture,
                        "quant": spec.file_type,
                        "n_layers": spec.n_layers,
                        "file_bytes": spec.file_bytes,
                    },
                    "split": to_dict(split, CLI),
                },
                indent=2,
            )
        )
        return 0
    print(
        f"Model    {path}\n         {spec.architecture}, {spec.n_layers} layers, {spec.file_type or 'unknown quant'}\n"
    )
    print(planned.budget_table(CLI))
    if not profiles:
        print("\n`--rpc` with the same workers runs this split: run, chat, serve and bench take it.")
    return 0
