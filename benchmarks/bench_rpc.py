"""The cost of llama.cpp's RPC hop on loopback: decode tokens/s of the test model with every layer on two
`edgellm worker`s against the same model run locally, in the same run, and the bytes sent per generated token.

Both run in fresh processes, interleaved, greedy, the same number of CPU threads in all (the two workers get one each
and the client drives them; locally the model gets two). Bytes per token: the loopback interface's byte counter
(/proc/net/dev) over two generations of different lengths, the difference divided by the tokens between them, so
loading and the prompt fall out. Loopback has no bandwidth or latency to speak of: this measures the protocol's own
cost per token; the README turns the bytes into a paper estimate for gigabit Ethernet and Wi-Fi.
Usage: .venv/bin/python benchmarks/bench_rpc.py [--rounds 3] [--tokens 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, spread

CHILD = """
import json, sys, time
from edgellm.engine import rpc
endpoints = [rpc.parse_endpoint(text) for text in sys.argv[2].split(",")] if sys.argv[2] else []
for endpoint in endpoints:
    rpc.check_worker(endpoint)
rpc.join(endpoints)
import llama_cpp
extra = {"n_gpu_layers": 99, "tensor_split": [1.0] * len(endpoints)} if endpoints else {}
llm = llama_cpp.Llama(sys.argv[1], n_ctx=1024, n_threads=int(sys.argv[4]), seed=0, verbose=False, **extra)
prompt = llm.tokenize(b"The history of the river", add_bos=True)
def lo_bytes():
    for line in open("/proc/net/dev"):
        if line.strip().startswith("lo:"):
            return int(line.split(":")[1].split()[0])
    return 0
report = {}
for n in (8, int(sys.argv[3])):
    llm.reset()
    before, started, count, first = lo_bytes(), time.perf_counter(), 0, None
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count >= n:
            break
    report[n] = {"bytes": lo_bytes() - before, "tokens_per_s": (count - 1) / (time.perf_counter() - first)}
print(json.dumps(report))
"""


def free_port_pair() -> int:
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def start_worker() -> tuple[subprocess.Popen, str]:
    port = free_port_pair()
    process = subprocess.Popen([sys.executable, "-m", "edgellm", "worker", "--port", str(port), "-t", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    line = process.stderr.readline()
    if "serving" not in line:
        raise SystemExit(f"the worker did not start: {line}")
    return process, f"127.0.0.1:{port}"


def generate(endpoints: str, tokens: int, threads: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(TEST_MODEL), endpoints, str(tokens), str(threads)],
                          capture_output=True, text=True, check=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    local, split, per_token = [], [], []
    try:
        for _ in range(options.rounds):
            local.append(generate("", options.tokens, 2)[str(options.tokens)]["tokens_per_s"])
            report = generate(endpoints, options.tokens, 1)
            split.append(report[str(options.tokens)]["tokens_per_s"])
            per_token.append((report[str(options.tokens)]["bytes"] - report["8"]["bytes"]) / (options.tokens - 8))
            time.sleep(0)
    finally:
        for process, _ in workers:
            process.terminate()
            process.wait(timeout=30)
    ratio = median(split) / median(local)
    print(f"{options.rounds} rounds, {options.tokens} tokens, greedy; every layer on two loopback workers (1 thread "
          f"each) vs local (2 threads)")
    print(f"  local t/s:            {spread(local)}")
    print(f"  two workers t/s:      {spread(split)}   ratio {ratio:.3f}")
    print(f"  loopback bytes/token: {spread(per_token)}")
    findings.figure("decode, the model local (2 threads)", median(local), "tokens/s")
    findings.figure("decode, every layer on two loopback workers", median(split), "tokens/s")
    findings.figure("two workers / local", ratio, "ratio", anchor="decode, the model local (2 threads)")
    findings.figure("bytes on loopback per generated token (both ways, both workers)", median(per_token), "bytes")
    findings.note("gemma-3-270m Q4_K_M (n_embd 640, 18 layers, 262k vocabulary); tensor_split 1,1; the output layer "
                  "on the second worker, so the logits cross the hop: 262144 × 4 bytes a token")
    findings.save(options.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
