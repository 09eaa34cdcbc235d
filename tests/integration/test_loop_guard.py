"""The loop guard on the real model's tokens: real tables and lists are never cut, and the base model's loops are
caught (greedy and sampled). On synthetic sequences, against the oracle find_loop: tests/unit/test_loop_guard.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.engine.loop_guard import MIN_SPAN
from tests.support.loops import find_loop, guard_hits

# --- with the real model's tokenizer --------------------------------------------------------------------


def row(cells: list[object]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |\n"


TABLE = (
    row(["item", "a", "b", "c"]) + "|---|---|---|---|\n" + "".join(row([f"item {n}", 0, 0, 0]) for n in range(1, 41))
)
WIDE_TABLE = row([f"c{n}" for n in range(30)]) + "|---" * 30 + "|\n" + row([0] * 30) + row([1] * 30)
NUMBERED = "".join(f"{n}. Check the value again.\n" for n in range(1, 31))
MULTIPLICATION = (
    row(["×", *range(1, 13)])
    + "|---" * 13
    + "|\n"
    + "".join(row([r, *(r * c for c in range(1, 13))]) for r in range(1, 13))
)
CSV = "date,rain,snow,hail,fog\n" + "".join(f"2024-01-{d:02d},0,0,0,0\n" for d in range(1, 32))
CODE = "def reset():\n" + "    x = 0\n" * 10 + "    return x\n"  # borderline, kept: 10 lines are ~60 tokens
RULES = "=" * 400 + "\n" + "-" * 2000 + "\n"

# Gemma 3 270M (base) answering "Tell me about the sea." greedily: this, from the first token to the end.
GREEDY_CYCLE = "Tell me about the sea. mendatanguser\n"
# The same at temp 0.8, seed 2: a near-loop (one extra line in the first copy), then an exact one.
SAMPLED_LOOP = (
    "Tell me what's the ocean?\n言音(mā-nā-ō-me)\n(a) the sea.\n(b) the water.\n(c) the ocean.\n"
    "(d) the sea-surface.\n(e) the water under the sea.\n"
    + "言音(mā-nā-ō-me)\n(a) the sea.\n(b) the water.\n(c) the ocean.\n(d) the sea-surface.\n"
    * 12
)
# At temp 0.8, seed 4: two lines that alternate, with one slip ("hear" three times) before the exact loop.
SLIP_LOOP = (
    "You are not going to be able to read it. You are going to be able to hear it.\n"
    + "I am going to be able to read it.\nI am going to be able to hear it.\n" * 3
    + "I am going to be able to hear it.\n" * 2
    + "I am going to be able to read it.\nI am going to be able to hear it.\n" * 14
)


@pytest.fixture(scope="module")
def tokenize(test_model: Path):
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(test_model), vocab_only=True, verbose=False)
    return lambda text: vocab.tokenize(text.encode(), add_bos=False, special=True)


@pytest.mark.parametrize(
    "text",
    [TABLE, WIDE_TABLE, NUMBERED, MULTIPLICATION, CSV, CODE, RULES],
    ids=["table", "wide-table", "numbered-list", "multiplication", "csv", "code", "rules"],
)
def test_legitimate_repetition_is_never_cut(tokenize, text: str) -> None:
    tokens = tokenize(text)
    assert len(tokens) > 60
    assert guard_hits(tokens) == []


def test_identical_lines_are_cut_only_past_min_span(tokenize) -> None:
    line = tokenize("    x = 0\n")
    assert guard_hits(tokenize("def reset():\n" + "    x = 0\n" * 40)) == []
    lines = tokenize("def reset():\n" + "    x = 0\n" * 60)
    first = guard_hits(lines)[0]
    assert first < 260
    loop = find_loop(lines[: first + 1])
    assert loop.period == len(line) and loop.span == MIN_SPAN


def test_the_base_models_greedy_loop_is_caught_after_min_span_tokens(tokenize) -> None:
    cycle = tokenize(GREEDY_CYCLE)
    tokens = tokenize(GREEDY_CYCLE * 60)
    hits = guard_hits(tokens)
    assert hits and hits[0] == MIN_SPAN - 1
    loop = find_loop(tokens[: hits[0] + 1])
    assert loop.period == len(cycle) and loop.start == 0


def test_the_base_models_sampled_loops_are_caught(tokenize) -> None:
    cycle = tokenize("言音(mā-nā-ō-me)\n(a) the sea.\n(b) the water.\n(c) the ocean.\n(d) the sea-surface.\n")
    tokens = tokenize(SAMPLED_LOOP)
    hits = guard_hits(tokens)
    assert hits, "the sampled loop escaped"
    assert find_loop(tokens[: hits[0] + 1]).period == len(cycle)
    assert hits[0] < 400

    slip = tokenize(SLIP_LOOP)
    hits = guard_hits(slip)
    assert hits and hits[0] < 400
    two_lines = tokenize("I am going to be able to read it.\nI am going to be able to hear it.\n")
    assert find_loop(slip[: hits[0] + 1]).period == len(two_lines)
