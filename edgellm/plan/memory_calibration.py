"""Measured ÷ estimated memory on one device, from `edgellm bench` runs of similar models: the planner's estimate
corrected by what this device showed. Pure functions; bench/results.py reads the records and passes the samples.

A bench run records, per device, the plan's estimate of the memory it keeps resident and of what llama.cpp
allocates, beside the process's measured resident growth (pages touched: RSS, or the GPU memory taken) and the
buffers llama.cpp logged. As the speed calibration does (plan/speed.py), a plan is corrected by the samples that
placed layers the same way (CPU, GPU, partial) and whose weights are within SIZE_WINDOW of its own; each factor is
the median of their ratios (one odd run moves it little), ratios outside RATIO_RANGE left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from edgellm.plan.similar import similar_size

RATIO_RANGE = (0.25, 4.0)  # measured ÷ estimated memory outside this says the measurement went wrong


@dataclass(frozen=True)
class MemorySample:
    """One benchmarked model on this device: where its layers ran, its weights, and measured ÷ estimated memory."""

    placement: str  # cpu | gpu | partial
    weights_bytes: int
    resident_ratio: float | None  # measured resident growth ÷ the plan's resident estimate
    allocated_ratio: float | None  # llama.cpp's logged buffers ÷ the plan's allocation estimate


@dataclass(frozen=True)
class MemoryCalibration:
    """The correction applied to a plan's memory estimate on one device, from `models` benchmarked models."""

    placement: str
    resident_factor: float | None
    allocated_factor: float | None
    models: int


def ratio(pairs: Iterable[tuple[int | None, int | None]]) -> float | None:
    """Measured ÷ estimated over the devices of one run, each a (measured, estimated) pair: the sums of the devices
    where both are known; None when none is (a measurement the device could not make, a run before bench recorded
    memory)."""
    known = [(measured, estimated) for measured, estimated in pairs if measured is not None and estimated]
    if not known:
        return None
    return sum(measured for measured, _ in known) / sum(estimated for _, estimated in known)


def sane(value: float | None) -> bool:
    return value is not None and RATIO_RANGE[0] <= value <= RATIO_RANGE[1]


def calibration_for(samples: list[MemorySample], where: str, weights_bytes: int) -> MemoryCalibration | None:
    """The memory calibration of a plan placed `where` with `weights_bytes` of weights: the median resident and
    allocated ratios of the samples placed alike within SIZE_WINDOW in size, each of the ratios in RATIO_RANGE.
    None when no sample qualifies."""
    alike = [
        sample
        for sample in samples
        if sample.placement == where
        and similar_size(weights_bytes, sample.weights_bytes)
        and (sane(sample.resident_ratio) or sane(sample.allocated_ratio))
    ]
    if not alike:
        return None
    resident = [sample.resident_ratio for sample in alike if sample.resident_ratio and sane(sample.resident_ratio)]
    allocated = [sample.allocated_ratio for sample in alike if sample.allocated_ratio and sane(sample.allocated_ratio)]
    return MemoryCalibration(
        where,
        statistics.median(resident) if resident else None,
        statistics.median(allocated) if allocated else None,
        len(alike),
    )
