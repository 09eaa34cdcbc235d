"""The edgellm app: its modes (home, models, convert, chat), the model host's loads run on a thread, errors shown
as screens with the way out, every action in the command palette."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from edgellm.tui.base import EdgellmApp
from edgellm.tui.messages import (
    ChatWith,
    ChooseRemote,
    ModelLoadFailed,
    ModelLoading,
    ModelReady,
    OpenerProgress,
    ProgressUpdate,
    ResumeConversation,
    StoreChanged,
    WorkNotice,
)
from edgellm.tui.words import told

if TYPE_CHECKING:
    from edgellm.session.chat import ChatSession
    from edgellm.session.opening import PlannedModel

log = logging.getLogger("edgellm.tui")


def _home_screen() -> Screen[None]:
    from edgellm.tui.screens.home import HomeScreen

    return HomeScreen()


def _models_screen() -> Screen[None]:
    from edgellm.tui.screens.picker import PickerScreen

    return PickerScreen()


def _convert_screen() -> Screen[None]:
    from edgellm.tui.screens.convert import ConvertScreen

    return ConvertScreen()


def _chat_screen() -> Screen[None]:
    from edgellm.tui.screens.chat import ChatScreen

    return ChatScreen()


class EdgeApp(EdgellmApp):
    """edgellm's TUI: its modes, the model host's loads, the actions."""

    TITLE = "edgellm"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: a subclass elsewhere still finds it
    MODES = {"home": _home_screen, "models": _models_screen, "convert": _convert_screen, "chat": _chat_screen}
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("f2", "switch_mode('home')", "Home", show=False),
        Binding("f3", "switch_mode('models')", "Models", show=False),
        Binding("f4", "switch_mode('convert')", "Convert", show=False),
        Binding("f5", "switch_mode('chat')", "Chat", show=False),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        if self.trouble is not None:
            self.notify(f"{self.trouble} — chat history is off for this run", severity="warning", timeout=15)
        if self.start_model is not None:  # "": the model the flags name, or the best one stored
            self.post_message(ChatWith(self.start_model))

    def on_work_notice(self, message: WorkNotice) -> None:
        self.notify(told(message.notice), severity="warning" if message.notice.kind == "warning" else "information")

    def on_progress_update(self, message: ProgressUpdate) -> None:
        """Progress of the model opener (a -hf model pulled before it loads): the chat draws it."""
        self.broadcast(OpenerProgress(message.progress))

    def on_store_changed(self, message: StoreChanged) -> None:
        self.broadcast(StoreChanged())

    def made_screens(self) -> list[Screen[Any]]:
        """Every screen the app has made: the modes' screens and those pushed on them."""
        return [screen for stack in self._screen_stacks.values() for screen in stack]

    def broadcast(self, message: Message) -> None:
        """Post a message to every screen the app has made."""
        for screen in self.made_screens():
            screen.post_message(message)

    # the model host, its loads on a thread

    def on_choose_remote(self, message: ChooseRemote) -> None:
        self.switch_mode("models")
        self.mode_screen("models").post_message(ChooseRemote(message.ref))

    def mode_screen(self, mode: str) -> Screen[Any]:
        """The screen a mode was made with (under any dialog pushed on it)."""
        return self._screen_stacks[mode][0]

    def on_chat_with(self, message: ChatWith) -> None:
        self.open_model(message.model)

    @property
    def loading_model(self) -> bool:
        return self._opening

    def open_model(self, model: str, changes: dict[str, object] | None = None) -> None:
        """Plan and load `model` on a thread, then chat with it: one load at a time, never under a reply.
        `changes`: flags to change first (the context the planner found would fit)."""
        from edgellm.session.chat import BUSY

        if self._opening:
            self.notify("a model is being loaded already: wait for it", severity="warning")
            return
        if self.session is not None and self.session.busy:
            self.notify(BUSY, severity="warning")
            return
        previous, self.session = self.session, None  # no turn starts on it from now on
        self._opening = True
        self.switch_mode("chat")
        self.broadcast(ModelLoading(model))
        self._load(model, previous, changes or {})

    @work(thread=True, group="load", exit_on_error=False)
    def _load(self, model: str, previous: ChatSession | None, changes: dict[str, object]) -> None:
        flags = replace(self.host.flags, model=model, hf_repo=None) if model else self.host.flags
        flags = replace(flags, **changes)  # type: ignore[arg-type]
        try:
            self.host.open(flags)  # a -hf model is pulled first; the model in use stays if planning fails
            session = self.host.chat(self.history)
        except Exception as error:
            kept = previous if previous is not None and self.host.model is previous.model else None
            self.post_message(LoadEnded(None, None, error, model, kept, self.host.planned if kept else None))
            return
        self.post_message(LoadEnded(session, self.host.planned, None, model, None, None))

    def on_load_ended(self, message: LoadEnded) -> None:
        self._opening = False
        if message.session is not None:
            assert message.planned is not None  # a session comes with its plan (the host's, set together)
            self.post_message(ModelReady(message.session, message.planned))
            return
        assert message.error is not None  # no session: the load failed
        if message.kept is not None:
            assert message.kept_plan is not None  # the host keeps its model and plan together
            self.session, self.planned = message.kept, message.kept_plan
            self.broadcast(ModelReady(message.kept, message.kept_plan))
        else:
            self.planned = None
            self.broadcast(ModelLoadFailed())
        self.show_error(
            message.error,
            lambda: self.open_model(message.model),
            lambda changes: self.open_model(message.model, changes),
        )

    def on_model_ready(self, message: ModelReady) -> None:
        self.session, self.planned = message.session, message.planned
        self.broadcast(ModelReady(message.session, message.planned))
        if self.resume is not None:
            resume, self.resume = self.resume, None
            self.mode_screen("chat").post_message(ResumeConversation(resume))

    async def action_quit(self) -> None:
        """Stop what runs on threads (a reply, a download, a conversion), then leave: the process would
        otherwise wait for them."""
        for screen in self.made_screens():
            stop = getattr(screen, "stop_work", None)
            if stop is not None:
                stop()
        if self.session is not None:
            self.session.cancel()
        if self._host is not None:
            self._host.cancel()
        self.exit()

    # actions

    def action_help(self) -> None:
        from edgellm.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Home", "the hardware, the local models and what fits (F2)", lambda: self.switch_mode("home")
        )
        yield SystemCommand(
            "Models", "pick a model: the store and the catalog, with downloads (F3)", lambda: self.switch_mode("models")
        )
        yield SystemCommand(
            "Convert", "convert a Hugging Face checkpoint to GGUF (F4)", lambda: self.switch_mode("convert")
        )
        yield SystemCommand("Chat", "the conversation (F5)", lambda: self.switch_mode("chat"))
        yield SystemCommand("Help", "keys and how things work (F1)", self.action_help)
        yield SystemCommand(
            "Toggle light/dark theme", "switch between the light and the dark theme (Ctrl+T)", self.action_toggle_theme
        )
        for title, help_text, callback in getattr(screen, "commands", lambda: [])():
            yield SystemCommand(title, help_text, callback)
        yield from super().get_system_commands(screen)


class LoadEnded(Message):
    """The load's outcome: a session, or the error with the session kept (planning failed) if any."""

    def __init__(
        self,
        session: ChatSession | None,
        planned: PlannedModel | None,
        error: BaseException | None,
        model: str,
        kept: ChatSession | None,
        kept_plan: PlannedModel | None,
    ) -> None:
        super().__init__()
        self.session, self.planned, self.error, self.model = session, planned, error, model
        self.kept, self.kept_plan = kept, kept_plan
