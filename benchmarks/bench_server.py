"""`edgellm serve` against `edgellm run` and llama-cpp-python's own server, same model and settings, same run.

1. Single-stream decode tokens/s through the server: one streamed /v1/completions of --tokens tokens, greedy.
   Measured on the client alike for both servers: (tokens - 1) / (last text chunk - first text chunk), the
   tokens counted by the server's usage (edgellm) or max_tokens when the finish reason is "length"
   (llama_cpp.server, which has no usage in a stream; otherwise its text chunks). Goals: serve >= 0.95 x
   `edgellm run --json`'s tokens_per_s, and serve >= llama_cpp.server. edgellm's own `timings.tokens_per_s`
   (from the include_usage chunk) is printed beside it.
2. Time to first byte for a short prompt ("Hi", "Hello", ... in turn, max_tokens 1, streamed): median of --requests
   requests after one warm-up, both servers; the time to the first chunk with text is printed beside it (edgellm
   sends an empty first chunk at once, so its first byte comes before the model has run). The prompts differ
   from one request to the next because llama_cpp.server answers the very prompt it has just evaluated from its
   state (about 10 ms instead of 36 ms here), which would measure that cache rather than the server.
3. Requests/s for 16 concurrent short requests (different prompts, max_tokens 8, not streamed), both servers;
   both serve one request at a time, so this measures the queueing and per-request overhead.

Settings: the threads, batch threads, flash attention, batch size and mlock that edgellm's planner chooses (read
from a first `edgellm run --json`; --threads overrides) are given to all three; context -c 2048; temperature 0;
repeat penalty 1.0 for both servers (llama_cpp.server's default is 1.1); llama_cpp.server with --logits_all False
and --verbose False. Its EOS cannot be ignored (no ignore_eos; min_tokens/logit_bias would add a per-token
Python logits processor to its side only), so the decode prompt is one the test model does not end at
temperature 0, and the tokens each server produced are checked and printed. Not the same: llama_cpp.server
cannot set swa_full=False (edgellm keeps only the sliding window's KV; a small model, a short reply).
Each round starts fresh processes (the run, then each server started once for the round, warmed by one short
request, always stopped: SIGTERM, then kill) in an order that rotates from round to round; medians over rounds.
Usage: .venv/bin/python benchmarks/bench_server.py [--rounds 3] [--tokens 256] [--threads N] [--requests 10]
       [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
from _common import REPO, SUBJECTS, TEST_MODEL, Findings, add_json_flag, median, spread, sse_chunks

sys.path.insert(0, str(REPO))
from tests.support.server import LoggedProcess, ServerProcess

PROMPT = "The capital of France is"  # the test model does not stop on its own here at temperature 0
CTX = 2048
CONCURRENT = 16
SHORT_PROMPTS = [f"{subject} is" for subject in SUBJECTS[:16]]
GREETINGS = [
    "Hi",
    "Hello",
    "Hey",
    "Good morning",
    "Welcome",
    "Greetings",
    "Howdy",
    "Good evening",
    "Hi there",
    "Good day",
]  # one after another, so that no request repeats the prompt just evaluated


def wait_for_url(server: LoggedProcess, url: str, timeout: float = 300) -> None:
    """Poll `url` until it answers 200 (llama_cpp.server says nothing parseable when it is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise server.failed(f"exited ({server.process.returncode}) before {url} answered")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise server.failed(f"{url} did not answer within {timeout} s")
        time.sleep(0.2)


def start_edgellm(settings: dict, home: str) -> LoggedProcess:
    server = ServerProcess(
        "-m",
        str(TEST_MODEL),
        "-t",
        str(settings["threads"]),
        "-c",
        str(CTX),
        "--temp",
        "0",
        "-fa",
        "on" if settings["flash_attn"] else "off",
        env={"EDGELLM_HOME": home},
    )
    try:
        return server.wait_ready()
    except BaseException:
        server.kill()
        raise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_llama(settings: dict) -> LoggedProcess:
    port = free_port()
    server = LoggedProcess(
        "llama_cpp.server",
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(TEST_MODEL),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(CTX),
            "--n_threads",
            str(settings["threads"]),
            "--n_threads_batch",
            str(settings["threads_batch"]),
            "--n_batch",
            str(settings["n_batch"]),
            "--n_ubatch",
            str(settings["n_batch"]),
            "--flash_attn",
            str(bool(settings["flash_attn"])),
            "--use_mmap",
            str(bool(settings["use_mmap"])),
            "--use_mlock",
            str(bool(settings["use_mlock"])),
            "--n_gpu_layers",
            str(settings["n_gpu_layers"]),
            "--logits_all",
            "False",
            "--verbose",
            "False",
        ],
    )
    server.url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(server, f"{server.url}/v1/models")
    except BaseException:
        server.kill()
        raise
    return server


def edgellm_run(settings: dict | None, tokens: int, home: str, threads: int | None = None) -> dict:
    """`edgellm run --json`: its last line, which carries tokens_per_s, ttft_ms and the settings used."""
    command = [
        sys.executable,
        "-m",
        "edgellm",
        "run",
        "-m",
        str(TEST_MODEL),
        "-p",
        PROMPT,
        "-n",
        str(tokens),
        "--temp",
        "0",
        "--ignore-eos",
        "-c",
        str(CTX),
        "--json",
    ]
    if settings is not None:
        command += ["-t", str(settings["threads"]), "-fa", "on" if settings["flash_attn"] else "off"]
    elif threads is not None:
        command += ["-t", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "EDGELLM_HOME": home})
    if done.returncode != 0:
        raise RuntimeError(f"edgellm run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def body(server: LoggedProcess, prompt: str, max_tokens: int, stream: bool, long: bool = False) -> dict:
    data = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "repeat_penalty": 1.0, "stream": stream}
    if server.name == "edgellm serve":
        if stream:
            data["stream_options"] = {"include_usage": True}
        if long:
            data["ignore_eos"] = True
    return data


def _timed(lines, arrivals: list[float]):  # type: ignore[no-untyped-def]
    """The lines, each one's arrival time noted in `arrivals`."""
    for line in lines:
        arrivals.append(time.perf_counter())
        yield line


def stream(client: httpx.Client, server: LoggedProcess, prompt: str, max_tokens: int, long: bool = False) -> dict:
    """One streamed completion, timed on the client: first byte, each chunk with text, the usage if sent."""
    started = time.perf_counter()
    arrivals: list[float] = []  # when each line came: the first is the first byte
    texts: list[float] = []
    usage = timings = finish = None
    with client.stream(
        "POST", f"{server.url}/v1/completions", json=body(server, prompt, max_tokens, True, long)
    ) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"{server.name}: {response.status_code} {response.text[:500]}")
        for chunk in sse_chunks(_timed(response.iter_lines(), arrivals)):
            if "error" in chunk:
                raise RuntimeError(f"{server.name}: {chunk['error']}")
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
            for choice in chunk.get("choices") or []:
                if choice.get("text"):
                    texts.append(time.perf_counter())
                finish = choice.get("finish_reason") or finish
    first_byte = arrivals[0] if arrivals else None
    if not texts or first_byte is None:
        raise RuntimeError(f"{server.name}: no text in the stream")
    if usage:
        tokens = usage["completion_tokens"]
    elif finish == "length":
        tokens = max_tokens
    else:
        tokens = len(texts)
    rate = (tokens - 1) / (texts[-1] - texts[0]) if len(texts) > 1 else float("nan")
    return {
        "ttfb_ms": (first_byte - started) * 1000,
        "ttft_ms": (texts[0] - started) * 1000,
        "tokens": tokens,
        "chunks": len(texts),
        "tokens_per_s": rate,
        "finish": finish,
        "server_tokens_per_s": (timings or {}).get("tokens_per_s"),
    }


def concurrent_rate(client: httpx.Client, server: LoggedProcess) -> tuple[float, int]:
    """CONCURRENT short requests at once: requests/s over the whole, and the completion tokens they produced."""

    def one(prompt: str) -> int:
        response = client.post(f"{server.url}/v1/completions", json=body(server, prompt, 8, False))
        if response.status_code != 200:
            raise RuntimeError(f"{server.name}: {response.status_code} {response.text[:500]}")
        return response.json()["usage"]["completion_tokens"]

    with ThreadPoolExecutor(CONCURRENT) as pool:
        started = time.perf_counter()
        tokens = list(pool.map(one, SHORT_PROMPTS[:CONCURRENT]))
        elapsed = time.perf_counter() - started
    return CONCURRENT / elapsed, sum(tokens)


def measure_server(server: LoggedProcess, tokens: int, requests: int) -> dict:
    limits = httpx.Limits(max_connections=CONCURRENT * 2, max_keepalive_connections=CONCURRENT * 2)
    with httpx.Client(timeout=httpx.Timeout(600.0), limits=limits) as client:
        stream(client, server, "Hello", 8)  # warm-up
        decode = stream(client, server, PROMPT, tokens, long=True)
        stream(client, server, GREETINGS[-1], 1)  # warm-up of the short request
        short = [stream(client, server, GREETINGS[i % len(GREETINGS)], 1) for i in range(requests)]
        per_s, short_tokens = concurrent_rate(client, server)
    return {
        "decode": decode,
        "ttfb_ms": median([s["ttfb_ms"] for s in short]),
        "ttft_ms": median([s["ttft_ms"] for s in short]),
        "requests_per_s": per_s,
        "short_tokens": short_tokens,
    }


def with_server(start, settings: dict, tokens: int, requests: int, *args) -> dict:  # type: ignore[no-untyped-def]
    server = start(settings, *args)
    try:
        return measure_server(server, tokens, requests)
    finally:
        server.stop(timeout=30)


def goal(holds: bool) -> str:
    return "ok" if holds else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, help="threads for all three (default: what edgellm's planner chooses)")
    parser.add_argument("--requests", type=int, default=10, help="short requests timed per server and round")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("server", "edgellm serve against edgellm run and llama_cpp.server")
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        settings = edgellm_run(None, 1, home, options.threads)["settings"]
        print(
            f"edgellm serve vs edgellm run and llama_cpp.server: {TEST_MODEL.name}, {options.tokens} tokens, "
            f"{settings['threads']} threads (batch {settings['threads_batch']}), context {CTX}, flash attention "
            f"{'on' if settings['flash_attn'] else 'off'}, batch {settings['n_batch']}, {options.rounds} rounds, "
            f"{os.cpu_count()} CPUs"
        )
        runs: list[dict] = []
        serves: list[dict] = []
        llamas: list[dict] = []
        steps = [
            ("run", lambda: runs.append(edgellm_run(settings, options.tokens, home))),
            (
                "serve",
                lambda: serves.append(with_server(start_edgellm, settings, options.tokens, options.requests, home)),
            ),
            ("llama", lambda: llamas.append(with_server(start_llama, settings, options.tokens, options.requests))),
        ]
        for round_ in range(options.rounds):
            shift = round_ % len(steps)
            order = steps[shift:] + steps[:shift]
            for _, step in order:
                step()
            print(
                f"  round {round_ + 1} ({', '.join(name for name, _ in order)}): decode t/s run "
                f"{runs[-1]['tokens_per_s']:.2f}, serve {serves[-1]['decode']['tokens_per_s']:.2f}, "
                f"llama_cpp.server {llamas[-1]['decode']['tokens_per_s']:.2f}",
                flush=True,
            )

    run_rate = [r["tokens_per_s"] for r in runs]
    serve_rate = [s["decode"]["tokens_per_s"] for s in serves]
    serve_own = [s["decode"]["server_tokens_per_s"] for s in serves if s["decode"]["server_tokens_per_s"]]
    llama_rate = [s["decode"]["tokens_per_s"] for s in llamas]
    print(f"decode tokens/s ({options.tokens} tokens, streamed /v1/completions, rate on the client):")
    print(f"  edgellm run --json          {spread(run_rate)}")
    print(f"  edgellm serve (client)      {spread(serve_rate)}")
    if serve_own:
        print(f"  edgellm serve (its timings) {spread(serve_own)}")
    print(f"  llama_cpp.server (client)   {spread(llama_rate)}")
    produced = sorted(
        {(s["decode"]["tokens"], s["decode"]["finish"]) for s in serves}
        | {(s["decode"]["tokens"], s["decode"]["finish"]) for s in llamas}
    )
    serve_tokens = {s["decode"]["tokens"] for s in serves}
    llama_tokens = {s["decode"]["tokens"] for s in llamas}
    same = serve_tokens == llama_tokens == {options.tokens}
    print(
        f"  tokens produced: serve {sorted(serve_tokens)}, llama_cpp.server {sorted(llama_tokens)} "
        f"({'the same' if same else 'NOT the same: the rates are not comparable as they stand'}; "
        f"finish reasons {sorted({f for _, f in produced})})"
    )
    to_run = median(serve_rate) / median(run_rate)
    to_llama = median(serve_rate) / median(llama_rate)
    print(f"  serve/run (medians): {to_run:.3f}  (goal >= 0.95: {goal(to_run >= 0.95)})")
    print(f"  serve/llama_cpp.server (medians): {to_llama:.3f}  (goal >= 1: {goal(to_llama >= 1)})")
    print(f"  run's own TTFT for the same prompt: {median([r['ttft_ms'] for r in runs]):.0f} ms")
    run_label = f"decode, edgellm run --json ({options.tokens} tokens)"
    llama_label = f"decode, llama_cpp.server, streamed, rate on the client ({options.tokens} tokens)"
    findings.figure(run_label, median(run_rate), "tokens/s")
    findings.figure(
        f"decode, edgellm serve, streamed, rate on the client ({options.tokens} tokens)", median(serve_rate), "tokens/s"
    )
    if serve_own:
        findings.figure("decode, edgellm serve, its own timings", median(serve_own), "tokens/s")
    findings.figure(llama_label, median(llama_rate), "tokens/s")
    findings.figure("decode serve / run", to_run, "ratio", anchor=run_label)
    findings.figure("decode serve / llama_cpp.server", to_llama, "ratio", anchor=llama_label)
    findings.figure("edgellm run's TTFT, same prompt", median([r["ttft_ms"] for r in runs]), "ms")
    if not same:
        findings.note(
            f"decode: tokens produced differ (serve {sorted(serve_tokens)}, llama_cpp.server "
            f"{sorted(llama_tokens)}, asked {options.tokens}): the rates are not comparable as they stand"
        )

    print(f'short request ("Hi", "Hello", ...; max_tokens 1, streamed), medians of {options.requests} per round:')
    for label, key in (("time to first byte", "ttfb_ms"), ("time to first text", "ttft_ms")):
        ours, theirs = [s[key] for s in serves], [s[key] for s in llamas]
        print(
            f"  {label:<20} serve {spread(ours)} ms   llama_cpp.server {spread(theirs)} ms   "
            f"serve/llama_cpp.server {median(ours) / median(theirs):.2f}"
        )
        anchor = f"short request, {label}, llama_cpp.server"
        findings.figure(f"short request, {label}, edgellm serve", median(ours), "ms")
        findings.figure(anchor, median(theirs), "ms")
        findings.figure(
            f"short request, {label}, serve / llama_cpp.server", median(ours) / median(theirs), "ratio", anchor=anchor
        )
    ours, theirs = [s["requests_per_s"] for s in serves], [s["requests_per_s"] for s in llamas]
    print(f"{CONCURRENT} concurrent short requests (max_tokens 8, not streamed): requests/s")
    print(
        f"  serve {spread(ours)}   llama_cpp.server {spread(theirs)}   "
        f"serve/llama_cpp.server {median(ours) / median(theirs):.2f}   (tokens produced: serve "
        f"{sorted({s['short_tokens'] for s in serves})}, "
        f"llama_cpp.server {sorted({s['short_tokens'] for s in llamas})})"
    )
    anchor = f"{CONCURRENT} concurrent short requests, llama_cpp.server"
    findings.figure(f"{CONCURRENT} concurrent short requests, edgellm serve", median(ours), "requests/s")
    findings.figure(anchor, median(theirs), "requests/s")
    findings.figure(
        f"{CONCURRENT} concurrent short requests, serve / llama_cpp.server",
        median(ours) / median(theirs),
        "ratio",
        anchor=anchor,
    )

    print("goals:")
    print(f"  decode through the server >= 0.95 x edgellm run: {goal(to_run >= 0.95)} ({to_run:.3f})")
    print(
        f"  decode through the server >= llama_cpp.server: {goal(to_llama >= 1)} ({to_llama:.3f})"
        + ("" if same else " (token counts differ)")
    )
    findings.goal("decode through the server ≥ 0.95 × edgellm run", to_run, ">=", 0.95)
    findings.goal("decode through the server ≥ llama_cpp.server", to_llama, ">=", 1)
    findings.note(
        f"medians of {options.rounds} round(s), {settings['threads']} threads, context {CTX}, "
        f"flash attention {'on' if settings['flash_attn'] else 'off'}; short requests: {options.requests} "
        f"per server and round; {os.cpu_count()} CPUs"
    )
    findings.save(options.json)


if __name__ == "__main__":
    main()
