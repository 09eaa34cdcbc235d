"""Helpers for the benchmarks: the test model's path and robust summaries of repeated measurements."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEST_MODEL = Path(os.environ.get("EDGELLM_TEST_MODEL", REPO / ".venv" / "models" / "gemma-3-270m-Q4_K_M.gguf"))


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f} / median {statistics.median(values):.2f} / max {max(values):.2f}"
