"""Chat performance through the real REPL (piped), timings read back from the history database.

1. A 10-turn conversation: TTFT of turn 10 / TTFT of turn 1 (goal ≤ 1.5: the KV cache is reused).
2. Decode tokens/s in the REPL against raw llama-cpp-python streaming, same model and threads
   (goal ≥ 0.97), alternating rounds in fresh processes.
Usage: .venv/bin/python benchmarks/bench_chat.py [--rounds 5] [--threads 2] [--reply-tokens 48] [--tokens 256]
       [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import TEST_MODEL, Findings, add_json_flag, median, spread
from bench_decode import raw_rate

QUESTIONS = [
    "Tell me about the sea.",
    "And the mountains?",
    "What about rivers?",
    "Name a lake.",
    "And a desert?",
    "What is a forest?",
    "Describe a city.",
    "And a village?",
    "What is an island?",
    "Summarise all this.",
]


def chat(lines: list[str], *flags: str) -> list[dict]:
    """Run the REPL over piped lines in a fresh EDGELLM_HOME; return each reply's saved timings."""
    import json

    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        subprocess.run(
            [sys.executable, "-m", "edgellm", "chat", "-m", str(TEST_MODEL), "--temp", "0", *flags],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "EDGELLM_HOME": home},
        )
        with sqlite3.connect(Path(home) / "history.db") as db:
            rows = db.execute("SELECT timings FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()
    return [json.loads(row[0]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reply-tokens", type=int, default=48, help="tokens a reply in part 1's conversation")
    parser.add_argument("--tokens", type=int, default=256, help="tokens decoded in part 2 (REPL against raw)")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("chat", "Chat through the REPL: KV cache reuse over 10 turns; decode vs raw llama-cpp-python")
    ratios, first_ttft, tenth_ttft = [], [], []
    for _ in range(options.rounds):
        timings = chat(QUESTIONS, "-n", str(options.reply_tokens), "--ignore-eos", "-t", str(options.threads))
        ratios.append(timings[9]["ttft_ms"] / timings[0]["ttft_ms"])
        first_ttft.append(timings[0]["ttft_ms"])
        tenth_ttft.append(timings[9]["ttft_ms"])
    last = timings
    print(f"10-turn conversation, {options.reply_tokens} tokens a reply, {options.rounds} rounds")
    print(
        f"  turn 1:  prompt {last[0]['prompt_tokens']} tokens, {last[0]['prompt_evaluated']} evaluated, "
        f"TTFT {last[0]['ttft_ms']:.0f} ms"
    )
    print(
        f"  turn 10: prompt {last[9]['prompt_tokens']} tokens, {last[9]['prompt_evaluated']} evaluated, "
        f"TTFT {last[9]['ttft_ms']:.0f} ms"
    )
    print(f"  TTFT turn 10 / turn 1: {spread(ratios)}  (goal <= 1.5)")
    findings.figure("TTFT, turn 1", median(first_ttft), "ms")
    findings.figure("TTFT, turn 10", median(tenth_ttft), "ms")
    findings.figure("turn 10: prompt tokens (whole conversation)", last[9]["prompt_tokens"], "tokens")
    findings.figure(
        "turn 10: prompt tokens evaluated (the rest from the KV cache)", last[9]["prompt_evaluated"], "tokens"
    )
    findings.figure("TTFT turn 10 / turn 1", median(ratios), "ratio", anchor="TTFT, turn 1")
    findings.goal("TTFT turn 10 / turn 1 ≤ 1.5 (KV cache reused)", median(ratios), "<=", 1.5)
    repl, raw = [], []
    for _ in range(options.rounds):
        raw.append(raw_rate(options.threads, options.tokens, True))
        repl.append(
            chat(
                ["Write a long story about the sea."],
                "-n",
                str(options.tokens),
                "--ignore-eos",
                "-t",
                str(options.threads),
                "-c",
                "4096",
            )[0]["tokens_per_s"]
        )
    print(f"decode, {options.tokens} tokens, {options.threads} threads, {options.rounds} rounds")
    print(f"  raw llama-cpp-python t/s: {spread(raw)}")
    print(f"  edgellm chat REPL    t/s: {spread(repl)}")
    print(f"  ratio REPL/raw (medians): {median(repl) / median(raw):.3f}  (goal >= 0.97)")
    raw_label = f"decode, raw llama-cpp-python ({options.tokens} tokens, {options.threads} threads)"
    findings.figure(raw_label, median(raw), "tokens/s")
    findings.figure(
        f"decode, edgellm chat REPL ({options.tokens} tokens, {options.threads} threads)", median(repl), "tokens/s"
    )
    findings.figure("decode REPL / raw", median(repl) / median(raw), "ratio", anchor=raw_label)
    findings.goal("REPL decode / raw llama-cpp-python ≥ 0.97", median(repl) / median(raw), ">=", 0.97)
    findings.note(
        f"medians of {options.rounds} round(s); 10-turn conversation with {options.reply_tokens} tokens "
        f"a reply, {options.threads} threads, the TTFT ratio the median of the rounds' ratios; decode: raw "
        f"and REPL alternate, in fresh processes"
    )
    findings.save(options.json)


if __name__ == "__main__":
    main()
