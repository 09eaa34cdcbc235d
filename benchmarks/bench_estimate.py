"""Accuracy of the memory estimate on this machine, at real model shapes.

For each model: load with the planned settings, run a 512-token prompt and 64 generated tokens, then print
estimate / RSS growth (goal ≥ 0.9) and estimate / llama.cpp's logged buffers (goal ≤ 1.1).
Synthetic models (random weights at real shapes) are written to a temporary folder first.
Usage: .venv/bin/python benchmarks/bench_estimate.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, TEST_MODEL

sys.path.insert(0, str(REPO))

from edgellm.tinymodel import GEMMA3_SMALL, LLAMA_1B, QWEN25_05B, Shape, write_model  # noqa: E402

TINYLLAMA_UNTIED = Shape("llama", 2048, 22, 5632, 32000, 32, 4, 64, tied=False, context_length=2048)


def measure(model: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "measure_memory.py"), str(model), *extra],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as tmp:
        models = [("gemma-3-270m Q4_K_M (the test model)", TEST_MODEL, ())]
        for label, shape in (("Llama 3.2 1B-like, tied, Q8_0", LLAMA_1B), ("Qwen2.5 0.5B-like, tied, Q8_0", QWEN25_05B),
                             ("Gemma 3 sliding-window, Q8_0", GEMMA3_SMALL),
                             ("TinyLlama 1.1B-like, untied, Q8_0", TINYLLAMA_UNTIED)):
            models.append((label, write_model(Path(tmp) / f"{shape.architecture}-{shape.n_layers}.gguf", shape), ()))
        models.append(("gemma-3-270m, flash attention off, -c 8192", TEST_MODEL, ("-fa", "off", "-c", "8192")))
        models.append(("Llama 3.2 1B-like, flash attention off, -c 8192", models[1][1], ("-fa", "off", "-c", "8192")))
        models.append(("Llama 3.2 1B-like, q8_0 KV cache", models[1][1], ("--kv", "q8_0")))
        print(f"{'model':<48} {'n_ctx':>6} {'estimate':>10} {'RSS grow':>10} {'logged':>10} {'est/RSS':>8} "
              f"{'est/logged':>10}")
        worst_low, worst_high = float("inf"), 0.0
        for label, model, extra in models:
            result = measure(model, *extra)
            low, high = result["estimate"] / result["rss_growth"], result["estimate"] / result["logged"]
            worst_low, worst_high = min(worst_low, low), max(worst_high, high)
            mib = 2**20
            print(f"{label:<48} {result['n_ctx']:>6} {result['estimate'] / mib:>8.1f}Mi {result['rss_growth'] / mib:>8.1f}Mi "
                  f"{result['logged'] / mib:>8.1f}Mi {low:>8.3f} {high:>10.3f}")
        print(f"worst est/RSS {worst_low:.3f} (goal >= 0.9), worst est/logged {worst_high:.3f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
