"""Speculative decoding's arithmetic, and the planner's choice of a drafter. Pure.

A round drafts γ tokens cheaply, then the target decodes them (and the token before them) in one batch and keeps the
drafted tokens up to the first one it would not have picked, plus its own next token. With a per-token acceptance α
a round yields E = (1 − α^(γ+1)) / (1 − α) tokens (Leviathan et al. 2022) and costs γ·t_D + t_T(γ+1), against
t_T(1) per token without speculation: the speed-up is S = E·t_T(1) / (γ·t_D + t_T(γ+1)). On a device whose decode
is bound by memory bandwidth, t_D / t_T(1) is about the ratio of the bytes the two models read per token, and a
batch of γ+1 tokens costs little more than one (`verify_cost`). n-gram lookup drafts from the text itself: t_D ≈ 0.

The engine measures all of it while it runs (engine.drafting.Controller): these priors only choose before there is a
measurement, and say in `plan` what to expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgellm.engine.contract import SPEC_MODES
from edgellm.reasons import Reason, reason

__all__ = ["SPEC_MODES", "SpecChoice", "choose"]
VERIFY_COST_PER_TOKEN = 0.1  # each more token in a target's batch, as a share of a one-token decode (a prior: the
# engine measures its own; on the test model and a 2-core CPU a batch of 8 costs about 1.6 single decodes)
DRAFT_ACCEPTANCE_PRIOR = 0.6  # per-token acceptance of a same-family draft model before one is measured (published
# runs of same-family pairs: 0.55-0.8 on chat and code, field notes section 13)
GAIN_NEEDED = 1.1  # auto takes a draft model only when it expects this speed-up at least: below, the draft's memory
# and load time buy too little
DRAFT_LENGTHS = range(1, 17)


def tokens_per_round(acceptance: float, drafted: int) -> float:
    """E: the tokens a round yields on average, the target's own next token included."""
    if acceptance >= 1.0:
        return drafted + 1.0
    return (1.0 - acceptance ** (drafted + 1)) / (1.0 - acceptance)


def verify_cost(drafted: int, per_token: float = VERIFY_COST_PER_TOKEN) -> float:
    """t_T(γ+1) / t_T(1): the target's batch of the drafted tokens and the one before them."""
    return 1.0 + per_token * drafted


def speedup(acceptance: float, drafted: int, draft_cost: float, per_token: float = VERIFY_COST_PER_TOKEN) -> float:
    """S for `drafted` (γ) tokens a round, `draft_cost` = t_D / t_T(1)."""
    if drafted <= 0:
        return 1.0
    return tokens_per_round(acceptance, drafted) / (drafted * draft_cost + verify_cost(drafted, per_token))


def best_length(
    acceptance: float, draft_cost: float, per_token: float = VERIFY_COST_PER_TOKEN, most: int = 16
) -> tuple[int, float]:
    """The draft length γ with the largest expected speed-up, and that speed-up."""
    options = [(speedup(acceptance, gamma, draft_cost, per_token), gamma) for gamma in DRAFT_LENGTHS if gamma <= most]
    gain, gamma = max(options)
    return gamma, gain


def break_even(drafted: int, draft_cost: float, per_token: float = VERIFY_COST_PER_TOKEN) -> float:
    """α*: the per-token acceptance below which drafting `drafted` tokens a round costs more than it yields."""
    low, high = 0.0, 1.0
    if speedup(high, drafted, draft_cost, per_token) < 1.0:
        return 1.0  # never pays
    for _ in range(40):
        middle = (low + high) / 2
        if speedup(middle, drafted, draft_cost, per_token) < 1.0:
            low = middle
        else:
            high = middle
    return high


def draft_cost_ratio(draft_bytes_per_token: int, target_bytes_per_token: int) -> float:
    """t_D / t_T(1) on a bandwidth-bound device: the bytes the draft reads per token over the target's."""
    return draft_bytes_per_token / max(1, target_bytes_per_token)


@dataclass(frozen=True)
class DraftCandidate:
    """A draft model considered for a target: compatible (its vocabulary checked), with its plan's memory."""

    path: Path
    name: str
    cost_ratio: float  # t_D / t_T(1)
    memory_bytes: int  # its weights, KV cache and buffers, beside the target's
    fits: bool


@dataclass(frozen=True)
class SpecChoice:
    """How replies are drafted: `mode` off, ngram or draft (with `draft`), the speed-up expected at the prior
    acceptance, and why."""

    mode: str
    why: Reason
    draft: DraftCandidate | None = None
    draft_length: int = 0  # the γ a round starts with (the engine adapts it)
    expected_gain: float | None = None  # at DRAFT_ACCEPTANCE_PRIOR; None for n-gram (it depends on the text)

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"mode": self.mode, "why": self.why.as_dict()}
        if self.draft is not None:
            found["draft"] = {"path": str(self.draft.path), "memory_bytes": self.draft.memory_bytes}
            found["draft_length"] = self.draft_length
        if self.expected_gain is not None:
            found["expected_gain"] = round(self.expected_gain, 2)
        return found


NGRAM_START_LENGTH = 4  # an n-gram round starts with this many tokens and grows while all are accepted
NGRAM_MOST = 16


def choose(asked: str, candidates: list[DraftCandidate]) -> SpecChoice:
    """The drafter for `asked` (one of SPEC_MODES) given the compatible draft models found (the one -md named, or
    the store's): auto takes the draft expected to pay most when it fits and pays GAIN_NEEDED, else n-gram lookup,
    which drafts only where the reply repeats the prompt or itself and stops when it does not pay."""
    if asked == "off":
        return SpecChoice("off", reason("spec_off"))
    if asked == "ngram":
        return SpecChoice("ngram", reason("spec_ngram_asked"), draft_length=NGRAM_START_LENGTH)
    scored = []
    for candidate in candidates:
        gamma, gain = best_length(DRAFT_ACCEPTANCE_PRIOR, candidate.cost_ratio, most=8)
        scored.append((gain, gamma, candidate))
    fitting = [item for item in scored if item[2].fits]
    if asked == "draft":
        if not fitting:
            return SpecChoice("ngram", reason("spec_no_draft"), draft_length=NGRAM_START_LENGTH)
        gain, gamma, best = max(fitting, key=lambda item: item[0])
        return SpecChoice(
            "draft",
            reason("spec_draft_asked", name=best.name, gain=round(gain, 2), memory=best.memory_bytes),
            best,
            gamma,
            gain,
        )
    paying = [item for item in fitting if item[0] >= GAIN_NEEDED]
    if paying:
        gain, gamma, best = max(paying, key=lambda item: item[0])
        return SpecChoice(
            "draft",
            reason("spec_draft_auto", name=best.name, gain=round(gain, 2), memory=best.memory_bytes),
            best,
            gamma,
            gain,
        )
    if scored:
        gain, _, best = max(scored, key=lambda item: item[0])
        why = "does not fit beside the model" if not best.fits else f"would gain only {gain:.2f}×"
        return SpecChoice("ngram", reason("spec_ngram_auto", draft=best.name, draft_why=why), None, NGRAM_START_LENGTH)
    return SpecChoice("ngram", reason("spec_ngram_auto", draft=None, draft_why=None), None, NGRAM_START_LENGTH)
