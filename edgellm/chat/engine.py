"""The chat engine shared by the REPL (and later the TUI and the server): template, context, streaming.

It renders the conversation with the model's chat template, keeps it inside the context by dropping
the oldest turns, reuses the KV cache across turns (turn two processes only its new tokens), streams
the reply with reasoning kept apart, and can be cancelled between tokens or during a long prompt.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from edgellm.chat.reasoning import ReasoningSplitter, StopMatcher
from edgellm.chat.templates import ChatTemplate, choose
from edgellm.engine.generate import Generation, GenerationStats, Sampling
from edgellm.engine.model import LoadedModel
from edgellm.errors import UserError

MIN_REPLY_ROOM = 64


class ContextOverflow(UserError):
    """One message is longer than the whole context."""


class TemplateError(UserError):
    """The model's chat template refused the conversation (a role it does not support, an order it forbids)."""


@dataclass(frozen=True)
class Prepared:
    text: str
    tokens: list[int]
    dropped: int  # old messages left out to fit the context


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
    def interrupted(self) -> bool:
        return self.stats is not None and self.stats.stop_reason == "interrupted"

    def timings(self) -> dict[str, Any]:
        data = self.stats.as_dict() if self.stats else {}
        return {**data, "context_used": self.context_used, "n_ctx": self.n_ctx,
                "dropped_messages": self.dropped_messages}


@dataclass
class ChatEngine:
    loaded: LoadedModel
    template: ChatTemplate
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int = -1
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()  # text that ends a reply (besides the model's end-of-generation tokens)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _prev_text: str = ""
    _prev_tokens: list[int] = field(default_factory=list)

    @classmethod
    def for_model(cls, loaded: LoadedModel, architecture: str, **options: Any) -> "ChatEngine":
        llm = loaded.llm
        own = llm.metadata.get("tokenizer.chat_template")
        llama3 = len(llm.tokenize(b"<|start_header_id|>", add_bos=False, special=True)) == 1
        return cls(loaded, choose(own, architecture, llama3), **options)

    @property
    def n_ctx(self) -> int:
        return self.loaded.llm.n_ctx()

    def cancel(self) -> None:
        """Stop the reply in progress: between tokens, or inside a long prompt evaluation."""
        self.cancel_event.set()

    def render(self, messages: list[dict[str, str]]) -> str:
        llm = self.loaded.llm
        bos = llm.detokenize([llm.token_bos()], special=True).decode(errors="replace") if llm.token_bos() >= 0 else ""
        eos = llm.detokenize([llm.token_eos()], special=True).decode(errors="replace") if llm.token_eos() >= 0 else ""
        try:
            return self.template.render(messages, bos_token=bos, eos_token=eos)
        except Exception as error:  # raise_exception() in the template, or a Jinja error
            raise TemplateError(f"the model's chat template refused this conversation: {error}") from None

    def tokenize(self, text: str) -> list[int]:
        return self.loaded.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count(self, messages: list[dict[str, str]]) -> int:
        return len(self.tokenize(self.render(messages)))

    def reply_room(self) -> int:
        """Tokens kept free for the reply when the history is trimmed."""
        wanted = self.max_tokens if self.max_tokens > 0 else self.n_ctx // 4
        return max(MIN_REPLY_ROOM, min(wanted, self.n_ctx // 2))

    def prompt_tokens(self, text: str) -> list[int]:
        """The prompt's tokens, extending the previous turn's exactly when the text extends it: the KV cache
        then holds every token but the new ones."""
        if self._prev_text and text.startswith(self._prev_text):
            return self._prev_tokens + self.tokenize(text[len(self._prev_text):])
        return self.tokenize(text)

    def prepare(self, messages: list[dict[str, str]]) -> "Prepared":
        """Fit the conversation into the context and tokenize it; ContextOverflow if one message is too long.
        This starts a turn: a cancel asked for from here on stops it."""
        self.cancel_event.clear()
        kept, dropped = fit_history(messages, self.count, self.n_ctx - self.reply_room())
        text = self.render(kept)
        tokens = self.prompt_tokens(text)
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(f"the conversation needs {len(tokens)} tokens but the context holds {self.n_ctx}")
        return Prepared(text, tokens, dropped)

    def stream(self, prepared: "Prepared", reply: Reply) -> Iterator[tuple[str, str]]:
        """Yield ("content" | "reasoning", text) pieces of the reply, filling `reply` as they come."""
        reply.dropped_messages, reply.n_ctx = prepared.dropped, self.n_ctx
        generation = Generation(self.loaded.llm, prepared.tokens, self.sampling, self.max_tokens,
                                ignore_eos=self.ignore_eos, cancel=self.cancel_event)
        # some templates open the reasoning block in the prompt itself (DeepSeek-R1 distills): the reply starts inside it
        splitter = ReasoningSplitter(starts_in_reasoning=prepared.text.rstrip().endswith("<think>"))
        stops = StopMatcher(self.stop + self.template.stop)
        raw = []
        pieces = iter(generation)
        for piece in pieces:
            raw.append(piece)
            yield from self._collect(reply, splitter.feed(stops.feed(piece)))
            if stops.stopped:
                pieces.close()
                generation.stats.stop_reason = "stop"
                break
        yield from self._collect(reply, splitter.feed(stops.flush()) + splitter.flush())
        reply.stats = generation.stats
        reply.context_used = len(prepared.tokens) + len(generation.tokens)
        self._prev_text = prepared.text + "".join(raw)
        self._prev_tokens = prepared.tokens + generation.tokens

    @staticmethod
    def _collect(reply: Reply, pieces: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        for kind, text in pieces:
            if kind == "reasoning":
                reply.reasoning += text
            else:
                reply.content += text
            yield kind, text


def fit_history(messages: list[dict[str, str]], count: Callable[[list[dict[str, str]]], int],
                budget: int) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest turns until the conversation fits `budget` tokens; the system prompt and the last
    user message always stay. Returns the kept messages and how many were dropped."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    dropped = 0
    while count(system + turns) > budget and len(turns) > 1:
        turns = turns[1:]
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] != "user":  # a kept history starts with a user turn
            turns = turns[1:]
            dropped += 1
    if count(system + turns) > budget:
        raise ContextOverflow(
            f"this message needs {count(system + turns)} tokens with the system prompt, more than the "
            f"{budget} the context leaves for it; shorten it, or raise -c")
    return system + turns, dropped
