"""The loop guard: exact loops are found at the thresholds and not before, the incremental guard agrees with
find_loop token by token, real tables and lists are never cut, and the base model's loops are caught."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edgellm.engine.loop_guard import MIN_REPEATS, MIN_SPAN, Loop, LoopGuard, find_loop

PREFIX = list(range(10_000, 13_000))  # tokens that never repeat, distinct from every unit below


def looped(unit: list[int], span: int, prefix: int = 0) -> list[int]:
    """`prefix` non-repeating tokens, then `unit` repeated over `span` tokens (the last copy may be cut)."""
    copies = unit * (span // len(unit) + 1)
    return PREFIX[:prefix] + copies[:span]


def guard_hits(tokens: list[int], **thresholds: int) -> list[int]:
    """The positions at which an incremental guard fed `tokens` reports a loop."""
    guard = LoopGuard(**thresholds)
    return [i for i, token in enumerate(tokens) if guard.feed(token)]


@pytest.mark.parametrize("period", [1, 3, 17, 100])
def test_a_loop_is_found_exactly_at_the_thresholds(period: int) -> None:
    unit = list(range(1, period + 1))
    needed = max(MIN_SPAN, MIN_REPEATS * period)
    assert find_loop(looped(unit, needed - 1, prefix=40)) is None
    assert find_loop(looped(unit, needed, prefix=40)) == Loop(period, needed // period, 40, needed)
    assert guard_hits(looped(unit, needed + 5, prefix=40)) == list(range(40 + needed - 1, 40 + needed + 5))


def test_a_long_period_needs_its_repeats_not_just_the_span() -> None:
    unit = list(range(1, 101))
    assert find_loop(looped(unit, 399)) is None  # 399 tokens, but not four whole copies
    assert find_loop(looped(unit, 400)) == Loop(100, 4, 0, 400)


def test_a_loop_after_a_long_prefix_starts_where_the_repetition_starts() -> None:
    tokens = looped([7, 8, 9, 8, 7], 600, prefix=3000)
    assert find_loop(tokens) == Loop(5, 120, 3000, 600)
    assert guard_hits(tokens)[0] == 3000 + MIN_SPAN - 1


def test_the_smallest_period_is_reported() -> None:
    assert find_loop(looped([4, 5, 4, 5, 4, 5], 300)) == Loop(2, 150, 0, 300)
    assert find_loop(looped([4, 5, 6], 300) + [4, 4, 4]) is None  # the loop broke off at the end


def test_thresholds_are_parameters() -> None:
    tokens = looped([1, 2, 3], 30, prefix=5)
    assert find_loop(tokens) is None
    assert find_loop(tokens, min_span=30, min_repeats=10) == Loop(3, 10, 5, 30)
    assert find_loop(tokens, min_span=31) is None
    assert find_loop(looped(list(range(1, 60)), 2000), max_period=58) is None
    assert find_loop(looped(list(range(1, 60)), 2000), max_period=59).period == 59
    with pytest.raises(ValueError):
        LoopGuard(min_repeats=1)


def test_the_guard_agrees_with_find_loop_on_every_prefix() -> None:
    rng = random.Random(20240611)
    for trial in range(120):
        if trial % 3 == 0:  # random text over a small alphabet: many short accidental repeats
            tokens = [rng.randrange(4) for _ in range(300)]
        else:  # a loop after a prefix, sometimes with a few tokens changed
            unit = [rng.randrange(30) for _ in range(rng.randrange(1, 40))]
            tokens = [rng.randrange(30) for _ in range(rng.randrange(60))] + unit * (500 // len(unit) + 1)
            for _ in range(rng.randrange(3) * (trial % 3 - 1)):
                tokens[rng.randrange(len(tokens))] = rng.randrange(30)
        thresholds = {"min_span": rng.choice([6, 40, 256]), "min_repeats": rng.choice([2, 3, 4]),
                      "max_period": rng.choice([4, 30, 256])}
        guard = LoopGuard(**thresholds)
        for end, token in enumerate(tokens, 1):
            expected = find_loop(tokens[:end], **thresholds)
            assert guard.feed(token) == (expected is not None)
            assert guard.loop == expected, (trial, end)


def test_the_guard_fires_on_loops_and_only_there() -> None:
    rng = random.Random(7)
    text = [rng.randrange(1000, 5000) for _ in range(2000)]
    assert guard_hits(text) == []
    assert guard_hits(text + looped([1, 2, 3, 4], 300))[0] == 2000 + MIN_SPAN - 1


# --- with the real model's tokenizer --------------------------------------------------------------------


def row(cells: list[object]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |\n"


TABLE = row(["item", "a", "b", "c"]) + "|---|---|---|---|\n" + "".join(row([f"item {n}", 0, 0, 0])
                                                                     for n in range(1, 41))
WIDE_TABLE = row([f"c{n}" for n in range(30)]) + "|---" * 30 + "|\n" + row([0] * 30) + row([1] * 30)
NUMBERED = "".join(f"{n}. Check the value again.\n" for n in range(1, 31))
MULTIPLICATION = (row(["×", *range(1, 13)]) + "|---" * 13 + "|\n"
                  + "".join(row([r, *(r * c for c in range(1, 13))]) for r in range(1, 13)))
CSV = "date,rain,snow,hail,fog\n" + "".join(f"2024-01-{d:02d},0,0,0,0\n" for d in range(1, 32))
CODE = "def reset():\n" + "    x = 0\n" * 10 + "    return x\n"  # borderline, kept: 10 lines are ~60 tokens
RULES = "=" * 400 + "\n" + "-" * 2000 + "\n"

# Gemma 3 270M (base) answering "Tell me about the sea." greedily: this, from the first token to the end.
GREEDY_CYCLE = "Tell me about the sea. mendatanguser\n"
# The same at temp 0.8, seed 2: a near-loop (one extra line in the first copy), then an exact one.
SAMPLED_LOOP = ("Tell me what's the ocean?\n言音(mā-nā-ō-me)\n(a) the sea.\n(b) the water.\n(c) the ocean.\n"
                "(d) the sea-surface.\n(e) the water under the sea.\n"
                + "言音(mā-nā-ō-me)\n(a) the sea.\n(b) the water.\n(c) the ocean.\n(d) the sea-surface.\n" * 12)
# At temp 0.8, seed 4: two lines that alternate, with one slip ("hear" three times) before the exact loop.
SLIP_LOOP = ("You are not going to be able to read it. You are going to be able to hear it.\n"
             + "I am going to be able to read it.\nI am going to be able to hear it.\n" * 3
             + "I am going to be able to hear it.\n" * 2
             + "I am going to be able to read it.\nI am going to be able to hear it.\n" * 14)


@pytest.fixture(scope="module")
def tokenize(test_model: Path):
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(test_model), vocab_only=True, verbose=False)
    return lambda text: vocab.tokenize(text.encode(), add_bos=False, special=True)


@pytest.mark.parametrize("text", [TABLE, WIDE_TABLE, NUMBERED, MULTIPLICATION, CSV, CODE, RULES],
                         ids=["table", "wide-table", "numbered-list", "multiplication", "csv", "code", "rules"])
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
