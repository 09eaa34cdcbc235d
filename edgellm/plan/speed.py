"""Estimated decode speed: generating a token reads every weight once, so tokens/s ≈ efficiency × bandwidth ÷
bytes read per token, summed over the devices the layers sit on (the field notes' rule of thumb, 0.4-0.5).

A device that has been measured (`edgellm bench`) passes its samples: the ratio of measured to estimated speed of
each benchmarked model. A plan is calibrated by the samples that placed layers the same way (CPU, GPU, split) and
whose weights are within SIZE_WINDOW of its own: a tiny model spends a larger share of each token outside the weight
reads (sampling, the vocabulary), so its ratio says little about a model 20 times larger. The estimate stays a pure
function of its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgellm.hw.bandwidth import DEFAULT_GPU, system_bandwidth
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.estimate import gpu_layer_range, output_offloaded
from edgellm.plan.planner import Plan
from edgellm.plan.similar import similar_size
from edgellm.plan.spec import ModelSpec

EFFICIENCY = 0.45
FACTOR_RANGE = (0.05, 20.0)  # a ratio outside this says the measurement went wrong, not the estimate


@dataclass(frozen=True)
class Sample:
    """One benchmarked model on this device: where its layers ran, its weights, measured ÷ estimated decode speed."""

    placement: str  # cpu | gpu | partial
    weights_bytes: int
    ratio: float


@dataclass(frozen=True)
class Calibration:
    """Measured ÷ estimated decode speed on one device for one placement and size, from `models` benchmarked models."""

    placement: str  # cpu | gpu | partial
    factor: float
    models: int


@dataclass(frozen=True)
class SpeedEstimate:
    tokens_per_s: float
    calibration: Calibration | None = None  # the one applied, if any

    def describe(self) -> str:
        """`about 41 tokens/s` with how it was made, in words."""
        text = f"about {self.tokens_per_s:.1f} tokens/s decode"
        if self.calibration is None:
            return text + " (estimated from memory bandwidth; `edgellm bench` calibrates it)"
        calibration = self.calibration
        return (
            text
            + f" (estimate × {calibration.factor:.2f}, calibrated by {calibration.models} benchmark"
            + ("s" if calibration.models != 1 else "")
            + " of a model of similar size on this device)"
        )


@dataclass(frozen=True)
class Measured:
    """What `edgellm bench` measured for one model on this device (its latest result)."""

    tokens_per_s: float  # decode, at the shallowest depth measured
    stddev: float
    prompt_tokens_per_s: float
    flash_attn: bool
    when: str  # ISO time, UTC

    def describe(self) -> str:
        return (
            f"measured {self.tokens_per_s:.1f} ± {self.stddev:.1f} tokens/s decode, "
            f"{self.prompt_tokens_per_s:.0f} tokens/s prompt (edgellm bench, {self.when[:16].replace('T', ' ')})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens_per_s": round(self.tokens_per_s, 2),
            "stddev": round(self.stddev, 2),
            "prompt_tokens_per_s": round(self.prompt_tokens_per_s, 1),
            "flash_attn": self.flash_attn,
            "when": self.when,
        }


def placement(plan: Plan) -> str:
    """Where a plan runs the layers: all on the CPU, all on the GPU, or partly on each."""
    if plan.gpu is None or plan.n_gpu_layers == 0:
        return "cpu"
    return "gpu" if plan.full_offload else "partial"


def bytes_per_token(spec: ModelSpec, plan: Plan) -> tuple[int, int]:
    """(bytes read from RAM, bytes read from GPU memory) per generated token. The input embedding is a
    lookup of one row; the output (the tied embedding, when tied) is read whole."""
    on_gpu = set(gpu_layer_range(spec, plan.n_gpu_layers)) if plan.gpu else set()
    output = spec.output_bytes + (spec.token_embd_bytes if spec.tied_embeddings else 0)
    output_on_gpu = plan.gpu is not None and output_offloaded(plan.n_gpu_layers)
    gpu = sum(spec.layer_bytes[layer] for layer in on_gpu) + (output if output_on_gpu else 0)
    cpu = sum(b for layer, b in enumerate(spec.layer_bytes) if layer not in on_gpu) + (0 if output_on_gpu else output)
    return cpu, gpu


def decode_tokens_per_s(spec: ModelSpec, plan: Plan, profile: DeviceProfile, calibration: float = 1.0) -> float:
    """The estimated decode speed, times `calibration` (measured ÷ estimated on this device; 1: uncalibrated)."""
    cpu_bytes, gpu_bytes = bytes_per_token(spec, plan)
    ram = profile.memory.bandwidth_bytes_per_s or system_bandwidth(
        profile.cpu.arch,
        profile.board.model if profile.board else None,
        profile.board.module if profile.board else None,
        profile.cpu.model,
    )
    gpu = profile.gpus[0].bandwidth_bytes_per_s if profile.gpus else None
    seconds = cpu_bytes / (EFFICIENCY * ram) + gpu_bytes / (EFFICIENCY * (gpu or DEFAULT_GPU))
    return calibration / seconds if seconds > 0 else float("inf")


def estimate_speed(
    spec: ModelSpec, plan: Plan, profile: DeviceProfile, samples: list[Sample] | None = None
) -> SpeedEstimate:
    """The decode speed of `plan`, calibrated when this device has samples for the plan's placement and size."""
    calibration = calibration_for(samples or [], placement(plan), spec.weight_bytes)
    factor = calibration.factor if calibration else 1.0
    return SpeedEstimate(decode_tokens_per_s(spec, plan, profile, factor), calibration)


def calibration_for(samples: list[Sample], where: str, weights_bytes: int) -> Calibration | None:
    """The calibration for a plan placed `where` with `weights_bytes` of weights: the geometric mean of the ratios of
    the samples placed alike and within SIZE_WINDOW in size (a model twice as fast as estimated and one half as fast
    cancel out); ratios outside FACTOR_RANGE are left out. None when no sample qualifies."""
    ratios = [
        sample.ratio
        for sample in samples
        if sample.placement == where
        and FACTOR_RANGE[0] <= sample.ratio <= FACTOR_RANGE[1]
        and similar_size(weights_bytes, sample.weights_bytes)
    ]
    if not ratios:
        return None
    return Calibration(where, math.exp(sum(map(math.log, ratios)) / len(ratios)), len(ratios))
