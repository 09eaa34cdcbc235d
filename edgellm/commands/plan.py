"""`edgellm plan`: the settings edgellm would choose for a model on a machine, and the memory budget behind them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgellm.options import add_model_flags, argument_type

NAME = "plan"
HELP = "show the chosen n_gpu_layers, context, threads and KV cache, with the memory budget behind them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", metavar="NAME|FILE", action="append",
                        help="plan for another machine: a built-in profile (raspberry-pi-5-8gb, "
                             "jetson-orin-nano-8gb, ...) or a file saved with `edgellm hw --json`. Given twice or "
                             "more: plan a split of the model across those machines, the first running edgellm")
    parser.add_argument("--rpc", type=argument_type(rpc_endpoints), metavar="HOST:PORT[,HOST:PORT...]",
                        help="plan a split of the model across this machine and these workers (`edgellm worker`)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (sizes in bytes)")
    add_model_flags(parser)


def rpc_endpoints(text: str):
    from edgellm.engine.rpc import parse_endpoints

    return parse_endpoints(text)


def main(args: argparse.Namespace) -> int:
    from edgellm import loading
    from edgellm.hub.client import offline

    settings = loading.settings_from(args)
    profiles = args.profile or []
    if len(profiles) > 1 or args.rpc:
        return show_split(settings, profiles, args.rpc or [], args.json)
    profile = loading.profile_named(profiles[0] if profiles else None)
    if settings.hf_repo and not (settings.offline or offline()):
        remote = plan_remote(settings, profile)
        if remote is not None:
            return show(remote, profile, args.json)
    choice = loading.choose_model(settings, profile)
    return show(choice, profile, args.json)


def plan_remote(settings, profile):
    """-hf of a model not yet stored: plan it from the Hub listing and headers, downloading nothing."""
    from edgellm import loading, store
    from edgellm.hub.pull import choose_remote
    from edgellm.hub.refs import parse_ref

    ref = parse_ref(settings.hf_repo)
    if store.find(ref.name) is not None:
        return None
    remote = choose_remote(ref, profile, loading.wishes_from(settings))
    return loading.ModelChoice(Path(remote.spec.path), remote.spec, remote.plan,
                               remote.considered if not ref.quant else ())


def show(choice, profile, as_json: bool) -> int:
    from edgellm.bench.results import speed_of
    from edgellm.plan import report

    speed, measured = speed_of(profile, choice.spec, choice.plan)
    if as_json:
        data = report.to_dict(choice.plan, choice.spec, profile, speed, measured)
        if choice.alternatives:
            data["quant"] = choice.spec.file_type
            data["considered"] = list(choice.alternatives)
        print(json.dumps(data, indent=2))
        return 0
    if choice.alternatives:
        print("Quants considered (best first):")
        print("\n".join(f"  {line}" for line in choice.alternatives))
        print()
    print(report.render(choice.plan, choice.spec, profile, speed, measured))
    return 0


def show_split(settings, profiles: list[str], endpoints, as_json: bool) -> int:
    """`plan --profile A --profile B` or `plan --rpc HOST:PORT,...`: the model's layers shared across machines."""
    from edgellm import loading
    from edgellm.errors import DoesNotFit
    from edgellm.plan.planner import FLASH_ATTN_BACKENDS, PlanError
    from edgellm.plan.split import plan_split, profile_device, render, to_dict
    from edgellm.workers import worker_device

    local = loading.profile_named(profiles[0] if profiles else None)
    devices = [profile_device(local, local=not profiles)]
    devices += [profile_device(loading.profile_named(name), local=False) for name in profiles[1:]]
    devices += [worker_device(endpoint) for endpoint in endpoints]
    path = loading.model_file(settings)
    spec = loading.read_spec(path)
    backend = local.llama_build.backend if local.llama_build else "cpu"
    flash_attn = settings.flash_attn == "on" or (settings.flash_attn == "auto" and backend in FLASH_ATTN_BACKENDS)
    try:
        split = plan_split(spec, devices, settings.ctx_size, settings.kv, flash_attn)
    except PlanError as error:
        raise DoesNotFit(f"{path.name}: {error}", str(path)) from None
    if as_json:
        print(json.dumps({"model": {"path": str(path), "architecture": spec.architecture, "quant": spec.file_type,
                                    "n_layers": spec.n_layers, "file_bytes": spec.file_bytes},
                          "split": to_dict(split)}, indent=2))
        return 0
    print(f"Model    {path}\n         {spec.architecture}, {spec.n_layers} layers, {spec.file_type or 'unknown quant'}"
          f"\n")
    print(render(split, spec))
    if not profiles:
        print("\n`edgellm run --rpc` runs this split; --rpc on chat, serve and bench comes next.")
    return 0
