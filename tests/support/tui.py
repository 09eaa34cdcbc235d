"""What the TUI tests share: the settings the flags give, waiting on a condition, the app on the test model, and the
chat screen driven as a person would (wait for the model, say something, read the messages)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from edgellm import paths
from edgellm.cli.main import build_parser
from edgellm.session.flags import Flags, flags_of
from edgellm.session.history import History
from edgellm.tui.app import EdgeApp
from edgellm.tui.screens.chat import ChatScreen
from edgellm.tui.widgets.message import ChatMessage


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
    return EdgeApp(
        settings(*flags), history=history or History(paths.history_path()), model=str(model), start="chat", **kwargs
    )


def run(test: Callable[[], object]) -> None:
    """Run an async test body (pytest-asyncio is not a dependency)."""
    asyncio.run(test())  # type: ignore[arg-type]


def messages(app) -> list[ChatMessage]:
    return list(app.screen.query(ChatMessage))


async def long_reply_started(pilot, chars: int) -> None:
    """The model loaded, a long story asked for, and more than `chars` characters of it on screen."""
    app = pilot.app
    await loaded(pilot)
    await pilot.press(*"Tell me a long story", "enter")
    await until(
        pilot, lambda: app.screen.reply is not None and len(app.screen.reply.content) > chars, what="part of the reply"
    )


async def loaded(pilot) -> ChatScreen:
    app = pilot.app
    await until(pilot, lambda: app.session is not None and isinstance(app.screen, ChatScreen), what="the model")
    await until(pilot, lambda: app.screen.session is app.session, what="the chat screen to take the session")
    return app.screen


async def say(pilot, text: str) -> None:
    """Type a message, send it, and wait for the whole reply."""
    app = pilot.app
    before = len(messages(app))
    await pilot.press(*text)
    await pilot.press("enter")
    await until(
        pilot,
        lambda: len(messages(app)) >= before + 2 and not app.session.busy and app.screen.reply is None,
        what="the reply",
    )


def gauges_shown(panel) -> str:
    """The hardware panel's gauges as plain text, as the screen shows them."""
    from textual.widgets import Static

    return str(panel.query_one("#hw-gauges", Static).content)
