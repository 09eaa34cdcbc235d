"""One message of the conversation: the user's, or a reply streamed as Markdown with its reasoning folded."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Label, Markdown, Static
from textual.widgets._markdown import MarkdownStream

from edgellm.session.events import Timings


class ChatMessage(Vertical, can_focus=True):
    """A message; a reply is written piece by piece through a MarkdownStream, then rendered once whole.

    The parts a message may lack (the folded reasoning, the timings line) are mounted only when it has them:
    a turn starts with as little layout work as possible, since the UI thread shares the cores with the model."""

    DEFAULT_CSS = """
    ChatMessage { height: auto; margin: 0 0 1 0; padding: 0 1 1 1; }
    ChatMessage.user { background: $boost; border-left: thick $accent; }
    ChatMessage.assistant { border-left: thick $success; }
    ChatMessage.interrupted { border-left: thick $warning; }
    ChatMessage:focus { background: $boost; }
    ChatMessage .role { color: $text-muted; text-style: bold; }
    ChatMessage Markdown { margin: 0; padding: 0; }
    ChatMessage Collapsible { margin: 0; padding: 0; border: none; }
    ChatMessage .reasoning-text { color: $text-muted; text-style: italic; }
    ChatMessage .meta { color: $text-muted; }
    """

    def __init__(
        self, role: str, content: str = "", reasoning: str = "", *, interrupted: bool = False, meta: str = ""
    ) -> None:
        super().__init__(classes=role + (" interrupted" if interrupted else ""))
        self.role, self.content, self.reasoning, self.meta = role, content, reasoning, meta
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Label("You" if self.role == "user" else "Assistant", classes="role")
        if self.reasoning:
            yield self._reasoning_part()
        if self.role == "user":
            yield Static(self.content, classes="text", markup=False)  # what was typed, as typed
        else:
            yield Markdown(self.content)
        if self.meta:
            yield Static(self.meta, classes="meta", markup=False)

    def _reasoning_part(self) -> Collapsible:
        return Collapsible(
            Static(self.reasoning, classes="reasoning-text", markup=False), title="Reasoning", collapsed=True
        )

    async def _show_reasoning(self) -> None:
        found = self.query(".reasoning-text")
        if found:
            found.first(Static).update(self.reasoning)
        elif self.reasoning:
            await self.mount(self._reasoning_part(), after=self.query_one(".role"))

    async def append(self, answer: str, reasoning: str) -> None:
        """Add a batch of the reply as it streams."""
        if not self.is_attached:
            return
        if reasoning:
            self.reasoning += reasoning
            await self._show_reasoning()
        if answer:
            self.content += answer
            if self._stream is None:
                self._stream = Markdown.get_stream(self.query_one(Markdown))
            await self._stream.write(answer)

    async def finish(self, content: str, reasoning: str, *, interrupted: bool, meta: str) -> None:
        """The reply is whole: render it once from the full text (a stream can leave a code fence half drawn)."""
        self.content, self.reasoning, self.meta = content, reasoning, meta
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if not self.is_attached:  # the app is closing: the reply is saved, there is nothing left to draw
            return
        await self.query_one(Markdown).update(content)
        await self._show_reasoning()
        self.set_class(interrupted, "interrupted")
        if self.query(".meta"):
            self.query_one(".meta", Static).update(meta)
        elif meta:
            await self.mount(Static(meta, classes="meta", markup=False))


def reply_meta(timings: Timings, interrupted: bool = False) -> str:
    """The line under a reply: tokens, speed, time to first token; and whether it was stopped (`interrupted`: a
    saved reply marked so)."""
    names = (
        ("tokens", "speed", "first_token", "stop")
        if timings.stats.completion_tokens
        else ("speed", "first_token", "stop")
    )
    parts = timings.parts(*names)
    if interrupted and "stopped" not in parts:
        parts.append("stopped")
    return " · ".join(parts)
