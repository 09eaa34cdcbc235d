"""Small modals: ask for one line of text, or confirm an action."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

DIALOG_CSS = """
    {name} { align: center middle; }
    {name} > Vertical { width: 70; max-width: 95%; height: auto; border: thick $primary; background: $surface;
                        padding: 1 2; }
    {name} Horizontal { height: auto; margin-top: 1; }
    {name} Button { margin-right: 2; }
"""


class AskText(ModalScreen["str | None"]):
    """One line of text (a title, a search), or None when cancelled."""

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "AskText")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question, self.value = question, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(self.value, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class Confirm(ModalScreen[bool]):
    """Yes or no before something that cannot be undone."""

    DEFAULT_CSS = DIALOG_CSS.replace("{name}", "Confirm")
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str, yes: str = "Delete") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button(self.yes, id="yes", variant="error")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
