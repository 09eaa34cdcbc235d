"""Benchmark results kept in EDGELLM_HOME/bench, one JSON file per device, and what they tell the estimates.

A result is keyed by the device (its profile: host, CPU, RAM, GPUs, llama.cpp backend) and the model (file name and
size). `plan`, `recommend` and the TUI read the latest result of a model to show the measured speed beside the
estimate, and every model's latest result on a device to calibrate the estimate (plan/speed.py stays pure: it is
given the calibration). The same results give the planner this device's memory calibration (measured ÷ estimated
resident and allocated memory: plan/memory_calibration.py) and the flash-attention setting that decoded faster here
(plan/flash_attn.py): `device_measurements`. Results written before bench recorded memory read as no sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgellm import paths
from edgellm.hw.profile import DeviceProfile
from edgellm.plan import flash_attn, memory_calibration
from edgellm.plan.flash_attn import FlashAttnPair
from edgellm.plan.memory_calibration import MemorySample
from edgellm.plan.planner import NOT_MEASURED, DeviceMeasured, Plan, PlanError, Wishes, plan, usable_gpu
from edgellm.plan.quality import QualityFigure
from edgellm.plan.spec import ModelSpec
from edgellm.plan.speed import Measured, Sample, SpeedEstimate, estimate_speed, placement
from edgellm.storage import disk

SCHEMA = "edgellm.bench/1"
KEPT_PER_MODEL = 10  # the most recent results of one model on one device
CALIBRATION_DEPTH = 512  # decode measured deeper than this also reads a long KV cache, which the estimate leaves out


def bench_dir() -> Path:
    return paths.home() / "bench"


def device_key(profile: DeviceProfile) -> str:
    """Names one device as a benchmark sees it: the same host, CPU, RAM, GPUs and llama.cpp backend."""
    build = profile.llama_build
    ident = [
        profile.name,
        profile.cpu.model,
        profile.cpu.arch,
        profile.cpu.physical_cores,
        round(profile.memory.total_bytes / 2**30),
        [gpu.name for gpu in profile.gpus],
        build.backend if build else None,
        build.cpu_variant if build else None,
    ]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]


def model_key(name: str, file_bytes: int) -> str:
    return f"{name}:{file_bytes}"


def results_path(profile: DeviceProfile) -> Path:
    return bench_dir() / f"{device_key(profile)}.json"


def load_results(profile: DeviceProfile) -> list[dict[str, Any]]:
    """Every stored result for `profile`'s device, oldest first; [] when none (or the file cannot be read)."""
    try:
        data = json.loads(results_path(profile).read_text())
    except (OSError, ValueError):
        return []
    results = data.get("results") if isinstance(data, dict) else None
    return [result for result in results or [] if _well_formed(result)]


def _well_formed(result: Any) -> bool:
    try:
        return (
            result["schema"] == SCHEMA
            and isinstance(result["model"]["key"], str)
            and all(isinstance(run["tg"], list) for run in result["runs"])
        )
    except (KeyError, TypeError):
        return False


def save_result(profile: DeviceProfile, result: dict[str, Any]) -> Path | None:
    """Add `result` to its device's file (written whole under a temporary name, then renamed), keeping the latest
    KEPT_PER_MODEL per model. None when the disk would not take it (said once, as `disk.lost` says it)."""
    path = results_path(profile)
    kept = load_results(profile) + [result]
    kind = kind_of(result)  # sequences together and quality are kept apart from single runs
    same = [item for item in kept if kind_of(item) == kind]
    kept = [item for item in kept if kind_of(item) != kind or item in same[-KEPT_PER_MODEL:]]
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".bench-", suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump({"schema": SCHEMA, "device": result["device"], "results": kept}, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
        return path
    except OSError as error:
        if partial:
            Path(partial).unlink(missing_ok=True)
        if disk.lost("the benchmark result", path.parent, error):
            return None
        raise


def kind_of(result: dict[str, Any]) -> tuple[str, str]:
    """A result's model and what it measured: speed, parallel (sequences together) or quality."""
    measured = "parallel" if "parallel" in result else "quality" if "quality" in result else "speed"
    return result["model"]["key"], measured


def quality_results() -> list[dict[str, Any]]:
    """Every stored quality result, of every device (what a quant costs is the file's, not the device's), oldest
    first."""
    found = []
    for path in sorted(bench_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for result in data.get("results") or [] if isinstance(data, dict) else []:
            if _well_formed(result) and isinstance(result.get("quality"), dict):
                found.append(result)
    return sorted(found, key=lambda result: str(result.get("when", "")))


def quality_figure(result: dict[str, Any]) -> QualityFigure | None:
    """A quality result as the picker shows it; None when it measured perplexity only (no reference)."""
    found = result["quality"]
    reference = found.get("reference")
    if not isinstance(reference, dict) or not isinstance(found.get("kld"), (int, float)):
        return None
    same = found.get("same_top")
    return QualityFigure(
        float(found["kld"]),
        measured=True,
        reference=str(reference.get("quant") or reference.get("name") or ""),
        same_top=float(same) if isinstance(same, (int, float)) else None,
    )


def measured_quality(
    repo: str | None = None, files: dict[str, tuple[str, int]] | None = None
) -> dict[str, QualityFigure]:
    """The latest measured quality of each quant, by quant name: of the files pulled from `repo`, or of `files`
    (quant -> (file name, size))."""
    keys = {model_key(name, size): quant for quant, (name, size) in (files or {}).items()}
    found: dict[str, QualityFigure] = {}
    for result in quality_results():  # oldest first: a later result replaces an earlier one
        model = result["model"]
        figure = quality_figure(result)
        if figure is None:
            continue
        if repo is not None and model.get("repo") == repo and model.get("quant"):
            found[str(model["quant"]).upper()] = figure
        elif model["key"] in keys:
            found[keys[model["key"]].upper()] = figure
    return found


def quality_by_repo() -> dict[tuple[str, str], QualityFigure]:
    """Measured quality of models pulled from the Hub, by (repo, QUANT): how `recommend` matches its picks."""
    found = {}
    for result in quality_results():
        model, figure = result["model"], quality_figure(result)
        if figure is not None and model.get("repo") and model.get("quant"):
            found[(str(model["repo"]), str(model["quant"]).upper())] = figure
    return found


def quality_for(name: str, file_bytes: int) -> QualityFigure | None:
    """The latest measured quality of the model file `name` (of `file_bytes`), if `bench --quality` measured it."""
    key, figure = model_key(name, file_bytes), None
    for result in quality_results():
        if result["model"]["key"] == key:
            figure = quality_figure(result) or figure
    return figure


def placed(run: dict[str, Any]) -> str:
    """Where a run's layers went: cpu, gpu, partial (some on the GPU) or rpc; results written before edgellm called a
    partial offload "partial" say "split"."""
    where = run.get("placement", "cpu")
    return "partial" if where == "split" else str(where)


def latest_by_model(profile: DeviceProfile) -> dict[str, dict[str, Any]]:
    """The most recent result of each model on this device, by model key; a split across RPC workers is not this
    device's own speed, so its results are left out."""
    return {
        result["model"]["key"]: result
        for result in load_results(profile)
        if any(placed(run) != "rpc" for run in result.get("runs") or [])
    }


def measured(result: dict[str, Any], flash_attn: bool | None = None, where: str | None = None) -> Measured | None:
    """The decode speed a result measured: of its runs placed `where` (any when None), the one with `flash_attn`
    when there is one, else the first. None when no run was placed so (a GPU measurement says nothing of a CPU plan;
    a split across RPC workers, placed "rpc", is never counted as this device's own speed unless asked for)."""
    runs = [run for run in result.get("runs") or [] if (placed(run) == where if where else placed(run) != "rpc")]
    run = next((run for run in runs if run.get("flash_attn") == flash_attn), runs[0] if runs else None)
    if not run or not run["tg"]:
        return None
    tg = min(run["tg"], key=lambda item: item["depth"])
    return Measured(tg["mean"], tg["stddev"], run["pp"]["mean"], bool(run.get("flash_attn")), result["when"])


def measured_for(
    profile: DeviceProfile,
    name: str,
    file_bytes: int,
    flash_attn: bool | None = None,
    latest: dict[str, dict[str, Any]] | None = None,
    where: str | None = None,
) -> Measured | None:
    """The latest measured speed of the model file `name` (of `file_bytes`) on this device with its layers placed
    `where`, if it was benchmarked so."""
    found = (latest if latest is not None else latest_by_model(profile)).get(model_key(name, file_bytes))
    return measured(found, flash_attn, where) if found else None


def parallel_measured(profile: DeviceProfile, name: str, file_bytes: int) -> tuple[tuple[int, float], ...]:
    """The latest `bench --parallel` figures of the model file `name` on this device: (sequences, aggregate decode
    tokens/s) each; () when it has none."""
    key = model_key(name, file_bytes)
    for result in reversed(load_results(profile)):
        rows = result.get("parallel") if result["model"]["key"] == key else None
        if isinstance(rows, list) and rows:
            return tuple(
                (int(row["sequences"]), float(row["tg_aggregate"]))
                for row in rows
                if isinstance(row, dict)
                and isinstance(row.get("sequences"), int)
                and isinstance(row.get("tg_aggregate"), (int, float))
            )
    return ()


def measured_by_repo(profile: DeviceProfile) -> dict[tuple[str, str], Measured]:
    """Measured speeds of models pulled from the Hub, by (repo, quant): how `recommend` matches its picks."""
    found = {}
    for result in latest_by_model(profile).values():
        model = result["model"]
        speed = measured(result)
        if model.get("repo") and model.get("quant") and speed:
            found[(model["repo"], model["quant"].upper())] = speed
    return found


def calibration_samples(profile: DeviceProfile) -> list[Sample]:
    """This device's calibration samples: measured ÷ estimated decode speed (the estimate as it was when measured,
    uncalibrated), one per model and placement, from the latest result that ran it so. Only runs with the settings
    the planner chose (no -t, -ngl N, --kv or --force) and a plan that fits count: a forced or hand-tuned run says
    little about the plans edgellm makes."""
    samples: dict[tuple[str, str], Sample] = {}
    for result in load_results(profile):  # oldest first: a later result replaces an earlier one
        taken = set()
        for run in result["runs"]:  # of a result's runs (-fa on,off), the first of each placement
            key = (result["model"]["key"], placed(run))
            estimate = run.get("estimate", {}).get("tokens_per_s")
            tg = min(run["tg"], key=lambda item: item["depth"]) if run["tg"] else None
            usable = run.get("planned") is True and run.get("fits") is True
            if key not in taken and usable and tg and estimate and tg["depth"] <= CALIBRATION_DEPTH:
                samples[key] = Sample(key[1], int(result["model"].get("weights_bytes") or 0), tg["mean"] / estimate)
                taken.add(key)
    return list(samples.values())


def speed_of(profile: DeviceProfile, spec: ModelSpec, plan: Plan) -> tuple[SpeedEstimate, Measured | None]:
    """What the front ends show for a planned model: the estimate (calibrated when this device has been measured)
    and the speed `edgellm bench` measured for this very file, if it was."""
    name = Path(spec.path).name
    return (
        estimate_speed(spec, plan, profile, calibration_samples(profile)),
        measured_for(profile, name, spec.file_bytes, plan.flash_attn, where=placement(plan)),
    )


def _bytes(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def memory_samples(kept: list[dict[str, Any]]) -> list[MemorySample]:
    """The memory calibration samples in a device's results (`load_results`, oldest first): measured ÷ estimated
    resident and allocated memory, one per model and placement, from the latest result that ran it so (of a result's
    runs, -fa on,off, the first of each placement). As for the speed, only runs with the settings the planner chose
    and a plan that fits count, never a split across RPC workers, and results written before bench recorded memory
    give none."""
    samples: dict[tuple[str, str], MemorySample] = {}
    for result in kept:
        taken = set()
        for run in result["runs"]:
            key = (result["model"]["key"], placed(run))
            devices = [device for device in run.get("memory") or [] if isinstance(device, dict)]
            usable = run.get("planned") is True and run.get("fits") is True and key[1] != "rpc"
            if key in taken or not usable or not devices:
                continue
            resident = memory_calibration.ratio(
                (_bytes(device.get("resident")), _bytes(device.get("estimated_resident"))) for device in devices
            )
            allocated = memory_calibration.ratio(
                (_bytes(device.get("allocated")), _bytes(device.get("estimated_allocated"))) for device in devices
            )
            if resident is None and allocated is None:
                continue
            weights = _bytes(result["model"].get("weights_bytes")) or 0
            samples[key] = MemorySample(key[1], weights, resident, allocated)
            taken.add(key)
    return list(samples.values())


def flash_attn_pairs(kept: list[dict[str, Any]]) -> list[FlashAttnPair]:
    """The results (`load_results`, oldest first) that decoded with flash attention on and off, not split across RPC
    workers: the decode speed of each at the shallowest depth measured."""
    pairs = []
    for result in kept:
        speeds: dict[bool, float] = {}
        for run in result["runs"]:
            tg = min(run["tg"], key=lambda item: item["depth"]) if run["tg"] else None
            fa = run.get("flash_attn")
            if placed(run) != "rpc" and isinstance(fa, bool) and fa not in speeds and tg is not None:
                speeds[fa] = float(tg["mean"])
        if len(speeds) == 2:
            model = result["model"]
            pairs.append(
                FlashAttnPair(
                    model["key"],
                    str(model.get("name") or model["key"]),
                    _bytes(model.get("weights_bytes")) or 0,
                    speeds[True],
                    speeds[False],
                )
            )
    return pairs


def planned_placement(profile: DeviceProfile, spec: ModelSpec, wishes: Wishes) -> str:
    """Where the planner would put `spec`'s layers on this device before any memory calibration: all on the CPU
    without a usable GPU; else as the uncalibrated plan places them (partly on the GPU when even that does not
    fit)."""
    gpu, _ = usable_gpu(profile)
    if gpu is None:
        return "cpu"
    try:
        return placement(plan(profile, spec, wishes))
    except PlanError:
        return "partial"


def device_measurements(
    profile: DeviceProfile, spec: ModelSpec, wishes: Wishes = Wishes(), kept: list[dict[str, Any]] | None = None
) -> DeviceMeasured:
    """What this device's `edgellm bench` results tell the planner about `spec` (planned with `wishes`): the memory
    calibration of models placed alike and of similar size, and the decode speed with flash attention on and off of
    this very file or, failing that, of the benchmarked model nearest in size; None for what was not measured.
    `kept`: the device's results when already read."""
    kept = load_results(profile) if kept is None else kept
    if not kept:
        return NOT_MEASURED
    key = model_key(Path(spec.path).name, spec.file_bytes)
    measured_fa = flash_attn.measured_for(flash_attn_pairs(kept), key, spec.weight_bytes)
    samples = memory_samples(kept)
    memory = (
        memory_calibration.calibration_for(samples, planned_placement(profile, spec, wishes), spec.weight_bytes)
        if samples
        else None
    )
    return DeviceMeasured(memory, measured_fa)
