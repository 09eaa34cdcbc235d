"""Load a model with the settings edgellm plans for this machine, run a 512-token prompt and 64 generated
tokens, and print one JSON line: the estimate against the two references that bracket the truth on a CPU.

- rss_growth: growth of this process's resident memory (pages actually touched; a lower bound);
- logged: the sum of the buffers llama.cpp logs (what it allocated; an upper bound: compute buffers are
  not touched in full).

Usage: python benchmarks/measure_memory.py MODEL [-c N] [--kv f16|q8_0] [-fa on|off]
Used by benchmarks/bench_estimate.py and tests/integration/test_estimate_accuracy.py, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

from edgellm.hw.detect import detect_this_machine

BUFFER_RE = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("-c", type=int, default=None)
    parser.add_argument("--kv", default=None)
    parser.add_argument("-fa", default="auto")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=64)
    options = parser.parse_args()
    os.environ.setdefault("EDGELLM_HOME", tempfile.mkdtemp(prefix="edgellm-measure-"))

    import llama_cpp  # noqa: F401  (imported before the first RSS reading, as it is not part of the model)
    import psutil

    from edgellm import paths
    from edgellm.engine.contract import LoadParams
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.local import load
    from edgellm.plan.planner import Wishes, plan
    from edgellm.storage.specs import load_spec

    profile = detect_this_machine()
    spec = load_spec(Path(options.model))
    chosen = plan(profile, spec, Wishes(ctx=options.c, kv=options.kv, flash_attn=options.fa))
    process = psutil.Process()
    before = process.memory_info().rss
    log = LlamaLog(paths.log_path(), echo=False)
    loaded = load(
        LoadParams(
            Path(options.model),
            chosen.n_ctx,
            chosen.n_threads,
            chosen.n_threads_batch,
            chosen.n_gpu_layers,
            chosen.flash_attn,
            chosen.kv,
            seed=0,
            n_batch=chosen.n_ubatch,
        ),
        log,
    )
    llm = loaded.llm
    prompt = [llm.token_bos()] + [(index * 7919) % 5000 + 300 for index in range(options.prompt_tokens - 1)]
    for count, _ in enumerate(llm.generate(prompt, temp=0.0), start=1):
        if count >= options.gen_tokens:
            break
    after = process.memory_info().rss
    log.flush()
    buffers = {}
    for match in BUFFER_RE.finditer(paths.log_path().read_text()):
        key = f"{match.group(1)} {match.group(2)}"
        buffers[key] = buffers.get(key, 0) + float(match.group(3)) * 2**20
    print(
        json.dumps(
            {
                "model": Path(options.model).name,
                "n_ctx": chosen.n_ctx,
                "kv": chosen.kv,
                "flash_attn": chosen.flash_attn,
                "estimate": chosen.estimate.total,
                "rss_growth": after - before,
                "logged": sum(buffers.values()),
                "buffers": buffers,
            }
        )
    )


if __name__ == "__main__":
    main()
