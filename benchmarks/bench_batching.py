"""Continuous batching against llama.cpp's own tools and edgellm's one-at-a-time paths, measured in the same run.

Same model, same threads, same flash attention and batch for all; every ratio is taken against an anchor of this run.

1. Aggregate decode: llama-batched-bench -npp PP -ntg TG -npl 1,2,4,8 (its S_TG per B) against edgellm's
   `measure_parallel` on an `open_batched` model (8 slots of 512 tokens, the same method in the batched engine).
   Interleaved rounds (the order turns from round to round), medians. Goals: edgellm at B=4 and B=8 ≥ 0.95 × llama-
   batched-bench; B=1 and B=2 are printed as figures.
2. One stream through the batched core: the same greedy TG-token generation (past end-of-sequence) through
   `engine.local.load` (today's solo path, LocalModel) and through `open_batched` (4 slots, one used), decode
   tokens/s from each generation's own stats, alternated, medians. Goal: batched ≥ 0.98 × solo.
3. Server, 4 concurrent clients: `edgellm serve --parallel 4 -c 2048` against `llama-server -np 4 -c 8192` (which
   splits -c across its slots: 2048 each) and `edgellm serve --parallel 1` (one at a time). The same client for all:
   4 threads each streaming one /v1/completions (a prompt of its own, max_tokens TG, temperature 0, ignore_eos);
   aggregate tokens/s = completion tokens / (first request sent to last done). Each server is warmed by a short
   request first and runs the burst --bursts times (new prompts each time). Goals: serve --parallel 4 ≥ 0.95 ×
   llama-server -np 4, and ≥ 1.5 × serve --parallel 1.
4. `edgellm run --batch` (the seed guide's benchmark): --batch-requests distinct prompts, each max_tokens 100,
   temperature 0, ignore_eos, --parallel 4: requests/s and tokens/s from its --json summary, against llama-batched-
   bench's S_TG at B=4 (a figure).
5. Memory: the total bytes `edgellm plan -c 2048 --parallel 4 --json` estimates, against the buffers llama.cpp
   logs for the same load (benchmarks/measure_memory.py --parallel 4: the model, both contexts' KV, compute and
   output buffers, 4 sequences generating). Goal: 0.90 ≤ estimate / allocated ≤ 1.10. And the peak RSS (VmHWM) of
   `serve --parallel 4` after its bursts stays within the estimate (goal ≤ 1.0): the compute buffers are reserved
   for a whole micro-batch's logits but written one row per sequence, so RSS sits well below what is allocated.

Threads: one count for everything (edgellm's plan chooses it, --threads overrides): `-t T -tb T` for llama.cpp's
tools, `-t T` for edgellm. Flash attention on, batch and micro-batch 512 everywhere. llama.cpp's tools are the ones
`benchmarks/llama_bench.py` builds from the wheel's own source and flags; a part whose tool is not built is skipped,
and said so. Each edgellm subprocess gets an EDGELLM_HOME of its own (the developer's state stays untouched). A part
that fails (a timeout included) is said and noted, the others go on, and the exit status is 1. On a 2-core machine
any other load makes llama.cpp's threads wait on each other: the script says when the machine was busy at the start.
Usage: .venv/bin/python benchmarks/bench_batching.py [--rounds 3] [--threads N] [--batch-requests 100] [--bursts 2]
       [--tokens 128] [--quick] [--skip aggregate,stream,server,batch,memory] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
from _common import REPO, SUBJECTS, TEST_MODEL, Findings, add_json_flag, median, plan_json, spread, sse_chunks

sys.path.insert(0, str(REPO))
from llama_bench import cached_tool
from llama_server import start_llama_server

from tests.support.server import LoggedProcess, ServerProcess

COUNTS = (1, 2, 4, 8)
SLOT_CTX = 512  # per slot, for the in-process batched engine (part 1 and 2)
SERVE_CTX = 2048  # per slot, for the servers (part 3 and 5)
CLIENTS = 4
N_BATCH = 512
BATCH_TOKENS = 100  # max_tokens of each `run --batch` request
SOLO_PROMPT = "The capital of France is"


def client_prompt(index: int) -> str:
    """A distinct prompt for each request index (the servers' prompt caches never answer one from another)."""
    subject = SUBJECTS[index % len(SUBJECTS)]
    return f"{subject} is" if index < len(SUBJECTS) else f"Story {index}: {subject} is"


def edgellm_env(home: str) -> dict[str, str]:
    return {**os.environ, "EDGELLM_HOME": home}


def batched_bench(binary: Path, threads: int, pp: int, tg: int, counts: tuple[int, ...]) -> dict[int, float]:
    """llama-batched-bench's S_TG (aggregate decode tokens/s) per B. Its -c must hold max(B)·(PP+TG) cells, else
    it skips those rows without a word."""
    ctx = max(counts) * (pp + tg)
    command = [
        str(binary),
        "-m",
        str(TEST_MODEL),
        "-c",
        str(ctx),
        "-b",
        str(N_BATCH),
        "-ub",
        str(N_BATCH),
        "-npp",
        str(pp),
        "-ntg",
        str(tg),
        "-npl",
        ",".join(map(str, counts)),
        "-t",
        str(threads),
        "-tb",
        str(threads),
        "-fa",
        "on",
        "--output-format",
        "jsonl",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"llama-batched-bench failed ({done.returncode}):\n{done.stderr[-3000:]}")
    found = {}
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            row = json.loads(line)
            found[int(row["pl"])] = float(row["speed_tg"])
    missing = [count for count in counts if count not in found]
    if missing:
        raise RuntimeError(f"llama-batched-bench gave no row for B={missing}:\n{done.stderr[-2000:]}")
    return found


def slot_ctx(tokens: int) -> int:
    """The context of each in-process slot: 512, or more when PP + TG (and a prompt) need it."""
    return max(SLOT_CTX, -(-(2 * tokens + 64) // 256) * 256)


def load_params(parallel: int, n_ctx: int, threads: int, n_gpu_layers: int) -> Any:
    from edgellm.engine.contract import LoadParams

    return LoadParams(
        path=TEST_MODEL,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=n_gpu_layers,
        flash_attn=True,
        kv="f16",
        seed=-1,
        n_batch=N_BATCH,
        parallel=parallel,
    )


def edgellm_parallel(model: Any, pp: int, tg: int, counts: tuple[int, ...]) -> dict[int, float]:
    """`measure_parallel`'s aggregate decode tokens/s per B, one repetition (after its own warm-up)."""
    from edgellm.bench.parallel import ParallelRequest, measure_parallel

    rows = measure_parallel(model, ParallelRequest(counts, pp, tg, 1), lambda _: None, threading.Event())
    return {row["sequences"]: row["tg_aggregate"] for row in rows}


def part_aggregate(
    options: argparse.Namespace, threads: int, n_gpu_layers: int, log: Any, findings: Findings
) -> dict[int, float] | None:
    """Part 1; llama-batched-bench's medians per B (for part 4), or None if it is not built."""
    from edgellm.engine.batched import open_batched

    binary, why = cached_tool("llama-batched-bench")
    pp = tg = options.tokens
    print(f"1. aggregate decode, PP {pp}, TG {tg}, B {','.join(map(str, COUNTS))}, {options.rounds} rounds", flush=True)
    if binary is None:
        findings.note(f"aggregate decode against llama-batched-bench skipped: {why}")
        print(f"  skipped: {why}")
        return None
    theirs: dict[int, list[float]] = {count: [] for count in COUNTS}
    ours: dict[int, list[float]] = {count: [] for count in COUNTS}
    model = open_batched(load_params(max(COUNTS), slot_ctx(options.tokens), threads, n_gpu_layers), log)
    try:
        for round_ in range(options.rounds):
            steps = [
                ("llama-batched-bench", lambda: batched_bench(binary, threads, pp, tg, COUNTS), theirs),
                ("edgellm", lambda: edgellm_parallel(model, pp, tg, COUNTS), ours),
            ]
            if round_ % 2:
                steps.reverse()
            for _, step, into in steps:
                for count, rate in step().items():
                    into[count].append(rate)
            print(
                f"  round {round_ + 1} ({', '.join(name for name, _, _ in steps)}): S_TG t/s "
                + ", ".join(f"B={c} {ours[c][-1]:.1f} vs {theirs[c][-1]:.1f}" for c in COUNTS),
                flush=True,
            )
    finally:
        model.close()
    print("  B   edgellm S_TG t/s                          llama-batched-bench S_TG t/s              ratio")
    for count in COUNTS:
        ratio = median(ours[count]) / median(theirs[count])
        print(f"  {count:<3} {spread(ours[count]):<42} {spread(theirs[count]):<42} {ratio:.3f}")
        anchor = f"llama-batched-bench S_TG, B={count} (PP {pp}, TG {tg})"
        findings.figure(f"edgellm measure_parallel S_TG, B={count}", median(ours[count]), "tokens/s")
        findings.figure(anchor, median(theirs[count]), "tokens/s")
        findings.figure(f"aggregate decode B={count}: edgellm / llama-batched-bench", ratio, "ratio", anchor=anchor)
        if count in (4, 8):
            holds = findings.goal(f"aggregate decode at B={count} ≥ 0.95 × llama-batched-bench", ratio, ">=", 0.95)
            print(f"      goal ≥ 0.95 at B={count}: {'ok' if holds else 'MISSED'}")
    # what batching can gain here at all: the bound on part 3's serve --parallel 4 / --parallel 1
    gain = median(theirs[4]) / median(theirs[1])
    print(f"  llama-batched-bench S_TG B=4 / B=1: {gain:.2f} (what 4 streams gain over 1 on this machine)")
    findings.figure(
        "llama-batched-bench S_TG B=4 / B=1 (the gain batching offers here)",
        gain,
        "ratio",
        anchor=f"llama-batched-bench S_TG, B=1 (PP {pp}, TG {tg})",
    )
    return {count: median(values) for count, values in theirs.items()}


# 2. one stream: batched core against the solo path


def part_one_stream(options: argparse.Namespace, threads: int, n_gpu_layers: int, log: Any, findings: Findings) -> None:
    from edgellm.engine.batched import open_batched
    from edgellm.engine.contract import GenerationOptions, Sampling
    from edgellm.engine.local import load

    tokens = options.tokens
    pairs = options.rounds * (1 if options.quick else 3)
    print(f"2. one stream, {tokens} tokens greedy past EOS: solo path against the batched core, {pairs} pairs")
    generation_options = GenerationOptions(Sampling(temp=0.0), max_tokens=tokens, ignore_eos=True, cache_prompt=False)
    solo = load(load_params(0, slot_ctx(tokens), threads, n_gpu_layers), log)
    try:
        batched = open_batched(load_params(CLIENTS, slot_ctx(tokens), threads, n_gpu_layers), log)
    except BaseException:
        solo.close()
        raise
    try:
        prompt = solo.tokenize(SOLO_PROMPT, add_bos=True, special=False)

        def rate(model: Any) -> float:
            generation = model.generation(prompt, generation_options)
            for _ in generation:
                pass
            if generation.stats.completion_tokens != tokens or generation.stats.tokens_per_s is None:
                raise RuntimeError(f"{type(model).__name__}: {generation.stats.as_dict()}")
            return float(generation.stats.tokens_per_s)

        rate(solo), rate(batched)  # warm-up
        solos: list[float] = []
        batcheds: list[float] = []
        for pair in range(pairs):
            if pair % 2:
                batcheds.append(rate(batched))
                solos.append(rate(solo))
            else:
                solos.append(rate(solo))
                batcheds.append(rate(batched))
    finally:
        batched.close()
        solo.close()
    ratio = median(batcheds) / median(solos)
    print(f"  solo path (engine.local.load)          {spread(solos)} t/s")
    print(f"  batched core (open_batched, 4 slots)   {spread(batcheds)} t/s")
    anchor = f"one stream, solo path (LocalModel), {tokens} tokens"
    findings.figure(anchor, median(solos), "tokens/s")
    findings.figure(f"one stream, batched core (open_batched, 4 slots), {tokens} tokens", median(batcheds), "tokens/s")
    findings.figure("one stream: batched core / solo path", ratio, "ratio", anchor=anchor)
    holds = findings.goal("one stream through the batched core ≥ 0.98 × the solo path", ratio, ">=", 0.98)
    print(f"  batched/solo (medians) {ratio:.3f}  (goal ≥ 0.98: {'ok' if holds else 'MISSED'})")


# 3. servers, 4 concurrent clients (and 5. peak memory)


def start_serve(parallel: int, threads: int, home: str) -> LoggedProcess:
    server = ServerProcess(
        "-m",
        str(TEST_MODEL),
        "-c",
        str(SERVE_CTX),
        "--parallel",
        str(parallel),
        "--temp",
        "0",
        "-t",
        str(threads),
        "-fa",
        "on",
        env={"EDGELLM_HOME": home},
    )
    try:
        server.wait_ready()
    except BaseException:
        server.kill()
        raise
    server.name = f"edgellm serve --parallel {parallel}"
    return server


def stream_tokens(client: httpx.Client, server: LoggedProcess, prompt: str, max_tokens: int) -> int:
    """One streamed completion; the completion tokens it produced (the usage chunk, llama-server's timings, or
    max_tokens when it stopped on length)."""
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    usage = timings = finish = None
    with client.stream("POST", f"{server.url}/v1/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"{server.name}: {response.status_code} {response.text[:500]}")
        for chunk in sse_chunks(response.iter_lines()):
            if "error" in chunk:
                raise RuntimeError(f"{server.name}: {chunk['error']}")
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
            for choice in chunk.get("choices") or []:
                finish = choice.get("finish_reason") or finish
    if usage and usage.get("completion_tokens"):
        return int(usage["completion_tokens"])
    if timings and timings.get("predicted_n"):
        return int(timings["predicted_n"])
    if finish == "length":
        return max_tokens
    raise RuntimeError(f"{server.name}: no token count in the stream (finish reason {finish})")


def burst(server: LoggedProcess, first_prompt: int, max_tokens: int) -> dict:
    """CLIENTS streams at once, each its own prompt: aggregate tokens/s from the first sent to the last done."""
    limits = httpx.Limits(max_connections=CLIENTS * 2, max_keepalive_connections=CLIENTS * 2)
    with httpx.Client(timeout=httpx.Timeout(300.0), limits=limits) as client:
        prompts = [client_prompt(first_prompt + i) for i in range(CLIENTS)]
        barrier = threading.Barrier(CLIENTS)

        def one(prompt: str) -> int:
            barrier.wait(timeout=60)
            return stream_tokens(client, server, prompt, max_tokens)

        with ThreadPoolExecutor(CLIENTS) as pool:
            started = time.perf_counter()
            counts = list(pool.map(one, prompts))
            elapsed = time.perf_counter() - started
    return {"tokens": counts, "tokens_per_s": sum(counts) / elapsed, "seconds": elapsed}


def memory_of(pid: int) -> dict[str, int]:
    """The process's peak resident memory (VmHWM) and what it holds now (VmRSS: RssAnon, its heap; RssFile, the
    mapped model's pages), in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            found[key] = int(value.split()[0]) * 1024
    if "VmHWM" not in found:
        raise RuntimeError(f"no VmHWM for process {pid}")
    return found


def part_servers(options: argparse.Namespace, threads: int, home: str, findings: Findings) -> list[dict[str, int]]:
    """Part 3; the peak RSS of each serve --parallel 4 (for part 5)."""
    binary, why = cached_tool("llama-server")
    tokens = options.tokens
    print(
        f"3. {CLIENTS} concurrent streamed clients, {tokens} tokens each, {options.bursts} burst(s) per server and "
        f"round, {options.rounds} rounds",
        flush=True,
    )
    if binary is None:
        findings.note(f"serve --parallel 4 against llama-server skipped: {why}")
        print(f"  llama-server skipped: {why}")
    kinds = [("serve4", lambda: start_serve(CLIENTS, threads, home)), ("serve1", lambda: start_serve(1, threads, home))]
    if binary is not None:
        kinds.append(("llama", lambda: start_llama_server(binary, threads, SERVE_CTX * CLIENTS, CLIENTS)))
    rates: dict[str, list[float]] = {name: [] for name, _ in kinds}
    produced: dict[str, set[int]] = {name: set() for name, _ in kinds}
    peaks: list[dict[str, int]] = []
    broken: list[str] = []
    next_prompt = 0
    for round_ in range(options.rounds):
        shift = round_ % len(kinds)
        order = kinds[shift:] + kinds[:shift]
        for name, start in order:
            if name == "llama" and broken:
                continue
            try:
                server = start()
            except Exception as error:
                if name != "llama":
                    raise
                broken.append(str(error).splitlines()[0])  # the anchor failed: said, and the rest goes on
                print(f"  llama-server failed: {broken[0]}", flush=True)
                continue
            try:
                with httpx.Client(timeout=httpx.Timeout(120.0)) as client:
                    stream_tokens(client, server, "Hello", 4)  # warm-up
                for _ in range(options.bursts):
                    found = burst(server, next_prompt, tokens)
                    next_prompt += CLIENTS
                    rates[name].append(found["tokens_per_s"])
                    produced[name].update(found["tokens"])
                if name == "serve4":
                    peaks.append(memory_of(server.process.pid))
            finally:
                try:
                    server.stop(timeout=30)
                except AssertionError:  # killed after the timeout: said, and the run goes on
                    print(f"  {server.name} did not stop within 30 s: killed", flush=True)
        print(
            f"  round {round_ + 1} ({', '.join(name for name, _ in order)}): aggregate t/s "
            + ", ".join(f"{name} {rates[name][-1]:.1f}" for name, _ in kinds if rates[name]),
            flush=True,
        )
    if broken:
        findings.note(f"serve --parallel 4 against llama-server: llama-server failed ({broken[0]})")
        kinds = [kind for kind in kinds if rates[kind[0]]]
    labels = {
        "serve4": "edgellm serve --parallel 4",
        "serve1": "edgellm serve --parallel 1",
        "llama": "llama-server -np 4",
    }
    for name, _ in kinds:
        print(f"  {labels[name]:<28} {spread(rates[name])} t/s (tokens per request: {sorted(produced[name])})")
        findings.figure(f"{CLIENTS} concurrent clients, {labels[name]}, aggregate", median(rates[name]), "tokens/s")
    if any(counts != {tokens} for counts in produced.values()):
        findings.note(f"concurrent clients: tokens per request differ from {tokens}: {produced}")
    serve4 = median(rates["serve4"])
    to_serial = serve4 / median(rates["serve1"])
    anchor = f"{CLIENTS} concurrent clients, {labels['serve1']}, aggregate"
    findings.figure("concurrent clients: serve --parallel 4 / serve --parallel 1", to_serial, "ratio", anchor=anchor)
    if rates.get("llama"):
        to_llama = serve4 / median(rates["llama"])
        anchor = f"{CLIENTS} concurrent clients, {labels['llama']}, aggregate"
        findings.figure("concurrent clients: serve --parallel 4 / llama-server -np 4", to_llama, "ratio", anchor=anchor)
        holds = findings.goal("serve --parallel 4 ≥ 0.95 × llama-server -np 4 (4 clients)", to_llama, ">=", 0.95)
        print(f"  serve4/llama-server (medians) {to_llama:.3f}  (goal ≥ 0.95: {'ok' if holds else 'MISSED'})")
    holds = findings.goal("serve --parallel 4 ≥ 1.5 × serve --parallel 1 (4 clients)", to_serial, ">=", 1.5)
    print(f"  serve4/serve1 (medians) {to_serial:.3f}  (goal ≥ 1.5: {'ok' if holds else 'MISSED'})")

    return peaks


# 4. run --batch


def part_run_batch(
    options: argparse.Namespace, threads: int, home: str, anchor_b4: float | None, findings: Findings
) -> None:
    count = options.batch_requests
    print(f"4. edgellm run --batch: {count} requests, max_tokens {BATCH_TOKENS}, --parallel {CLIENTS}", flush=True)
    with tempfile.TemporaryDirectory(prefix="edgellm-batch-") as folder:
        source, output = Path(folder) / "prompts.jsonl", Path(folder) / "answers.jsonl"  # a fresh output: no resume
        source.write_text(
            "".join(
                json.dumps(
                    {"prompt": client_prompt(i), "max_tokens": BATCH_TOKENS, "temperature": 0, "ignore_eos": True}
                )
                + "\n"
                for i in range(count)
            )
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgellm",
                "run",
                "-m",
                str(TEST_MODEL),
                "--batch",
                str(source),
                "-o",
                str(output),
                "--json",
                "--parallel",
                str(CLIENTS),
                "-t",
                str(threads),
                "-fa",
                "on",
            ],
            capture_output=True,
            text=True,
            env=edgellm_env(home),
            timeout=300 + count * 10,
        )
        if done.returncode != 0:
            raise RuntimeError(f"edgellm run --batch failed ({done.returncode}):\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"  {summary['requests']} requests in {summary['seconds']:.1f} s: {summary['requests_per_s']:.3f} requests/s, "
        f"{summary['tokens_per_s']:.1f} tokens/s ({summary['completion_tokens']} tokens, {summary['failed']} failed)"
    )
    findings.figure(f"run --batch, {count} requests, --parallel 4: requests/s", summary["requests_per_s"], "requests/s")
    findings.figure(f"run --batch, {count} requests, --parallel 4: tokens/s", summary["tokens_per_s"], "tokens/s")
    if summary["failed"] or summary["completion_tokens"] != count * BATCH_TOKENS:
        findings.note(
            f"run --batch: {summary['failed']} failed, {summary['completion_tokens']} tokens written of "
            f"{count * BATCH_TOKENS} asked"
        )
    if anchor_b4 is None:
        findings.note("run --batch is not compared with llama-batched-bench: it was not measured")
        return
    ratio = summary["tokens_per_s"] / anchor_b4
    anchor = f"llama-batched-bench S_TG, B=4 (PP {options.tokens}, TG {options.tokens}), part 1's median"
    findings.figure("run --batch tokens/s / llama-batched-bench S_TG at B=4", ratio, "ratio", anchor=anchor)
    print(f"  tokens/s / llama-batched-bench S_TG at B=4 ({anchor_b4:.1f}): {ratio:.3f} (prompts and joins included)")


# 5. peak memory of serve --parallel 4 against the plan


def part_memory(peaks: list[dict[str, int]], threads: int, home: str, findings: Findings) -> None:
    """The plan's estimate for serve --parallel 4 against what llama.cpp allocates for it (the buffers its log
    names, in a process of its own that loads the model as serve does and runs 4 sequences: ±10%), and the
    server's peak RSS, which stays within the estimate (compute buffers are reserved for a whole micro-batch's
    logits but touched only for one row per sequence)."""
    estimate = plan_json(home, "-c", str(SERVE_CTX), "--parallel", str(CLIENTS), "-t", str(threads), "-fa", "on")
    total = int(estimate["estimate"]["total_bytes"])
    devices = estimate["estimate"]["devices"]
    mib = 2**20
    measured = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "measure_memory.py"),
            str(TEST_MODEL),
            "-c",
            str(SERVE_CTX),
            "-fa",
            "on",
            "--parallel",
            str(CLIENTS),
            "--prompt-tokens",
            "128",
            "--gen-tokens",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "EDGELLM_HOME": tempfile.mkdtemp(prefix="edgellm-memory-")},  # its own log alone
    )
    if measured.returncode != 0:
        findings.note(f"memory: measure_memory.py failed: {measured.stderr.strip()[-300:]}")
        return
    found = json.loads(measured.stdout.strip().splitlines()[-1])
    logged = found["logged"]
    print(
        f"5. plan's estimate for serve --parallel {CLIENTS} -c {SERVE_CTX}: {total / mib:.1f} MiB ("
        + ", ".join(
            f"{d['device']}: weights {d['weights_bytes'] / mib:.0f}, KV {d['kv_cache_bytes'] / mib:.0f}, compute "
            f"{d['compute_bytes'] / mib:.0f}, overhead {d['overhead_bytes'] / mib:.0f}"
            for d in devices
        )
        + ")"
    )
    print(
        f"  llama.cpp allocated {logged / mib:.1f} MiB ("
        + ", ".join(f"{name} {size / mib:.1f}" for name, size in sorted(found["buffers"].items()))
        + f"); RSS growth of that process {found['rss_growth'] / mib:.1f} MiB"
    )
    anchor = "the buffers llama.cpp logs for the same load (model, KV, compute, output)"
    ratio = total / logged
    findings.figure("serve --parallel 4: plan's estimate", total / mib, "MiB")
    findings.figure("llama.cpp's buffers for serve --parallel 4's load", logged / mib, "MiB")
    findings.figure("plan's estimate / llama.cpp's buffers", ratio, "ratio", anchor=anchor)
    low = findings.goal("serve --parallel 4: plan's estimate / llama.cpp's buffers ≥ 0.90", ratio, ">=", 0.90)
    high = findings.goal("serve --parallel 4: plan's estimate / llama.cpp's buffers ≤ 1.10", ratio, "<=", 1.10)
    print(f"  estimate/allocated {ratio:.3f}  (goal within 0.90–1.10: {'ok' if low and high else 'MISSED'})")
    if peaks:
        highest = max(peaks, key=lambda item: item["VmHWM"])
        peak = highest["VmHWM"]
        print(
            f"  serve --parallel 4 peak RSS (VmHWM after its bursts): {spread([p['VmHWM'] / mib for p in peaks])} MiB "
            f"(heap {highest.get('RssAnon', 0) / mib:.0f}, mapped files {highest.get('RssFile', 0) / mib:.0f})"
        )
        findings.figure("serve --parallel 4 peak RSS (VmHWM)", peak / mib, "MiB")
        within = findings.goal("serve --parallel 4: peak RSS / plan's estimate ≤ 1.0", peak / total, "<=", 1.0)
        print(f"  peak RSS / estimate {peak / total:.3f}  (goal ≤ 1: {'ok' if within else 'MISSED'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds of each part (default 3; --quick: 1)")
    parser.add_argument("--threads", type=int, help="threads for everything (default: what edgellm's plan chooses)")
    parser.add_argument(
        "--batch-requests", type=int, help="requests in the run --batch file (default 100; --quick: 16)"
    )
    parser.add_argument("--bursts", type=int, help="4-client bursts per server start (default 2; --quick: 1)")
    parser.add_argument("--tokens", type=int, help="PP and TG of part 1, tokens per stream of 2 and 3 (default 128)")
    parser.add_argument("--quick", action="store_true", help="smaller everything: 1 round, 64 tokens, 16 requests")
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: aggregate,stream,server,batch,memory"
    )
    add_json_flag(parser)
    options = parser.parse_args()
    quick = options.quick
    options.rounds = options.rounds or (1 if quick else 3)
    options.batch_requests = options.batch_requests or (16 if quick else 100)
    options.bursts = options.bursts or (1 if quick else 2)
    options.tokens = options.tokens or (64 if quick else 128)
    skip = {part.strip() for part in options.skip.split(",") if part.strip()}
    if min(options.rounds, options.batch_requests, options.bursts, options.tokens) < 1:
        parser.error("--rounds, --batch-requests, --bursts and --tokens must be 1 or more")
    findings = Findings("batching", "continuous batching against llama-batched-bench, llama-server and solo paths")
    from edgellm.engine.llama_log import LlamaLog

    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        settings = plan_json(home)["settings"]
        threads = options.threads or int(settings["threads"])
        n_gpu_layers = int(settings["n_gpu_layers"])
        print(
            f"continuous batching: {TEST_MODEL.name}, {threads} threads (batch {threads}), flash attention on, batch "
            f"{N_BATCH}, {options.rounds} rounds, {os.cpu_count()} CPUs",
            flush=True,
        )
        load_before = os.getloadavg()[0]
        if load_before > 0.5 * (os.cpu_count() or 1):
            print(f"  note: the machine is busy (load average {load_before:.1f}): the figures will be noisy")
        log = LlamaLog(Path(home) / "llama.log", echo=False)
        failed: list[str] = []

        def attempt(part: str, run: Callable[[], Any]) -> Any:
            """Run one part; a failure (a timeout too) is said and noted, and the other parts go on."""
            if part in skip:
                return None
            try:
                return run()
            except Exception as error:
                first = (str(error).strip().splitlines() or [""])[0]
                text = f"part {part!r} failed: {type(error).__name__}: {first}"
                print(f"  {text}", flush=True)
                findings.note(text)
                failed.append(part)
                return None

        anchors = attempt("aggregate", lambda: part_aggregate(options, threads, n_gpu_layers, log, findings))
        attempt("stream", lambda: part_one_stream(options, threads, n_gpu_layers, log, findings))
        peaks = attempt("server", lambda: part_servers(options, threads, home, findings))
        anchor_b4 = anchors[4] if anchors else None
        attempt("batch", lambda: part_run_batch(options, threads, home, anchor_b4, findings))
        if peaks:
            attempt("memory", lambda: part_memory(peaks, threads, home, findings))
    if load_before > 0.5 * (os.cpu_count() or 1):
        findings.note(
            f"the machine was busy when this began (load average {load_before:.1f}, {os.cpu_count()} CPUs): the "
            f"figures are noisy"
        )
    findings.note(
        f"medians of {options.rounds} round(s), {threads} threads, flash attention on, batch {N_BATCH}, PP/TG "
        f"{options.tokens}; {os.cpu_count()} CPUs"
    )
    findings.save(options.json)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
