"""Decode speed of `edgellm run` against raw llama-cpp-python streaming, same model, threads and settings.

Goal (issue 2): edgellm ≥ 0.98 × raw. Both run as fresh processes, alternating, several rounds;
the ratio of medians is printed. Usage: .venv/bin/python benchmarks/bench_decode.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import REPO, TEST_MODEL, median, spread


def edgellm_rate(threads: int, n_tokens: int, flash_attn: bool) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "edgellm", "run", "-m", str(TEST_MODEL), "-p", "The capital of France is",
         "-n", str(n_tokens), "--temp", "0", "--ignore-eos", "-t", str(threads), "-c", "4096",
         "-fa", "on" if flash_attn else "off", "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_s"]


def raw_rate(threads: int, n_tokens: int, flash_attn: bool) -> float:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "raw_stream.py"), str(TEST_MODEL),
                           str(threads), str(n_tokens), "on" if flash_attn else "off"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["tokens_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    options = parser.parse_args()
    for flash_attn in (True, False):
        raw, ours = [], []
        for _ in range(options.rounds):
            raw.append(raw_rate(options.threads, options.tokens, flash_attn))
            ours.append(edgellm_rate(options.threads, options.tokens, flash_attn))
        label = "flash attention on (edgellm's default)" if flash_attn else "flash attention off"
        print(f"{label}: {options.tokens} tokens, {options.threads} threads, {options.rounds} rounds")
        print(f"  raw llama-cpp-python  t/s: {spread(raw)}")
        print(f"  edgellm run           t/s: {spread(ours)}")
        print(f"  ratio edgellm/raw (medians): {median(ours) / median(raw):.3f}  (goal >= 0.98)")


if __name__ == "__main__":
    main()
