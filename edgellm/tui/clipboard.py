"""Copying text out of the app: the terminal's clipboard (OSC 52, works over SSH) and the system's tool."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING, Any

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


def copy(app: App[Any], text: str) -> str:
    """Copy `text` every way available; returns how, in words, for a notification. The system tool runs on a
    thread: xclip stays behind to serve the selection, and the UI must not wait for it."""
    app.copy_to_clipboard(text)  # OSC 52: the terminal puts it on the clipboard, even over SSH
    tool = system_tool()
    if tool is None:
        return "terminal clipboard (OSC 52)"
    threading.Thread(target=_pipe_to, args=(tool, text), daemon=True).start()
    return f"terminal clipboard (OSC 52) and {tool[0]}"


def _pipe_to(tool: tuple[str, ...], text: str) -> None:
    try:
        subprocess.run(tool, input=text.encode(), timeout=5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        pass  # no desktop session: OSC 52 was the way
