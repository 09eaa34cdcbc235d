"""Copying text out of the app: the terminal's clipboard (OSC 52, works over SSH) and the system's tool."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n(?P<code>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
TOOLS = (("wl-copy",), ("xclip", "-selection", "clipboard"), ("xsel", "--clipboard", "--input"), ("pbcopy",))


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in order, without their fences."""
    return [match.group("code").rstrip("\n") for match in FENCE.finditer(markdown)]


def system_tool() -> tuple[str, ...] | None:
    """The first clipboard command installed here, if any (they need a desktop session to work)."""
    return next((tool for tool in TOOLS if shutil.which(tool[0])), None)


def copy(app: "App", text: str) -> str:
    """Copy `text` every way available; returns how, in words, for a notification."""
    app.copy_to_clipboard(text)  # OSC 52: the terminal puts it on the clipboard, even over SSH
    how = "terminal clipboard (OSC 52)"
    tool = system_tool()
    if tool is not None:
        try:
            subprocess.run(tool, input=text.encode(), timeout=2, check=True, capture_output=True)
            how += f" and {tool[0]}"
        except (OSError, subprocess.SubprocessError):
            pass
    return how
