"""What the speculative loop (engine.speculative) decides without llama.cpp: n-gram drafts from the text so far, and
the controller that sizes each round's draft and stops drafting once it no longer pays. Pure.

The controller decides by what was accepted, never by the clock: drafting stops once the acceptance falls below the
break-even of the speed model (plan.speculation). A decision made by timings would change with the machine's load,
and with it the shapes of the batches and so (at a near tie: docs/speculative.md) the reply: the same prompt and seed
give the same reply on one machine. It times the plain steps and the rounds too, for the speed-up it reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgellm.plan.speculation import break_even

NGRAM_SIZES = (4, 3, 2)  # the longest recent run of tokens that occurred before wins: its continuation is the draft
WARM_UP_DRAFTED = 24  # drafted tokens before the controller may judge (a few rounds' worth)
WARM_UP_ROUNDS = 8  # or rounds: a draft model's drafts end early when it is unsure, a round may draft one token
PLAIN_STEPS_NEEDED = 3  # timed one-token decodes before the rounds' speed-up is reported against theirs


class NgramDrafter:
    """Drafts from the sequence itself (prompt lookup): finds the latest earlier occurrence of the sequence's last
    n tokens (n from NGRAM_SIZES, longest first) and proposes what followed it. Its index grows as tokens come;
    `reset` when the sequence is replaced."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self._latest: dict[tuple[int, ...], int] = {}  # an n-gram → where its latest occurrence ends (exclusive)

    def extend(self, tokens: list[int]) -> None:
        """Add tokens at the end of the sequence."""
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for size in NGRAM_SIZES:
                if end - 1 >= size:  # the n-gram ending before this token is followed by it: index it
                    self._latest[tuple(self.tokens[end - 1 - size : end - 1])] = end - 1

    def follow(self, tokens: list[int]) -> None:
        """Make the sequence `tokens`: extend it when it only grew, else rebuild the index."""
        if self.tokens == tokens[: len(self.tokens)]:
            self.extend(tokens[len(self.tokens) :])
            return
        self.tokens, self._latest = [], {}
        self.extend(tokens)

    def propose(self, history: list[int], most: int) -> list[int]:
        """Up to `most` tokens that followed the latest earlier occurrence of the tail of `history` (the sequence so
        far); [] when none."""
        self.follow(history)
        tokens = self.tokens
        for size in NGRAM_SIZES:
            if len(tokens) <= size:
                continue
            start = self._latest.get(tuple(tokens[-size:]))
            if start is not None:
                return tokens[start : start + most]
        return []


@dataclass
class Controller:
    """Sizes each round's draft and decides when drafting stops for the rest of a reply.

    Draft length: grows by 2 when a round's draft was accepted whole, shrinks by 1 when not (between 1 and `most`).
    Stop: once WARM_UP_DRAFTED tokens were drafted (or WARM_UP_ROUNDS rounds ran), when the acceptance falls below the
    break-even of the speed model at the mean draft length (`draft_cost`: t_D / t_T(1)). `gain()`: what the rounds
    yielded per second over the plain steps, reported, not decided by."""

    length: int
    most: int
    draft_cost: float = 0.0
    drafting: bool = True
    drafted: int = 0
    accepted: int = 0
    rounds: int = 0
    round_tokens: int = 0  # tokens the rounds yielded
    round_seconds: float = 0.0
    plain_steps: int = 0
    plain_seconds: float = 0.0
    stopped_why: str = ""
    _lengths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.length = max(1, min(self.length, self.most))

    def record_round(self, drafted: int, accepted: int, yielded: int, seconds: float) -> None:
        """One round: `drafted` tokens proposed, `accepted` of them kept, `yielded` tokens out of it (the target's
        own included), in `seconds` (drafting and verifying)."""
        self.rounds += 1
        self.drafted += drafted
        self.accepted += accepted
        self.round_tokens += yielded
        self.round_seconds += seconds
        self._lengths.append(drafted)
        if accepted >= drafted:
            self.length = min(self.most, self.length + 2)
        else:
            self.length = max(1, self.length - 1)
        self._judge()

    def record_plain(self, seconds: float) -> None:
        """One plain step: a one-token decode and its sample."""
        self.plain_steps += 1
        self.plain_seconds += seconds

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def gain(self) -> float | None:
        """The rounds' tokens per second over the plain steps' (None until both are timed)."""
        if self.plain_steps < PLAIN_STEPS_NEEDED or not self.round_seconds or not self.plain_seconds:
            return None
        return (self.round_tokens / self.round_seconds) / (self.plain_steps / self.plain_seconds)

    def _judge(self) -> None:
        if not self.drafting or (self.drafted < WARM_UP_DRAFTED and self.rounds < WARM_UP_ROUNDS):
            return
        mean_length = max(1, round(sum(self._lengths) / len(self._lengths)))
        needed = break_even(mean_length, self.draft_cost)
        if self.acceptance < needed:
            self._stop(f"acceptance {self.acceptance:.2f} is below the break-even {needed:.2f}")

    def _stop(self, why: str) -> None:
        self.drafting = False
        self.stopped_why = why
