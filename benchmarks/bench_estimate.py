"""Accuracy of the memory estimate on this machine, at real model shapes: both of its figures.

For each model and context: load with the planned settings, run a 512-token prompt and 64 generated tokens, then
print the resident estimate against this process's RSS growth and the allocation estimate against the buffers
llama.cpp logs; the goal for each is ± 10 %. The matrix: the test model and three synthetic architectures (random
weights at real shapes: a Llama 3.2 1B-like, a Qwen2.5 0.5B-like, a Gemma 3 sliding-window model), each at three
contexts; then an untied Llama and flash attention off. Synthetic models are written to a temporary folder first.
--quick measures only the test model and the Llama 3.2 1B-like model at 4096 (for benchmarks/run's budget).
Usage: .venv/bin/python benchmarks/bench_estimate.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, TEST_MODEL, Findings, add_json_flag

sys.path.insert(0, str(REPO))

from edgellm.convert.tinymodel import GEMMA3_SMALL, LLAMA_1B, QWEN25_05B, Shape, write_model

TINYLLAMA_UNTIED = Shape("llama", 2048, 22, 5632, 32000, 32, 4, 64, tied=False, context_length=2048)
CONTEXTS = (2048, 8192, 32768)
LOW_GOAL, HIGH_GOAL = 0.9, 1.1
MIB = 2**20


def measure(model: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "measure_memory.py"), str(model), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def synthetic(folder: str, shape: Shape) -> Path:
    return write_model(Path(folder) / f"{shape.architecture}-{shape.n_layers}.gguf", shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the test model and the Llama 3.2 1B-like model at 4096 (default: the whole matrix)",
    )
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("estimate", "Memory estimate vs measured memory")
    findings.note(
        "resident estimate / RSS growth (pages touched) and allocation estimate / llama.cpp's logged buffers; "
        "512-token prompt, 64 generated tokens, planned settings at each context"
    )
    if options.quick:
        findings.note("--quick: only the test model and the Llama 3.2 1B-like model, at 4096")
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as tmp:
        llama = synthetic(tmp, LLAMA_1B)
        runs: list[tuple[str, Path, tuple[str, ...]]] = []
        if options.quick:
            runs = [("gemma-3-270m Q4_K_M (test model)", TEST_MODEL, ()), ("Llama 3.2 1B-like, tied", llama, ())]
        else:
            models = [
                ("gemma-3-270m Q4_K_M (test model)", TEST_MODEL),
                ("Llama 3.2 1B-like, tied", llama),
                ("Qwen2.5 0.5B-like, tied", synthetic(tmp, QWEN25_05B)),
                ("Gemma 3 sliding-window", synthetic(tmp, GEMMA3_SMALL)),
            ]
            runs = [(label, model, ("-c", str(n_ctx))) for label, model in models for n_ctx in CONTEXTS]
            runs.append(("TinyLlama 1.1B-like, untied", synthetic(tmp, TINYLLAMA_UNTIED), ()))
            runs.append(("gemma-3-270m, flash attention off", TEST_MODEL, ("-fa", "off", "-c", "8192")))
            runs.append(("Llama 3.2 1B-like, flash attention off", llama, ("-fa", "off", "-c", "8192")))
            runs.append(("Llama 3.2 1B-like, q8_0 KV cache", llama, ("--kv", "q8_0", "-c", "8192")))
        print(
            f"{'model':<40} {'n_ctx':>6} {'resident':>10} {'RSS grow':>10} {'res/RSS':>8} "
            f"{'allocated':>10} {'logged':>10} {'alloc/log':>9}"
        )
        resident_ratios: list[float] = []
        allocated_ratios: list[float] = []
        for label, model, extra in runs:
            result = measure(model, *extra)
            resident = result["resident"] / result["rss_growth"]
            allocated = result["estimate"] / result["logged"]
            resident_ratios.append(resident)
            allocated_ratios.append(allocated)
            print(
                f"{label:<40} {result['n_ctx']:>6} {result['resident'] / MIB:>8.1f}Mi "
                f"{result['rss_growth'] / MIB:>8.1f}Mi {resident:>8.3f} {result['estimate'] / MIB:>8.1f}Mi "
                f"{result['logged'] / MIB:>8.1f}Mi {allocated:>9.3f}",
                flush=True,
            )
            name = f"{label} at {result['n_ctx']}"
            findings.note(f"{name}: kv {result['kv']}, flash attention {result['flash_attn']}")
            rss_label, logged_label = f"{name}: RSS growth", f"{name}: logged buffers"
            findings.figure(f"{name}: resident estimate", result["resident"] / MIB, "MiB")
            findings.figure(rss_label, result["rss_growth"] / MIB, "MiB")
            findings.figure(f"{name}: allocation estimate", result["estimate"] / MIB, "MiB")
            findings.figure(logged_label, result["logged"] / MIB, "MiB")
            findings.figure(f"{name}: resident/RSS", resident, "ratio", anchor=rss_label)
            findings.figure(f"{name}: allocated/logged", allocated, "ratio", anchor=logged_label)
        print(
            f"resident/RSS {min(resident_ratios):.3f}..{max(resident_ratios):.3f}, "
            f"allocated/logged {min(allocated_ratios):.3f}..{max(allocated_ratios):.3f} "
            f"(goal {LOW_GOAL}..{HIGH_GOAL} each)"
        )
    findings.goal(f"lowest resident estimate / RSS growth ≥ {LOW_GOAL}", min(resident_ratios), ">=", LOW_GOAL)
    findings.goal(f"highest resident estimate / RSS growth ≤ {HIGH_GOAL}", max(resident_ratios), "<=", HIGH_GOAL)
    findings.goal(f"lowest allocation estimate / logged ≥ {LOW_GOAL}", min(allocated_ratios), ">=", LOW_GOAL)
    findings.goal(f"highest allocation estimate / logged ≤ {HIGH_GOAL}", max(allocated_ratios), "<=", HIGH_GOAL)
    findings.save(options.json)


if __name__ == "__main__":
    main()
