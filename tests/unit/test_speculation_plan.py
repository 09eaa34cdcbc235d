"""Speculative decoding's arithmetic and the planner's choice of a drafter (plan.speculation): tokens a round
yields, its cost, the speed-up, the best draft length, the break-even acceptance, and `choose` for each mode asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.plan.speculation import (
    GAIN_NEEDED,
    NGRAM_START_LENGTH,
    DraftCandidate,
    SpecChoice,
    best_length,
    break_even,
    choose,
    draft_cost_ratio,
    speedup,
    tokens_per_round,
    verify_cost,
)
from edgellm.reasons import reason
from edgellm.words import say

# --- the arithmetic ---


@pytest.mark.parametrize(
    ("acceptance", "drafted", "expected"),
    [
        (0.5, 3, 1.875),  # (1 - 0.5^4) / (1 - 0.5) = 0.9375 / 0.5
        (0.0, 5, 1.0),  # every draft refused: the target's own token only
        (0.6, 1, 1.6),  # (1 - 0.36) / 0.4
        (1.0, 3, 4.0),  # all accepted: γ + 1
        (1.0, 8, 9.0),
    ],
)
def test_tokens_per_round(acceptance: float, drafted: int, expected: float) -> None:
    assert tokens_per_round(acceptance, drafted) == pytest.approx(expected)


def test_tokens_per_round_is_continuous_towards_full_acceptance() -> None:
    assert tokens_per_round(0.999999, 4) == pytest.approx(5.0, rel=1e-4)


def test_verify_cost_and_draft_cost_ratio() -> None:
    assert verify_cost(0) == 1.0
    assert verify_cost(7) == pytest.approx(1.7)  # 1 + 0.1 × 7
    assert verify_cost(4, per_token=0.25) == pytest.approx(2.0)
    assert draft_cost_ratio(100, 1000) == pytest.approx(0.1)
    assert draft_cost_ratio(5, 0) == 5.0  # no division by zero


def test_speedup_worked_values() -> None:
    # α = 0.5, γ = 3, n-gram (cost 0): E = 1.875 over 1 + 0.3 = 1.3
    assert speedup(0.5, 3, 0.0) == pytest.approx(1.875 / 1.3)
    # α = 1, γ = 4, cost 0.1: E = 5 over 4 × 0.1 + 1.4 = 1.8
    assert speedup(1.0, 4, 0.1) == pytest.approx(5 / 1.8)
    assert speedup(0.9, 0, 0.5) == 1.0  # nothing drafted: plain decoding


@pytest.mark.parametrize("drafted", [1, 2, 4, 8, 16])
def test_speedup_with_nothing_accepted_loses_even_for_free_drafts(drafted: int) -> None:
    # E = 1 against a batch of γ + 1 costing 1 + 0.1γ > 1
    assert speedup(0.0, drafted, 0.0) < 1.0


def test_best_length_worked_values() -> None:
    assert best_length(0.0, 0.0) == (1, pytest.approx(1 / 1.1))  # the shortest draft loses least
    gamma, gain = best_length(1.0, 0.0)
    assert gamma == 16 and gain == pytest.approx(17 / 2.6)  # all accepted: the longest, (16 + 1) / (1 + 1.6)
    assert best_length(1.0, 0.0, most=8) == (8, pytest.approx(9 / 1.8))  # capped by `most`


def test_best_length_grows_with_the_acceptance() -> None:
    lengths = [best_length(acceptance, 0.05)[0] for acceptance in (0.3, 0.5, 0.7, 0.9)]
    assert lengths == sorted(lengths)
    assert lengths[0] < lengths[-1]
    gains = [best_length(acceptance, 0.05)[1] for acceptance in (0.3, 0.5, 0.7, 0.9)]
    assert gains == sorted(gains) and gains[0] < gains[-1]


def test_best_length_is_the_best_of_the_lengths() -> None:
    gamma, gain = best_length(0.7, 0.1, most=12)
    assert gain == pytest.approx(speedup(0.7, gamma, 0.1))
    assert all(speedup(0.7, other, 0.1) <= gain for other in range(1, 13))


@pytest.mark.parametrize(("drafted", "draft_cost"), [(1, 0.0), (4, 0.0), (4, 0.05), (8, 0.1), (2, 0.3), (16, 0.0)])
def test_break_even_is_where_the_speedup_is_one(drafted: int, draft_cost: float) -> None:
    alpha = break_even(drafted, draft_cost)
    assert 0.0 < alpha < 1.0
    assert speedup(alpha, drafted, draft_cost) == pytest.approx(1.0, abs=1e-6)
    assert speedup(alpha - 0.01, drafted, draft_cost) < 1.0 < speedup(alpha + 0.01, drafted, draft_cost)


def test_break_even_worked_value() -> None:
    # γ = 1, cost 0: (1 + α) / 1.1 = 1 at α = 0.1
    assert break_even(1, 0.0) == pytest.approx(0.1, abs=1e-9)


def test_break_even_rises_with_the_draft_cost() -> None:
    assert break_even(4, 0.0) < break_even(4, 0.05) < break_even(4, 0.2)


@pytest.mark.parametrize(("drafted", "draft_cost"), [(1, 1.0), (4, 1.0), (2, 5.0)])
def test_break_even_is_one_when_drafting_never_pays(drafted: int, draft_cost: float) -> None:
    # α = 1: γ = 1, cost 1.0: E = 2 over 1 + 1.1 = 2.1; γ = 4, cost 1.0: 5 over 4 + 1.4 = 5.4; below 1 either way
    assert speedup(1.0, drafted, draft_cost) < 1.0
    assert break_even(drafted, draft_cost) == 1.0


# --- choose ---


def _candidate(name: str = "small", cost: float = 0.05, fits: bool = True, memory: int = 300 << 20) -> DraftCandidate:
    return DraftCandidate(Path(f"/models/{name}.gguf"), name, cost, memory, fits)


def test_off() -> None:
    choice = choose("off", [_candidate()])
    assert choice.mode == "off"
    assert choice.why.code == "spec_off"
    assert choice.draft is None and choice.expected_gain is None


def test_ngram_asked() -> None:
    choice = choose("ngram", [_candidate()])  # a fitting, paying draft is not taken: n-gram was asked
    assert (choice.mode, choice.why.code, choice.draft) == ("ngram", "spec_ngram_asked", None)
    assert choice.draft_length == NGRAM_START_LENGTH


def test_auto_without_candidates_is_ngram() -> None:
    choice = choose("auto", [])
    assert (choice.mode, choice.why.code, choice.draft, choice.expected_gain) == (
        "ngram",
        "spec_ngram_auto",
        None,
        None,
    )
    assert choice.why["draft"] is None
    assert choice.draft_length == NGRAM_START_LENGTH


def test_auto_takes_a_cheap_fitting_draft() -> None:
    small = _candidate(cost=0.05)
    choice = choose("auto", [small])
    assert choice.mode == "draft"
    assert choice.draft == small
    assert choice.why.code == "spec_draft_auto"
    assert choice.why["name"] == "small" and choice.why["memory"] == small.memory_bytes
    assert choice.expected_gain is not None and choice.expected_gain >= GAIN_NEEDED
    # α = 0.6, cost 0.05, γ ≤ 8: γ = 2 gives E = 1 + 0.6 + 0.36 = 1.96 over 0.1 + 1.2 = 1.3, about 1.51
    assert (choice.draft_length, choice.expected_gain) == (2, pytest.approx(1.96 / 1.3))


def test_auto_takes_the_best_paying_fitting_draft() -> None:
    cheap, dearer = _candidate("cheap", 0.02), _candidate("dearer", 0.2)
    too_big = _candidate("best", 0.0, fits=False)  # would pay most, but does not fit
    assert choose("auto", [dearer, too_big, cheap]).draft == cheap


def test_auto_with_a_draft_that_does_not_fit_is_ngram_and_names_it() -> None:
    choice = choose("auto", [_candidate("big", cost=0.05, fits=False)])
    assert (choice.mode, choice.why.code, choice.draft) == ("ngram", "spec_ngram_auto", None)
    assert choice.why["draft"] == "big"
    assert "fit" in str(choice.why["draft_why"])
    assert "big" in say(choice.why)


def test_auto_with_an_expensive_draft_is_ngram() -> None:
    # α = 0.6, cost 0.9: at best γ = 1, E = 1.6 over 0.9 + 1.1 = 2.0, 0.8×
    choice = choose("auto", [_candidate("slow", cost=0.9)])
    assert (choice.mode, choice.why.code, choice.draft) == ("ngram", "spec_ngram_auto", None)
    assert choice.why["draft"] == "slow"
    assert "0.80" in str(choice.why["draft_why"])


def test_draft_asked_takes_a_fitting_draft_even_when_it_does_not_pay() -> None:
    slow = _candidate("slow", cost=0.9)
    choice = choose("draft", [slow])
    assert (choice.mode, choice.why.code, choice.draft) == ("draft", "spec_draft_asked", slow)
    assert choice.draft_length == 1
    assert choice.expected_gain == pytest.approx(0.8)  # the person asked: taken although below 1
    assert "slow" in say(choice.why)


@pytest.mark.parametrize("candidates", [[], [_candidate(fits=False)]])
def test_draft_asked_without_a_fitting_draft_is_ngram(candidates: list[DraftCandidate]) -> None:
    choice = choose("draft", candidates)
    assert (choice.mode, choice.why.code, choice.draft) == ("ngram", "spec_no_draft", None)
    assert choice.draft_length == NGRAM_START_LENGTH


def test_as_dict() -> None:
    assert set(choose("off", []).as_dict()) == {"mode", "why"}
    assert set(choose("auto", []).as_dict()) == {"mode", "why"}  # n-gram: no expected gain (it depends on the text)
    small = _candidate(cost=0.05, memory=123)
    found = choose("auto", [small]).as_dict()
    assert set(found) == {"mode", "why", "draft", "draft_length", "expected_gain"}
    assert found["mode"] == "draft"
    assert found["draft"] == {"path": str(small.path), "memory_bytes": 123}
    assert found["draft_length"] == 2
    assert found["expected_gain"] == 1.51  # 1.96 / 1.3 = 1.5077, rounded to 2 places
    assert found["why"] == reason("spec_draft_auto", name="small", gain=1.51, memory=123).as_dict()


def test_as_dict_with_a_gain_but_no_draft() -> None:
    choice = SpecChoice("ngram", reason("spec_ngram_asked"), expected_gain=1.23456)
    assert choice.as_dict() == {"mode": "ngram", "why": reason("spec_ngram_asked").as_dict(), "expected_gain": 1.23}
