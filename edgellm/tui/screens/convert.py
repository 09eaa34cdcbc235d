"""Convert a transformers checkpoint (a local folder or a Hub repo) to GGUF, quantized, into the store; the work is
edgellm.convert.pipeline's, run on a thread, with progress, notices and a Cancel button."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Log, ProgressBar, Select

from edgellm.convert.hf_config import SUPPORTED_QUANTS
from edgellm.errors import Cancelled
from edgellm.formatting import progress as progress_text
from edgellm.tui.messages import ChatWith, ProgressUpdate, StoreChanged, WorkNotice
from edgellm.tui.screens.stoppable import StoppableJob
from edgellm.tui.widgets.modebar import ModeBar
from edgellm.tui.words import told

if TYPE_CHECKING:
    from textual import getters

    from edgellm.tui.base import EdgellmApp

STEPS = (("download", "fetching the checkpoint"), ("convert", "converting"), ("quantize", "quantizing"))


def local_source(text: str) -> Path | None:
    """An existing folder is a local checkpoint; anything else is taken for a Hub repo (None)."""
    path = Path(text).expanduser()
    return path if path.is_dir() else None


class ConvertScreen(StoppableJob, Screen[None]):
    """A checkpoint and a quant in; the GGUF in the store out, with the steps' progress and a way to stop."""

    if TYPE_CHECKING:
        app = getters.app(EdgellmApp)  # for the type checker only: the app is edgellm's

    STATE_LABEL = "#convert-state"

    DEFAULT_CSS = """
    #convert-form { height: auto; }
    #convert-source { width: 1fr; }
    #convert-quant { width: 28; }
    .step { height: auto; }
    .step.idle { display: none; }
    .step Label { width: 28; }
    .step Label.stats { width: 1fr; margin-left: 2; }
    #convert-state { height: auto; margin: 1 0 0 0; }
    #convert-actions { height: auto; }
    #convert-actions Button { margin-right: 2; }
    #convert-log { height: 1fr; border: round $primary; }
    """
    BINDINGS = [Binding("escape", "stop", "Stop")]

    def __init__(self) -> None:
        super().__init__()
        self._cancel: threading.Event | None = None
        self._result: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield ModeBar("convert")
        with Horizontal(id="convert-form"):
            yield Input(placeholder="a checkpoint folder, or owner/repo on the Hub", id="convert-source")
            yield Select(
                [("auto: what fits", "auto")] + [(quant, quant) for quant in SUPPORTED_QUANTS],
                value="auto",
                allow_blank=False,
                id="convert-quant",
            )
            yield Button("Convert", id="convert-start", variant="primary")
        for task, title in STEPS:
            with Horizontal(id=f"step-{task}", classes="step idle"):
                yield Label(title, markup=False)
                yield ProgressBar(id=f"bar-{task}", show_eta=False)
                yield Label("", id=f"stats-{task}", classes="stats", markup=False)
        yield Label("", id="convert-state", markup=False)
        with Horizontal(id="convert-actions"):
            yield Button("Cancel", id="convert-cancel", variant="error")
            yield Button("Chat with it", id="convert-chat", variant="success")
        with Vertical():
            yield Log(id="convert-log")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._show_buttons()

    @property
    def converting(self) -> bool:
        return self._cancel is not None

    def start(self) -> None:
        """Convert what the form names, on a thread."""
        text = self.query_one("#convert-source", Input).value.strip()
        if not text:
            self.app.notify("name a checkpoint folder or a Hub repo first", severity="warning")
            return
        if self.converting:
            self.app.notify("a conversion is running: stop it first (Esc)", severity="warning")
            return
        quant = str(self.query_one("#convert-quant", Select).value)
        self._cancel, self._result = threading.Event(), None
        for task, _ in STEPS:
            self.query_one(f"#step-{task}").add_class("idle")
        self.query_one("#convert-state", Label).update(f"converting {text} to {quant}")
        self._show_buttons()
        self.refresh_bindings()
        self._convert(text, quant, self._cancel)

    @work(thread=True, exclusive=True, group="convert", exit_on_error=False)
    def _convert(self, text: str, quant: str, cancel: threading.Event) -> None:
        from edgellm.convert.pipeline import convert
        from edgellm.hub.refs import parse_ref

        try:
            source = local_source(text)
            repo = None if source is not None else parse_ref(text).repo
            conversion, path = convert(
                source,
                repo,
                quant,
                "auto",
                self.app.profile,
                report=self.app.reporter(self),
                cancel=cancel,
                wishes=self.app.flags.wishes(),
            )
        except Cancelled:
            self.app.call_from_thread(self._ended, "stopped: nothing was kept (a Hub download resumes)", None)
        except Exception as error:
            self.app.call_from_thread(self._ended, f"failed: {text}", None)
            self.app.call_from_thread(self.app.show_error, error, self.start)
        else:
            name = conversion.name if conversion.in_store else str(path)
            self.app.call_from_thread(self._ended, f"done: {name} is in the store", path)

    def _ended(self, text: str, path: Path | None) -> None:
        self._cancel, self._result = None, path
        self.refresh_bindings()
        self.query_one("#convert-state", Label).update(text)
        self._show_buttons()
        if path is not None:
            self.app.post_message(StoreChanged())
            self.app.notify(text.removeprefix("done: "))
            self.query_one("#convert-chat", Button).focus()

    def on_progress_update(self, message: ProgressUpdate) -> None:
        message.stop()
        progress = message.progress
        if progress.task not in {task for task, _ in STEPS}:
            return
        self.query_one(f"#step-{progress.task}").remove_class("idle")
        self.query_one(f"#bar-{progress.task}", ProgressBar).update(
            total=max(progress.total, 1), progress=progress.done
        )
        self.query_one(f"#stats-{progress.task}", Label).update(progress_text(progress))

    def on_work_notice(self, message: WorkNotice) -> None:
        message.stop()
        prefix = "warning: " if message.notice.kind == "warning" else ""
        self.query_one("#convert-log", Log).write_line(prefix + told(message.notice))

    def on_store_changed(self, message: StoreChanged) -> None:
        message.stop()

    def _show_buttons(self) -> None:
        self.query_one("#convert-start", Button).disabled = self.converting
        self.query_one("#convert-cancel", Button).display = self.converting
        self.query_one("#convert-chat", Button).display = not self.converting and self._result is not None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "convert-start":
            self.start()
        elif event.button.id == "convert-cancel":
            self.action_stop()
        elif event.button.id == "convert-chat" and self._result is not None:
            self.app.post_message(ChatWith(str(self._result)))

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """The screen's actions for the command palette."""
        found: list[tuple[str, str, Callable[[], object]]] = [
            (
                "Convert a checkpoint",
                "a local folder or a Hub repo, to GGUF in the store",
                lambda: self.query_one("#convert-source", Input).focus(),
            ),
        ]
        if self.converting:
            found.append(("Stop the conversion", "nothing is kept", self.action_stop))
        return found
