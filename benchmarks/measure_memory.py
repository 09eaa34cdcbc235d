"""Load a model with the settings edgellm plans for this machine, run a 512-token prompt and 64 generated
tokens, and print one JSON line: the plan's two estimates against what each predicts.

- resident (the plan's resident estimate) against rss_growth: the growth of this process's resident memory (pages
  touched: the mapped file, the buffers written);
- estimate (the plan's allocation estimate) against logged: the sum of the buffers llama.cpp logs (what it
  allocated; its compute buffer is address space until written).

With --parallel N the model is loaded with the batched engine (N sequences in one KV pool, beside the model's
token-sized own context) and N sequences generate together.

Usage: python benchmarks/measure_memory.py MODEL [-c N] [--kv f16|q8_0] [-fa on|off] [--parallel N] [--ubatch N]
Used by benchmarks/bench_estimate.py and tests/integration/test_estimate_accuracy.py, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from dataclasses import replace
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
    parser.add_argument("--parallel", type=int, default=0)
    parser.add_argument("--ubatch", type=int, default=None, help="the micro-batch (a draft model's plan: 64)")
    options = parser.parse_args()
    os.environ.setdefault("EDGELLM_HOME", tempfile.mkdtemp(prefix="edgellm-measure-"))

    import llama_cpp  # noqa: F401  (imported before the first RSS reading, as it is not part of the model)
    import psutil

    from edgellm import paths
    from edgellm.engine.contract import LoadParams
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.local import load
    from edgellm.plan.estimate import estimate
    from edgellm.plan.planner import Wishes, plan, plan_inputs
    from edgellm.storage.specs import load_spec

    profile = detect_this_machine()
    spec = load_spec(Path(options.model))
    chosen = plan(
        profile,
        spec,
        Wishes(ctx=options.c, kv=options.kv, flash_attn=options.fa, parallel=options.parallel, n_ubatch=options.ubatch),
    )
    # the resident estimate for this run: its KV cells in use are the prompt and the generated tokens
    filled = options.prompt_tokens + options.gen_tokens
    run_estimate = estimate(spec, replace(plan_inputs(profile, chosen), filled=filled))
    process = psutil.Process()
    before = process.memory_info().rss
    log = LlamaLog(paths.log_path(), echo=False)
    params = LoadParams(
        Path(options.model),
        chosen.n_ctx,
        chosen.n_threads,
        chosen.n_threads_batch,
        chosen.n_gpu_layers,
        chosen.flash_attn,
        chosen.kv,
        seed=0,
        n_batch=chosen.n_ubatch,
        parallel=chosen.parallel,
    )
    if chosen.parallel:
        generate_together(params, log, options.parallel, options.prompt_tokens, options.gen_tokens)
    else:
        loaded = load(params, log)
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
                "resident": run_estimate.resident,
                "resident_full_context": chosen.estimate.resident,
                "repacked": sum(device.repacked for device in chosen.estimate.devices),
                "estimate_rows": {
                    key: [getattr(device, key), device.resident_part(key)]
                    for device in run_estimate.devices
                    for key in ("weights", "kv_cache", "compute", "overhead")
                },
                "rss_growth": after - before,
                "logged": sum(buffers.values()),
                "buffers": buffers,
            }
        )
    )


def generate_together(params, log, count: int, prompt_tokens: int, gen_tokens: int) -> None:  # type: ignore[no-untyped-def]
    """`count` sequences on the batched engine at once, each a prompt of `prompt_tokens` and `gen_tokens` more."""
    import threading

    from edgellm.engine.batched import open_batched
    from edgellm.engine.contract import GenerationOptions, Sampling

    model = open_batched(params, log)
    options = GenerationOptions(Sampling(temp=0.0), max_tokens=gen_tokens, ignore_eos=True, cache_prompt=False)
    bos = model.token_bos

    def one(seed: int) -> None:
        prompt = [bos] + [(index * 7919 + seed) % 5000 + 300 for index in range(prompt_tokens - 1)]
        for _ in model.generation(prompt, options):
            pass

    readers = [threading.Thread(target=one, args=(seed,)) for seed in range(count)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()


if __name__ == "__main__":
    main()
