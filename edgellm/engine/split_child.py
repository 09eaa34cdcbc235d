"""The child process that runs a model split across RPC workers: it joins the workers (which cannot be undone in a
process), loads the model with the planned split, generates, and reports on stdout one JSON line per event.

Run by `edgellm.split_run`, which writes on its stdin a JSON job: the model, the load settings, the workers, the split,
the prompt and the generation options. Lines out: {"loaded": ms}, {"text": piece}..., {"stats": {...}}, or
{"error": message}. When a worker goes away mid-run, ggml aborts this process (exit 134): the parent, which holds
what was already shown, tells which worker it was.
"""

from __future__ import annotations

import json
import sys
import time


def say(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(job: dict) -> int:
    from edgellm.engine import rpc

    endpoints = [rpc.parse_endpoint(text) for text in job["workers"]]
    for endpoint in endpoints:
        rpc.check_worker(endpoint)  # again, just before llama.cpp connects: ggml aborts on one that is gone
    rpc.join(endpoints)
    import llama_cpp

    from edgellm.engine.generate import Generation, GenerationOptions, Sampling
    from edgellm.engine.model import KV_GGML_TYPES, LLAMA_DEFAULT_SEED, templates_left_to_edgellm

    load = job["load"]
    started = time.perf_counter()
    with templates_left_to_edgellm(llama_cpp):
        llm = llama_cpp.Llama(model_path=job["model"], n_ctx=load["n_ctx"], n_batch=load["n_batch"],
                              n_ubatch=load["n_batch"], n_threads=load["threads"], n_threads_batch=load["threads"],
                              n_gpu_layers=load["n_gpu_layers"], tensor_split=[float(n) for n in load["tensor_split"]],
                              flash_attn=load["flash_attn"], type_k=KV_GGML_TYPES[load["kv"]],
                              type_v=KV_GGML_TYPES[load["kv"]],
                              seed=LLAMA_DEFAULT_SEED if job["seed"] < 0 else job["seed"], swa_full=False,
                              verbose=False)
    say({"loaded": (time.perf_counter() - started) * 1000})
    options = job["options"]
    generation = Generation(llm, llm.tokenize(job["prompt"].encode("utf-8"), add_bos=True, special=False),
                            GenerationOptions(sampling=Sampling(**options["sampling"]), max_tokens=options["max_tokens"],
                                              ignore_eos=options["ignore_eos"], seed=options["seed"]))
    for piece in generation:
        say({"text": piece})
    say({"stats": generation.stats.as_dict()})
    return 0


if __name__ == "__main__":
    from edgellm.errors import WorkerUnreachable

    try:
        sys.exit(main(json.loads(sys.stdin.read())))
    except WorkerUnreachable as error:  # a worker gone between the parent's check and this one: bad input, exit 2
        say({"error": str(error), "unreachable": True})
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - told to the parent as data, one line
        say({"error": str(error)})
        sys.exit(1)
