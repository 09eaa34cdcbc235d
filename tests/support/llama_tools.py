"""llama.cpp's own tools, built from the same source and CMake flags as the installed wheel (benchmarks/llama_bench.py
builds and caches them under ~/.cache/edgellm/llama-bench): the anchors tests compare edgellm with."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def llama_tool(name: str) -> Path:
    """The cached tool `name` (e.g. llama-mtmd-cli), built once when missing (minutes on two cores)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    from llama_bench import llama_tool_path

    found = llama_tool_path(name)
    assert found is not None
    return found
