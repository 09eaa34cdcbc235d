"""Structured output (a JSON schema's grammar, logprobs, a forced tool call) against free decode and llama-server.

Same model, same threads, same flash attention and batch for both servers; every ratio is taken against an anchor of
this run. One request at a time, temperature 0, non-streamed; decode speed is each answer's own figure: edgellm's
`timings.tokens_per_s`, llama-server's `timings.predicted_per_second` (both: the tokens after the first over the time
after the first).

1. Constrained decode against free decode, edgellm: `edgellm serve -c 2048 --parallel 1`, the same chat message for
   both. Free: max_tokens N (--tokens, default 128), ignore_eos. Constrained: response_format json_schema with a
   schema that admits only a long reply (an array of exactly K objects {id, name, ok}, no extra keys, K ≈ N / 17 so
   the reply comes to about N tokens: how many it came to is printed) and no way to end early, max_tokens large
   enough to finish (checked: it ends on its own and is K rows). Goal: constrained ≥ 0.8 × free.
2. The same grammar against llama-server: the schema's GBNF, generated once by edgellm's own converter
   (`edgellm.grammar.json_schema.schema_grammar`), sent as `grammar` with the same raw prompt (part 1's message
   and a newline) to edgellm's /v1/completions and to `llama-server -c 2048 -np 1`'s /completion (temperature 0,
   the same max_tokens / n_predict; checked: it ends on its own and is K rows). Goal: edgellm ≥ 0.9 × llama-server.
   Free decode of N tokens (ignore_eos) on both is printed as figures (what each does without a grammar).
3. Logprobs: part 1's free chat request with `logprobs: true, top_logprobs: 5`, against the same without. Goal: ≥ 0.9.
4. Time to a tool call: a chat request with one tool (get_weather: city, a string of at most 20 characters; unit,
   celsius or fahrenheit) and tool_choice naming it: the wall time to the whole answer and its `timings.ttft_ms`,
   medians (figures, no goal). The city changes from round to round; the tokens evaluated are printed (a cached
   prefix evaluates fewer).

Both servers are started once, warmed by short requests (and one tool call), and kept for the run: their variants
are interleaved in an order that turns from round to round (--rounds), medians over rounds, the spread printed.
Threads: one count for both (edgellm's plan chooses it, --threads overrides): `-t T -tb T` for llama-server, `-t T`
for edgellm. Flash attention on, batch and micro-batch 512 everywhere. llama-server is the one
`benchmarks/llama_bench.py` builds from the wheel's own source and flags; when it is not built part 2 is skipped, and
said so. edgellm serve gets an EDGELLM_HOME of its own (the developer's state stays untouched). A request that fails
prints the server's error body; its part is said and noted, the others go on, and the exit status is 1. On a 2-core
machine any other load makes llama.cpp's threads wait on each other: the script says when the machine was busy at
the start.
Usage: .venv/bin/python benchmarks/bench_structured.py [--rounds 3] [--tokens 128] [--threads N] [--quick]
       [--skip constrained,llama,logprobs,tool] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, plan_json, spread

sys.path.insert(0, str(REPO))
from llama_bench import cached_tool
from llama_server import start_llama_server

from tests.support.server import LoggedProcess, ServerProcess

CTX = 2048
N_BATCH = 512
TOKENS_PER_ROW = 17  # what one {"id": 1, "name": "John", "ok": false} row comes to with the test model
PARTS = ("constrained", "llama", "logprobs", "tool")
CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Denver", "Hanoi", "Quito", "Dublin", "Perth")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    }
]


def rows_schema(rows: int) -> dict[str, Any]:
    """Exactly `rows` objects {id, name, ok}: a reply that cannot end before it is long."""
    return {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 0, "maximum": 999},
                "name": {"type": "string", "minLength": 3, "maxLength": 12},
                "ok": {"type": "boolean"},
            },
            "required": ["id", "name", "ok"],
            "additionalProperties": False,
        },
        "minItems": rows,
        "maxItems": rows,
    }


def ask(rows: int) -> str:
    return f"List {rows} people as a JSON array of objects with an id, a name and whether they are ok."


def raw_prompt(rows: int) -> str:
    """Part 2's prompt, the same text for both servers; the newline at its end leads the test model to plain JSON
    (without it, it indents each line with the most whitespace the grammar allows, some 30 tokens a line)."""
    return ask(rows) + "\n"


def start_serve(threads: int, home: str) -> LoggedProcess:
    server = ServerProcess(
        "-m",
        str(TEST_MODEL),
        "-c",
        str(CTX),
        "--parallel",
        "1",
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
    server.name = "edgellm serve --parallel 1"
    return server


def post(client: httpx.Client, server: LoggedProcess, path: str, body: dict) -> tuple[dict, float]:
    """The answer to one non-streamed request and the wall seconds it took; a refusal raises with the server's own
    error body, so that the problem is plain."""
    started = time.perf_counter()
    response = client.post(f"{server.url}{path}", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} {path}: {response.status_code} {response.text[:2000]}")
    return response.json(), elapsed


class Variant:
    """One kind of request: how to send it, and the figures each answer gave (`rate`: decode tokens/s)."""

    def __init__(self, name: str, label: str, part: str, send: Callable[[int], dict]) -> None:
        self.name, self.label, self.part, self.send = name, label, part, send
        self.rates: list[float] = []
        self.tokens: list[int] = []
        self.ttfts: list[float] = []
        self.walls: list[float] = []
        self.evaluated: list[int] = []

    def run(self, round_: int) -> None:
        found = self.send(round_)
        self.rates.append(found["rate"])
        self.tokens.append(found["tokens"])
        if found.get("ttft_ms") is not None:
            self.ttfts.append(found["ttft_ms"])
        self.walls.append(found["wall_ms"])
        if found.get("evaluated") is not None:
            self.evaluated.append(found["evaluated"])


def edgellm_figures(answer: dict, elapsed: float, name: str) -> dict:
    """Decode tokens/s, completion tokens, time to first token and tokens evaluated from edgellm's answer."""
    timings = answer.get("timings") or {}
    if timings.get("tokens_per_s") is None:
        raise RuntimeError(f"{name}: no timings.tokens_per_s in the answer: {json.dumps(answer)[:1000]}")
    return {
        "rate": float(timings["tokens_per_s"]),
        "tokens": int(answer["usage"]["completion_tokens"]),
        "ttft_ms": timings.get("ttft_ms"),
        "wall_ms": elapsed * 1000,
        "evaluated": timings.get("prompt_evaluated"),
    }


def check_rows(text: str, rows: int, name: str) -> None:
    """The reply is `rows` objects {id, name, ok}, as the schema says."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise RuntimeError(f"{name}: the reply is not JSON ({error}): {text[:500]!r}") from None
    if not (isinstance(value, list) and len(value) == rows and all(set(row) == {"id", "name", "ok"} for row in value)):
        raise RuntimeError(f"{name}: the reply is not {rows} rows of id, name, ok: {text[:500]!r}")


def edgellm_variants(client: httpx.Client, server: LoggedProcess, tokens: int, rows: int, limit: int) -> list[Variant]:
    """Parts 1, 3 and 4 (chat) and part 2's edgellm side (raw prompt, the schema's GBNF)."""
    from edgellm.grammar.json_schema import schema_grammar

    schema = rows_schema(rows)
    grammar = schema_grammar(schema)
    messages = [{"role": "user", "content": ask(rows)}]
    free_body = {"messages": messages, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}

    def free(_: int) -> dict:
        answer, elapsed = post(client, server, "/v1/chat/completions", free_body)
        return edgellm_figures(answer, elapsed, "free chat")

    def constrained(_: int) -> dict:
        body = {
            "messages": messages,
            "max_tokens": limit,
            "temperature": 0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "rows", "schema": schema}},
        }
        answer, elapsed = post(client, server, "/v1/chat/completions", body)
        choice = answer["choices"][0]
        if choice["finish_reason"] != "stop":
            raise RuntimeError(f"constrained chat: finish_reason {choice['finish_reason']} (max_tokens {limit})")
        check_rows(choice["message"]["content"], rows, "constrained chat")
        return edgellm_figures(answer, elapsed, "constrained chat")

    def logprobs(_: int) -> dict:
        answer, elapsed = post(
            client, server, "/v1/chat/completions", {**free_body, "logprobs": True, "top_logprobs": 5}
        )
        found = (answer["choices"][0].get("logprobs") or {}).get("content") or []
        if len(found) != tokens or any(len(item.get("top_logprobs", [])) != 5 for item in found):
            raise RuntimeError(f"logprobs: {len(found)} tokens with logprobs of {tokens}: {json.dumps(found)[:500]}")
        return edgellm_figures(answer, elapsed, "logprobs")

    def tool_call(round_: int) -> dict:
        city = CITIES[round_ % len(CITIES)]
        body = {
            "messages": [{"role": "user", "content": f"What is the weather in {city} right now?"}],
            "temperature": 0,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }
        answer, elapsed = post(client, server, "/v1/chat/completions", body)
        calls = answer["choices"][0]["message"].get("tool_calls") or []
        if len(calls) != 1 or calls[0]["function"]["name"] != "get_weather":
            raise RuntimeError(f"tool call: not one call of get_weather: {json.dumps(answer['choices'][0])[:1000]}")
        arguments = json.loads(calls[0]["function"]["arguments"])
        if set(arguments) != {"city", "unit"} or arguments["unit"] not in ("celsius", "fahrenheit"):
            raise RuntimeError(f"tool call: arguments {arguments!r}")
        return edgellm_figures(answer, elapsed, "tool call")

    def raw_constrained(_: int) -> dict:
        body = {"prompt": raw_prompt(rows), "max_tokens": limit, "temperature": 0, "grammar": grammar}
        answer, elapsed = post(client, server, "/v1/completions", body)
        choice = answer["choices"][0]
        if choice["finish_reason"] != "stop":
            raise RuntimeError(f"edgellm grammar: finish_reason {choice['finish_reason']} (max_tokens {limit})")
        check_rows(choice["text"], rows, "edgellm grammar")
        return edgellm_figures(answer, elapsed, "edgellm grammar")

    def raw_free(_: int) -> dict:
        body = {"prompt": raw_prompt(rows), "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
        answer, elapsed = post(client, server, "/v1/completions", body)
        return edgellm_figures(answer, elapsed, "edgellm raw free")

    return [
        Variant("free", f"edgellm chat, free, {tokens} tokens", "constrained", free),
        Variant("constrained", f"edgellm chat, json_schema ({rows} rows)", "constrained", constrained),
        Variant("logprobs", f"edgellm chat, free + logprobs/top 5, {tokens} tokens", "logprobs", logprobs),
        Variant("tool", "edgellm chat, tool call (tool_choice named)", "tool", tool_call),
        Variant("raw-constrained", "edgellm /v1/completions, grammar", "llama", raw_constrained),
        Variant("raw-free", f"edgellm /v1/completions, free, {tokens} tokens", "llama", raw_free),
    ]


def llama_variants(client: httpx.Client, server: LoggedProcess, tokens: int, rows: int, limit: int) -> list[Variant]:
    """Part 2's llama-server side: /completion with the same raw prompt and GBNF."""
    from edgellm.grammar.json_schema import schema_grammar

    grammar = schema_grammar(rows_schema(rows))

    def figures(answer: dict, elapsed: float, name: str) -> dict:
        timings = answer.get("timings") or {}
        if not timings.get("predicted_per_second"):
            raise RuntimeError(f"{name}: no timings.predicted_per_second: {json.dumps(answer)[:1000]}")
        return {
            "rate": float(timings["predicted_per_second"]),
            "tokens": int(timings["predicted_n"]),
            "ttft_ms": timings.get("prompt_ms"),
            "wall_ms": elapsed * 1000,
            "evaluated": timings.get("prompt_n"),
        }

    def constrained(_: int) -> dict:
        body = {"prompt": raw_prompt(rows), "n_predict": limit, "temperature": 0, "grammar": grammar}
        answer, elapsed = post(client, server, "/completion", body)
        if answer.get("stop_type") != "eos":
            raise RuntimeError(f"llama-server grammar: stop_type {answer.get('stop_type')} (n_predict {limit})")
        check_rows(answer["content"], rows, "llama-server grammar")
        return figures(answer, elapsed, "llama-server grammar")

    def free(_: int) -> dict:
        body = {"prompt": raw_prompt(rows), "n_predict": tokens, "temperature": 0, "ignore_eos": True}
        answer, elapsed = post(client, server, "/completion", body)
        return figures(answer, elapsed, "llama-server free")

    return [
        Variant("llama-constrained", "llama-server /completion, grammar", "llama", constrained),
        Variant("llama-free", f"llama-server /completion, free, {tokens} tokens", "llama", free),
    ]


def warm_up(client: httpx.Client, edgellm: LoggedProcess, llama: LoggedProcess | None) -> None:
    """A short request on each endpoint, before any figure counts."""
    post(client, edgellm, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    post(client, edgellm, "/v1/completions", {"prompt": "Hello", "max_tokens": 4, "temperature": 0})
    if llama is not None:
        post(client, llama, "/completion", {"prompt": "Hello", "n_predict": 4, "temperature": 0})


def report(
    variants: dict[str, Variant], broken: dict[str, str], options: argparse.Namespace, findings: Findings
) -> None:
    """The table, the ratios and the goals of the parts that ran."""
    print(f"  {'variant':<50} {'decode t/s':<40} {'tokens':<14} ttft ms (llama-server: prompt ms)")
    for variant in variants.values():
        if not variant.rates:
            continue
        counts = sorted(set(variant.tokens))
        ttft = f"{median(variant.ttfts):.0f}" if variant.ttfts else "—"
        print(f"  {variant.label:<50} {spread(variant.rates):<40} {','.join(map(str, counts)):<14} {ttft}")
        findings.figure(f"{variant.label}: decode", median(variant.rates), "tokens/s")

    def ratio(ours: str, anchor: str) -> float | None:
        if ours in broken or anchor in broken or not variants[ours].rates or not variants[anchor].rates:
            return None
        return median(variants[ours].rates) / median(variants[anchor].rates)

    def goal(text: str, value: float | None, target: float, anchor: str) -> None:
        if value is None:
            return
        findings.figure(text.split(" ≥ ")[0], value, "ratio", anchor=variants[anchor].label)
        holds = findings.goal(text, value, ">=", target)
        print(f"  {text}: {value:.3f}  ({'ok' if holds else 'MISSED'})")

    if "constrained" in variants and variants["constrained"].tokens:
        found = variants["constrained"].tokens
        print(f"  json_schema reply: {spread([float(t) for t in found])} tokens ({options.rows} rows)")
        findings.figure(f"json_schema reply, {options.rows} rows: tokens", median(found), "tokens")
    goal("constrained chat / free chat (edgellm) ≥ 0.8", ratio("constrained", "free"), 0.8, "free")
    if "raw-constrained" in variants and "llama-constrained" in variants:
        ours, theirs = variants["raw-constrained"].tokens, variants["llama-constrained"].tokens
        if ours and theirs:
            print(
                f"  same grammar, raw prompt: edgellm wrote {sorted(set(ours))} tokens, "
                f"llama-server {sorted(set(theirs))}"
            )
            findings.figure("grammar reply, raw prompt: tokens (edgellm)", median(ours), "tokens")
            findings.figure("grammar reply, raw prompt: tokens (llama-server)", median(theirs), "tokens")
            if set(ours) != set(theirs):
                findings.note(
                    f"the grammar's reply came to {sorted(set(ours))} tokens in edgellm, "
                    f"{sorted(set(theirs))} in llama-server (another greedy path, or the end counted otherwise)"
                )
    goal(
        "edgellm grammar / llama-server grammar (same GBNF, raw prompt) ≥ 0.9",
        ratio("raw-constrained", "llama-constrained"),
        0.9,
        "llama-constrained",
    )
    free_ratio = ratio("raw-free", "llama-free")
    if free_ratio is not None:
        print(f"  edgellm free / llama-server free (raw prompt, {options.tokens} tokens): {free_ratio:.3f}  (a figure)")
        findings.figure(
            "edgellm free / llama-server free (raw prompt)", free_ratio, "ratio", anchor=variants["llama-free"].label
        )
    goal("logprobs (top 5) / free chat (edgellm) ≥ 0.9", ratio("logprobs", "free"), 0.9, "free")
    if "tool" in variants and variants["tool"].walls and "tool" not in broken:
        call = variants["tool"]
        print(
            f"  tool call: whole answer {spread(call.walls)} ms, ttft {spread(call.ttfts)} ms, "
            f"{sorted(set(call.tokens))} tokens, prompt tokens evaluated {sorted(set(call.evaluated))}"
        )
        findings.figure("tool call (tool_choice named): wall time to the whole answer", median(call.walls), "ms")
        findings.figure("tool call (tool_choice named): timings.ttft_ms", median(call.ttfts), "ms")
        findings.figure("tool call (tool_choice named): completion tokens", median(call.tokens), "tokens")
    for name in ("free", "raw-free", "llama-free", "logprobs"):
        if name in variants and variants[name].tokens and set(variants[name].tokens) != {options.tokens}:
            findings.note(f"{variants[name].label}: {sorted(set(variants[name].tokens))} tokens, not {options.tokens}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick: 1)")
    parser.add_argument("--tokens", type=int, help="N: free decode tokens, the schema's reply near it (default 128)")
    parser.add_argument("--threads", type=int, help="threads for both servers (default: what edgellm's plan chooses)")
    parser.add_argument("--quick", action="store_true", help="smaller everything: 1 round, 32 tokens")
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {','.join(PARTS)}")
    add_json_flag(parser)
    options = parser.parse_args()
    options.rounds = options.rounds or (1 if options.quick else 3)
    options.tokens = options.tokens or (32 if options.quick else 128)
    options.rows = max(1, round(options.tokens / TOKENS_PER_ROW))
    limit = 48 * options.rows + 64  # room for the longest rows, pretty-printed
    skip = {part.strip() for part in options.skip.split(",") if part.strip()}
    if min(options.rounds, options.tokens) < 1:
        parser.error("--rounds and --tokens must be 1 or more")
    if limit + 256 > CTX:
        parser.error(f"--tokens {options.tokens} asks for a reply that does not fit a {CTX}-token context")
    if skip - set(PARTS):
        parser.error(f"--skip: unknown part {', '.join(sorted(skip - set(PARTS)))}; parts: {', '.join(PARTS)}")
    findings = Findings(
        "structured", "structured output (JSON schema, grammar, logprobs, tool call) against free decode"
    )
    failed: list[str] = []
    broken: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        threads = options.threads or int(plan_json(home)["settings"]["threads"])
        print(
            f"structured output: {TEST_MODEL.name}, {threads} threads (batch {threads}), flash attention on, batch "
            f"{N_BATCH}, -c {CTX}, N {options.tokens} tokens, {options.rows} rows, {options.rounds} rounds, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        load_before = os.getloadavg()[0]
        if load_before > 0.5 * (os.cpu_count() or 1):
            print(f"  note: the machine is busy (load average {load_before:.1f}): the figures will be noisy")
        binary, why = cached_tool("llama-server") if "llama" not in skip else (None, "")
        if "llama" not in skip and binary is None:
            findings.note(f"grammar against llama-server skipped: {why}")
            print(f"  part 2 (llama-server) skipped: {why}")
        servers: list[LoggedProcess] = []
        variants: dict[str, Variant] = {}
        try:
            edgellm = start_serve(threads, home)
            servers.append(edgellm)
            llama = None
            if binary is not None:
                try:
                    llama = start_llama_server(binary, threads, CTX, 1)
                    servers.append(llama)
                except Exception as error:  # the anchor failed: said, and the rest goes on
                    text = f"part 'llama' failed: llama-server did not start: {str(error).splitlines()[0]}"
                    print(f"  {text}", flush=True)
                    findings.note(text)
                    failed.append("llama")
            with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
                limit_args = (client, edgellm, options.tokens, options.rows, limit)
                wanted = {"free"} if {"constrained", "logprobs"} - skip else set()
                kinds = [v for v in edgellm_variants(*limit_args) if v.part not in skip or v.name in wanted]
                if llama is not None:
                    kinds += llama_variants(client, llama, options.tokens, options.rows, limit)
                else:
                    kinds = [v for v in kinds if v.part != "llama"]
                variants.update((v.name, v) for v in kinds)
                warm_up(client, edgellm, llama)

                def attempt(variant: Variant, run: Callable[[], Any]) -> None:
                    """One request; a failure is said (the server's error body with it) and noted, its variant
                    left out from then on, and the other parts go on."""
                    try:
                        run()
                    except Exception as error:
                        broken[variant.name] = str(error)
                        text = f"part {variant.part!r} failed: {variant.label}: {type(error).__name__}: {error}"
                        print(f"  {text}", flush=True)
                        findings.note(text[:1000])
                        if variant.part not in failed:
                            failed.append(variant.part)

                if "tool" in variants:  # its time is measured: the first tool call's setup does not count
                    attempt(variants["tool"], lambda: variants["tool"].send(len(CITIES) - 1))
                for round_ in range(options.rounds):
                    shift = round_ % len(kinds)
                    order = kinds[shift:] + kinds[:shift]
                    for variant in order:
                        if variant.name not in broken:
                            attempt(variant, lambda variant=variant, round_=round_: variant.run(round_))
                    print(
                        f"  round {round_ + 1}: decode t/s "
                        + ", ".join(f"{v.name} {v.rates[-1]:.1f}" for v in order if len(v.rates) > round_),
                        flush=True,
                    )
        except Exception as error:
            first = (str(error).strip().splitlines() or [""])[0]
            text = f"failed: {type(error).__name__}: {first}"
            print(f"  {text}", flush=True)
            findings.note(text)
            failed.append("serve")
        finally:
            for server in servers:
                try:
                    server.stop(timeout=30)
                except AssertionError:  # killed after the timeout: said, and the run goes on
                    print(f"  {server.name} did not stop within 30 s: killed", flush=True)
        report(variants, broken, options, findings)
    if load_before > 0.5 * (os.cpu_count() or 1):
        findings.note(
            f"the machine was busy when this began (load average {load_before:.1f}, {os.cpu_count()} CPUs): the "
            f"figures are noisy"
        )
    findings.note(
        f"medians of {options.rounds} round(s), {threads} threads, flash attention on, batch {N_BATCH}, -c {CTX}, "
        f"N {options.tokens}, {options.rows} rows; {os.cpu_count()} CPUs"
    )
    findings.save(options.json)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
