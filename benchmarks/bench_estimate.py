"""Accuracy of the memory estimate on this machine, at real model shapes.

For each model: load with the planned settings, run a 512-token prompt and 64 generated tokens, then print
estimate / RSS growth (goal ≥ 0.9) and estimate / llama.cpp's logged buffers (goal ≤ 1.1).
Synthetic models (random weights at real shapes) are written to a temporary folder first.
--quick measures only the test model and the Llama 3.2 1B-like model (for benchmarks/run's budget).
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
LOW_GOAL, HIGH_GOAL = 0.9, 1.1


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
        "--quick", action="store_true", help="only the test model and the Llama 3.2 1B-like model (default: all models)"
    )
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("estimate", "Memory estimate vs measured memory")
    findings.note(
        "estimate / RSS growth is against a lower bound (pages touched), estimate / logged against an "
        "upper bound (llama.cpp's buffers); 512-token prompt, 64 generated tokens, planned settings"
    )
    if options.quick:
        findings.note("--quick: only the test model and the Llama 3.2 1B-like model")
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as tmp:
        llama = synthetic(tmp, LLAMA_1B)
        models = [
            ("gemma-3-270m Q4_K_M (the test model)", TEST_MODEL, ()),
            ("Llama 3.2 1B-like, tied, Q8_0", llama, ()),
        ]
        if not options.quick:
            for label, shape in (
                ("Qwen2.5 0.5B-like, tied, Q8_0", QWEN25_05B),
                ("Gemma 3 sliding-window, Q8_0", GEMMA3_SMALL),
                ("TinyLlama 1.1B-like, untied, Q8_0", TINYLLAMA_UNTIED),
            ):
                models.append((label, synthetic(tmp, shape), ()))
            models.append(("gemma-3-270m, flash attention off, -c 8192", TEST_MODEL, ("-fa", "off", "-c", "8192")))
            models.append(("Llama 3.2 1B-like, flash attention off, -c 8192", llama, ("-fa", "off", "-c", "8192")))
            models.append(("Llama 3.2 1B-like, q8_0 KV cache", llama, ("--kv", "q8_0")))
        print(
            f"{'model':<48} {'n_ctx':>6} {'estimate':>10} {'RSS grow':>10} {'logged':>10} {'est/RSS':>8} "
            f"{'est/logged':>10}"
        )
        worst_low, worst_high = float("inf"), 0.0
        for label, model, extra in models:
            result = measure(model, *extra)
            low, high = result["estimate"] / result["rss_growth"], result["estimate"] / result["logged"]
            worst_low, worst_high = min(worst_low, low), max(worst_high, high)
            mib = 2**20
            print(
                f"{label:<48} {result['n_ctx']:>6} {result['estimate'] / mib:>8.1f}Mi "
                f"{result['rss_growth'] / mib:>8.1f}Mi "
                f"{result['logged'] / mib:>8.1f}Mi {low:>8.3f} {high:>10.3f}"
            )
            rss_label, logged_label = f"{label}: RSS growth", f"{label}: logged buffers"
            findings.note(
                f"{label}: n_ctx {result['n_ctx']}, kv {result['kv']}, flash attention {result['flash_attn']}"
            )
            findings.figure(f"{label}: estimate", result["estimate"] / mib, "MiB")
            findings.figure(rss_label, result["rss_growth"] / mib, "MiB")
            findings.figure(logged_label, result["logged"] / mib, "MiB")
            findings.figure(f"{label}: est/RSS", low, "ratio", anchor=rss_label)
            findings.figure(f"{label}: est/logged", high, "ratio", anchor=logged_label)
        print(
            f"worst est/RSS {worst_low:.3f} (goal >= {LOW_GOAL}), worst est/logged {worst_high:.3f} "
            f"(goal <= {HIGH_GOAL})"
        )
    findings.goal(f"worst estimate / RSS growth ≥ {LOW_GOAL}", worst_low, ">=", LOW_GOAL)
    findings.goal(f"worst estimate / logged buffers ≤ {HIGH_GOAL}", worst_high, "<=", HIGH_GOAL)
    findings.save(options.json)


if __name__ == "__main__":
    main()
