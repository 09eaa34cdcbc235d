"""The chat's bar for the model being opened: what is done ("Loading <model> …", "Downloading <model> …") and how far.

The progress bar is mounted only while there is something to show: a hidden one would still wake twice a second."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

from edgellm.events import Progress


class LoadBar(Horizontal):
    """A label and a progress bar, shown while a model is downloaded or loaded."""

    DEFAULT_CSS = """
    LoadBar { height: 1; margin: 0 1; display: none; }
    LoadBar #load-label { width: auto; margin-right: 2; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shown: str | None = None  # the task the bar is drawn for

    def compose(self) -> ComposeResult:
        yield Static("", id="load-label", markup=False)

    def show(self, progress: Progress, label: str) -> None:
        """Draw `progress` under `label`; a new task gets a new bar (a download's with the time left)."""
        if progress.task != self.shown:
            self.query(ProgressBar).remove()
            self.mount(ProgressBar(show_eta=progress.task != "load"))
            self.shown = progress.task
        self.query_one("#load-label", Static).update(label)
        self.display = True
        for bar in self.query(ProgressBar):
            bar.update(total=progress.total or None, progress=progress.done)

    def hide(self) -> None:
        if self.shown is not None:
            self.query(ProgressBar).remove()
        self.shown = None
        self.display = False
