"""The cost of llama.cpp's RPC hop on loopback, and what keeping the output layer here saves.

Three ways to run the test model, in fresh processes, interleaved, greedy: local (two threads); every layer on two
`edgellm worker`s (one thread each) with the output layer on the last worker, as llama.cpp places it; and the same
with the output's weights kept on this CPU, as edgellm runs a split (engine.model.OUTPUT_WEIGHTS). Per token it
reports decode tokens/s and the bytes on loopback (/proc/net/dev, over two generations of different lengths in one
process, the difference divided by the tokens between them, so loading and the prompt fall out). Then edgellm's own
path: `edgellm run --rpc` with the split it plans, against `edgellm run` local. Loopback has no bandwidth or latency
to speak of: this measures the protocol's own cost per token; the README turns the bytes into a paper estimate for
gigabit Ethernet and Wi-Fi.
Usage: .venv/bin/python benchmarks/bench_rpc.py [--rounds 3] [--tokens 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, spread

sys.path.insert(0, str(REPO))
from edgellm.engine.side_channel import free_port_pair

CHILD = """
import json, sys, time
import llama_cpp
from edgellm.engine import rpc
from edgellm.engine.endpoint import parse_endpoint
from edgellm.engine.compat import model_params
from edgellm.engine.local import OUTPUT_WEIGHTS
mode, endpoints = sys.argv[2], [parse_endpoint(text) for text in sys.argv[3].split(",") if text]
for endpoint in endpoints:
    rpc.check_worker(endpoint)
rpc.join(endpoints)
extra = {"n_gpu_layers": 99, "tensor_split": [1.0] * len(endpoints)} if endpoints else {}
def new():
    return llama_cpp.Llama(sys.argv[1], n_ctx=1024, n_threads=int(sys.argv[5]), seed=0, verbose=False, **extra)
if mode == "here":
    with model_params(OUTPUT_WEIGHTS) as kept:
        llm = new()
else:
    llm = new()
prompt = llm.tokenize(b"The history of the river", add_bos=True)
def lo_bytes():
    for line in open("/proc/net/dev"):
        if line.strip().startswith("lo:"):
            return int(line.split(":")[1].split()[0])
    return 0
report = {}
for n in (8, int(sys.argv[4])):
    llm.reset()
    before, count, first = lo_bytes(), 0, None
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count >= n:
            break
    report[n] = {"bytes": lo_bytes() - before, "tokens_per_s": (count - 1) / (time.perf_counter() - first)}
print(json.dumps(report))
"""


def start_worker() -> tuple[subprocess.Popen, str]:
    port = free_port_pair()
    process = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "worker", "--port", str(port), "-t", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = process.stderr.readline()
    if "serving" not in line:
        raise SystemExit(f"the worker did not start: {line}")
    return process, f"127.0.0.1:{port}"


def generate(mode: str, endpoints: str, tokens: int, threads: int) -> tuple[float, float]:
    """Decode tokens/s and loopback bytes per token of one raw llama.cpp run."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(TEST_MODEL), mode, endpoints, str(tokens), str(threads)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return (report[str(tokens)]["tokens_per_s"], (report[str(tokens)]["bytes"] - report["8"]["bytes"]) / (tokens - 8))


def edgellm_run(tokens: int, *extra: str) -> float:
    """Decode tokens/s of `edgellm run` (its own generation path), greedy, `tokens` tokens."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgellm",
            "run",
            "-m",
            str(TEST_MODEL),
            "-p",
            "The history of the river",
            "-n",
            str(tokens),
            "--ignore-eos",
            "--temp",
            "0",
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("rpc", "llama.cpp's RPC hop on loopback: two workers against the model run locally")
    if not os.path.exists("/proc/net/dev"):
        findings.note("no /proc/net/dev: bytes per token not measured")
    workers = [start_worker() for _ in range(2)]
    endpoints = ",".join(where for _, where in workers)
    speed: dict[str, list[float]] = {"local": [], "worker": [], "here": [], "edgellm local": [], "edgellm rpc": []}
    wire: dict[str, list[float]] = {"worker": [], "here": []}
    try:
        for _ in range(options.rounds):
            speed["local"].append(generate("local", "", options.tokens, 2)[0])
            for mode in ("worker", "here"):
                tokens_per_s, per_token = generate(mode, endpoints, options.tokens, 1)
                speed[mode].append(tokens_per_s)
                wire[mode].append(per_token)
            speed["edgellm local"].append(edgellm_run(options.tokens, "-t", "2"))
            speed["edgellm rpc"].append(edgellm_run(options.tokens, "-t", "1", "--rpc", endpoints))
    finally:
        for process, _ in workers:
            process.terminate()
            process.wait(timeout=30)
    local = median(speed["local"])
    print(
        f"{options.rounds} rounds, {options.tokens} tokens, greedy; every layer on two loopback workers (1 thread "
        f"each) vs local (2 threads)"
    )
    print(f"  local t/s:                          {spread(speed['local'])}")
    print(
        f"  output on the last worker t/s:      {spread(speed['worker'])}   ratio "
        f"{median(speed['worker']) / local:.3f}   bytes/token {spread(wire['worker'])}"
    )
    print(
        f"  output kept here (edgellm) t/s:     {spread(speed['here'])}   ratio "
        f"{median(speed['here']) / local:.3f}   bytes/token {spread(wire['here'])}"
    )
    print(
        f"  edgellm run --rpc (its plan) t/s:   {spread(speed['edgellm rpc'])}   vs edgellm run local "
        f"{spread(speed['edgellm local'])}: ratio {median(speed['edgellm rpc']) / median(speed['edgellm local']):.3f}"
    )
    anchor = "decode, the model local (2 threads)"
    findings.figure(anchor, local, "tokens/s")
    findings.figure("decode, every layer on two workers, output on the last", median(speed["worker"]), "tokens/s")
    findings.figure("decode, every layer on two workers, output kept here", median(speed["here"]), "tokens/s")
    findings.figure("two workers (output here) / local", median(speed["here"]) / local, "ratio", anchor=anchor)
    findings.figure("bytes on loopback per token, output on the last worker", median(wire["worker"]), "bytes")
    findings.figure("bytes on loopback per token, output kept here", median(wire["here"]), "bytes")
    findings.figure("decode, edgellm run local (2 threads)", median(speed["edgellm local"]), "tokens/s")
    findings.figure(
        "decode, edgellm run --rpc over two workers (1 thread, its planned split)",
        median(speed["edgellm rpc"]),
        "tokens/s",
    )
    findings.figure(
        "edgellm run --rpc (planned split) / edgellm run local",
        median(speed["edgellm rpc"]) / median(speed["edgellm local"]),
        "ratio",
        anchor="decode, edgellm run local (2 threads)",
    )
    findings.note(
        "gemma-3-270m Q4_K_M (n_embd 640, 18 layers, 262k vocabulary); raw runs: tensor_split 1,1. With the "
        "output on a worker its logits cross the hop (262144 × 4 bytes a token); kept here, a hidden state"
    )
    findings.save(options.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
