"""Streamed-text filters: reasoning (`<think>…</think>`, as Qwen3 and DeepSeek-R1 write it) kept apart from
the answer, and stop sequences that end a reply."""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


class ReasoningSplitter:
    """Feed streamed text; get (kind, text) pieces where kind is "reasoning" or "content".

    A tag split across two pieces is held back until it is complete, so nothing of the tag leaks out.
    """

    def __init__(self, starts_in_reasoning: bool = False) -> None:
        self.in_reasoning = starts_in_reasoning
        self.pending = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        self.pending += text
        out: list[tuple[str, str]] = []
        while self.pending:
            tag = CLOSE if self.in_reasoning else OPEN
            kind = "reasoning" if self.in_reasoning else "content"
            index = self.pending.find(tag)
            if index >= 0:
                if index:
                    out.append((kind, self.pending[:index]))
                self.pending = self.pending[index + len(tag) :]
                self.in_reasoning = not self.in_reasoning
                continue
            keep = _partial_suffix(self.pending, tag)
            emit = self.pending[: len(self.pending) - keep]
            if emit:
                out.append((kind, emit))
            self.pending = self.pending[len(emit) :]
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        rest, self.pending = self.pending, ""
        return [("reasoning" if self.in_reasoning else "content", rest)] if rest else []


class StopMatcher:
    """Feed streamed text; get back what may be shown, holding back a possible start of a stop sequence.

    `stopped` turns true once a stop sequence appears; the text before it is the last returned.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        self.pending += text
        hits = [index for index in (self.pending.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self.stopped = True
            shown, self.pending = self.pending[: min(hits)], ""
            return shown
        keep = max(_partial_suffix(self.pending, stop) for stop in self.stops)
        shown = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(shown) :]
        return shown

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return rest


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a beginning of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
