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
    parser.add_argument(
        "--quality",
        action="store_true",
        help="measure what the quant costs instead: perplexity over a text in chunks of 512 tokens and, against a "
        "reference (the same model at a higher precision), the KL divergence, same-top-token share and Δp, as "
        "llama-perplexity does; the picker shows the result beside the file's size",
    )
    parser.add_argument(
        "--reference",
        metavar="MODEL|auto",
        help="with --quality: the same model in F16, BF16 or Q8_0 (a file or a stored name); auto: one from the "
        "store, else pulled from the Hub repo the model came from, else refused (default: one from the store if any, "
        "else perplexity only)",
    )
    parser.add_argument(
        "--text",
        metavar="FILE",
        help="with --quality: the UTF-8 text to read (default: the evaluation text edgellm ships)",
    )
    parser.add_argument(
        "--chunks",
        type=argument_type(positive_int),
        metavar="N",
        help="with --quality: read the first N chunks only (default: the whole text)",
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
    quality_only = [name for name in ("reference", "text", "chunks") if getattr(args, name) is not None]
    if quality_only and not args.quality:
        raise EdgellmError(f"--{quality_only[0]} goes with --quality (edgellm bench --quality --{quality_only[0]} ...)")
    if args.quality:
        return bench_quality(args, flags)
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


def bench_quality(args: argparse.Namespace, flags: Flags) -> int:
    """`bench --quality`: perplexity, and the divergence from a reference, stored with the device's results."""
    from pathlib import Path

    from edgellm.bench import results
    from edgellm.cli.progress import ProgressLine
    from edgellm.session.quality import QualityRequest, run_quality

    if flags.rpc or args.parallel_counts or args.depth != (0,) or args.pp or args.tg:
        raise EdgellmError(
            "bench --quality reads a text with the model on this machine; drop --rpc, -np, --depth, --pp and --tg"
        )
    if flags.model is None:  # -hf (pulled when not stored) or the best stored model, as bench chooses them
        from dataclasses import replace

        from edgellm.session.host import ModelHost

        planned = ModelHost(flags, report=ProgressLine()).plan(replace(flags, spec="off"))
        flags = replace(flags, model=str(planned.choice.path))
    request = QualityRequest(
        reference=args.reference, text=Path(args.text).expanduser() if args.text else None, chunks=args.chunks
    )
    profile, result = run_quality(flags, request, report=ProgressLine())
    stored = results.save_result(profile, result)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(render_quality(result))
    if stored is not None:
        print(f"\nStored in {stored}: `edgellm plan`, `pull --dry-run`, `recommend` and the TUI show it for this file.")
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
        lines += [memory_line(device) for device in run.get("memory") or []]
    return "\n".join(lines)


def memory_line(device: dict[str, Any]) -> str:
    """One device's memory: the resident growth and the buffers llama.cpp logged, each beside the plan's estimate."""

    def measured(what: str, figure: int | None, estimate: int) -> str:
        found = f"{mib(figure, 0)} " if figure is not None else "not measured "
        ratio = f", × {figure / estimate:.2f}" if figure is not None and estimate else ""
        return f"{what} {found}(estimate {mib(estimate, 0)}{ratio})"

    return (
        f"  {device['device']} memory: "
        + measured("resident", device["resident"], device["estimated_resident"])
        + ", "
        + measured("allocated by llama.cpp's log", device["allocated"], device["estimated_allocated"])
    )


def render_quality(result: dict[str, Any]) -> str:
    """A quality result as llama-perplexity prints its figures, each with its standard error."""
    model, found = result["model"], result["quality"]
    reference = found["reference"]
    lines = [
        f"Model      {model['name']} ({model['architecture']}, {model['quant'] or 'unknown quant'}, "
        f"{mib(model['file_bytes'])})",
        "Reference  "
        + (f"{reference['name']} ({reference['quant'] or 'unknown quant'})" if reference else "none (perplexity only)"),
        f"Text       {found['text']['name']}: {found['chunks']} chunk{'s' if found['chunks'] != 1 else ''} of "
        f"{found['n_ctx']} tokens, "
        f"{found['tokens']} scored",
        "",
        f"  PPL                 {found['ppl']:10.4f} ± {found['ppl_se']:.4f}",
    ]
    if reference:
        percentiles = found["kld_percentiles"]
        lines += [
            f"  PPL (reference)     {found['reference_ppl']:10.4f} ± {found['reference_ppl_se']:.4f}",
            f"  ln(PPL / ref PPL)   {found['ln_ppl_ratio']:10.6f} ± {found['ln_ppl_ratio_se']:.6f}",
            f"  KL divergence       {found['kld']:10.6f} ± {found['kld_se']:.6f}   "
            f"(median {percentiles['50']:.6f}, 99% {percentiles['99']:.6f}, max {percentiles['100']:.6f})",
            f"  same top token      {100 * found['same_top']:9.3f}% ± {100 * found['same_top_se']:.3f}",
            f"  Δp                  {100 * found['delta_p']:9.3f}% ± {100 * found['delta_p_se']:.3f}   "
            f"(RMS {100 * found['rms_delta_p']:.3f}% ± {100 * found['rms_delta_p_se']:.3f})",
        ]
    rate = found["tokens_per_s"]
    lines += [
        "",
        f"  {found['seconds']:.1f} s, {rate:.0f} tokens/s read"
        + (" (both models in turn)" if reference else "")
        + f", {found['threads']} threads, peak RSS {mib(found['peak_rss_bytes'], 0)}",
    ]
    return "\n".join(lines)
