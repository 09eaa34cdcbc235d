"""The plan shown to a person (the memory-budget table and the settings with their reasons) and as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgellm.formatting import size
from edgellm.gguf.projector import ProjectorSpec
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.params import load_params
from edgellm.plan.planner import Plan, quality_words
from edgellm.plan.quality import QualityFigure
from edgellm.plan.spec import ModelSpec
from edgellm.plan.speculation import SpecChoice
from edgellm.plan.speed import Measured, SpeedEstimate
from edgellm.words import PLAIN, Terms, quality_text, say

ROWS = (("weights", "Weights"), ("kv_cache", "KV cache"), ("compute", "Activations"), ("overhead", "Overhead"))


def projector_dict(plan: Plan) -> dict[str, Any] | None:
    """The vision projector counted in `plan`, for `plan --json`: what it is, its memory and where it runs, and the
    context tokens one image takes (counted in n_ctx, nothing reserved beside); None for a text model."""
    projector = plan.projector
    if projector is None:
        return None
    where = next((device for device in plan.estimate.devices if device.projector_weights), None)
    return {
        "path": projector.path,
        "type": projector.projector_type,
        "known_type": projector.known,
        "quant": projector.file_type,
        "file_bytes": projector.file_bytes,
        "weights_bytes": projector.weights_bytes,
        "encode_bytes": projector.encode_bytes(),
        "working_bytes": projector.working_bytes(),
        "device": where.device if where else None,
        "on_gpu": where.is_gpu if where else False,
        "image_tokens": projector.image_tokens,
        "image_size": projector.image_size,
        "patches": projector.patches,
        "n_embd": projector.n_embd,
        "n_layers": projector.n_layers,
        "text_n_embd": projector.text_n_embd,
    }


def projector_line(projector: ProjectorSpec, plan: Plan) -> str:
    """One line for the text report: the projector, where it runs, and what an image takes of the context."""
    where = next((device for device in plan.estimate.devices if device.projector_weights), None)
    kind = projector.projector_type if projector.known else f"{projector.projector_type} (tokens estimated)"
    return (
        f"Vision   {Path(projector.path).name}: {kind}, {size(projector.weights_bytes)}"
        + (f" on {'the ' + where.device if where.is_gpu else 'the CPU'}" if where else "")
        + f"; an image takes {projector.image_tokens} tokens of the context ({plan.n_ctx})"
    )


def to_dict(
    plan: Plan,
    spec: ModelSpec,
    profile: DeviceProfile,
    speed: SpeedEstimate | None = None,
    measured: Measured | None = None,
    terms: Terms = PLAIN,
    quality: QualityFigure | None = None,
) -> dict[str, Any]:
    """The plan as JSON: every size in bytes, each reason in `terms` and as data (`reason_codes`)."""
    devices = []
    for device in plan.estimate.devices:
        budget = plan.gpu if device.is_gpu else plan.ram
        devices.append(
            {
                "device": device.device,
                "is_gpu": device.is_gpu,
                "layers": device.layers,
                "weights_bytes": device.weights,
                "kv_cache_bytes": device.kv_cache,
                "compute_bytes": device.compute,
                "overhead_bytes": device.overhead,
                "total_bytes": device.total,
                "allocated_bytes": device.total,
                "resident_bytes": device.resident,
                "resident": {f"{key}_bytes": device.resident_part(key) for key, _ in ROWS},
                "repacked_bytes": device.repacked,
                "needed_bytes": device.needed,
                "fit_by": "allocated" if device.is_gpu and not plan.unified_memory else "resident",
                "available_bytes": budget.available if budget else None,
                "margin_bytes": budget.margin if budget else None,
            }
        )
    return {
        "model": {
            "path": spec.path,
            "architecture": spec.architecture,
            "quant": spec.file_type,
            "n_layers": spec.n_layers,
            "trained_ctx": spec.trained_ctx,
            "file_bytes": spec.file_bytes,
            "chat_template": spec.has_chat_template,
        },
        "projector": projector_dict(plan),
        "profile": profile.name,
        "fits": plan.fits,
        "settings": load_params(Path(spec.path), plan).as_dict(),
        "reasons": {key: say(why, terms) for key, why in plan.reasons.items()},
        "reason_codes": {key: why.as_dict() for key, why in plan.reasons.items()},
        "notices": [say(notice, terms) for notice in plan.notices],
        "estimate": {
            "devices": devices,
            "total_bytes": plan.estimate.total,
            "allocated_bytes": plan.allocated,
            "resident_bytes": plan.resident,
            "needed_bytes": plan.needed,
            "calibration": None
            if plan.memory is None
            else {
                "placement": plan.memory.placement,
                "resident_factor": plan.memory.resident_factor,
                "allocated_factor": plan.memory.allocated_factor,
                "models": plan.memory.models,
            },
            "gpu_runtime": None
            if plan.gpu_runtime is None
            else {
                "family": plan.gpu_runtime.family,
                "bytes": plan.gpu_runtime.overhead,
                "source": plan.gpu_runtime.source,
            },
            "kv_cells": {"full": plan.estimate.kv_cells_full, "sliding_window": plan.estimate.kv_cells_swa},
        },
        "unified_memory": plan.unified_memory,
        "speed": None
        if speed is None
        else {
            "estimate_tokens_per_s": round(speed.tokens_per_s, 2),
            "calibration": None
            if speed.calibration is None
            else {
                "placement": speed.calibration.placement,
                "factor": round(speed.calibration.factor, 4),
                "models": speed.calibration.models,
            },
            "measured": measured.as_dict() if measured else None,
        },
        "quality": None
        if quality is None
        else {
            "kld": round(quality.kld, 6),
            "measured": quality.measured,
            "reference": quality.reference,
            "same_top": None if quality.same_top is None else round(quality.same_top, 4),
            "text": quality_text(quality_words(quality)),
        },
    }


def render(
    plan: Plan,
    spec: ModelSpec,
    profile: DeviceProfile,
    speed: SpeedEstimate | None = None,
    measured: Measured | None = None,
    terms: Terms = PLAIN,
    quality: QualityFigure | None = None,
) -> str:
    """The memory budget and the settings with their reasons, for a person; the reasons in `terms`."""
    lines = [
        f"Model    {spec.path}",
        f"         {spec.architecture}, {spec.n_layers} layers, {spec.file_type or 'unknown quant'}, "
        f"{size(spec.file_bytes)}, trained context {spec.trained_ctx}"
        + ("" if spec.has_chat_template else ", no chat template"),
        *(
            [
                f"Quality  {quality_text(quality_words(quality))}"
                + ("" if quality.measured else "; `edgellm bench --quality` measures this file")
            ]
            if quality is not None
            else []
        ),
        *([projector_line(plan.projector, plan)] if plan.projector is not None else []),
        f"Machine  {profile.name}: "
        + (", ".join(gpu.name for gpu in profile.gpus) or "CPU only")
        + (" (unified memory)" if plan.unified_memory else ""),
        "",
    ]
    for device in plan.estimate.devices:
        budget = plan.gpu if device.is_gpu else plan.ram
        where = f"{device.device} memory" if device.is_gpu else "CPU RAM"
        if plan.unified_memory:
            where += " (shared)"
        by_allocation = device.is_gpu and not plan.unified_memory
        lines.append(f"Memory budget: {where}")
        lines.append(f"  {'':<12} {'allocated':>11} {'resident':>11}")
        for key, label in ROWS:
            lines.append(
                f"  {label:<12} {size(getattr(device, key)):>11} {size(device.resident_part(key)):>11}   "
                f"{device.notes.get(key, '')}"
            )
        lines.append(
            f"  {'Total':<12} {size(device.total):>11} {size(device.resident):>11}   "
            + (
                (
                    "allocated"
                    if by_allocation
                    else f"resident less {size(device.reclaimable)} the kernel can drop: {size(device.needed)}"
                    if device.reclaimable
                    else "resident"
                )
                + f" of {size(budget.usable)} usable ({size(budget.available)} free, {size(budget.margin)} kept free)"
                if budget
                else ""
            )
        )
        lines.append("")
    if len(plan.estimate.devices) > 1:
        lines += [f"All devices  {size(plan.estimate.total):>11} {size(plan.estimate.resident):>11}", ""]
    memory_why = plan.reasons.get("memory")
    if memory_why is not None:
        lines += [f"Estimate {say(memory_why, terms)}", ""]
    lines.append("Settings" + ("" if plan.fits else "  (DOES NOT FIT: forced)"))
    labels = (
        ("n_gpu_layers", "n_gpu_layers", plan.n_gpu_layers),
        ("n_ctx", "n_ctx", plan.n_ctx if not plan.parallel else f"{plan.n_ctx} per slot"),
        *(
            (("parallel", "parallel", f"{plan.parallel} ({plan.n_ctx * plan.parallel} pooled)"),)
            if plan.parallel
            else ()
        ),
        ("n_ubatch", "n_batch", plan.n_ubatch),
        ("threads", "threads", f"{plan.n_threads} (batch {plan.n_threads_batch})"),
        ("flash_attn", "flash_attn", "on" if plan.flash_attn else "off"),
        ("kv", "kv cache", plan.kv),
        ("mmap", "mmap", "on" if plan.use_mmap else "off"),
        ("mlock", "mlock", "on" if plan.use_mlock else "off"),
    )
    for key, label, value in labels:
        why = plan.reasons.get(key)
        lines.append(f"  {label:<12} {value!s:<12} {say(why, terms) if why else ''}")
    if speed is not None:
        lines += ["", f"Speed    {speed.describe()}"] + ([f"         {measured.describe()}"] if measured else [])
    for notice in plan.notices:
        lines.append(f"note: {say(notice, terms)}")
    return "\n".join(lines).rstrip()


def render_speculation(choice: SpecChoice, draft_plan: Plan | None, terms: Terms = PLAIN) -> str:
    """How replies are drafted, for `plan`: the choice and why, and the draft model's memory beside the model."""
    lines = [f"Speculation  {choice.mode}: {say(choice.why, terms)}"]
    if draft_plan is not None:
        for device in draft_plan.estimate.devices:
            where = f"{device.device} memory" if device.is_gpu else "CPU RAM"
            parts = ", ".join(f"{label.lower()} {size(getattr(device, key))}" for key, label in ROWS)
            lines.append(f"  draft on {where}: {size(device.total)} ({parts}), {draft_plan.n_gpu_layers} GPU layers")
    return "\n".join(lines)


def speculation_dict(choice: SpecChoice, draft_plan: Plan | None, terms: Terms = PLAIN) -> dict[str, Any]:
    """The drafting choice for `plan --json`: mode, why in words, the draft's memory per device (bytes)."""
    found: dict[str, Any] = {**choice.as_dict(), "why_text": say(choice.why, terms)}
    if draft_plan is not None:
        found["draft_memory"] = [
            {"device": device.device, "total": device.total, **{key: getattr(device, key) for key, _ in ROWS}}
            for device in draft_plan.estimate.devices
        ]
        found["draft_n_gpu_layers"] = draft_plan.n_gpu_layers
    return found
