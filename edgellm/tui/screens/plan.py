"""The plan of a Hub model before downloading it: the quant chosen, its size, any warning, the memory budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from edgellm.formatting import gib
from edgellm.plan import report
from edgellm.tui.words import TUI, said

if TYPE_CHECKING:
    from edgellm.hw.profile import DeviceProfile
    from edgellm.session.remote import RemoteChoice


def summary(choice: RemoteChoice) -> str:
    """One line: the name, the quant's size and how many files hold it."""
    group = choice.group
    return f"{choice.name}: {gib(group.size)} in {len(group.files)} file(s)"


class PlanScreen(ModalScreen[bool]):
    """Asks whether to download the choice, showing what the planner made of it; dismissed with True to download."""

    DEFAULT_CSS = """
    PlanScreen { align: center middle; }
    #plan-box { width: 90%; max-width: 110; height: 90%; border: thick $primary; background: $surface;
                padding: 0 1; }
    #plan-title { text-style: bold; }
    #plan-warning { color: $warning; }
    #plan-table { margin: 1 0; }
    #plan-actions { height: auto; dock: bottom; }
    #plan-actions Button { margin-right: 2; }
    """
    BINDINGS = [Binding("escape", "answer(False)", "Cancel")]

    def __init__(self, choice: RemoteChoice, profile: DeviceProfile) -> None:
        super().__init__()
        self.choice, self.profile = choice, profile

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="plan-box"):
            yield Label(summary(self.choice), id="plan-title", markup=False)
            if self.choice.warning:
                yield Label(f"warning: {said(self.choice.warning)}", id="plan-warning", markup=False)
            for line in self.choice.considered:
                yield Label(f"  {said(line)}", classes="plan-considered", markup=False)
            if self.choice.plan is not None and self.choice.spec is not None:
                yield Static(
                    report.render(self.choice.plan, self.choice.spec, self.profile, terms=TUI),
                    id="plan-table",
                    markup=False,
                )
            with Horizontal(id="plan-actions"):
                yield Button("Download", id="plan-download", variant="primary")
                yield Button("Cancel", id="plan-cancel")

    def on_mount(self) -> None:
        self.query_one("#plan-download", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id == "plan-download")

    def action_answer(self, download: bool) -> None:
        self.dismiss(download)
