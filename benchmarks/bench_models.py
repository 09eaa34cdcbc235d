"""Models served by name (`edgellm serve` with no -m): a cold load through /api/chat against `edgellm run`, the Ollama
API against the OpenAI one on a loaded model, and /api/embed against llama-server's embeddings.

One `edgellm serve -c 2048 --parallel 1 -t T -fa on --temp 0 --ignore-eos` with no -m and an EDGELLM_HOME of its own,
the test model imported into that store (`edgellm import`) and named by its store name in every request. The model
file is read whole before every load, so that each finds it in the page cache.

1. Cold load. Each round unloads the model (`/api/generate {"model": M, "prompt": "", "keep_alive": 0}`, checked
   with /api/ps), then streams one /api/chat (num_predict 4, temperature 0): from sending the request to the first
   line with content. Anchor, in the same round (the order turns): `edgellm run -m MODEL -c 2048 -t T -fa on --temp
   0 -n 1 -p PROMPT --json` with the same text as raw prompt, its own load_ms plus its ttft_ms (both printed by
   run --json: the llama.cpp load and the prompt to the first token, inside one process; Python's start-up, the
   imports and the plan are not in it, while the server's figure has its plan and its HTTP). Goal: ≤ 1.2 × the
   anchor. The server's own load_duration, the prompt tokens of each and run's wall time are printed beside it.
2. Time to first token on the loaded model: --ttft-requests short requests a round on each API (/api/chat with
   num_predict 1, /v1/chat/completions with max_tokens 1, streamed), a different topic each (a request never finds
   its whole prompt cached), to the first piece with content. Goal: /api/chat / /v1 ≤ 1.1.
3. Decode: one streamed request a round on each API, the same message, temperature 0, 128 tokens (--tokens;
   num_predict / max_tokens, EOS ignored by the server's --ignore-eos); tokens/s on the client, (tokens - 1) over the
   time from the first to the last piece with content, the tokens being eval_count / usage.completion_tokens. The
   server's own rates (eval_count / eval_duration; timings.tokens_per_s) are printed beside it. Goal: /api/chat ≥
   0.98 × /v1/chat/completions.
4. Embeddings: --texts short sentences (5-15 words, generated; default 128, the issue's figure is 512) through
   /api/embed in requests of --embed-batch inputs (32) and in one request of all of them, inputs/s over the whole
   pass, against llama-server (built from the wheel's own llama.cpp source and flags, `--embedding --pooling mean -c
   2048 -b 2048 -ub 2048 -t T -tb T -fa auto`, its own number of slots) through its /v1/embeddings with the same
   inputs and batches. Reported, no goal; the cosine of each text's two vectors is printed as a check that both embed
   alike. When llama-server is not built this part runs edgellm's side alone, and says so. It is the slow part: a
   causal model's embeddings compute the output layer for every token (Gemma 3's 262k-token vocabulary): some 7-10
   inputs/s on 2 quiet cores for both, and llama-server down to 2 when the machine is busy, so 512 texts take 4
   minutes a round at best and a quarter of an hour at worst; hence 128 texts and one round (--embed-rounds) unless
   asked (`--texts 512` gives the issue's figure).

Part 1 turns its order from round to round; parts 2 and 3 take the two APIs in turn, request by request, the one
that goes first turning from round to round; part 4 alternates the two servers. Medians over --rounds rounds (default
3), the spread printed. A part that fails says so in one line and is noted, the others go on, and the exit status is
1. On a 2-core machine any other load makes llama.cpp's threads wait on each other: the script says when the machine
was busy at the start.
Usage: .venv/bin/python benchmarks/bench_models.py [--rounds 3] [--tokens 128] [--ttft-requests 3] [--texts 128]
       [--embed-batch 32] [--embed-rounds 1] [--threads N] [--skip cold,api,embed] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, plan_json, spread, sse_chunks

sys.path.insert(0, str(REPO))
from llama_bench import cached_tool
from llama_server import start_llama_server

from tests.support.server import LoggedProcess, ServerProcess

CTX = 2048
EMBED_BATCH = 2048  # llama-server's -b and -ub for embeddings: a whole request's texts in one micro-batch
PARTS = ("cold", "api", "embed")
TOPICS = (
    "the sky",
    "a cat",
    "Paris",
    "the ocean",
    "music",
    "a river",
    "winter",
    "the moon",
    "coffee",
    "a forest",
    "bread",
    "a mountain",
    "rain",
    "a violin",
    "a glacier",
    "the desert",
)
WORDS = (
    "the a small old new red green quiet bright cold warm long short happy tired busy early late river city house "
    "garden road window table chair book letter song light water stone tree bird dog child friend teacher doctor "
    "market train morning evening winter summer rain wind fire bread coffee paper music story picture walks reads "
    "writes sings opens closes finds keeps carries watches waits runs builds paints counts sells buys near under "
    "over behind beside through after before with without again slowly gently often never always today"
).split()


class Failed(Exception):
    """An expected failure (a refused request, a process that would not start): said in one line."""


def one_line(error: BaseException) -> str:
    """An error in one line: its first, and its last too when the first only announces the rest ("...failed:")."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    return f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def ask(topic: str) -> str:
    return f"Write a few sentences about {topic}."


def sentences(count: int, seed: int = 11) -> list[str]:
    """`count` short sentences of 5-15 words, the same every run."""
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 15))]
        found.append(" ".join(words).capitalize() + ".")
    return found


def read_once(path: Any) -> float:
    """Read the whole file (the page cache holds it from then on); the seconds it took."""
    started = time.perf_counter()
    with open(path, "rb") as handle:
        while handle.read(16 * 2**20):
            pass
    return time.perf_counter() - started


def edgellm_cli(home: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "edgellm", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGELLM_HOME": home},
        timeout=timeout,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise Failed(f"edgellm {args[0]} exited {done.returncode}: {last}")
    return done


def import_model(home: str) -> str:
    """The test model put in the store of `home` (`edgellm import`): its store name."""
    edgellm_cli(home, "import", str(TEST_MODEL))
    listed = json.loads(edgellm_cli(home, "ls", "--json").stdout)
    for model in listed:
        if os.path.realpath(model["path"]) == os.path.realpath(TEST_MODEL):
            return str(model["name"])
    raise Failed(f"edgellm ls does not list {TEST_MODEL} after edgellm import")


def start_serve(threads: int, home: str) -> LoggedProcess:
    """`edgellm serve` with no -m: it starts empty and loads a model when a request names it."""
    server = ServerProcess(
        "-c",
        str(CTX),
        "--parallel",
        "1",
        "-t",
        str(threads),
        "-fa",
        "on",
        "--temp",
        "0",
        "--ignore-eos",
        env={"EDGELLM_HOME": home},
    )
    server.name = "edgellm serve (no -m)"
    return server


def refusal(response: httpx.Response, what: str) -> Failed:
    response.read()
    return Failed(f"{what}: {response.status_code} {response.text[:300]}")


def post(client: httpx.Client, url: str, body: dict, what: str) -> tuple[dict, float]:
    """A non-streamed request's answer and the wall seconds it took."""
    started = time.perf_counter()
    response = client.post(url, json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise refusal(response, what)
    return response.json(), elapsed


def api_chat(client: httpx.Client, url: str, model: str, text: str, tokens: int, keep_alive: Any = None) -> dict:
    """One streamed /api/chat, timed on the client: the first and last lines with content, and the last line's
    stats (Ollama's: nanoseconds)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "options": {"temperature": 0, "num_predict": tokens},
    }
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    pieces: list[float] = []
    last: dict = {}
    started = time.perf_counter()
    with client.stream("POST", f"{url}/api/chat", json=body) as response:
        if response.status_code != 200:
            raise refusal(response, "/api/chat")
        for line in response.iter_lines():
            if not line.strip():
                continue
            found = json.loads(line)
            if "error" in found:
                raise Failed(f"/api/chat: {found['error']}")
            if (found.get("message") or {}).get("content"):
                pieces.append(time.perf_counter())
            if found.get("done"):
                last = found
    if not pieces or not last:
        raise Failed(f"/api/chat: no content or no last line (last: {json.dumps(last)[:300]})")
    count = int(last.get("eval_count", 0))
    eval_ns = last.get("eval_duration") or 0
    return {
        "ttft_ms": (pieces[0] - started) * 1000,
        "tokens": count,
        "rate": (count - 1) / (pieces[-1] - pieces[0]) if count > 1 and pieces[-1] > pieces[0] else None,
        "server_rate": count / (eval_ns / 1e9) if eval_ns and count else None,
        "load_ms": (last.get("load_duration") or 0) / 1e6,
        "prompt_tokens": last.get("prompt_eval_count"),
    }


def v1_chat(client: httpx.Client, url: str, model: str, text: str, tokens: int) -> dict:
    """One streamed /v1/chat/completions, timed on the client like `api_chat`."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    pieces: list[float] = []
    usage: dict = {}
    timings: dict = {}
    started = time.perf_counter()
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise refusal(response, "/v1/chat/completions")
        for chunk in sse_chunks(response.iter_lines()):
            if "error" in chunk:
                raise Failed(f"/v1/chat/completions: {json.dumps(chunk['error'])[:300]}")
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    pieces.append(time.perf_counter())
    if not pieces or not usage:
        raise Failed("/v1/chat/completions: no content or no usage in the stream")
    count = int(usage["completion_tokens"])
    return {
        "ttft_ms": (pieces[0] - started) * 1000,
        "tokens": count,
        "rate": (count - 1) / (pieces[-1] - pieces[0]) if count > 1 and pieces[-1] > pieces[0] else None,
        "server_rate": timings.get("tokens_per_s"),
        "prompt_tokens": usage.get("prompt_tokens"),
    }


def unload(client: httpx.Client, url: str, model: str) -> None:
    """The model unloaded (keep_alive 0), and /api/ps showing nothing loaded."""
    answer, _ = post(client, f"{url}/api/generate", {"model": model, "prompt": "", "keep_alive": 0}, "unload")
    if answer.get("done_reason") != "unload":
        raise Failed(f"unload: done_reason {answer.get('done_reason')!r}, not 'unload'")
    response = client.get(f"{url}/api/ps")
    if response.status_code != 200:
        raise refusal(response, "/api/ps")
    if response.json().get("models"):
        raise Failed(f"/api/ps still lists {[m.get('name') for m in response.json()['models']]} after the unload")


def run_anchor(home: str, threads: int, text: str) -> dict:
    """`edgellm run -n 1 --json`: its load_ms and ttft_ms, the prompt tokens and the process's wall time."""
    started = time.perf_counter()
    done = edgellm_cli(
        home,
        "run",
        "-m",
        str(TEST_MODEL),
        "-c",
        str(CTX),
        "-t",
        str(threads),
        "-fa",
        "on",
        "--temp",
        "0",
        "-n",
        "1",
        "-p",
        text,
        "--json",
    )
    wall = time.perf_counter() - started
    record = json.loads(done.stdout.strip().splitlines()[-1])
    if record.get("ttft_ms") is None:
        raise Failed(f"edgellm run --json: no ttft_ms: {done.stdout[-300:]}")
    return {
        "load_ms": float(record["load_ms"]),
        "ttft_ms": float(record["ttft_ms"]),
        "total_ms": float(record["load_ms"]) + float(record["ttft_ms"]),
        "prompt_tokens": record.get("prompt_tokens"),
        "wall_ms": wall * 1000,
    }


class Part:
    """What one part measured, round after round, and whether it failed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found: dict[str, list[Any]] = {}
        self.error: str | None = None

    def add(self, key: str, value: Any) -> None:
        if value is not None:
            self.found.setdefault(key, []).append(value)

    def values(self, key: str) -> list[Any]:
        return self.found.get(key, [])


def cold_round(
    client: httpx.Client, serve: LoggedProcess, model: str, home: str, threads: int, round_: int, part: Part
) -> None:
    """Part 1, one round: the server's cold /api/chat and run's load + TTFT, in an order that turns; the model file
    read again before each (the page cache may have let some of it go meanwhile)."""
    text = ask(TOPICS[round_ % len(TOPICS)])

    def served() -> None:
        unload(client, serve.url, model)
        read_once(TEST_MODEL)
        found = api_chat(client, serve.url, model, text, 4)
        part.add("serve_ttft", found["ttft_ms"])
        part.add("serve_load", found["load_ms"])
        part.add("serve_prompt", found["prompt_tokens"])

    def run() -> None:
        read_once(TEST_MODEL)
        found = run_anchor(home, threads, text)
        part.add("run_total", found["total_ms"])
        part.add("run_load", found["load_ms"])
        part.add("run_ttft", found["ttft_ms"])
        part.add("run_wall", found["wall_ms"])
        part.add("run_prompt", found["prompt_tokens"])

    steps = [served, run] if round_ % 2 == 0 else [run, served]
    for step in steps:
        step()
    print(
        f"  round {round_ + 1}: cold /api/chat to first content {part.values('serve_ttft')[-1]:.0f} ms (its load "
        f"{part.values('serve_load')[-1]:.0f} ms); edgellm run load + TTFT {part.values('run_total')[-1]:.0f} ms "
        f"({part.values('run_load')[-1]:.0f} + {part.values('run_ttft')[-1]:.0f})",
        flush=True,
    )


def api_round(
    client: httpx.Client,
    serve: LoggedProcess,
    model: str,
    options: argparse.Namespace,
    round_: int,
    counter: list[int],
    part: Part,
) -> None:
    """Parts 2 and 3, one round: short requests, then one decode, on each API in turn (the machine's load drifts
    alike for both), the API that goes first turning from round to round."""

    def topic() -> str:
        counter[0] += 1
        return TOPICS[counter[0] % len(TOPICS)]

    apis: list[tuple[str, Callable[..., dict]]] = [("api", api_chat), ("v1", v1_chat)]
    if round_ % 2:
        apis.reverse()
    for _ in range(options.ttft_requests):
        for name, send in apis:
            part.add(f"{name}_ttft", send(client, serve.url, model, ask(topic()), 1)["ttft_ms"])
    text = ask(TOPICS[round_ % len(TOPICS)])  # the same for both: the same greedy reply, the same work
    for name, send in apis:
        found = send(client, serve.url, model, text, options.tokens)
        for key in ("rate", "server_rate", "tokens", "ttft_ms"):
            part.add(f"{name}_decode_{key}", found[key])
    short = options.ttft_requests
    print(
        f"  round {round_ + 1}: TTFT /api/chat {median(part.values('api_ttft')[-short:]):.0f} ms, /v1 "
        f"{median(part.values('v1_ttft')[-short:]):.0f} ms; decode t/s /api/chat "
        f"{part.values('api_decode_rate')[-1]:.1f}, /v1 {part.values('v1_decode_rate')[-1]:.1f}",
        flush=True,
    )


def embed_pass(
    client: httpx.Client, send: Callable[[list[str]], list[list[float]]], texts: list[str], batch: int
) -> tuple[float, list[list[float]]]:
    """All `texts` in requests of `batch`, one after another: the inputs per second and the vectors, in order."""
    vectors: list[list[float]] = []
    started = time.perf_counter()
    for at in range(0, len(texts), batch):
        chunk = texts[at : at + batch]
        found = send(chunk)
        if len(found) != len(chunk):
            raise Failed(f"{len(found)} vectors for {len(chunk)} inputs")
        vectors += found
    return len(texts) / (time.perf_counter() - started), vectors


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b))
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norms if norms else 0.0


def embed_senders(
    client: httpx.Client, serve: LoggedProcess, model: str, llama: LoggedProcess | None
) -> dict[str, Callable[[list[str]], list[list[float]]]]:
    def edgellm(texts: list[str]) -> list[list[float]]:
        answer, _ = post(
            client, f"{serve.url}/api/embed", {"model": model, "input": texts, "keep_alive": -1}, "/api/embed"
        )
        return answer["embeddings"]

    senders = {"edgellm": edgellm}
    if llama is not None:

        def llama_server(texts: list[str]) -> list[list[float]]:
            answer, _ = post(
                client, f"{llama.url}/v1/embeddings", {"input": texts, "model": "test"}, "llama-server /v1/embeddings"
            )
            return [item["embedding"] for item in sorted(answer["data"], key=lambda item: item["index"])]

        senders["llama"] = llama_server
    return senders


def embed_rounds(
    client: httpx.Client,
    serve: LoggedProcess,
    model: str,
    llama: LoggedProcess | None,
    options: argparse.Namespace,
    part: Part,
) -> None:
    """Part 4: each round, both servers (in an order that turns), each with both batch sizes."""
    texts = sentences(options.texts)
    senders = embed_senders(client, serve, model, llama)
    for send in senders.values():  # the first request loads (edgellm) or warms up: not counted
        send(texts[:4])
    batches = sorted({options.embed_batch, options.texts})
    kept: dict[str, list[list[float]]] = {}
    for round_ in range(options.embed_rounds):
        names = list(senders)
        order = names if round_ % 2 == 0 else names[::-1]
        said = []
        for name in order:
            for batch in batches:
                rate, vectors = embed_pass(client, senders[name], texts, batch)
                part.add(f"{name}_{batch}", rate)
                kept.setdefault(name, vectors)
                said.append(f"{name} ×{batch} {rate:.1f}")
        print(f"  round {round_ + 1}: inputs/s " + ", ".join(said), flush=True)
    if "llama" in kept:
        ours, theirs = kept["edgellm"], kept["llama"]
        if len(ours[0]) != len(theirs[0]):
            raise Failed(f"vectors of {len(ours[0])} numbers from edgellm, {len(theirs[0])} from llama-server")
        for a, b in zip(ours, theirs):
            part.add("cosine", cosine(a, b))
        part.add("dimensions", len(ours[0]))


def report_cold(part: Part, findings: Findings) -> None:
    serve, anchor = part.values("serve_ttft"), part.values("run_total")
    if not serve or not anchor:
        return
    print("cold load through /api/chat (the model not loaded, its file in the page cache):")
    print(f"  serve: send to first content line      {spread(serve)} ms")
    print(f"    its load_duration                    {spread(part.values('serve_load'))} ms")
    print(f"  edgellm run: load_ms + ttft_ms         {spread(anchor)} ms")
    print(f"    load_ms                              {spread(part.values('run_load'))} ms")
    print(f"    ttft_ms                              {spread(part.values('run_ttft'))} ms")
    print(f"    the whole process (wall)             {spread(part.values('run_wall'))} ms")
    print(
        f"  prompt tokens: /api/chat {sorted(set(part.values('serve_prompt')))} (chat template), run "
        f"{sorted(set(part.values('run_prompt')))} (raw prompt)"
    )
    anchor_label = "edgellm run -n 1: load_ms + ttft_ms (its --json)"
    findings.figure("cold load: /api/chat, send to first content line", median(serve), "ms")
    findings.figure("cold load: serve's load_duration", median(part.values("serve_load")), "ms")
    findings.figure(anchor_label, median(anchor), "ms")
    findings.figure("edgellm run -n 1: load_ms", median(part.values("run_load")), "ms")
    findings.figure("edgellm run -n 1: ttft_ms", median(part.values("run_ttft")), "ms")
    findings.figure("edgellm run -n 1: the whole process, wall", median(part.values("run_wall")), "ms")
    goal(
        findings,
        "cold /api/chat TTFT / edgellm run load + TTFT ≤ 1.2",
        median(serve) / median(anchor),
        "<=",
        1.2,
        anchor_label,
    )


def report_api(part: Part, options: argparse.Namespace, findings: Findings) -> None:
    api_ttft, v1_ttft = part.values("api_ttft"), part.values("v1_ttft")
    if api_ttft and v1_ttft:
        print(f"time to first token, model loaded ({options.ttft_requests} short requests a round, streamed):")
        print(f"  /api/chat              {spread(api_ttft)} ms")
        print(f"  /v1/chat/completions   {spread(v1_ttft)} ms")
        anchor = "TTFT, loaded, /v1/chat/completions"
        findings.figure("TTFT, loaded, /api/chat", median(api_ttft), "ms")
        findings.figure(anchor, median(v1_ttft), "ms")
        goal(findings, "/api/chat TTFT / /v1 TTFT ≤ 1.1", median(api_ttft) / median(v1_ttft), "<=", 1.1, anchor)
    api_rate, v1_rate = part.values("api_decode_rate"), part.values("v1_decode_rate")
    if api_rate and v1_rate:
        print(f"decode tokens/s ({options.tokens} tokens, streamed, rate on the client; the server's own beside it):")
        print(f"  /api/chat              {spread(api_rate)}")
        if part.values("api_decode_server_rate"):
            print(f"    eval_count / eval_duration   {spread(part.values('api_decode_server_rate'))}")
        print(f"  /v1/chat/completions   {spread(v1_rate)}")
        if part.values("v1_decode_server_rate"):
            print(f"    timings.tokens_per_s         {spread(part.values('v1_decode_server_rate'))}")
        api_tokens, v1_tokens = (
            sorted(set(part.values("api_decode_tokens"))),
            sorted(set(part.values("v1_decode_tokens"))),
        )
        print(f"  tokens produced: /api/chat {api_tokens}, /v1 {v1_tokens}")
        anchor = f"decode, /v1/chat/completions, rate on the client ({options.tokens} tokens)"
        findings.figure(
            f"decode, /api/chat, rate on the client ({options.tokens} tokens)", median(api_rate), "tokens/s"
        )
        findings.figure(anchor, median(v1_rate), "tokens/s")
        if part.values("api_decode_server_rate"):
            findings.figure(
                "decode, /api/chat, eval_count / eval_duration",
                median(part.values("api_decode_server_rate")),
                "tokens/s",
            )
        if part.values("v1_decode_server_rate"):
            findings.figure(
                "decode, /v1, timings.tokens_per_s", median(part.values("v1_decode_server_rate")), "tokens/s"
            )
        if api_tokens != [options.tokens] or v1_tokens != [options.tokens]:
            findings.note(f"decode: tokens produced /api/chat {api_tokens}, /v1 {v1_tokens}, asked {options.tokens}")
        goal(findings, "/api/chat decode / /v1 decode ≥ 0.98", median(api_rate) / median(v1_rate), ">=", 0.98, anchor)


def report_embed(part: Part, options: argparse.Namespace, findings: Findings) -> None:
    batches = sorted({options.embed_batch, options.texts})
    if not part.values(f"edgellm_{batches[0]}"):
        return
    print(f"embeddings, {options.texts} short texts (5-15 words), inputs/s over the whole pass:")
    for batch in batches:
        ours, theirs = part.values(f"edgellm_{batch}"), part.values(f"llama_{batch}")
        label = f"{batch} inputs a request" if batch != options.texts else f"all {batch} in one request"
        line = f"  {label:<26} /api/embed {spread(ours)}"
        findings.figure(f"embeddings, {label}: /api/embed", median(ours), "inputs/s")
        if theirs:
            anchor = f"embeddings, {label}: llama-server /v1/embeddings"
            ratio = median(ours) / median(theirs)
            line += f"   llama-server {spread(theirs)}   /api/embed / llama-server {ratio:.3f}"
            findings.figure(anchor, median(theirs), "inputs/s")
            findings.figure(f"embeddings, {label}: /api/embed / llama-server", ratio, "ratio", anchor=anchor)
        print(line)
    cosines = part.values("cosine")
    if cosines:
        print(
            f"  the same text's two vectors ({part.values('dimensions')[0]} numbers): cosine min {min(cosines):.4f}, "
            f"median {median(cosines):.4f}"
        )
        findings.figure("embeddings: cosine of edgellm's and llama-server's vectors, lowest", min(cosines), "cosine")


def goal(findings: Findings, text: str, value: float, op: str, target: float, anchor: str) -> None:
    findings.figure(text.rsplit(" ", 2)[0], value, "ratio", anchor=anchor)
    holds = findings.goal(text, value, op, target)
    print(f"  {text}: {value:.3f}  ({'ok' if holds else 'MISSED'})")


def attempt(part: Part, run: Callable[[], None], findings: Findings) -> bool:
    """Run one step of a part; a failure is said in one line and noted, and the part stops (the others go on)."""
    try:
        run()
        return True
    except (Failed, httpx.HTTPError, OSError, ValueError, KeyError, subprocess.TimeoutExpired, AssertionError) as error:
        first = one_line(error)
        part.error = f"part {part.name!r} failed: {type(error).__name__}: {first}"
        print(f"  {part.error}", flush=True)
        findings.note(part.error[:1000])
        return False


def attempt_rounds(part: Part, rounds: int, run_round: Callable[[int], None], findings: Findings) -> None:
    """Run a part's rounds in turn, until one fails (said and noted by `attempt`)."""
    for round_ in range(rounds):
        if not attempt(part, functools.partial(run_round, round_), findings):
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every part (default 3); medians")
    parser.add_argument("--tokens", type=int, default=128, help="decode tokens a request, part 3 (default 128)")
    parser.add_argument("--ttft-requests", type=int, default=3, help="short requests a round and API (default 3)")
    parser.add_argument("--texts", type=int, default=128, help="texts embedded in each pass, part 4 (default 128)")
    parser.add_argument("--embed-batch", type=int, default=32, help="inputs a request, part 4 (default 32)")
    parser.add_argument("--embed-rounds", type=int, default=1, help="rounds of part 4 (default 1: it is the slow one)")
    parser.add_argument("--threads", type=int, help="threads for every process (default: what edgellm's plan chooses)")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {','.join(PARTS)}")
    add_json_flag(parser)
    options = parser.parse_args()
    skip = {name.strip() for name in options.skip.split(",") if name.strip()}
    numbers = (options.rounds, options.tokens, options.ttft_requests, options.texts, options.embed_batch)
    if min(*numbers, options.embed_rounds) < 1:
        parser.error("--rounds, --tokens, --ttft-requests, --texts, --embed-batch and --embed-rounds must be 1 or more")
    if options.tokens + 64 > CTX:
        parser.error(f"--tokens {options.tokens} does not fit a {CTX}-token context")
    if skip - set(PARTS):
        parser.error(f"--skip: unknown part {', '.join(sorted(skip - set(PARTS)))}; parts: {', '.join(PARTS)}")
    findings = Findings("models", "models served by name: cold load, the Ollama API against the OpenAI one, embeddings")
    parts = {name: Part(name) for name in PARTS if name not in skip}
    load_before = os.getloadavg()[0]
    busy = load_before > 0.5 * (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        try:
            threads = options.threads or int(plan_json(home, "-c", str(CTX))["settings"]["threads"])
            model = import_model(home)
        except (Failed, RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as error:
            print(f"bench_models: {one_line(error)}", file=sys.stderr)
            findings.note(f"failed before any part: {one_line(error)}"[:1000])
            findings.save(options.json)
            return 1
        seconds = read_once(TEST_MODEL)
        print(
            f"models served by name: {TEST_MODEL.name} as {model}, {threads} threads, -c {CTX}, --parallel 1, "
            f"flash attention on, {options.rounds} rounds, {options.tokens} decode tokens, {os.cpu_count()} CPUs "
            f"(the model file read once first: {seconds:.2f} s)",
            flush=True,
        )
        if busy:
            print(f"  note: the machine is busy (load average {load_before:.1f}): the figures will be noisy")
        binary, why = cached_tool("llama-server") if "embed" in parts else (None, "")
        servers: list[LoggedProcess] = []
        try:
            serve = start_serve(threads, home)
            servers.append(serve)
        except AssertionError as error:
            print(f"bench_models: edgellm serve did not start: {one_line(error)}", file=sys.stderr)
            findings.note(f"edgellm serve did not start: {one_line(error)}")
            findings.save(options.json)
            return 1
        try:
            with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
                if "cold" in parts:
                    print("part 1: a cold load through /api/chat against edgellm run's load + TTFT", flush=True)
                    attempt_rounds(
                        parts["cold"],
                        options.rounds,
                        lambda round_: cold_round(client, serve, model, home, threads, round_, parts["cold"]),
                        findings,
                    )
                if "api" in parts:
                    print("parts 2 and 3: the loaded model through /api/chat and /v1/chat/completions", flush=True)

                    def warm_up() -> None:  # loads the model and warms both routes with a prompt of the measured
                        # shape (the first of a new length is slower): not counted
                        api_chat(client, serve.url, model, ask("a lamp"), 4, keep_alive=-1)
                        v1_chat(client, serve.url, model, ask("a chair"), 4)

                    ready = attempt(parts["api"], warm_up, findings)
                    counter = [0]
                    attempt_rounds(
                        parts["api"],
                        options.rounds if ready else 0,
                        lambda round_: api_round(client, serve, model, options, round_, counter, parts["api"]),
                        findings,
                    )
                if "embed" in parts:
                    print(f"part 4: embeddings, {options.texts} texts, /api/embed against llama-server", flush=True)
                    llama = None
                    if binary is None:
                        findings.note(f"embeddings against llama-server skipped: {why}")
                        print(f"  llama-server skipped: {why}", flush=True)
                    else:
                        try:
                            llama = start_llama_server(
                                binary,
                                threads,
                                CTX,
                                None,
                                batch=EMBED_BATCH,
                                flash="auto",
                                extra=["--embedding", "--pooling", "mean"],
                            )
                            servers.append(llama)
                            slots = next((line for line in llama.lines if "n_slots" in line), "")
                            print(f"  llama-server: {slots.strip() or 'its slot count not found in its log'}")
                        except AssertionError as error:
                            text = f"llama-server did not start: {one_line(error)}"
                            print(f"  {text}; edgellm's side alone", flush=True)
                            findings.note(text)
                            parts["embed"].error = text
                    attempt(
                        parts["embed"],
                        lambda: embed_rounds(client, serve, model, llama, options, parts["embed"]),
                        findings,
                    )
        finally:
            for server in servers:
                try:
                    server.stop(timeout=30)
                except AssertionError:
                    print(f"  {server.name} did not stop within 30 s: killed", flush=True)
    print()
    if "cold" in parts:
        report_cold(parts["cold"], findings)
    if "api" in parts:
        report_api(parts["api"], options, findings)
    if "embed" in parts:
        report_embed(parts["embed"], options, findings)
    if busy:
        findings.note(
            f"the machine was busy when this began (load average {load_before:.1f}, {os.cpu_count()} CPUs): the "
            f"figures are noisy"
        )
    findings.note(
        f"medians of {options.rounds} round(s) ({options.embed_rounds} of embeddings), {threads} threads, -c {CTX}, "
        f"--parallel 1, flash attention on (llama-server's embeddings: auto, -b/-ub {EMBED_BATCH}, its default slots); "
        f"{options.ttft_requests} short requests a round and API; {options.texts} texts, {options.embed_batch} a "
        f"request; {os.cpu_count()} CPUs"
    )
    findings.save(options.json)
    failed = [part.name for part in parts.values() if part.error]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
