"""Pick a model: the local store, the catalog with what fits this machine, any Hub repo; downloads with progress,
stopped and resumed. The work itself is edgellm.session.remote's, run on threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, ProgressBar, TabbedContent, TabPane

from edgellm.errors import Cancelled, EdgellmError
from edgellm.formatting import progress as progress_text
from edgellm.formatting import size
from edgellm.storage import store
from edgellm.tui.messages import ChatWith, ChooseRemote, ProgressUpdate, StoreChanged
from edgellm.tui.screens.stoppable import StoppableJob
from edgellm.tui.widgets.modebar import ModeBar

if TYPE_CHECKING:
    from textual import getters

    from edgellm.catalog.recommend import Pick
    from edgellm.hw.profile import DeviceProfile
    from edgellm.plan.planner import Wishes
    from edgellm.session.remote import RemoteChoice
    from edgellm.tui.base import EdgellmApp

log = logging.getLogger("edgellm.tui")
PAUSED = "paused:"  # row keys of downloads that stopped part-way


def pick_text(pick: Pick | None) -> str:
    """The catalog's verdict for one model on this machine."""
    if pick is None:
        return "does not fit"
    measured = "" if pick.measured_tokens_per_s is None else f" (measured {pick.measured_tokens_per_s:.0f})"
    quality = f", {pick.quality}" if pick.quality else ""
    return f"{pick.quant}, {size(pick.size)}, about {pick.tokens_per_s:.0f} tokens/s{measured} on {pick.where}{quality}"


def local_verdicts(profile: DeviceProfile, wishes: Wishes) -> dict[str, str]:
    """Plan verdicts of the stored models by name; none if planning fails (the list shows without them)."""
    from edgellm.catalog.inventory import local_models

    verdicts: dict[str, str] = {}
    try:
        for model in local_models(profile, wishes):  # the store first: a file elsewhere under the same name never wins
            verdicts.setdefault(model.name, model.verdict)
        return verdicts
    except Exception:
        log.exception("the local models' verdicts failed")
        return {}


class PickerScreen(StoppableJob, Screen[None]):
    """The store and the catalog as tables, a field for any Hub repo, and the download of the one chosen."""

    if TYPE_CHECKING:
        app = getters.app(EdgellmApp)  # for the type checker only: the app is edgellm's

    STATE_LABEL = "#download-title"

    DEFAULT_CSS = """
    PickerScreen TabbedContent { height: 1fr; }
    PickerScreen DataTable { height: 1fr; }
    #repo-row { height: auto; }
    #repo-input { width: 1fr; }
    #picker-status { height: auto; color: $text-muted; }
    #download { height: auto; border: round $primary; padding: 0 1; }
    #download.idle { display: none; }
    #download-actions { height: auto; }
    #download-actions Button { margin-right: 2; }
    """
    BINDINGS = [Binding("escape", "stop", "Stop download")]

    def __init__(self) -> None:
        super().__init__()
        self._choice: RemoteChoice | None = None
        self._cancel: threading.Event | None = None
        self._stored: dict[str, store.StoredModel] = {}
        self._finished: store.StoredModel | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield ModeBar("models")
        with TabbedContent(id="picker-tabs"):
            with TabPane("On this machine", id="tab-local"):
                yield DataTable(id="local-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Catalog", id="tab-catalog"):
                yield DataTable(id="catalog-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="repo-row"):
            yield Input(placeholder="owner/repo[:QUANT] on the Hugging Face Hub, then Enter", id="repo-input")
        yield Label("", id="picker-status", markup=False)
        with Vertical(id="download", classes="idle"):
            yield Label("", id="download-title", markup=False)
            yield ProgressBar(id="download-bar", show_eta=False)
            yield Label("", id="download-stats", markup=False)
            with Horizontal(id="download-actions"):
                yield Button("Cancel", id="download-cancel", variant="error")
                yield Button("Download again", id="download-again", variant="primary")
                yield Button("Chat with it", id="download-chat", variant="success")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        local = self.query_one("#local-table", DataTable)
        local.add_columns("Model", "Quant", "Size", "Source", "Fits")
        catalog = self.query_one("#catalog-table", DataTable)
        catalog.add_columns("Model", "Repo", "Params", "Licence", "On this machine")
        self._show_buttons(running=False)
        self.refresh_local()
        self._load_catalog()

    # the tables

    def refresh_local(self) -> None:
        try:
            self._stored = store.load_models()
        except EdgellmError as error:  # a damaged manifest: said, with its way out; the catalog still works
            self._stored = {}
            self.app.show_error(error)
        self._fill_local({})
        self._load_verdicts()

    def _fill_local(self, verdicts: dict[str, str]) -> None:
        table = self.query_one("#local-table", DataTable)
        table.clear()
        for name, model in sorted(self._stored.items()):
            table.add_row(name, model.quant, size(model.size), model.source, verdicts.get(name, ""), key=name)
        for paused in store.paused_downloads():
            quant = paused.name.rsplit(":", 1)[1]
            table.add_row(
                paused.name, quant, f"{size(paused.done)} so far", "paused", "Enter resumes", key=PAUSED + paused.name
            )

    @work(thread=True, exclusive=True, group="verdicts", exit_on_error=False)
    def _load_verdicts(self) -> None:
        verdicts = local_verdicts(self.app.profile, self.app.flags.wishes())
        if verdicts:
            self.app.call_from_thread(self._fill_local, verdicts)

    @work(thread=True, exclusive=True, group="catalog", exit_on_error=False)
    def _load_catalog(self) -> None:
        from edgellm.catalog.curated import load_catalog
        from edgellm.catalog.recommend import recommend

        try:
            picks = {
                pick.name: pick
                for pick in recommend(self.app.profile, 0.0, online=False, wishes=self.app.flags.wishes()).picks
            }
            rows = [
                (entry.name, entry.repo, f"{entry.params:g}B", entry.licence, pick_text(picks.get(entry.name)))
                for entry in load_catalog()
            ]
        except Exception as error:
            self.app.call_from_thread(self.app.show_error, error, None)
            return
        self.app.call_from_thread(self._fill_catalog, rows)

    def _fill_catalog(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        table = self.query_one("#catalog-table", DataTable)
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[1])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        if event.data_table.id == "local-table":
            model = self._stored.get(key)
            if key.startswith(PAUSED):
                self.choose(key.removeprefix(PAUSED))  # planned again, then the download picks up its .part
            elif model is not None:
                self.app.post_message(ChatWith(str(model.path(store.store_dir()))))
        else:
            self.choose(key)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.choose(event.value.strip())

    def on_choose_remote(self, message: ChooseRemote) -> None:
        message.stop()
        self.choose(message.ref)

    def on_store_changed(self, message: StoreChanged) -> None:
        message.stop()
        self.refresh_local()

    # choosing a quant, then the plan screen

    def choose(self, text: str) -> None:
        """Ask the planner which quant of `text` (owner/repo[:QUANT]) fits, then show its plan."""
        self.query_one("#picker-status", Label).update(f"asking the Hub about {text} ...")
        self._choose(text)

    @work(thread=True, exclusive=True, group="choose", exit_on_error=False)
    def _choose(self, text: str) -> None:
        from edgellm.hub.refs import parse_ref
        from edgellm.session.remote import choose_remote

        try:
            choice = choose_remote(parse_ref(text), self.app.profile, self.app.flags.wishes())
        except Exception as error:
            self.app.call_from_thread(self._status, "")
            self.app.call_from_thread(self.app.show_error, error, lambda: self.choose(text))
            return
        self.app.call_from_thread(self._show_plan, choice)

    def _status(self, text: str) -> None:
        self.query_one("#picker-status", Label).update(text)

    def _show_plan(self, choice: RemoteChoice) -> None:
        from edgellm.tui.screens.plan import PlanScreen

        self._status("")

        def answered(download: bool | None) -> None:
            if download:
                self.start_download(choice)

        self.app.push_screen(PlanScreen(choice, self.app.profile), answered)

    # the download

    @property
    def downloading(self) -> bool:
        return self._cancel is not None

    def start_download(self, choice: RemoteChoice) -> None:
        """Download `choice` (resuming its partial file) on a thread, with progress below the tables."""
        if self.downloading:
            self.app.notify("a download is running: stop it first (Esc)", severity="warning")
            return
        self._choice, self._cancel, self._finished = choice, threading.Event(), None
        self.query_one("#download").remove_class("idle")
        self.query_one("#download-title", Label).update(f"downloading {choice.name}")
        self.query_one("#download-bar", ProgressBar).update(total=choice.group.size, progress=0)
        self.query_one("#download-stats", Label).update("")
        self._show_buttons(running=True)
        self.refresh_bindings()
        self._download(choice, self._cancel)

    @work(thread=True, exclusive=True, group="download", exit_on_error=False)
    def _download(self, choice: RemoteChoice, cancel: threading.Event) -> None:
        from edgellm.session.remote import pull

        try:
            model = pull(choice, self.app.reporter(self), cancel=cancel)
        except Cancelled:
            self.app.call_from_thread(self._ended, f"stopped: Download again to resume {choice.name}", None)
        except Exception as error:
            self.app.call_from_thread(self._ended, f"failed: {choice.name}", None)
            self.app.call_from_thread(self.app.show_error, error, lambda: self.start_download(choice))
        else:
            self.app.call_from_thread(self._ended, f"done: {model.name} is in the store", model)

    def _ended(self, text: str, model: store.StoredModel | None) -> None:
        self._cancel, self._finished = None, model
        self.refresh_bindings()
        self.query_one("#download-title", Label).update(text)
        self._show_buttons(running=False)
        if model is not None:
            self.query_one("#download-bar", ProgressBar).update(total=model.size, progress=model.size)
            self.app.post_message(StoreChanged())
            self.app.notify(f"{model.name} is downloaded")
            self.query_one("#download-chat", Button).focus()

    def on_progress_update(self, message: ProgressUpdate) -> None:
        message.stop()
        progress = message.progress
        if progress.task != "download":
            return
        self.query_one("#download-bar", ProgressBar).update(total=max(progress.total, 1), progress=progress.done)
        self.query_one("#download-stats", Label).update(progress_text(progress))

    def _show_buttons(self, running: bool) -> None:
        self.query_one("#download-cancel", Button).display = running
        self.query_one("#download-again", Button).display = not running and self._finished is None
        self.query_one("#download-chat", Button).display = not running and self._finished is not None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "download-cancel":
            self.action_stop()
        elif event.button.id == "download-again" and self._choice is not None:
            self.start_download(self._choice)
        elif event.button.id == "download-chat" and self._finished is not None:
            self.app.post_message(ChatWith(str(self._finished.path(store.store_dir()))))

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """The screen's actions for the command palette."""
        found: list[tuple[str, str, Callable[[], object]]] = [
            (
                "Download a Hub model",
                "type owner/repo[:QUANT]: the quant that fits, planned first",
                lambda: self.query_one("#repo-input", Input).focus(),
            ),
            ("Refresh the local models", "read the model store again", self.refresh_local),
        ]
        if self.downloading:
            found.append(("Stop the download", "the partial file stays: Download again resumes it", self.action_stop))
        elif self._choice is not None and self._finished is None:
            choice = self._choice
            found.append(
                ("Resume the download", f"{choice.name}, from where it stopped", lambda: self.start_download(choice))
            )
        return found
