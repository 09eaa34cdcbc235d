"""SVG snapshots of the home, chat and models screens at 80×24 and 120×40, on a recorded device with frozen gauges.

Nothing on screen varies between runs: the profile is replayed, the gauges are a constant, the store holds the test
model alone (no dev models, no other tools' folders), the chat is a saved conversation with fixed times and timings
shown in UTC. Update with `pytest tests/integration/test_tui_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from edgellm import paths
from edgellm.catalog import inventory
from edgellm.events import Progress
from edgellm.hw.builtin import resolve_profile
from edgellm.session.events import Timings
from edgellm.session.history import History
from edgellm.storage import store
from edgellm.tui.app import EdgeApp
from edgellm.tui.gauges import Gauges
from edgellm.tui.messages import ModelLoading, OpenerProgress
from edgellm.tui.screens import chat
from edgellm.tui.screens.chat import ChatScreen
from edgellm.tui.screens.home import HomeScreen
from edgellm.tui.widgets.loadbar import LoadBar
from edgellm.tui.widgets.message import ChatMessage
from edgellm.tui.widgets.prompt import PromptInput
from tests.support.tui import settings, until

GIB = 2**30
PROFILE = "laptop-rtx4060-8gb"
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
CREATED = 1_767_225_600.0  # 2026-01-01 00:00 UTC
TIMINGS = {"completion_tokens": 12, "tokens_per_s": 48.5, "ttft_ms": 120.0, "context_used": 57, "stop_reason": "eos"}


def frozen() -> Gauges:
    """The same reading every second: 5.5 of 16 GiB, CPU 25 %, 2 of 8 GiB VRAM."""
    return Gauges(int(5.5 * GIB), 16 * GIB, 25.0, ((2 * GIB, 8 * GIB),))


@pytest.fixture(autouse=True)
def stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_model: Path):
    """The test model alone in the store, other tools' folders empty, no dev models, dates in UTC."""
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "user-home" / "hf"))
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "user-home" / "llama.cpp"))
    monkeypatch.setattr(inventory, "dev_models_dir", lambda: None)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    store.import_path(test_model)
    yield
    monkeypatch.undo()
    time.tzset()


def app(**kwargs) -> EdgeApp:
    made = EdgeApp(settings("-c", "2048", "-ngl", "0"), profile=resolve_profile(PROFILE), sampler=frozen, **kwargs)
    made.animation_level = "none"  # the tabs' underline slides in: never caught halfway on a busy machine
    return made


def saved_conversation() -> int:
    """One conversation in EDGELLM_HOME's history, with fixed times and the timings of its reply."""
    history = History(paths.history_path())
    conversation = history.new_conversation("gemma-3-270m-Q4_K_M.gguf", {})
    history.add(conversation, "user", "What is the capital of France?")
    reply = history.start_reply(conversation)
    history.finish_reply(reply, "The capital of France is **Paris**.", "", False, Timings.from_dict(TIMINGS))
    history.db.execute("UPDATE conversations SET created = ?, updated = ?", (CREATED, CREATED + 60))
    history.db.execute("UPDATE messages SET created = ?, updated = ?", (CREATED, CREATED))
    history.close()
    return conversation


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare, size: tuple[int, int]) -> None:
    """Hardware panel, the stored model with its fit, the recommendations, the footer's keys."""

    async def filled(pilot) -> None:
        await until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, HomeScreen)
                and not pilot.app.screen.query_one("#recommended-models").loading
            ),
            what="the lists",
        )

    assert snap_compare(app(start="home"), run_before=filled, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_models(snap_compare, size: tuple[int, int]) -> None:
    """The models screen's store tab with the verdict of the stored model."""

    async def filled(pilot) -> None:
        screen = pilot.app.screen
        local = screen.query_one("#local-table", DataTable)
        catalog = screen.query_one("#catalog-table", DataTable)
        await until(
            pilot,
            lambda: local.row_count == 1 and str(local.get_row_at(0)[-1]) != "" and catalog.row_count > 0,
            what="the verdicts and the catalog",
        )

    assert snap_compare(app(start="models"), run_before=filled, terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_chat(snap_compare, test_model: Path, size: tuple[int, int]) -> None:
    """A saved conversation resumed on the test model: its messages, timings, status line and input."""
    conversation = saved_conversation()

    async def resumed(pilot) -> None:
        application = pilot.app
        await until(
            pilot,
            lambda: (
                application.session is not None
                and isinstance(application.screen, ChatScreen)
                and application.session.conversation_id == conversation
                and len(application.screen.query(ChatMessage)) == 2
                and len(application.screen.query("ConversationItem")) == 1
                and application.screen.query_one(PromptInput).has_focus
            ),
            what="the resumed conversation",
        )
        prompt = application.screen.query_one(PromptInput)
        prompt.cursor_blink = False  # the cursor always drawn: never caught mid-blink
        prompt.notify_style_update()  # and no line cached from before drawn without it

    assert snap_compare(
        app(start="chat", history=History(paths.history_path()), model=str(test_model), resume=conversation),
        run_before=resumed,
        terminal_size=size,
    )


@pytest.mark.parametrize("size", SIZES)
def test_chat_loading(snap_compare, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]) -> None:
    """A model being loaded: its bar, and a message sent meanwhile waiting for it (said in the status line)."""
    monkeypatch.setattr(chat, "LOAD_BAR_AFTER_S", 0.0)  # the bar at once: no snapshot waits a second

    async def loading(pilot) -> None:
        application = pilot.app
        await until(pilot, lambda: isinstance(application.screen, ChatScreen), what="the chat")
        screen = application.screen
        screen.post_message(ModelLoading("gemma-3-270m-Q4_K_M.gguf"))
        screen.post_message(OpenerProgress(Progress("load", 400, 1000, unit="‰")))
        await until(pilot, lambda: screen.query_one(LoadBar).display, what="the load's bar")
        await pilot.press(*"What is the capital of France?", "enter")
        await until(pilot, lambda: screen.waiting is not None and screen.query(ChatMessage), what="the waiting message")
        prompt = screen.query_one(PromptInput)
        prompt.cursor_blink = False  # the cursor always drawn: never caught mid-blink
        prompt.notify_style_update()

    assert snap_compare(app(start="chat"), run_before=loading, terminal_size=size)
