"""Speculative decoding (n-gram lookup, a draft model, auto) against plain decoding and llama-server's n-gram modes.

Workloads, greedy (temperature 0, EOS ignored), the same raw prompt text for both engines (BOS added by both):
- grounded: a ~450-token passage (prose, and a Python file) written out twice, then the first line of a third copy:
  the base model's greedy continuation copies the rest, so nearly every token could be drafted from the prompt (the
  share of edgellm's plain output that copies the passage is printed). --tokens tokens (default 256).
- free: open prompts ("The history of chess begins"; "Write a story about..." makes the base model repeat the prompt
  over and over, which would be drafted, not free, text), 200 tokens.
For each prompt the share of plain output tokens whose preceding 4 tokens occurred earlier (what an n-gram lookup could
find at all) is printed. edgellm runs in this process (`engine.local.load`, llama-server's settings: -c 2048, flash
attention, batch 512, T threads): speculation off, ngram, auto, and draft (a second target with a draft model beside
it, the test model's first 4 layers from `tests/support/drafts.first_layers_draft`). llama-server, built from the
wheel's own llama.cpp source and flags (`benchmarks/llama_bench.py`; skipped when not built), runs one process a mode,
`-np 1 -t T -tb T`, all started first and kept: no speculation, `--spec-type` ngram-simple, ngram-mod, ngram-map-k,
ngram-cache (their defaults), and `-md DRAFT --spec-type draft-simple`; POST /completion, cache_prompt false. The
draft-model variants decode 64 tokens a prompt (that draft is slow and seldom right). Decode speed is each answer's
own figure (edgellm: stats.tokens_per_s; llama-server: timings.predicted_per_second); a group's, its tokens over its
decode time. Drafted and accepted tokens: stats.speculation, timings.draft_n / draft_n_accepted. Every output is
compared with its engine's plain output token by token (llama-server's plain output with edgellm's): greedy, a
speculative reply should be the same (a WARNING says when edgellm's is not), though a batch's rounding may part them
where two tokens are nearly tied, as it parts the two engines.
Each round runs every variant on every prompt, the engines alternating, in an order that turns from round to round,
after a warm-up round; medians over --rounds. Goals (the issue's): grounded, edgellm ngram ≥ 1.8 × plain and ≥ 1.5 ×
llama-server's best n-gram mode; free text, edgellm auto ≥ 0.97 × plain. On a 2-core machine any other load makes
llama.cpp's threads wait on each other: the load is printed at the start and after each round.
Usage: .venv/bin/python benchmarks/bench_speculative.py [--rounds 3] [--tokens 256] [--free 2] [--threads N] [--json P]
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
from _common import REPO, TEST_MODEL, Findings, add_json_flag, median, plan_json

sys.path.insert(0, str(REPO))
from llama_bench import cached_tool
from llama_server import start_llama_server

CTX = 2048
FREE_TOKENS = 200
DRAFT_LAYERS = 4
DRAFT_TOKENS = 64  # what the draft-model variants decode a prompt: a draft made of the first layers is slow and
# seldom right, so its figures come from fewer tokens
PROSE = """The lighthouse on Carrow Point was built in 1871 from granite quarried two miles inland and hauled to the \
cliff on sledges pulled by oxen. Its first keeper, a former ship's carpenter named Elias Brand, kept a logbook in \
which he recorded the weather at dawn, noon and dusk, the ships that passed within sight of the lamp, and the small \
repairs he made to the tower and the cottage beside it. The logbook survives in the county archive, and it shows a \
man who trusted routine more than luck. Every evening he trimmed the wicks, polished the brass and wound the clockwork \
that turned the lens, and every morning he wrote down how much oil the lamp had burned during the night.
In the winter of 1879 a storm drove a coal schooner onto the rocks below the point. Brand saw her distress flare a \
little after two in the morning, woke his son, and rowed out with him in the station's small boat. They brought back \
four sailors on the first trip and three on the second, and the schooner broke apart before they could return for \
the last of her cargo. The entry for that night is only six lines long and ends with the words "lamp kept burning \
throughout". The rescue earned him a silver medal from the lifeboat society, which his granddaughter later gave to \
the museum in the harbour town, where it sits in a glass case next to his spectacles and a tin of lamp black.
The light was converted to electricity in 1932 and automated in 1968, when the last keeper moved away. Today the \
cottage is a small museum, open on summer weekends, and the tower still flashes twice every fifteen seconds, visible \
for eighteen nautical miles in clear weather. Walkers on the coastal path often stop at the gate to read the plaque, \
which quotes the last line of that winter entry."""
CODE = '''"""A small inventory of parts kept in a CSV file, with totals per supplier."""

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Part:
    number: str
    name: str
    supplier: str
    quantity: int
    unit_price: float

    @property
    def value(self) -> float:
        return self.quantity * self.unit_price


def read_parts(path: Path) -> list[Part]:
    """Every row of the file as a Part; rows with a missing quantity count as zero."""
    parts = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            quantity = int(row["quantity"] or 0)
            parts.append(Part(row["number"], row["name"], row["supplier"], quantity, float(row["unit_price"])))
    return parts


def totals_by_supplier(parts: list[Part]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for part in parts:
        totals[part.supplier] = totals.get(part.supplier, 0.0) + part.value
    return dict(sorted(totals.items(), key=lambda item: item[1], reverse=True))


def low_stock(parts: list[Part], threshold: int = 5) -> list[Part]:
    """The parts with fewer than `threshold` units left, the scarcest first."""
    return sorted((part for part in parts if part.quantity < threshold), key=lambda part: part.quantity)


def main() -> None:
    parts = read_parts(Path("inventory.csv"))
    for supplier, total in totals_by_supplier(parts).items():
        print(f"{supplier:<20} {total:>12,.2f}")
    for part in low_stock(parts):
        print(f"reorder {part.number} ({part.name}): {part.quantity} left")


if __name__ == "__main__":
    main()
'''
# open prompts whose greedy continuation repeats itself least with the base test model ("Write a story about a cat."
# makes it repeat the prompt over and over: nearly every token would be drafted, which says nothing about free text)
FREE = (
    "The history of the city of Rome begins",
    "The history of chess begins",
    "The history of the printing press begins",
)
EDGELLM_MODES = ("off", "ngram", "auto", "draft")
LLAMA_MODES = ("none", "ngram-simple", "ngram-mod", "ngram-map-k", "ngram-cache", "draft-simple")
NGRAM_MODES = LLAMA_MODES[1:5]


def copy_prompt(passage: str) -> tuple[str, str]:
    """The passage twice and the first line of a third copy; and the rest of it, which greedy decoding should copy."""
    head, rest = passage.split("\n", 1)
    return f"The same text, copied three times.\n\nCopy 1:\n{passage}\n\nCopy 2:\n{passage}\n\nCopy 3:\n{head}\n", rest


def overlap(text: str, passage: str) -> float:
    """The share of `text`'s characters in runs of 20 or more that it has in common with `passage`."""
    blocks = difflib.SequenceMatcher(None, text, passage, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks if block.size >= 20) / max(1, len(text))


def findable(prompt: list[int], output: list[int], n: int = 4) -> float:
    """The share of output tokens whose preceding n tokens occurred earlier, in the prompt or the output."""
    seen, hits, whole = set(), 0, prompt + output
    for i in range(n, len(whole)):
        key = tuple(whole[i - n : i])
        hits += i >= len(prompt) and key in seen
        seen.add(key)
    return hits / max(1, len(output))


def same_prefix(tokens: list[int], plain: list[int]) -> float:
    """The share of `tokens` that reproduce `plain` before the first difference."""
    same = next((i for i, (a, b) in enumerate(zip(tokens, plain)) if a != b), min(len(tokens), len(plain)))
    return same / max(1, min(len(tokens), len(plain)))


def edgellm_run(model: Any, tokens: list[int], n: int, mode: str | None) -> dict:
    """One greedy generation in this process (`mode` None: no speculation option, an engine without it)."""
    from edgellm.engine.contract import GenerationOptions, Sampling

    extra = {} if mode is None else {"speculation": mode}
    options = GenerationOptions(Sampling(temp=0.0), max_tokens=n, ignore_eos=True, cache_prompt=False, **extra)
    generation = model.generation(tokens, options)
    text = "".join(generation)
    stats, spec = generation.stats, getattr(generation.stats, "speculation", None)
    if stats.completion_tokens != n or not stats.tokens_per_s:
        raise RuntimeError(f"edgellm {mode}: {stats}")
    found = dict(rate=stats.tokens_per_s, n=n, tokens=list(generation.tokens), text=text)
    return found | dict(drafted=getattr(spec, "drafted", 0), accepted=getattr(spec, "accepted", 0))


def llama_run(client: httpx.Client, server: Any, prompt: str, n: int) -> dict:
    """One greedy /completion of the raw prompt (llama-server adds BOS)."""
    body = dict(prompt=prompt, n_predict=n, temperature=0, cache_prompt=False, ignore_eos=True, return_tokens=True)
    response = client.post(f"{server.url}/completion", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"{server.name}: {response.status_code} {response.text[:500]}")
    answer = response.json()
    timings = answer["timings"]
    found = dict(rate=timings["predicted_per_second"], n=timings["predicted_n"], tokens=answer["tokens"])
    return found | dict(
        text=answer["content"], drafted=timings.get("draft_n", 0), accepted=timings.get("draft_n_accepted", 0)
    )


def group_rate(found: list[dict]) -> float:
    """Tokens over decode time, summed over a group's prompts (one round)."""
    return sum(r["n"] for r in found) / sum(r["n"] / r["rate"] for r in found)


def ours_run(model: Any, mode: str, speculation: bool) -> Any:
    cap = DRAFT_TOKENS if mode == "draft" else CTX
    return lambda prompt, n: edgellm_run(model, prompt["tokens"], min(n, cap), mode if speculation else None)


def theirs_run(client: httpx.Client, server: Any, mode: str) -> Any:
    cap = DRAFT_TOKENS if mode == "draft-simple" else CTX
    return lambda prompt, n: llama_run(client, server, prompt["text"], min(n, cap))


def start_servers(binary: Path, threads: int, draft: Path | None, findings: Findings, failed: list[str]) -> dict:
    """One llama-server a mode (draft-simple only with a draft), ready; one that does not start is said and noted."""
    servers = {}
    for mode in [m for m in LLAMA_MODES if m != "draft-simple" or draft]:
        extra = (["--spec-type", mode] if mode != "none" else []) + (
            ["-md", str(draft)] if draft and mode == "draft-simple" else []
        )
        try:
            servers[mode] = start_llama_server(binary, threads, CTX, 1, extra=extra)
        except AssertionError as error:
            text = f"llama-server {mode} did not start: {str(error).splitlines()[0]}"
            print(f"  {text}", flush=True)
            findings.note(text)
            failed.append(f"llama-server {mode}")
    return servers


def measure(variants: list, prompts: dict, rounds: int, findings: Findings, failed: list[str]) -> dict:
    """Every variant on every prompt, round after round, in an order that turns, after a warm-up round (8 tokens of
    the shortest prompt); variant -> prompt -> results. A variant that fails is said, noted and left out after."""
    runs: dict[str, dict[str, list[dict]]] = {name: {} for name, _ in variants}
    warm = min(prompts.items(), key=lambda item: len(item[1]["tokens"]))
    for round_ in range(-1, rounds):
        started = time.monotonic()
        shift = max(0, round_) % len(variants)
        for key, prompt in [warm] if round_ < 0 else prompts.items():
            for name, run in variants[shift:] + variants[:shift]:
                if name in failed:
                    continue
                try:
                    found = run(prompt, 8 if round_ < 0 else prompt["n"])
                    if round_ >= 0:
                        runs[name].setdefault(key, []).append(found)
                except Exception as error:
                    text = f"{name} failed: {type(error).__name__}: {str(error)[:300]}"
                    print(f"  {text}", flush=True)
                    findings.note(text)
                    failed.append(name)
        if round_ < 0:
            continue
        done = [name for name in runs if name not in failed and runs[name]]
        rates = [f"{name} {group_rate([runs[name][k][-1] for k in runs[name]]):.1f}" for name in done]
        print(
            f"  round {round_ + 1} ({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.1f}), t/s: "
            + ", ".join(rates),
            flush=True,
        )
    return {name: found for name, found in runs.items() if name not in failed and found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens decoded on a grounded prompt (default 256)")
    parser.add_argument("--free", type=int, default=2, choices=range(1, len(FREE) + 1), help="free prompts (2)")
    parser.add_argument("--threads", type=int, help="threads for both engines (default: what edgellm's plan chooses)")
    add_json_flag(parser)
    options = parser.parse_args()
    findings = Findings("speculative", "speculative decoding against plain decoding and llama-server's n-gram modes")
    from edgellm.engine.contract import GenerationOptions, LoadParams
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.local import load

    speculation = "speculation" in {field.name for field in dataclasses.fields(GenerationOptions)}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgellm-bench-") as home:
        threads = options.threads or int(plan_json(home)["settings"]["threads"])
        print(
            f"speculative decoding: {TEST_MODEL.name}, {threads} threads, -c {CTX}, flash attention on, batch 512, "
            f"{options.rounds} rounds, {os.cpu_count()} CPUs",
            flush=True,
        )
        load_before = os.getloadavg()[0]
        if load_before > 0.5 * (os.cpu_count() or 1):
            print(f"  note: the machine is busy (load average {load_before:.1f}): the figures will be noisy")
        draft = None
        if not speculation:
            findings.note("edgellm has no GenerationOptions.speculation yet: only its plain decoding was measured")
            print("  edgellm has no GenerationOptions.speculation yet: its plain decoding only")
        else:
            try:
                from tests.support.drafts import first_layers_draft

                draft = first_layers_draft(TEST_MODEL, Path(home) / "draft.gguf", DRAFT_LAYERS)
            except Exception as error:  # no draft: its variants are left out, and said
                findings.note(f"draft-model variants skipped: {type(error).__name__}: {error}")
                print(f"  draft-model variants skipped: {error}")
        log = LlamaLog(Path(home) / "llama.log", echo=False)

        def params(path: Path) -> Any:
            same = dict(n_ctx=CTX, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, flash_attn=True)
            return LoadParams(path=path, kv="f16", seed=-1, **same)

        model = load(params(TEST_MODEL), log)
        drafted = None  # the target with the draft model beside it
        if draft:
            drafted = load(params(TEST_MODEL), log)
            drafted.draft = load(params(draft), log)
        prompts = {}
        for name, passage in (("prose", PROSE), ("code", CODE)):
            text, rest = copy_prompt(passage)
            prompts[name] = dict(text=text, rest=rest, n=options.tokens, group="grounded")
        for text in FREE[: options.free]:
            prompts[text.split()[-2]] = dict(text=text, rest=None, n=FREE_TOKENS, group="free")
        for prompt in prompts.values():
            prompt["tokens"] = model.tokenize(prompt["text"], add_bos=True, special=False)
        print("  prompts: " + ", ".join(f"{k} {len(p['tokens'])} tokens" for k, p in prompts.items()), flush=True)
        binary, why = cached_tool("llama-server")
        if binary is None:
            findings.note(f"llama-server skipped: {why}")
            print(f"  llama-server skipped: {why}")
        servers: dict[str, Any] = {}
        try:
            servers = start_servers(binary, threads, draft, findings, failed) if binary else {}
            with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
                modes = [m for m in EDGELLM_MODES if (speculation or m == "off") and (m != "draft" or drafted)]
                ours = [(f"edgellm {m}", ours_run(drafted if m == "draft" else model, m, speculation)) for m in modes]
                theirs = [(f"llama-server {m}", theirs_run(client, server, m)) for m, server in servers.items()]
                variants = [v for pair in itertools.zip_longest(ours, theirs) for v in pair if v]  # alternating
                runs = measure(variants, prompts, options.rounds, findings, failed)
        finally:
            for server in servers.values():
                try:
                    server.stop(timeout=30)
                except AssertionError:
                    print(f"  {server.name} did not stop within 30 s: killed", flush=True)
            for loaded in (model, drafted):  # a model closes its draft model too
                if loaded is not None:
                    loaded.close()
    report(runs, prompts, findings)
    if load_before > 0.5 * (os.cpu_count() or 1):
        findings.note(f"the machine was busy when this began (load average {load_before:.1f}): the figures are noisy")
    findings.note(
        f"medians of {options.rounds} round(s), {threads} threads, -c {CTX}, flash attention on, batch 512, "
        f"{options.tokens} tokens on a grounded prompt, {FREE_TOKENS} on a free one; {os.cpu_count()} CPUs"
    )
    findings.save(options.json)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def report(runs: dict, prompts: dict, findings: Findings) -> None:
    """The workloads, the table, the figures and the goals."""
    plain = runs.get("edgellm off")
    if not plain:
        return
    print("\n  the workloads (edgellm's plain output):")
    for key, prompt in prompts.items():
        first = plain[key][0]
        share = findable(prompt["tokens"], first["tokens"])
        copied = overlap(first["text"], prompt["rest"]) if prompt["rest"] else None
        print(
            f"    {key:<8} {prompt['group']:<8} {len(prompt['tokens'])} prompt tokens, {first['n']} decoded, "
            + (f"{copied:.0%} of them copying the passage, " if copied is not None else "")
            + f"{share:.0%} findable by a 4-gram lookup"
        )
        findings.figure(f"{key} ({prompt['group']}): plain output findable by a 4-gram lookup", share, "ratio")
        if copied is not None:
            findings.figure(f"{key} (grounded): plain output copying the passage", copied, "ratio")

    def results(name: str, group: str) -> list[tuple[str, dict]]:
        return [(k, r) for k, p in prompts.items() if p["group"] == group for r in runs[name].get(k, [])]

    def rate(name: str, group: str) -> float:
        keys = [k for k, p in prompts.items() if p["group"] == group]
        return median([group_rate([runs[name][k][r] for k in keys]) for r in range(len(runs[name][keys[0]]))])

    def reference(name: str) -> str:
        """What a variant's tokens are compared with: its own engine's plain decoding (llama-server's: edgellm's)."""
        return (
            "llama-server none" if name.startswith("llama-server ") and name != "llama-server none" else "edgellm off"
        )

    groups = ("grounded", "free")
    print(
        f"\n  {'variant':<26}"
        + "".join(f"{g + ' t/s':>14} {'× plain':>8} {'accepted':>14} {'same':>5}" for g in groups)
    )
    table: dict[tuple[str, str], float] = {}
    warnings: list[str] = []
    for name in runs:
        cells = ""
        for group in groups:
            found = results(name, group)
            table[name, group] = value = rate(name, group)
            drafted, accepted = sum(r["drafted"] for _, r in found), sum(r["accepted"] for _, r in found)
            same = min(same_prefix(r["tokens"], runs[reference(name)][k][0]["tokens"]) for k, r in found)
            ratio = value / table["edgellm off", group]
            share = f"{accepted / drafted:.0%} of {drafted // len(found)}" if drafted else "—"
            cells += f"{value:>14.1f} {ratio:>8.3f} {share:>14} {same:>5.0%}"
            findings.figure(f"{group}: {name}", value, "tokens/s")
            if name != "edgellm off":
                findings.figure(f"{group}: {name} / edgellm plain", ratio, "ratio", f"{group}: edgellm off")
            if drafted:
                findings.figure(
                    f"{group}: {name}, accepted / drafted ({drafted // len(found)} drafted a reply)",
                    accepted / drafted,
                    "ratio",
                )
            if name.startswith("edgellm") and same < 1:
                warnings.append(f"{name} on {group}: other tokens than plain decoding after {same:.0%} of the reply")
        print(f"  {name:<26}{cells}")
    print(
        "  (accepted: the drafted tokens the target kept, of the tokens drafted a reply; same: the share of a reply's\n"
        "  tokens that its engine's plain reply has before the first difference, the worst reply; for llama-server\n"
        "  none: edgellm plain's)"
    )
    for text in warnings:
        print(f"  WARNING: {text}")
        findings.note(text)
    print(f"\n  {'by prompt: × plain':<26}" + "".join(f"{key:>10}" for key in prompts))
    for name in runs:
        ratios = [median([r["rate"] for r in runs[name][k]]) / median([r["rate"] for r in plain[k]]) for k in prompts]
        print(f"  {name:<26}" + "".join(f"{ratio:>10.3f}" for ratio in ratios))
    best = max(
        (m for m in NGRAM_MODES if f"llama-server {m}" in runs),
        key=lambda m: table[f"llama-server {m}", "grounded"],
        default=None,
    )
    goals = [
        ("grounded: edgellm ngram / plain ≥ 1.8", "edgellm off", "grounded", 1.8),
        ("grounded: edgellm ngram / llama-server best n-gram ≥ 1.5", f"llama-server {best}", "grounded", 1.5),
        ("free text: edgellm auto / plain ≥ 0.97", "edgellm off", "free", 0.97),
    ]
    if best:
        value = table[f"llama-server {best}", "grounded"]
        print(f"  llama-server's best n-gram mode on grounded: {best}, {value:.1f} t/s")
        findings.figure(f"grounded: llama-server's best n-gram mode ({best})", value, "tokens/s")
    for text, anchor, group, target in goals:
        ours = text.split(": ")[1].split(" / ")[0]
        if (ours, group) in table and (anchor, group) in table:
            holds = findings.goal(text, table[ours, group] / table[anchor, group], ">=", target)
            print(f"  {text}: {table[ours, group] / table[anchor, group]:.3f}  ({'ok' if holds else 'MISSED'})")


if __name__ == "__main__":
    raise SystemExit(main())
