"""What the TUI tests share: the settings the flags give, waiting on a condition, the app on the test model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

from edgellm import paths
from edgellm.session.history import History
from edgellm.cli.main import build_parser
from edgellm.session.flags import flags_of
from edgellm.session.flags import Flags
from edgellm.tui.app import EdgeApp


def settings(*flags: str) -> Flags:
    """The model settings `edgellm chat FLAGS` resolves to."""
    return flags_of(build_parser().parse_args(["chat", *flags]))


async def until(pilot, condition: Callable[[], bool], seconds: float = 60.0, what: str = "the condition") -> None:
    """Let the app run until `condition` holds; fail after `seconds` (a bound, not a pause)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def chat_app(model: Path | str, *flags: str, history: History | None = None, **kwargs) -> EdgeApp:
    """The app opened on the chat with `model`, its history in EDGELLM_HOME."""
    return EdgeApp(settings(*flags), history=history or History(paths.history_path()), model=str(model),
                   start="chat", **kwargs)


def run(test: Callable[[], object]) -> None:
    """Run an async test body (pytest-asyncio is not a dependency)."""
    asyncio.run(test())  # type: ignore[arg-type]
