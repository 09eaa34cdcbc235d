"""The line under the header naming the app's screens and their keys, the current one marked."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

MODES = (("home", "F2", "Home"), ("models", "F3", "Models"), ("convert", "F4", "Convert"), ("chat", "F5", "Chat"))


def mode_line(current: str) -> Text:
    line = Text()
    for mode, key, label in MODES:
        style = "bold reverse" if mode == current else ""
        line.append(f" {key} ", style="bold " + style if style else "bold")
        line.append(f"{label} ", style=style)
        line.append("  ")
    return line


class ModeBar(Static):
    """Shown by each mode's screen with its own name, so the keys to the others are always in view."""

    DEFAULT_CSS = """
    ModeBar { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, current: str) -> None:
        super().__init__(mode_line(current))
