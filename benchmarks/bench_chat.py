"""Chat performance through the real REPL (piped), timings read back from the history database.

1. A 10-turn conversation: TTFT of turn 10 / TTFT of turn 1 (goal ≤ 1.5: the KV cache is reused).
2. Decode tokens/s in the REPL against raw llama-cpp-python streaming, same model and threads
   (goal ≥ 0.97), alternating rounds in fresh processes.
Usage: .venv/bin/python benchmarks/bench_chat.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import TEST_MODEL, median, spread
from bench_decode import raw_rate

QUESTIONS = ["Tell me about the sea.", "And the mountains?", "What about rivers?", "Name a lake.", "And a desert?",
             "What is a forest?", "Describe a city.", "And a village?", "What is an island?", "Summarise all this."]


def chat(lines: list[str], *flags: str) -> list[dict]:
    """Run the REPL over piped lines in a fresh EDGELLM_HOME; return each reply's saved timings."""
    import json

    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        subprocess.run([sys.executable, "-m", "edgellm", "chat", "-m", str(TEST_MODEL), "--temp", "0", *flags],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, check=True,
                       env={**os.environ, "EDGELLM_HOME": home})
        with sqlite3.connect(Path(home) / "history.db") as db:
            rows = db.execute("SELECT timings FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()
    return [json.loads(row[0]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    ratios = []
    for _ in range(options.rounds):
        timings = chat(QUESTIONS, "-n", "48", "--ignore-eos", "-t", str(options.threads))
        ratios.append(timings[9]["ttft_ms"] / timings[0]["ttft_ms"])
    last = timings
    print(f"10-turn conversation, 48 tokens a reply, {options.rounds} rounds")
    print(f"  turn 1:  prompt {last[0]['prompt_tokens']} tokens, {last[0]['prompt_evaluated']} evaluated, "
          f"TTFT {last[0]['ttft_ms']:.0f} ms")
    print(f"  turn 10: prompt {last[9]['prompt_tokens']} tokens, {last[9]['prompt_evaluated']} evaluated, "
          f"TTFT {last[9]['ttft_ms']:.0f} ms")
    print(f"  TTFT turn 10 / turn 1: {spread(ratios)}  (goal <= 1.5)")
    repl, raw = [], []
    for _ in range(options.rounds):
        raw.append(raw_rate(options.threads, 256, True))
        repl.append(chat(["Write a long story about the sea."], "-n", "256", "--ignore-eos",
                         "-t", str(options.threads), "-c", "4096")[0]["tokens_per_s"])
    print(f"decode, 256 tokens, {options.threads} threads, {options.rounds} rounds")
    print(f"  raw llama-cpp-python t/s: {spread(raw)}")
    print(f"  edgellm chat REPL    t/s: {spread(repl)}")
    print(f"  ratio REPL/raw (medians): {median(repl) / median(raw):.3f}  (goal >= 0.97)")


if __name__ == "__main__":
    main()
