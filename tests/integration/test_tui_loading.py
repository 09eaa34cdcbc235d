"""The chat while a model loads, driven through Textual's Pilot: the load drawn as a bar (after a second; a download's
at once), and a message sent meanwhile shown, said to wait, and sent once the real test model is ready."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import ProgressBar, Static

from edgellm import paths
from edgellm.events import Progress
from edgellm.session.history import History
from edgellm.tui.app import EdgeApp
from edgellm.tui.messages import ModelLoading, OpenerProgress
from edgellm.tui.screens import chat
from edgellm.tui.screens.chat import ChatScreen
from edgellm.tui.widgets.loadbar import LoadBar
from edgellm.tui.widgets.status import StatusLine
from tests.support.tui import chat_app, messages, run, settings, until


def status(app: EdgeApp) -> str:
    return str(app.screen.query_one(StatusLine).content)


def hold_the_load(app: EdgeApp) -> threading.Event:
    """Make the app's model host wait, as it opens a model, until the returned event is set."""
    gate = threading.Event()
    opened = app.host.open

    def held_open(flags):  # type: ignore[no-untyped-def]
        gate.wait(60)
        return opened(flags)

    app.host.open = held_open
    return gate


def test_a_message_sent_while_the_model_loads_is_sent_once_it_is_ready(test_model: Path) -> None:
    app = chat_app(test_model, "-n", "8", "--temp", "0")
    gate = hold_the_load(app)  # the load waits here, so the message is surely sent during it

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(
                pilot,
                lambda: isinstance(app.screen, ChatScreen) and app.screen.loading_model is not None,
                what="the load to start",
            )
            await pilot.press(*"hello", "enter")
            await until(pilot, lambda: bool(messages(app)), what="the message on screen")
            assert [(m.role, m.content) for m in messages(app)] == [("user", "hello")]
            assert app.screen.query_one("#prompt").text == ""  # taken, not left in the box with no sign why
            assert "loading gemma-3-270m-Q4_K_M.gguf…" in status(app)
            assert "sending when the model is loaded" in status(app)
            assert app.session is None
            await pilot.press(*"again", "enter")  # one message waits at a time: the second stays in the box
            assert app.screen.query_one("#prompt").text == "again"
            gate.set()
            await until(
                pilot,
                lambda: (
                    app.session is not None
                    and len(messages(app)) == 2
                    and not app.session.busy
                    and app.screen.reply is None
                ),
                what="the reply to the waiting message",
            )
            user, reply = messages(app)
            assert (user.role, user.content) == ("user", "hello")
            assert reply.role == "assistant" and reply.content.strip() and "8 tokens" in reply.meta
            assert "sending when" not in status(app) and "TTFT" in status(app)
            saved = History(paths.history_path()).messages(app.session.conversation_id)
            assert [m.content for m in saved if m.role == "user"] == ["hello"]

    try:
        run(main)
    finally:
        gate.set()


def test_a_message_waiting_for_a_load_that_fails_goes_back_in_the_box(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 20)
    app = chat_app(broken)
    gate = hold_the_load(app)

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(
                pilot,
                lambda: isinstance(app.screen, ChatScreen) and app.screen.loading_model is not None,
                what="the load to start",
            )
            chat_screen = app.screen
            await pilot.press(*"hello", "enter")
            await until(pilot, lambda: bool(messages(app)), what="the message on screen")
            gate.set()
            await until(pilot, lambda: chat_screen.waiting is None, what="the load to fail")
            assert chat_screen.query_one("#prompt").text == "hello"  # nothing typed is lost
            assert not list(chat_screen.query("ChatMessage"))

    try:
        run(main)
    finally:
        gate.set()


def test_the_load_is_drawn_as_a_bar_after_a_second_and_a_download_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = EdgeApp(settings(), history=History(paths.history_path()), start="chat")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat")
            screen = app.screen
            bar = screen.query_one(LoadBar)
            screen.post_message(ModelLoading("/models/gemma-3-270m-Q4_K_M.gguf"))
            screen.post_message(OpenerProgress(Progress("load", 100, 1000, unit="‰")))
            await until(pilot, lambda: screen.loading_model is not None, what="the load")
            await pilot.pause()
            assert not bar.display  # a load under a second draws no bar
            monkeypatch.setattr(chat, "LOAD_BAR_AFTER_S", 0.0)  # as if the load had taken a second already
            screen.post_message(OpenerProgress(Progress("load", 400, 1000, unit="‰")))
            await until(pilot, lambda: bar.display, what="the load's bar")
            assert str(bar.query_one("#load-label", Static).content) == "Loading gemma-3-270m-Q4_K_M.gguf …"
            assert bar.query_one(ProgressBar).percentage == 0.4
            assert not bar.query("#eta")  # a load's bar is a share loaded, without a guess of the time left
            assert status(app) == "loading gemma-3-270m-Q4_K_M.gguf…"
            screen.post_message(OpenerProgress(Progress("download", 50, 200)))
            await until(
                pilot, lambda: "Downloading" in str(bar.query_one("#load-label", Static).content), what="the download"
            )
            assert bar.query("#eta") and bar.query_one(ProgressBar).percentage == 0.25
            screen.post_message(OpenerProgress(Progress("download", 200, 200, finished=True)))
            await until(pilot, lambda: not bar.display, what="the bar to go")
            assert not bar.query(ProgressBar)  # no bar left waking twice a second

    run(main)
