"""Start-up of `edgellm --help`, `edgellm hw` and `edgellm hw --json`; the header check and the model spec.

Goals: --help and hw under 0.3 s; header check and model spec of the test model under 50 ms. The anchors measured
in the same
run: a bare `python -c pass` for start-up, gguf's GGUFReader for the header.
Usage: .venv/bin/python benchmarks/bench_startup.py [--runs 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import TEST_MODEL, Findings, add_json_flag, median, spread

START_GOAL_S = 0.3
HEADER_GOAL_MS = 50


def wall(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


def timed_ms(call, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("startup", "Start-up time and the model header check")
    findings.note(f"{options.runs} runs each, fresh processes; header and spec of {TEST_MODEL.name}")
    python = wall([sys.executable, "-c", "pass"], options.runs)
    print(f"anchor python -c pass        s: {spread(python)}")
    python_label = "python -c pass (anchor)"
    findings.figure(python_label, median(python), "s")
    for args in (["--help"], ["hw"], ["hw", "--json"]):
        times = wall([sys.executable, "-m", "edgellm", *args], options.runs)
        verdict = "ok" if median(times) < START_GOAL_S else f"OVER {START_GOAL_S} s"
        print(
            f"edgellm {' '.join(args):<20} s: {spread(times)}  ({median(times) / median(python):.1f}x python; "
            f"goal < {START_GOAL_S} s: {verdict})"
        )
        command = f"edgellm {' '.join(args)}"
        findings.figure(command, median(times), "s")
        findings.figure(f"{command} / python -c pass", median(times) / median(python), "ratio", anchor=python_label)
        findings.goal(f"{command} < {START_GOAL_S} s", median(times), "<=", START_GOAL_S)

    from edgellm.gguf.header import read_header

    ours = timed_ms(lambda: read_header(TEST_MODEL), options.runs)
    from edgellm.storage.specs import load_spec

    specs = timed_ms(lambda: load_spec(TEST_MODEL), options.runs)  # no cache: header read and spec built every time
    verdict = "ok" if median(specs) < HEADER_GOAL_MS else f"OVER {HEADER_GOAL_MS} ms"
    print(f"model spec, uncached           ms: {spread(specs)}  (goal < {HEADER_GOAL_MS} ms: {verdict})")
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        load_spec(TEST_MODEL, Path(cache))
        cached = timed_ms(lambda: load_spec(TEST_MODEL, Path(cache)), options.runs)
    print(f"model spec, cached             ms: {spread(cached)}")
    from gguf import GGUFReader

    reader_ms = timed_ms(lambda: GGUFReader(str(TEST_MODEL)), 1)[0]  # once: it reads every tensor's info (seconds)
    verdict = "ok" if median(ours) < HEADER_GOAL_MS else f"OVER {HEADER_GOAL_MS} ms"
    print(f"header check of the test model ms: {spread(ours)}  (goal < {HEADER_GOAL_MS} ms: {verdict})")
    print(f"anchor gguf GGUFReader        ms: {reader_ms:.0f}  (ratio ours/GGUFReader {median(ours) / reader_ms:.4f})")

    reader_label = "gguf GGUFReader (anchor)"
    findings.figure("header check", median(ours), "ms")
    findings.figure("model spec, uncached", median(specs), "ms")
    findings.figure("model spec, cached", median(cached), "ms")
    findings.figure(reader_label, reader_ms, "ms")
    findings.figure("header check / GGUFReader", median(ours) / reader_ms, "ratio", anchor=reader_label)
    findings.goal(f"header check < {HEADER_GOAL_MS} ms", median(ours), "<=", HEADER_GOAL_MS)
    findings.goal(f"model spec, uncached < {HEADER_GOAL_MS} ms", median(specs), "<=", HEADER_GOAL_MS)
    findings.save(options.json)


if __name__ == "__main__":
    main()
