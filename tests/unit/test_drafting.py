"""The speculative loop's pure parts (engine.drafting): the n-gram drafter (prompt lookup from the sequence itself:
the latest earlier occurrence of the longest matching tail, its index kept or rebuilt as the sequence changes) and
the controller that sizes each round's draft and stops drafting once it no longer pays."""

from __future__ import annotations

import pytest

from edgellm.engine.drafting import PLAIN_STEPS_NEEDED, WARM_UP_DRAFTED, Controller, NgramDrafter

# --- NgramDrafter ---


def test_proposes_the_continuation_of_a_repeated_passage() -> None:
    # "10 11 12 13 14 15" then "10 11 12": the tail (10, 11, 12) occurred before, followed by 13 14 15 10 ...
    history = [10, 11, 12, 13, 14, 15, 10, 11, 12]
    assert NgramDrafter().propose(history, 3) == [13, 14, 15]


def test_prefers_the_longest_matching_ngram() -> None:
    # The tail is (1, 2, 3, 4). Its 4-gram occurred at the start, followed by 10 11; the 2-gram (3, 4) occurred later
    # too (after 9, so not as a 3- or 4-gram), followed by 20 21. The 4-gram's continuation wins over the later 2-gram.
    history = [1, 2, 3, 4, 10, 11, 9, 3, 4, 20, 21, 1, 2, 3, 4]
    assert NgramDrafter().propose(history, 2) == [10, 11]
    # Without the 4-gram's occurrence (its first token changed), the 2-gram's latest occurrence is what is left.
    assert NgramDrafter().propose([0, 7, 3, 4, 10, 11, 9, 3, 4, 20, 21, 1, 2, 3, 4], 2) == [20, 21]


def test_proposes_from_the_latest_occurrence_not_the_first() -> None:
    # (5, 6, 7) occurs followed by 1, then followed by 2; the tail's 4-gram (2, 5, 6, 7) never occurred before.
    history = [5, 6, 7, 1, 5, 6, 7, 2, 5, 6, 7]
    assert NgramDrafter().propose(history, 1) == [2]


@pytest.mark.parametrize(
    "history",
    [
        [],
        [1],
        [1, 2],
        [1, 2, 3, 4, 5, 6, 7, 8],  # nothing repeats
        [1, 2, 9, 3, 2],  # the last token occurred before, but a 1-gram is too short to draft from
    ],
)
def test_no_match_proposes_nothing(history: list[int]) -> None:
    assert NgramDrafter().propose(history, 8) == []


@pytest.mark.parametrize(
    ("most", "expected"), [(1, [13]), (2, [13, 14]), (4, [13, 14, 15, 10]), (50, [13, 14, 15, 10, 11, 12])]
)
def test_respects_most_and_the_end_of_the_sequence(most: int, expected: list[int]) -> None:
    # The continuation runs to the end of the sequence at most: 13 14 15 10 11 12 (six tokens).
    assert NgramDrafter().propose([10, 11, 12, 13, 14, 15, 10, 11, 12], most) == expected


def test_growing_the_sequence_matches_a_fresh_drafter() -> None:
    history = [3, 1, 4, 1, 5, 9, 2, 6, 3, 1, 4, 1, 5, 9, 2, 6, 3, 1]
    grown = NgramDrafter()
    for end in range(len(history) + 1):
        assert grown.propose(history[:end], 4) == NgramDrafter().propose(history[:end], 4), end
    assert grown.tokens == history
    assert grown.propose(history, 4) == [4, 1, 5, 9]


def test_extend_adds_to_the_index() -> None:
    drafter = NgramDrafter()
    drafter.extend([7, 8, 9, 1])
    drafter.extend([7, 8, 9])
    assert drafter.tokens == [7, 8, 9, 1, 7, 8, 9]
    assert drafter.propose(drafter.tokens[:], 3) == [1, 7, 8]


def test_follow_rebuilds_when_the_sequence_is_replaced() -> None:
    drafter = NgramDrafter()
    assert drafter.propose([1, 2, 3, 50, 1, 2, 3], 2) == [50, 1]
    # A new, unrelated history (not an extension) whose tail (1, 2, 3) only the old sequence had: no stale draft.
    assert drafter.propose([7, 8, 1, 2, 3], 2) == []
    assert drafter.tokens == [7, 8, 1, 2, 3]
    # A shorter history (the sequence cut back) is a replacement too.
    drafter.follow([7, 8])
    assert drafter.tokens == [7, 8]
    assert drafter.propose([7, 8, 1, 7, 8], 1) == [1]


# --- Controller ---


def test_length_grows_by_two_on_a_whole_acceptance_and_shrinks_by_one_otherwise() -> None:
    control = Controller(length=4, most=9)
    control.record_round(drafted=4, accepted=4, yielded=5, seconds=0.1)
    assert control.length == 6  # 4 + 2
    control.record_round(drafted=6, accepted=5, yielded=6, seconds=0.1)
    assert control.length == 5  # 6 - 1
    control.record_round(drafted=5, accepted=5, yielded=6, seconds=0.1)
    control.record_round(drafted=7, accepted=7, yielded=8, seconds=0.1)
    assert control.length == 9  # 5 + 2 = 7, 7 + 2 = 9 capped at most = 9


@pytest.mark.parametrize(
    ("start", "most", "drafted", "accepted", "expected"),
    [
        (7, 8, 7, 7, 8),  # 7 + 2 = 9, capped at most
        (8, 8, 8, 8, 8),  # stays at most
        (1, 8, 1, 0, 1),  # 1 - 1 = 0, kept at 1
        (2, 8, 2, 0, 1),
    ],
)
def test_length_stays_within_one_and_most(start: int, most: int, drafted: int, accepted: int, expected: int) -> None:
    control = Controller(length=start, most=most)
    control.record_round(drafted=drafted, accepted=accepted, yielded=accepted + 1, seconds=0.1)
    assert control.length == expected


def test_acceptance() -> None:
    control = Controller(length=4, most=8)
    assert control.acceptance == 0.0  # nothing drafted yet
    control.record_round(drafted=4, accepted=3, yielded=4, seconds=0.1)
    control.record_round(drafted=4, accepted=1, yielded=2, seconds=0.1)
    assert control.acceptance == pytest.approx(0.5)  # 4 of 8
    assert (control.drafted, control.accepted, control.rounds, control.round_tokens) == (8, 4, 2, 6)


def _slow_rounds(control: Controller, rounds: int) -> None:
    for _ in range(rounds):
        control.record_round(drafted=4, accepted=0, yielded=1, seconds=1.0)  # 1 token a second


def test_no_stop_before_the_warm_up() -> None:
    control = Controller(length=4, most=4)
    for _ in range(PLAIN_STEPS_NEEDED):
        control.record_plain(0.01)  # 100 tokens a second
    _slow_rounds(control, WARM_UP_DRAFTED // 4 - 1)  # 20 tokens drafted, all refused, 100× slower
    assert control.drafting
    assert control.stopped_why == ""
    _slow_rounds(control, 1)  # the warm-up reached: 24 drafted
    assert not control.drafting


def test_the_clock_never_decides() -> None:
    # slow rounds, all refused, against fast plain steps: the acceptance (0) stops it, not the timings; and fast
    # rounds of refused drafts stop it just the same (the reply must not depend on the machine's load)
    for seconds in (1.0, 0.0001):
        control = Controller(length=4, most=4)
        for _ in range(PLAIN_STEPS_NEEDED):
            control.record_plain(0.01)
        for _ in range(WARM_UP_DRAFTED // 4):
            control.record_round(drafted=4, accepted=0, yielded=1, seconds=seconds)
        assert not control.drafting
        assert "break-even" in control.stopped_why
        assert control.length == 1  # shrunk on each refused draft: 4 → 3 → 2 → 1


def test_gain_when_fewer_than_the_needed_plain_steps() -> None:
    control = Controller(length=4, most=8)
    control.record_round(drafted=4, accepted=4, yielded=5, seconds=0.1)
    for _ in range(PLAIN_STEPS_NEEDED - 1):
        control.record_plain(0.05)
    assert control.gain() is None
    control.record_plain(0.05)
    # 5 tokens in 0.1 s (50/s) against 3 in 0.15 s (20/s): 2.5×
    assert control.gain() == pytest.approx(2.5)


def test_no_stop_when_rounds_are_fast() -> None:
    control = Controller(length=4, most=8)
    for _ in range(PLAIN_STEPS_NEEDED):
        control.record_plain(0.1)  # 10 tokens a second
    for _ in range(10):
        control.record_round(drafted=4, accepted=4, yielded=5, seconds=0.2)  # 25 tokens a second
    assert control.drafted >= WARM_UP_DRAFTED
    assert control.drafting
    assert control.stopped_why == ""


def test_stops_below_the_break_even_acceptance_without_plain_steps() -> None:
    control = Controller(length=4, most=4)
    _slow_rounds(control, WARM_UP_DRAFTED // 4 - 1)
    assert control.drafting  # still warming up
    _slow_rounds(control, 1)
    assert control.gain() is None  # no plain step timed: nothing to report, the acceptance decides as always
    assert not control.drafting
    assert "break-even" in control.stopped_why
    assert "0.00" in control.stopped_why  # the acceptance


def test_no_acceptance_stop_when_drafts_are_accepted() -> None:
    control = Controller(length=4, most=8)
    for _ in range(10):
        control.record_round(drafted=4, accepted=4, yielded=5, seconds=1.0)
    assert control.acceptance == 1.0
    assert control.drafting


def test_a_stop_is_final() -> None:
    control = Controller(length=4, most=4)
    _slow_rounds(control, WARM_UP_DRAFTED // 4)
    why = control.stopped_why
    assert not control.drafting and why
    for _ in range(10):
        control.record_round(drafted=4, accepted=4, yielded=5, seconds=0.01)
    assert not control.drafting
    assert control.stopped_why == why
