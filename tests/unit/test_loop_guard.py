"""The loop guard on synthetic token sequences: exact loops are found at the thresholds and not before, and the
incremental guard agrees with the oracle find_loop (tests/support/loops.py) token by token. On the real model's
tokens (tables and lists never cut, the base model's loops caught): tests/integration/test_loop_guard.py."""

from __future__ import annotations

import random

import pytest

from edgellm.engine.loop_guard import MIN_REPEATS, MIN_SPAN, Loop, LoopGuard
from tests.support.loops import find_loop, guard_hits, looped


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
        thresholds = {
            "min_span": rng.choice([6, 40, 256]),
            "min_repeats": rng.choice([2, 3, 4]),
            "max_period": rng.choice([4, 30, 256]),
        }
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
