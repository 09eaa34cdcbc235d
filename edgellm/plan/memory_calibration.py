"""Measured ÷ estimated memory on one device, from `edgellm bench` runs of similar models: the planner's estimate
corrected by what this device showed. Pure functions; bench/results.py reads the records and passes the samples."""

from __future__ import annotations

from dataclasses import dataclass


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
