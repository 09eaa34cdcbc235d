"""Start-up of `edgellm --help`, `edgellm hw` and `edgellm hw --json`; the header check and the model spec.

Goals: --help and hw under 0.3 s; header check and model spec of the test model under 50 ms. The anchors measured in the same
run: a bare `python -c pass` for start-up, gguf's GGUFReader for the header.
Usage: .venv/bin/python benchmarks/bench_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import TEST_MODEL, median, spread


def wall(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    python = wall([sys.executable, "-c", "pass"], options.runs)
    print(f"anchor python -c pass        s: {spread(python)}")
    for args in (["--help"], ["hw"], ["hw", "--json"]):
        times = wall([sys.executable, "-m", "edgellm", *args], options.runs)
        verdict = "ok" if median(times) < 0.3 else "OVER 0.3 s"
        print(f"edgellm {' '.join(args):<20} s: {spread(times)}  ({median(times) / median(python):.1f}x python; "
              f"goal < 0.3 s: {verdict})")

    from edgellm.gguf_header import read_header

    ours = []
    for _ in range(options.runs):
        started = time.perf_counter()
        read_header(TEST_MODEL)
        ours.append((time.perf_counter() - started) * 1000)
    from edgellm.plan.spec import load_spec

    specs = []
    for _ in range(options.runs):
        started = time.perf_counter()
        load_spec(TEST_MODEL)  # no cache: header read and spec built every time
        specs.append((time.perf_counter() - started) * 1000)
    verdict = "ok" if median(specs) < 50 else "OVER 50 ms"
    print(f"model spec, uncached           ms: {spread(specs)}  (goal < 50 ms: {verdict})")
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        load_spec(TEST_MODEL, Path(cache))
        cached = []
        for _ in range(options.runs):
            started = time.perf_counter()
            load_spec(TEST_MODEL, Path(cache))
            cached.append((time.perf_counter() - started) * 1000)
    print(f"model spec, cached             ms: {spread(cached)}")
    from gguf import GGUFReader

    started = time.perf_counter()
    GGUFReader(str(TEST_MODEL))
    reader_ms = (time.perf_counter() - started) * 1000
    verdict = "ok" if median(ours) < 50 else "OVER 50 ms"
    print(f"header check of the test model ms: {spread(ours)}  (goal < 50 ms: {verdict})")
    print(f"anchor gguf GGUFReader        ms: {reader_ms:.0f}  (ratio ours/GGUFReader {median(ours) / reader_ms:.4f})")


if __name__ == "__main__":
    main()
