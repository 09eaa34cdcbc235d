"""One `edgellm bench`: choose the model as every command does, plan it for each flash-attention setting with a
context deep enough for the request, load it, measure it, and put the figures and the plan into one result record.

Shared by the command line (and any front end that benchmarks): the model host loads each plan, progress comes out
as events, errors as EdgellmErrors.
"""

from __future__ import annotations

import contextlib
import gc
import platform
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edgellm import __version__, paths
from edgellm.bench import results
from edgellm.bench.measure import BenchRequest, LoadLog, PeakMemory, logged_buffers, measure, now_iso, on_host
from edgellm.bench.parallel import ParallelRequest
from edgellm.engine.contract import Model
from edgellm.engine.llama_log import interrupt_after
from edgellm.errors import DoesNotFit, EdgellmError, EngineFailed
from edgellm.events import Progress, ctrl_c_sets
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.estimate import MemoryEstimate, estimate
from edgellm.plan.params import load_params
from edgellm.plan.planner import DEFAULT_CTX, NOT_MEASURED, DeviceMeasured, Plan, PlanError, Wishes, plan, plan_inputs
from edgellm.plan.spec import ModelSpec
from edgellm.plan.speed import decode_tokens_per_s, placement
from edgellm.reasons import reason
from edgellm.session import opening
from edgellm.session.flags import Flags
from edgellm.session.host import ModelHost
from edgellm.storage import store

CTX_STEP = 256


class Planned(Protocol):
    """A plan (or a split's planned model): what `deep_enough` reads of it."""

    @property
    def n_ctx(self) -> int: ...


T = TypeVar("T", bound=Planned)


def round_up(n: int, step: int = CTX_STEP) -> int:
    return -(-n // step) * step


def deep_enough(spec: ModelSpec, ctx_wish: int | None, request: BenchRequest, plan_at: Callable[[int | None], T]) -> T:
    """The plan `plan_at(ctx)` makes at the context asked for, raised (when -c was not given) to what the request
    needs; `plan_at` raises DoesNotFit, and a plan has `n_ctx`."""
    needed = request.context_needed()
    what = {"pp": request.pp, "tg": request.tg, "depth": max(request.depths), "needed": needed}
    trained = spec.trained_ctx or DEFAULT_CTX
    if needed > trained:
        raise EdgellmError(reason("bench_beyond_trained", **what, trained=trained))
    if ctx_wish is not None and needed > (ctx_wish or trained):
        raise EdgellmError(reason("bench_beyond_ctx", **what, ctx=ctx_wish, raise_to=min(round_up(needed), trained)))
    chosen = plan_at(ctx_wish)
    if chosen.n_ctx >= needed:
        return chosen
    try:
        return plan_at(min(round_up(needed), trained))
    except DoesNotFit as error:
        raise DoesNotFit(reason("bench_does_not_fit", **what, reason=error.as_reason()), spec.path) from None


def bench_plan(
    profile: DeviceProfile,
    spec: ModelSpec,
    wishes: Wishes,
    request: BenchRequest,
    measured: DeviceMeasured = NOT_MEASURED,
) -> Plan:
    """The plan edgellm would run with (given what this device measured before: `results.device_measurements`), its
    context raised (when -c was not given) to what the request needs. Its estimate stays the planner's own, which
    the result records beside what is measured."""

    def plan_at(ctx: int | None) -> Plan:
        try:
            return plan(profile, spec, replace(wishes, ctx=ctx), measured=measured)
        except PlanError as error:
            raise DoesNotFit(error.reason, spec.path) from None

    return deep_enough(spec, wishes.ctx, request, plan_at)


def split_plans(
    flags: Flags, spec: ModelSpec, request: BenchRequest, flash_attn: list[str]
) -> list[opening.PlannedModel]:
    """--rpc: the split edgellm would run with each flash-attention setting, deep enough for the request."""
    found: list[opening.PlannedModel] = []
    for value in flash_attn:

        def plan_at(ctx: int | None, value: str = value) -> opening.PlannedModel:
            return opening.plan_split_model(replace(flags, flash_attn=value, ctx_size=ctx), list(flags.rpc))

        chosen = deep_enough(spec, flags.ctx_size, request, plan_at)
        if all(chosen.params.flash_attn != other.params.flash_attn for other in found):
            found.append(chosen)
    return found


def run_plan_record(planned: opening.PlannedModel, profile: DeviceProfile) -> dict[str, Any]:
    """What a run was planned to be: its settings, where its layers went, and the estimates (a split across RPC
    workers has no speed estimate; its peak RSS is this machine's: edgellm and the child holding this side's layers)."""
    chosen, spec, split = planned.choice.plan, planned.choice.spec, planned.split
    if split is not None:
        return {
            "flash_attn": planned.params.flash_attn,
            "settings": planned.params.as_dict(),
            "placement": "rpc",
            "n_gpu_layers": split.n_gpu_layers,
            "fits": split.fits,
            "workers": list(planned.params.rpc_servers),
            "estimate": {"tokens_per_s": None, "memory_bytes": split.total},
        }
    assert chosen is not None
    return {
        "flash_attn": chosen.flash_attn,
        "settings": planned.params.as_dict(),
        "placement": placement(chosen),
        "n_gpu_layers": chosen.n_gpu_layers,
        "fits": chosen.fits,
        "estimate": {"tokens_per_s": decode_tokens_per_s(spec, chosen, profile), "memory_bytes": chosen.estimate.total},
    }


def run_estimate(profile: DeviceProfile, spec: ModelSpec, chosen: Plan, request: BenchRequest) -> MemoryEstimate:
    """The plan's estimate again for the KV cells the runs filled (the attention of a batch spans those, not the
    whole context): what the measured resident growth is compared with."""
    filled = max(request.depths, default=0) + request.pp + request.tg
    return estimate(spec, replace(plan_inputs(profile, chosen), filled=filled))


def memory_record(
    estimated: MemoryEstimate, rss_growth: int | None, vram_used: int | None, buffers: dict[str, int]
) -> list[dict[str, Any]]:
    """Per device of a plan: its estimate beside what was measured: the resident growth (this process's RSS over the
    load and the runs on the CPU; the GPU memory taken on a GPU, None on unified memory, where the RSS counts it) and
    the buffers llama.cpp logged allocating there (None when its log could not be read)."""
    rows = []
    for device in estimated.devices:
        resident, allocated = device.resident, device.total
        here = {name: size for name, size in buffers.items() if on_host(name) != device.is_gpu}
        rows.append(
            {
                "device": device.device,
                "gpu": device.is_gpu,
                "estimated_resident": resident,
                "estimated_allocated": allocated,
                "resident": vram_used if device.is_gpu else rss_growth,
                "allocated": sum(here.values()) if buffers else None,
                "buffers": here,
            }
        )
    return rows


def overrides(flags: Flags) -> list[str]:
    """The settings the flags took from the planner (a run with them does not calibrate the estimates)."""
    given = {
        "threads": flags.threads is not None,
        "gpu_layers": flags.gpu_layers != "auto",
        "kv": flags.kv is not None,
        "force": flags.force,
    }
    return [flag for flag, set_by_hand in given.items() if set_by_hand]


def stored_origin(path: Path) -> dict[str, str]:
    """The Hub repo and quant of a stored model (recommend matches its picks by them); {} for other files."""
    try:
        models = store.load_models()
    except EdgellmError:
        return {}
    folder = store.store_dir()
    for model in models.values():
        if model.path(folder).resolve() == path.resolve():
            return {"repo": model.repo, "quant": model.quant, "store_name": model.name}
    return {}


def model_record(path: Path, spec: ModelSpec) -> dict[str, Any]:
    return {
        "key": results.model_key(path.name, spec.file_bytes),
        "name": path.name,
        "path": str(path),
        "file_bytes": spec.file_bytes,
        "weights_bytes": spec.weight_bytes,
        "architecture": spec.architecture,
        "quant": spec.file_type,
        "n_layers": spec.n_layers,
        **stored_origin(path),
    }


def record_head(profile: DeviceProfile, path: Path, spec: ModelSpec) -> dict[str, Any]:
    """What every result record starts with: its schema, when, which edgellm, the device and the model."""
    return {
        "schema": results.SCHEMA,
        "when": now_iso(),
        "edgellm": __version__,
        "device": device_record(profile),
        "model": model_record(path, spec),
    }


def device_record(profile: DeviceProfile) -> dict[str, Any]:
    build = profile.llama_build
    return {
        "key": results.device_key(profile),
        "name": profile.name,
        "os": profile.os,
        "machine": platform.machine(),
        "cpu": profile.cpu.model,
        "cores": profile.cpu.physical_cores,
        "cpu_features": list(profile.cpu.features),
        "ram_bytes": profile.memory.total_bytes,
        "gpus": [gpu.name for gpu in profile.gpus],
        "backend": build.backend if build else None,
        "cpu_variant": build.cpu_variant if build else None,
    }


def flash_attn_values(texts: list[str]) -> list[str]:
    """`-fa on,off` as a list of auto | on | off, repeats dropped; ValueError naming a bad one."""
    values: list[str] = []
    for text in texts:
        if text not in ("auto", "on", "off"):
            raise ValueError(f"{text!r} is not auto, on or off")
        if text not in values:
            values.append(text)
    if not values:
        raise ValueError("give auto, on, off or a list of them (on,off)")
    return values


def run_bench(
    host: ModelHost, request: BenchRequest, flash_attn: list[str], cancel: threading.Event | None = None
) -> tuple[DeviceProfile, dict[str, Any]]:
    """Benchmark the model the host's flags name on this device (or split across the --rpc workers) with each
    flash-attention setting; the result record. Progress and notices go to the host's report."""
    flags, report = host.flags, host.report
    planned = host.plan(replace(host.flags, spec="off"))  # the model alone: its speed and memory are what is stored
    profile, spec = planned.profile, planned.choice.spec
    if planned.split is not None:
        runs = split_plans(flags, spec, request, flash_attn)
    else:
        wishes = flags.wishes()
        measured = results.device_measurements(profile, spec, wishes)
        runs = []
        for value in flash_attn:
            chosen = bench_plan(profile, spec, replace(wishes, flash_attn=value), request, measured)
            if all(chosen.flash_attn != other.params.flash_attn for other in runs):  # auto is on or off: once
                runs.append(
                    replace(
                        planned,
                        choice=replace(planned.choice, plan=chosen),
                        params=load_params(planned.choice.path, chosen, seed=0),
                    )
                )
    for notice in dict.fromkeys(notice for run in runs for notice in run.notices):
        report(notice)
    with ctrl_c_sets(cancel or threading.Event()) as stop:
        return profile, measure_plans(host, runs, request, flash_attn, stop)


def measure_plans(
    host: ModelHost,
    planned_runs: list[opening.PlannedModel],
    request: BenchRequest,
    flash_attn: list[str],
    stop: threading.Event,
) -> dict[str, Any]:
    """Load each plan through the host and measure it; the result record."""
    from edgellm.engine import backends

    report = host.report
    profile, spec, path = planned_runs[0].profile, planned_runs[0].choice.spec, planned_runs[0].choice.path
    unified = profile.unified_memory
    by_hand = overrides(host.flags)
    total = len(planned_runs) * (1 + request.steps())
    done = 0
    peak = PeakMemory()
    runs = []
    for planned in planned_runs:
        label = f"flash attention {'on' if planned.params.flash_attn else 'off'}"

        def step(what: str, label: str = label) -> None:
            nonlocal done
            report(Progress(f"bench: {what}, {label}", done, total, unit="runs"))
            done += 1

        step("loading")
        if stop.is_set():
            raise KeyboardInterrupt
        split = planned.split is not None
        model: Model | None = None
        child_peak = 0
        logged = LoadLog(paths.log_path())  # the host's log: the buffers the load allocates
        try:
            # a model loaded here: llama.cpp's calls log through a callback that would swallow Ctrl-C; a split's load
            # runs in its child and stops when Ctrl-C sets `stop`
            with contextlib.nullcontext() if split else interrupt_after():
                gpu_before = None if unified else backends.gpu_memory_free()
                peak_since = peak.reset()
                rss_before = peak.current()
                model = host.load(planned, cancel=stop if split else None).model
            load_ms = model.load_ms
            figures = measure(model, request, step, (lambda: None) if unified else backends.gpu_memory_free, stop)
            # the peak since the load where the high-water mark could be reset, else what is resident now
            rss_growth = max(0, (peak.peak() if peak_since == "load" else peak.current()) - rss_before)
        except RuntimeError as error:  # llama.cpp failed mid-run (a decode error, a GPU out of memory)
            raise EngineFailed(
                f"llama.cpp failed while measuring {path.name} ({error}); see the log: {paths.log_path()}"
            ) from None
        finally:
            if model is not None:  # a split's child holds this machine's share
                child_peak = sum(peak.peak(pid) for pid in model.other_processes)
            del model
            host.close()
            gc.collect()
        lowest = figures.pop("lowest_gpu_free_bytes")
        vram_used = max(0, gpu_before - lowest) if gpu_before is not None and lowest is not None else None
        chosen = planned.choice.plan
        runs.append(
            {
                **run_plan_record(planned, profile),
                "planned": not by_hand,
                "overrides": by_hand,
                "load_ms": round(load_ms, 1),
                **figures,
                "peak_rss_bytes": peak.peak() + child_peak,
                "peak_rss_since": peak_since,
                # GPU memory taken while it ran (the device's free memory before less the lowest seen); None
                # without a GPU, and on unified memory, where "free" is the system RAM the RSS counts already
                "vram_used_bytes": vram_used,
                # per device, the plan's memory estimate beside the measured resident growth and logged buffers
                # (a split's: None, its layers are in a child process and on the workers)
                "memory": memory_record(
                    run_estimate(profile, spec, chosen, request), rss_growth, vram_used, logged_buffers(logged.text())
                )
                if chosen is not None and not split
                else None,
            }
        )
    report(Progress("bench", total, total, unit="runs", finished=True))
    return {
        **record_head(profile, path, spec),
        "request": {
            "pp": request.pp,
            "tg": request.tg,
            "repetitions": request.repetitions,
            "depths": list(request.depths),
            "flash_attn": flash_attn,
        },
        "runs": runs,
    }


def run_parallel_bench(
    host: ModelHost, request: ParallelRequest, cancel: threading.Event | None = None
) -> tuple[DeviceProfile, dict[str, Any]]:
    """`bench --parallel`: the model the host's flags name, loaded with the batched engine for the largest count (a
    context per sequence of the request's length, unless -c), measured at each count; the result record, whose
    figures `serve --parallel auto` reads."""
    from edgellm.bench.parallel import measure_parallel
    from edgellm.engine.batched import BatchedModel

    flags, report = host.flags, host.report
    ctx = flags.ctx_size or -(-request.context_needed() // CTX_STEP) * CTX_STEP
    planned = host.plan(replace(flags, ctx_size=ctx, parallel=max(request.counts), rpc=(), spec="off"))
    profile, spec, path = planned.profile, planned.choice.spec, planned.choice.path
    for notice in planned.notices:
        report(notice)
    total = len(request.counts) * request.repetitions + 1
    done = 0

    def step(what: str) -> None:
        nonlocal done
        report(Progress(f"bench: {what}", done, total, unit="runs"))
        done += 1

    peak = PeakMemory()
    with ctrl_c_sets(cancel or threading.Event()) as stop:
        step("loading")
        peak_since = peak.reset()
        try:
            with interrupt_after():
                engine = host.load(planned).model
            if not isinstance(engine, BatchedModel):
                raise EngineFailed("the model did not load with the batched engine")
            rows = measure_parallel(engine, request, step, stop)
            load_ms = engine.load_ms
        finally:
            host.close()
            gc.collect()
    report(Progress("bench", total, total, unit="runs", finished=True))
    return profile, {
        **record_head(profile, path, spec),
        "request": {
            "pp": request.pp,
            "tg": request.tg,
            "repetitions": request.repetitions,
            "parallel": list(request.counts),
        },
        "runs": [],  # no single-sequence runs: this record's figures are in "parallel"
        "parallel": rows,
        "settings": planned.params.as_dict(),
        "load_ms": round(load_ms, 1),
        "peak_rss_bytes": peak.peak(),
        "peak_rss_since": peak_since,
    }
