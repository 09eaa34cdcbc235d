"""Keep reasoning (`<think>…</think>`, as Qwen3, DeepSeek-R1 and others write it) apart from the answer."""

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
                self.pending = self.pending[index + len(tag):]
                self.in_reasoning = not self.in_reasoning
                continue
            keep = _partial_suffix(self.pending, tag)
            emit = self.pending[: len(self.pending) - keep]
            if emit:
                out.append((kind, emit))
            self.pending = self.pending[len(emit):]
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        rest, self.pending = self.pending, ""
        return [("reasoning" if self.in_reasoning else "content", rest)] if rest else []


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a beginning of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
