"""The anchor: raw llama-cpp-python streaming (create_completion, stream=True), timed as edgellm times decode.

Prints one JSON line: decode tokens/s over the tokens after the first, as `edgellm run --json` reports it.
"""

from __future__ import annotations

import json
import sys
import time

import llama_cpp


def main(model: str, threads: int, n_tokens: int, flash_attn: bool) -> None:
    llm = llama_cpp.Llama(
        model, n_ctx=4096, n_threads=threads, n_threads_batch=threads, flash_attn=flash_attn, verbose=False
    )
    first = last = None
    count = 0
    stream = llm.create_completion("The capital of France is", max_tokens=n_tokens, temperature=0.0, stream=True)
    for _ in stream:
        last = time.perf_counter()
        first = first or last
        count += 1
    print(json.dumps({"completion_tokens": count, "tokens_per_s": (count - 1) / (last - first)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "on")
