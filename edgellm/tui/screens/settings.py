"""The conversation's settings: system prompt and sampling, each checked by the session as it is applied."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea

from edgellm.errors import EdgellmError
from edgellm.tui.words import explain

if TYPE_CHECKING:
    from edgellm.session.chat import ChatSession

FIELDS = (
    ("temp", "temperature"),
    ("top-k", "top-k"),
    ("top-p", "top-p"),
    ("min-p", "min-p"),
    ("repeat-penalty", "repeat penalty"),
    ("n-predict", "max tokens (-1: no limit)"),
    ("seed", "seed (-1: random)"),
)


def current_values(session: ChatSession) -> dict[str, str]:
    """The settings in force, as the text the fields show."""
    saved = session.options.as_dict()
    return {key: str(saved[key.replace("-", "_")]) for key, _ in FIELDS}


class SettingsScreen(ModalScreen[bool]):
    """Edit and apply; an invalid value is named under the fields and nothing after it is applied."""

    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen > VerticalScroll { width: 76; max-width: 98%; height: 90%; border: thick $primary;
                                      background: $surface; padding: 0 1; }
    SettingsScreen TextArea { height: 5; }
    SettingsScreen .row { height: 3; }
    SettingsScreen .row Label { width: 28; padding: 1 1 0 0; }
    SettingsScreen .row Input { width: 1fr; }
    SettingsScreen #settings-error { color: $error; height: auto; }
    SettingsScreen #settings-buttons { height: auto; }
    SettingsScreen Button { margin-right: 2; }
    """
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        values = current_values(self.session)
        with VerticalScroll():
            yield Label("System prompt (kept with this conversation)")
            yield TextArea(self.session.system_prompt or "", id="system")
            for key, label in FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(values[key], id=f"set-{key}")
            yield Label("", id="settings-error")
            with Horizontal(id="settings-buttons"):
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(False)
        else:
            self.apply()

    def on_input_submitted(self) -> None:
        self.apply()

    def apply(self) -> None:
        before = current_values(self.session)
        try:
            system = self.query_one("#system", TextArea).text.strip()
            if system != (self.session.system_prompt or ""):
                self.session.set_system(system)
            for key, _ in FIELDS:
                value = self.query_one(f"#set-{key}", Input).value.strip()
                if value != before[key]:
                    self.session.set(key, value)
        except EdgellmError as error:
            self.query_one("#settings-error", Label).update(explain(error))
            return
        self.dismiss(True)
