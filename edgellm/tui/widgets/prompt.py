"""The message box: Enter sends, Alt+Enter or Ctrl+J adds a line, a paste keeps its lines; a paste that is one image
file's path (or file:// URL) attaches the image instead, and Backspace in the empty box takes the last one off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from edgellm.tui.widgets.attach import image_path


class PromptInput(TextArea):
    """A multi-line input whose Enter sends the text instead of breaking the line."""

    DEFAULT_CSS = """
    PromptInput, PromptInput:focus { height: auto; min-height: 3; max-height: 10; border: round $accent; }
    """

    class Submitted(Message):
        def __init__(self, prompt: PromptInput, text: str) -> None:
            super().__init__()
            self.prompt, self.text = prompt, text

    class PathPasted(Message):
        """A paste that was one image file's path (`text` as pasted): attached rather than typed."""

        def __init__(self, prompt: PromptInput, path: Path, text: str) -> None:
            super().__init__()
            self.prompt, self.path, self.text = prompt, path, text

    class EmptyBackspace(Message):
        """Backspace in the empty box: the last attached image comes off."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            soft_wrap=True,
            show_line_numbers=False,
            tab_behavior="focus",
            placeholder="Message (Enter sends, Alt+Enter a new line, F1 help)",
            **kwargs,
        )

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key in ("alt+enter", "ctrl+j", "shift+enter"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)

    async def _on_paste(self, event: events.Paste) -> None:
        path = image_path(event.text) if not self.read_only else None
        if path is None:
            return  # typed in, by TextArea's own handler
        event.stop()
        event.prevent_default()
        self.post_message(self.PathPasted(self, path, event.text))

    def action_delete_left(self) -> None:
        if not self.text:
            self.post_message(self.EmptyBackspace())
            return
        super().action_delete_left()
