"""Decode speed of `edgellm run` against raw llama-cpp-python streaming and llama.cpp's own llama-bench.

Goal (issue 2): edgellm ≥ 0.98 × raw, with flash attention on (edgellm's default); flash attention off is measured
as a figure. All three run as fresh processes, interleaved (raw, edgellm, llama-bench), several rounds; the ratios
of medians are printed. llama-bench (same llama.cpp source and CMake flags as the wheel, `benchmarks/llama_bench.py`)
is used only when already built; it decodes at depth 0 after its own warm-up run.
Usage: .venv/bin/python benchmarks/bench_decode.py [--rounds 5] [--threads 2] [--tokens 256]
           [--flash-attn on|off|both] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, spread

GOAL = 0.98


def edgellm_rate(threads: int, n_tokens: int, flash_attn: bool) -> float:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgellm",
            "run",
            "-m",
            str(TEST_MODEL),
            "-p",
            "The capital of France is",
            "-n",
            str(n_tokens),
            "--temp",
            "0",
            "--ignore-eos",
            "-t",
            str(threads),
            "-c",
            "4096",
            "-fa",
            "on" if flash_attn else "off",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_s"]


def raw_rate(threads: int, n_tokens: int, flash_attn: bool) -> float:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "raw_stream.py"),
            str(TEST_MODEL),
            str(threads),
            str(n_tokens),
            "on" if flash_attn else "off",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)["tokens_per_s"]


def llama_bench_rate(binary: Path, threads: int, n_tokens: int, flash_attn: bool) -> float:
    done = subprocess.run(
        [
            str(binary),
            "-m",
            str(TEST_MODEL),
            "-p",
            "0",
            "-n",
            str(n_tokens),
            "-r",
            "1",
            "-t",
            str(threads),
            "-fa",
            "1" if flash_attn else "0",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    tests = json.loads(done.stdout)
    return median([test["avg_ts"] for test in tests])


def find_llama_bench(findings: Findings) -> Path | None:
    """The cached llama-bench, or None (with a note saying why)."""
    try:
        from llama_bench import llama_bench_path

        binary = llama_bench_path(build=False)
    except (Exception, SystemExit) as error:  # no build info for the installed wheel, or the source can't be read
        findings.note(f"llama-bench skipped: {error}")
        print(f"llama-bench skipped: {error}")
        return None
    if binary is None:
        findings.note("llama-bench not built: run .venv/bin/python benchmarks/llama_bench.py")
        print("llama-bench not built: run .venv/bin/python benchmarks/llama_bench.py")
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument(
        "--flash-attn",
        choices=("on", "off", "both"),
        default="both",
        help="which flash-attention settings to measure (default both)",
    )
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("decode", "Decode speed: edgellm run vs raw llama-cpp-python and llama-bench")
    findings.note(
        f"{TEST_MODEL.name}, {options.tokens} tokens, {options.threads} threads, "
        f"{options.rounds} rounds, fresh processes interleaved"
    )
    bench = find_llama_bench(findings)
    settings = {"on": (True,), "off": (False,), "both": (True, False)}[options.flash_attn]
    for flash_attn in settings:
        fa = "fa on" if flash_attn else "fa off"
        raw, ours, theirs = [], [], []
        for _ in range(options.rounds):
            raw.append(raw_rate(options.threads, options.tokens, flash_attn))
            ours.append(edgellm_rate(options.threads, options.tokens, flash_attn))
            if bench is not None:
                try:
                    theirs.append(llama_bench_rate(bench, options.threads, options.tokens, flash_attn))
                except (subprocess.CalledProcessError, ValueError, KeyError) as error:
                    findings.note(f"llama-bench failed ({fa}): {error}")
                    print(f"llama-bench failed: {error}")
                    bench, theirs = None, []
        label = "flash attention on (edgellm's default)" if flash_attn else "flash attention off"
        print(f"{label}: {options.tokens} tokens, {options.threads} threads, {options.rounds} rounds")
        print(f"  raw llama-cpp-python  t/s: {spread(raw)}")
        print(f"  edgellm run           t/s: {spread(ours)}")
        if theirs:
            print(f"  llama-bench           t/s: {spread(theirs)}")
        ratio = median(ours) / median(raw)
        print(f"  ratio edgellm/raw (medians): {ratio:.3f}  (goal >= {GOAL})")
        raw_label, bench_label = f"raw llama-cpp-python decode, {fa}", f"llama-bench decode, {fa}"
        findings.figure(raw_label, median(raw), "tokens/s")
        findings.figure(f"edgellm run decode, {fa}", median(ours), "tokens/s")
        if theirs:
            findings.figure(bench_label, median(theirs), "tokens/s")
        findings.figure(f"edgellm run / raw, {fa}", ratio, "ratio", anchor=raw_label)
        if theirs:
            versus_bench = median(ours) / median(theirs)
            print(f"  ratio edgellm/llama-bench (medians): {versus_bench:.3f}")
            findings.figure(f"edgellm run / llama-bench, {fa}", versus_bench, "ratio", anchor=bench_label)
        if flash_attn:
            findings.goal(f"edgellm run / raw decode, fa on ≥ {GOAL}", ratio, ">=", GOAL)
    if True not in settings:
        findings.note("goal not checked: flash attention on (edgellm's default) was not measured")
    findings.save(options.json)


if __name__ == "__main__":
    main()
