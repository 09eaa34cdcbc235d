"""An error shown inside the app: what went wrong, in the error's own words, and the ways out as buttons."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from edgellm import errors


def ways_out(error: BaseException, can_retry: bool) -> list[tuple[str, str]]:
    """The buttons an error offers, as (label, action): the TUI's words for the error's way out."""
    actions: list[tuple[str, str]] = []
    if isinstance(error, (errors.HubUnreachable, errors.OfflineMode)) and can_retry:
        actions.append(("Try again", "retry"))
    if isinstance(error, (errors.DoesNotFit, errors.ModelFileError, errors.NoModel, errors.LoadFailed,
                          errors.NoSuchQuant, errors.RepoNotFound, errors.GatedRepo)):
        actions.append(("Pick another model", "models"))
    if isinstance(error, (errors.HubUnreachable, errors.OfflineMode)):
        actions.append(("Use a local model", "home"))
    if isinstance(error, errors.DiskError):
        actions.append(("See the models on disk", "home"))
    elif can_retry and not actions:
        actions.append(("Try again", "retry"))
    actions.append(("Close", "close"))
    return actions


def describe(error: BaseException) -> str:
    """The message: a EdgellmError says the problem and the way out itself; anything else is named as unexpected."""
    if isinstance(error, errors.EdgellmError):
        return str(error)
    return (f"Something unexpected went wrong: {type(error).__name__}: {error}. The app goes on; the details are "
            f"in the log (EDGELLM_HOME/logs/tui.log).")


class ErrorScreen(ModalScreen[str]):
    """A modal with the error and its ways out; dismissed with the action chosen."""

    BINDINGS = [Binding("escape", "choose('close')", "Close")]

    def __init__(self, error: BaseException, retry: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.error, self.retry = error, retry

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Label("Error" if isinstance(self.error, errors.EdgellmError) else "Unexpected error", id="error-title")
            yield Static(describe(self.error), id="error-text")
            with Horizontal(id="error-actions"):
                for label, action in ways_out(self.error, self.retry is not None):
                    yield Button(label, id=f"way-{action}", variant="primary" if action != "close" else "default")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose((event.button.id or "way-close").removeprefix("way-"))

    def action_choose(self, action: str) -> None:
        self.dismiss(action)
        if action == "retry" and self.retry is not None:
            self.retry()
        elif action in ("models", "home"):
            self.app.switch_mode(action)
