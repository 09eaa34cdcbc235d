"""One message of the conversation: the user's, or a reply streamed as Markdown with its reasoning folded.

A reply being written costs the UI thread little, since it shares the cores with the model: its whole lines go to
the Markdown and its unfinished end is plain text, filled in place (no layout) as each batch comes; the reply grows by
lines (a layout of the screen, the costly part) at most every GROW_EVERY_S."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Collapsible, Label, Markdown, Static

from edgellm.session.events import Timings
from edgellm.tui.widgets.attach import attached_line

if TYPE_CHECKING:
    from edgellm.media.images import Image

GROW_EVERY_S = 0.5  # a reply being written grows (new lines: a layout) at most this often


class UnfinishedLine(Static):
    """The end of a reply being written, as plain text, `lines` high: filled in place without a layout; it grows
    (a layout) only when asked to."""

    DEFAULT_CSS = """
    UnfinishedLine { height: auto; display: none; }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)
        self.text = ""
        self.lines = 0  # its height when it last grew; -1: as high as its text needs (its width not known yet)

    def lines_for(self, text: str) -> int:
        """The height `text` would take; -1 when not known (not laid out yet)."""
        width = self.content_region.width if self.display else 0
        return Content(text).get_height({}, width) if text and width else (0 if not text else -1)

    def fill(self, text: str) -> None:
        """Show `text` in the lines it has: what does not fit shows when it next grows."""
        if text != self.text:
            self.text = text
            self.update(text, layout=False)

    def grow(self, text: str, lines: int) -> None:
        """Show `text`, `lines` high (-1: as high as it needs)."""
        self.text, self.lines = text, lines
        self.display = bool(text)
        self.styles.height = lines if lines > 0 else "auto"
        self.update(text)


class ChatMessage(Vertical, can_focus=True):
    """A message; a reply is written line by line into its Markdown (the unfinished line as plain text), then
    rendered once whole. A message with images shows each one's name and size above its text.

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
    ChatMessage .image { color: $text-muted; }
    """

    def __init__(
        self,
        role: str,
        content: str = "",
        reasoning: str = "",
        *,
        interrupted: bool = False,
        meta: str = "",
        images: Sequence[Image] = (),
        images_lost: int = 0,
    ) -> None:
        super().__init__(classes=role + (" interrupted" if interrupted else ""))
        self.role, self.content, self.reasoning, self.meta = role, content, reasoning, meta
        self.images = tuple(images)
        self.images_lost = images_lost  # a saved message's images the image store no longer holds
        self._in_markdown = 0  # how much of `content` the Markdown holds while the reply is written
        self._grown_at = 0.0  # when the reply being written last grew
        self._later: Timer | None = None  # the growth held back, drawn when GROW_EVERY_S has passed

    def compose(self) -> ComposeResult:
        yield Label("You" if self.role == "user" else "Assistant", classes="role")
        if self.reasoning:
            yield self._reasoning_part()
        for image in self.images:
            yield Static(attached_line(image), classes="image", markup=False)
        if self.images_lost:
            lost = f"{self.images_lost} image{'s' if self.images_lost > 1 else ''}"
            yield Static(f"📎 {lost} no longer in the image store", classes="image", markup=False)
        if self.role == "user":
            yield Static(self.content, classes="text", markup=False)  # what was typed, as typed
        elif self.content:
            yield Markdown(self.content)
        else:  # a reply about to be written: its Markdown comes with its first whole lines (a turn starts lighter)
            yield UnfinishedLine()
        if self.meta:
            yield Static(self.meta, classes="meta", markup=False)

    def _reasoning_part(self) -> Collapsible:
        return Collapsible(
            Static(self.reasoning, classes="reasoning-text", markup=False), title="Reasoning", collapsed=True
        )

    async def _show_reasoning(self) -> None:
        found = self.query(".reasoning-text")
        if found:
            folded = self.query_one(Collapsible).collapsed
            found.first(Static).update(self.reasoning, layout=not folded)  # folded: no layout for text not shown
        elif self.reasoning:
            await self.mount(self._reasoning_part(), after=self.query_one(".role"))

    class Grew(Message):
        """A reply being written took more lines: the conversation scrolls to show them."""

    async def append(self, answer: str, reasoning: str) -> None:
        """Add a batch of the reply as it streams (drawn now, or with the next growth when it adds a line)."""
        if not self.is_attached:
            return
        if reasoning:
            self.reasoning += reasoning
            await self._show_reasoning()
            self.post_message(self.Grew())
        if answer:
            self.content += answer
            await self._draw()

    async def _draw(self) -> None:
        """Draw what came: in place while it fits; whole lines to the Markdown and a taller last line (a layout)
        only when the last growth is GROW_EVERY_S old, else that waits and what fits is drawn meanwhile."""
        self._later = None
        found = self.query(UnfinishedLine)
        if not found or not self.is_attached:
            return
        line = found.first()
        whole = self.content.rfind("\n") + 1  # the end of the last whole line
        tail = self.content[whole:]
        lines = line.lines_for(tail)
        if whole == self._in_markdown and lines == line.lines and lines >= 0:
            line.fill(tail)
            return
        wait = self._grown_at + GROW_EVERY_S - time.monotonic()
        if wait > 0:
            line.fill(self.content[self._in_markdown :])  # the lines it has, filled; the rest when it grows
            if self._later is None:
                self._later = self.set_timer(wait, self._draw)
            return
        self._grown_at = time.monotonic()
        if whole > self._in_markdown:
            await (await self._markdown(line)).append(self.content[self._in_markdown : whole])
            self._in_markdown = whole
        line.grow(tail, lines)
        self.post_message(self.Grew())

    async def _markdown(self, before: UnfinishedLine | None) -> Markdown:
        """The reply's Markdown, mounted (before `before`, else last) if it has none yet."""
        found = self.query(Markdown)
        if found:
            return found.first()
        markdown = Markdown()
        await self.mount(markdown, before=before)
        return markdown

    async def finish(self, content: str, reasoning: str, *, interrupted: bool, meta: str) -> None:
        """The reply is whole: render it once from the full text (a stream can leave a code fence half drawn)."""
        self.content, self.reasoning, self.meta = content, reasoning, meta
        if self._later is not None:
            self._later.stop()
            self._later = None
        if not self.is_attached:  # the app is closing: the reply is saved, there is nothing left to draw
            return
        with self.app.batch_update():
            lines = self.query(UnfinishedLine)
            markdown = await self._markdown(lines.first() if lines else None)
            await lines.remove()
            await markdown.update(content)
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
        ("tokens", "speed", "first_token", "image", "stop")
        if timings.stats.completion_tokens
        else ("speed", "first_token", "image", "stop")
    )
    parts = timings.parts(*names)
    if interrupted and "stopped" not in parts:
        parts.append("stopped")
    return " · ".join(parts)
