"""What a chat turn yields as it runs: pieces of the reply, notices, and the finished reply.

Front ends draw these; none of them decides what a turn does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import GenerationStats, SpeculationStats
from edgellm.events import Notice

if TYPE_CHECKING:  # types only: a chat never imports the OpenAI shapes or the tool formats for them
    from edgellm.api.openai import TokenLogprobs
    from edgellm.templates.tools import Delta, ToolCall


@dataclass(frozen=True)
class AnswerPiece:
    text: str


@dataclass(frozen=True)
class ReasoningPiece:
    """A piece of the model's reasoning (`<think>…</think>`), kept apart from the answer."""

    text: str


@dataclass(frozen=True)
class ToolCallPiece:
    """A piece of a tool call: its first (index, id, name) or a later fragment of its arguments' JSON text."""

    delta: Delta


@dataclass(frozen=True)
class Timings:
    """What one reply took, typed: the engine's figures, and how much of the context the reply used. Saved with the
    reply in the history (`as_dict`, `from_dict`); every front end writes it through `parts`."""

    stats: GenerationStats = field(default_factory=GenerationStats)
    context_used: int = 0
    n_ctx: int = 0
    dropped_messages: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.stats.as_dict(),
            "context_used": self.context_used,
            "n_ctx": self.n_ctx,
            "dropped_messages": self.dropped_messages,
        }

    @classmethod
    def from_dict(cls, data: object) -> Timings:
        """The timings a record kept (`as_dict`'s keys); odd or missing values fall back to none."""
        if not isinstance(data, dict):
            return cls()

        def count(key: str) -> int:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(GenerationStats.from_dict(data), count("context_used"), count("n_ctx"), count("dropped_messages"))

    def parts(self, *names: str, short: bool = False) -> list[str]:
        """The named figures, each in a few words, those not measured left out: tokens, speed, first_token, image
        (the prompt's images evaluated: their tokens and time), prompt, context, drafting (speculative decoding's
        acceptance and speed-up), stop (how it ended, when not of itself). `short`: the status line's brief forms."""
        stats, found = self.stats, []
        for name in names:
            if name == "tokens":
                found.append(f"{stats.completion_tokens} tokens")
            elif name == "speed" and stats.tokens_per_s:
                found.append(f"{stats.tokens_per_s:.1f} tok/s" if short else f"{stats.tokens_per_s:.1f} tokens/s")
            elif name == "first_token" and stats.ttft_ms is not None:
                found.append(f"TTFT {stats.ttft_ms:.0f} ms" if short else f"first token {stats.ttft_ms:.0f} ms")
            elif name == "image" and stats.image_tokens and stats.image_ms is not None:
                found.append(
                    f"image {stats.image_ms:.0f} ms"
                    if short
                    else f"images {stats.image_tokens} tokens in {stats.image_ms:.0f} ms"
                )
            elif name == "prompt":
                found.append(f"prompt {stats.prompt_evaluated} new of {stats.prompt_tokens}")
            elif name == "context":
                found.append(f"context {self.context_used}/{self.n_ctx}")
            elif name == "drafting" and stats.speculation is not None and stats.speculation.drafted:
                found.append(drafting_words(stats.speculation, short))
            elif name == "stop" and stats.stop_reason not in ("eos", "stop"):
                found.append("stopped" if stats.stop_reason == "interrupted" else f"stopped: {stats.stop_reason}")
        return found


def drafting_words(speculation: SpeculationStats, short: bool) -> str:
    """Speculative decoding in one reply: `drafted 48, 40 kept (83%), 1.9× speed` (short: `draft 83% 1.9×`)."""
    share = f"{speculation.accepted / speculation.drafted:.0%}"
    gain = f"{speculation.gain:.1f}×" if speculation.gain is not None else ""
    if short:
        return " ".join(part for part in (f"{speculation.mode} {share}", gain) if part)
    said = f"{speculation.mode}: drafted {speculation.drafted}, {speculation.accepted} kept ({share})"
    return said + (f", {gain} speed" if gain else "") + (", then stopped drafting" if speculation.stopped else "")


@dataclass
class Reply:
    """One streamed reply: its text, its reasoning and, once done, its timings."""

    content: str = ""
    reasoning: str = ""
    stats: GenerationStats | None = None
    dropped_messages: int = 0
    context_used: int = 0
    n_ctx: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprobs] = field(default_factory=list)  # per token, when asked; grows as tokens come

    @property
    def stop_reason(self) -> str:
        return self.stats.stop_reason if self.stats else "interrupted"

    @property
    def interrupted(self) -> bool:
        """Stopped before it finished: cancelled, or broken off by an error."""
        return self.stop_reason == "interrupted"

    def timings(self) -> Timings:
        stats = self.stats if self.stats is not None else GenerationStats(stop_reason="interrupted")
        return Timings(stats, self.context_used, self.n_ctx, self.dropped_messages)


@dataclass(frozen=True)
class ReplyDone:
    """The turn is over; `reply` holds the whole text and its timings."""

    reply: Reply


ChatEvent = AnswerPiece | ReasoningPiece | Notice | ReplyDone
