"""An error shown inside the app: what went wrong in the app's words, and the ways out as buttons (the planner's
nearest fit among them: open the model with the context that fits)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from edgellm import errors
from edgellm.tui.words import explain


def fit_changes(error: BaseException) -> dict[str, object]:
    """The flags that would make a model that does not fit fit, as the planner found them: {} when it found none."""
    found = error.reason if isinstance(error, errors.DoesNotFit) else None
    while found is not None and found.code != "too_big":
        found = found.get("reason")  # an error about a file or a repo holds the planner's reason
    if found is None or found["fix"] not in ("ctx", "gpu_layers"):
        return {}
    if found["fix"] == "gpu_layers":
        return {"gpu_layers": found["fit_gpu_layers"]}
    return {"ctx_size": found["fit_ctx"], "kv": None if found["fit_kv"] == "f16" else found["fit_kv"]}


def change_label(changes: dict[str, object]) -> str:
    if "gpu_layers" in changes:
        return f"Open with {changes['gpu_layers']} GPU layers"
    return f"Open with a {changes['ctx_size']}-token context" + (f", {changes['kv']} KV" if changes.get("kv") else "")


def ways_out(error: BaseException, can_retry: bool, can_change: bool = False) -> list[tuple[str, str]]:
    """The buttons an error offers, as (label, action): the TUI's words for the error's way out."""
    actions: list[tuple[str, str]] = []
    if can_change and fit_changes(error):
        actions.append((change_label(fit_changes(error)), "change"))
    if isinstance(error, (errors.HubUnreachable, errors.OfflineMode)) and can_retry:
        actions.append(("Try again", "retry"))
    if isinstance(
        error,
        (
            errors.DoesNotFit,
            errors.ModelFileError,
            errors.NoModel,
            errors.LoadFailed,
            errors.NoSuchQuant,
            errors.RepoNotFound,
            errors.GatedRepo,
        ),
    ):
        actions.append(("Pick another model", "models"))
    if isinstance(error, (errors.HubUnreachable, errors.OfflineMode)):
        actions.append(("Use a local model", "home"))
    if isinstance(error, errors.DiskError):
        actions.append(("See the models on disk", "home"))
    elif can_retry and not actions:
        actions.append(("Try again", "retry"))
    actions.append(("Close", "close"))
    return actions


class ErrorScreen(ModalScreen[str]):
    """A modal with the error and its ways out; dismissed with the action chosen."""

    BINDINGS = [Binding("escape", "choose('close')", "Close")]

    def __init__(
        self,
        error: BaseException,
        retry: Callable[[], None] | None = None,
        retry_with: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        super().__init__()
        self.error, self.retry, self.retry_with = error, retry, retry_with

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Label(
                "Error" if isinstance(self.error, errors.EdgellmError) else "Unexpected error", id="error-title"
            )
            yield Static(explain(self.error), id="error-text", markup=False)
            with Horizontal(id="error-actions"):
                for label, action in ways_out(self.error, self.retry is not None, self.retry_with is not None):
                    yield Button(label, id=f"way-{action}", variant="primary" if action != "close" else "default")

    def on_mount(self) -> None:
        self.query(Button).first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose((event.button.id or "way-close").removeprefix("way-"))

    def action_choose(self, action: str) -> None:
        self.dismiss(action)
        if action == "retry" and self.retry is not None:
            self.retry()
        elif action == "change" and self.retry_with is not None:
            self.retry_with(fit_changes(self.error))
        elif action in ("models", "home"):
            self.app.switch_mode(action)
