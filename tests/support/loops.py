"""The loop tests' oracle: `find_loop`, a plain O(n * max_period) search for the loop a token sequence ends with, that
the incremental `LoopGuard` (edgellm.engine.loop_guard) must agree with token by token; and the sequences it is
checked on."""

from __future__ import annotations

from collections.abc import Sequence

from edgellm.engine.loop_guard import MAX_PERIOD, MIN_REPEATS, MIN_SPAN, Loop, LoopGuard

PREFIX = list(range(10_000, 13_000))  # tokens that never repeat, distinct from every unit below


def _counts(span: int, period: int, min_span: int, min_repeats: int) -> bool:
    """Whether a periodic suffix is long enough, in tokens and in copies, to be a loop."""
    return span >= min_span and span >= min_repeats * period


def find_loop(
    tokens: Sequence[int], min_span: int = MIN_SPAN, min_repeats: int = MIN_REPEATS, max_period: int = MAX_PERIOD
) -> Loop | None:
    """The loop the sequence ends with, by its smallest qualifying period; None if it does not end in one."""
    n = len(tokens)
    for period in range(1, min(max_period, n - 1) + 1):
        matched = 0
        while matched < n - period and tokens[n - 1 - matched] == tokens[n - 1 - matched - period]:
            matched += 1
        span = matched + period
        if matched and _counts(span, period, min_span, min_repeats):
            return Loop(period, span // period, n - span, span)
    return None


def looped(unit: list[int], span: int, prefix: int = 0) -> list[int]:
    """`prefix` non-repeating tokens, then `unit` repeated over `span` tokens (the last copy may be cut)."""
    copies = unit * (span // len(unit) + 1)
    return PREFIX[:prefix] + copies[:span]


def guard_hits(tokens: list[int], **thresholds: int) -> list[int]:
    """The positions at which an incremental guard fed `tokens` reports a loop."""
    guard = LoopGuard(**thresholds)
    return [i for i, token in enumerate(tokens) if guard.feed(token)]
