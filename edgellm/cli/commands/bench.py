"""`edgellm bench`: measure a model on this device with the settings edgellm chooses, as llama-bench does, and keep
the result so `plan`, `recommend` and the TUI show it and calibrate their speed estimates."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgellm.cli.arguments import add_model_flags, add_rpc_flag, argument_type
from edgellm.errors import EdgellmError
from edgellm.formatting import mib
from edgellm.session.flags import SAMPLING_DESTS, Flags, non_negative_int, positive_int

NAME = "bench"
HELP = "measure prompt and decode speed, TTFT and memory of a model on this device, with edgellm's plan"


def depth_list(text: str) -> tuple[int, ...]:
    values = [non_negative_int(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise ValueError("give context depths in tokens, such as 0,1024,4096")
    return tuple(sorted(set(values)))


def parallel_counts(text: str) -> tuple[int, ...]:
    """--parallel's list: sequence counts from 1 to 256, as 1,2,4,8."""
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError("give sequence counts separated by commas, such as 1,2,4,8") from None
    if not counts or counts[0] < 1 or counts[-1] > 256:
        raise ValueError("give sequence counts from 1 to 256, such as 1,2,4,8")
    return counts


def flash_attn_list(text: str) -> list[str]:
    from edgellm.session.bench import flash_attn_values

    return flash_attn_values([part.strip() for part in text.split(",")])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pp",
        type=argument_type(positive_int),
        default=None,
        metavar="N",
        help="prompt tokens to read per run (default 512; 128 with --parallel)",
    )
    parser.add_argument(
        "--tg",
        type=argument_type(positive_int),
        default=None,
        metavar="N",
        help="tokens to generate per run (default 128)",
    )
    parser.add_argument(
        "-r",
        "--repetitions",
        type=argument_type(positive_int),
        default=3,
        metavar="N",
        help="repetitions of each test, for mean ± standard deviation (default 3)",
    )
    parser.add_argument(
        "--depth",
        type=argument_type(depth_list),
        default=(0,),
        metavar="N[,N...]",
        help="context depths to measure decode speed at, such as 0,1024,4096 (default 0)",
    )
    parser.add_argument(
        "-fa",
        "--flash-attn",
        dest="flash_attn_list",
        type=argument_type(flash_attn_list),
        default=None,
        metavar="auto|on|off[,...]",
        help="flash attention: auto, on, off, or on,off to compare both (default auto)",
    )
    parser.add_argument(
        "-np",
        "--parallel",
        dest="parallel_counts",
        type=argument_type(parallel_counts),
        default=None,
        metavar="N[,N...]",
        help="measure decoding N sequences together instead, as llama-batched-bench does, for each N (such as "
        "1,2,4,8; with --pp and --tg, default 128 each): aggregate and per-stream tokens/s, TTFT; "
        "`serve --parallel auto` chooses from them",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_rpc_flag(parser, "measure the model split across this machine and these workers (`edgellm worker`)")
    add_model_flags(parser, leave_out=("flash_attn", *SAMPLING_DESTS))


def main(args: argparse.Namespace) -> int:
    from edgellm.bench import results
    from edgellm.bench.measure import BenchRequest
    from edgellm.cli.progress import ProgressLine
    from edgellm.session.bench import run_bench
    from edgellm.session.flags import flags_of
    from edgellm.session.host import ModelHost

    flags = flags_of(args)
    if args.parallel_counts:
        return bench_parallel(args, flags)
    request = BenchRequest(pp=args.pp or 512, tg=args.tg or 128, repetitions=args.repetitions, depths=args.depth)
    host = ModelHost(flags, report=ProgressLine())
    profile, result = run_bench(host, request, args.flash_attn_list or [flags.flash_attn])
    stored = results.save_result(profile, result)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(render(result))
    from edgellm.plan.speed import calibration_for

    first = result["runs"][0]
    calibration = calibration_for(
        results.calibration_samples(profile), first["placement"], result["model"]["weights_bytes"]
    )
    if stored is not None and first["placement"] == "rpc":
        print(f"\nStored in {stored}, apart from this device's own speed (a split across workers).")
    elif stored is not None:
        print(
            f"\nStored in {stored}: `edgellm plan` and `recommend` show it"
            + (
                f", and scale their speed estimates for models of this size by {calibration.factor:.2f} (from "
                f"{calibration.models} benchmarked model{'s' if calibration.models != 1 else ''})"
                if calibration
                else ""
                if first.get("planned") and first.get("fits")
                else "; it does not calibrate the estimates (settings chosen by hand, or a plan that does not fit)"
            )
            + "."
        )
    sys.stdout.flush()
    return 0


def bench_parallel(args: argparse.Namespace, flags: Flags) -> int:
    """`bench --parallel`: the table, stored with the device's results."""
    if flags.rpc:
        raise EdgellmError("bench --parallel measures this machine's batched engine; drop --rpc")
    from edgellm.bench import results
    from edgellm.bench.parallel import ParallelRequest, render_rows
    from edgellm.cli.progress import ProgressLine
    from edgellm.session.bench import run_parallel_bench
    from edgellm.session.host import ModelHost

    request = ParallelRequest(args.parallel_counts, pp=args.pp or 128, tg=args.tg or 128, repetitions=args.repetitions)
    host = ModelHost(flags, report=ProgressLine())
    profile, result = run_parallel_bench(host, request)
    stored = results.save_result(profile, result)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    model, settings = result["model"], result["settings"]
    print(f"Model    {model['name']} ({model['architecture']}, {model['quant'] or 'unknown quant'})")
    print(
        f"Engine   {max(request.counts)} slots, n_ctx {settings['n_ctx']} per slot, {settings['threads']} threads "
        f"(batch {settings['threads_batch']}), n_batch {settings['n_batch']}, KV {settings['kv']}, "
        f"{request.repetitions} rounds each, mean"
    )
    print()
    print("\n".join(render_rows(result["parallel"])))
    if stored is not None:
        print(f"\nStored in {stored}: `edgellm serve --parallel auto` chooses its slots from it.")
    return 0


def figure(series: dict[str, Any], digits: int = 1) -> str:
    return f"{series['mean']:.{digits}f} ± {series['stddev']:.{digits}f}"


def render(result: dict[str, Any]) -> str:
    """The result as llama-bench prints it: one row per test, then TTFT, load time and memory per setting."""
    model, device, request = result["model"], result["device"], result["request"]
    lines = [
        f"Model    {model['name']} ({model['architecture']}, {model['quant'] or 'unknown quant'}, "
        f"{mib(model['file_bytes'])})",
        f"Device   {device['name']}: {device['cpu']}"
        + (f", {', '.join(device['gpus'])}" if device["gpus"] else "")
        + f" (llama.cpp {device['backend'] or 'unknown'} backend)",
        f"Runs     {request['repetitions']} of each test, mean ± standard deviation",
        "",
    ]
    lines.append(f"  {'flash attn':<11} {'test':<18} {'tokens/s':>18}")
    for run in result["runs"]:
        fa = "on" if run["flash_attn"] else "off"
        lines.append(f"  {fa:<11} {'pp' + str(request['pp']):<18} {figure(run['pp']):>18}")
        for tg in run["tg"]:
            test = f"tg{request['tg']}" + (f" @ depth {tg['depth']}" if tg["depth"] else "")
            lines.append(f"  {fa:<11} {test:<18} {figure(tg, 2):>18}")
    lines.append("")
    for run in result["runs"]:
        settings = run["settings"]
        vram = run["vram_used_bytes"]
        shallowest = min(run["tg"], key=lambda item: item["depth"])
        estimate = run["estimate"]["tokens_per_s"]
        lines += [
            f"Flash attention {'on' if run['flash_attn'] else 'off'}: "
            f"n_ctx {settings['n_ctx']}, {settings['threads']} threads, n_gpu_layers {run['n_gpu_layers']}, "
            f"KV {settings['kv']}, batch {settings['n_batch']}",
            f"  TTFT (pp{request['pp']})  {figure(run['ttft_ms'], 0)} ms   load {run['load_ms']:.0f} ms   "
            f"peak RSS {mib(run['peak_rss_bytes'], 0)}" + (f"   VRAM {mib(vram, 0)}" if vram is not None else ""),
            (
                f"  decode estimate {estimate:.1f} tokens/s, measured {shallowest['mean']:.1f} "
                f"(× {shallowest['mean'] / estimate:.2f}); memory estimate "
                if estimate
                else f"  split across the RPC workers {', '.join(run.get('workers', []))}; "
                f"memory estimate (all devices) "
            )
            + mib(run["estimate"]["memory_bytes"], 0),
        ]
    return "\n".join(lines)
