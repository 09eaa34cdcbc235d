"""What a chat turn yields as it runs: pieces of the reply, notices, and the finished reply.

Front ends draw these; none of them decides what a turn does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from edgellm.engine.contract import GenerationStats
from edgellm.events import Notice


@dataclass(frozen=True)
class AnswerPiece:
    text: str


@dataclass(frozen=True)
class ReasoningPiece:
    """A piece of the model's reasoning (`<think>…</think>`), kept apart from the answer."""

    text: str


@dataclass
class Reply:
    """One streamed reply: its text, its reasoning and, once done, its timings."""

    content: str = ""
    reasoning: str = ""
    stats: GenerationStats | None = None
    dropped_messages: int = 0
    context_used: int = 0
    n_ctx: int = 0

    @property
    def stop_reason(self) -> str:
        return self.stats.stop_reason if self.stats else "interrupted"

    @property
    def interrupted(self) -> bool:
        """Stopped before it finished: cancelled, or broken off by an error."""
        return self.stop_reason == "interrupted"

    def timings(self) -> dict[str, Any]:
        data = self.stats.as_dict() if self.stats else {}
        return {**data, "context_used": self.context_used, "n_ctx": self.n_ctx,
                "dropped_messages": self.dropped_messages}


@dataclass(frozen=True)
class ReplyDone:
    """The turn is over; `reply` holds the whole text and its timings."""

    reply: Reply


ChatEvent = Union[AnswerPiece, ReasoningPiece, Notice, ReplyDone]
