"""The home screen: this machine, the models already on it with how each fits, and the ones recommended for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from edgellm.formatting import size, tokens_per_s
from edgellm.tui.messages import ChatWith, ChooseRemote, StoreChanged
from edgellm.tui.widgets.hardware import HardwarePanel
from edgellm.tui.widgets.modebar import ModeBar
from edgellm.tui.words import said
from edgellm.words import kld_short

if TYPE_CHECKING:
    from textual import getters

    from edgellm.catalog.inventory import ModelFile
    from edgellm.catalog.recommend import Pick
    from edgellm.tui.base import EdgellmApp

FIRST_RUN = "No models in the store yet: pick one found on this machine below, or a recommended one to download"

LOCAL_COLUMNS = (
    ("name", "name"),
    ("size", "size"),
    ("fit", "verdict"),
    ("~tokens/s", "speed"),
    ("measured", "measured"),
    ("source", "source"),
)
PICK_COLUMNS = (
    ("name", "name"),
    ("quant", "quant"),
    ("size", "size"),
    ("where", "where"),
    ("~tokens/s", "speed"),
    ("measured", "measured"),
    ("KLD", "kld"),
)


class ListsReady(Message):
    """The lists, computed on a thread: the local models, the recommended ones, whether the store is empty, what
    ails it."""

    def __init__(self, local: list[ModelFile], picks: list[Pick], store_empty: bool, problem: str | None) -> None:
        super().__init__()
        self.local, self.picks, self.store_empty, self.problem = local, picks, store_empty, problem


class HomeScreen(Screen[None]):
    """Hardware panel, local models (Enter: chat with one), recommended models (Enter: the models screen)."""

    if TYPE_CHECKING:
        app = getters.app(EdgellmApp)  # for the type checker only: the app is edgellm's

    DEFAULT_CSS = """
    HomeScreen {
        layout: vertical;
    }
    HomeScreen #home-banner {
        height: auto;
        padding: 0 1;
        background: $warning-muted;
        color: $text;
        display: none;
    }
    HomeScreen #home-banner.shown {
        display: block;
    }
    HomeScreen DataTable {
        height: 1fr;
        min-height: 4;
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
    }
    HomeScreen #local-models {
        height: auto;
        max-height: 50%;
    }
    HomeScreen DataTable:focus {
        border: round $primary;
    }
    """

    BINDINGS = [Binding("ctrl+r", "refresh_lists", "Refresh", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self._local: dict[str, ModelFile] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield ModeBar("home")
        yield HardwarePanel(id="hardware")
        yield Static(id="home-banner")
        local: DataTable[str] = DataTable(id="local-models", cursor_type="row", zebra_stripes=True)
        local.border_title = "On this machine (Enter: chat)"
        yield local
        picks: DataTable[str] = DataTable(id="recommended-models", cursor_type="row", zebra_stripes=True)
        picks.border_title = "Recommended for it, estimated (Enter: plan and download)"
        yield picks
        yield Footer(compact=True)

    def on_mount(self) -> None:
        local = self.query_one("#local-models", DataTable)
        for label, key in LOCAL_COLUMNS:
            local.add_column(label, key=key)
        picks = self.query_one("#recommended-models", DataTable)
        for label, key in PICK_COLUMNS:
            picks.add_column(label, key=key)
        local.loading = picks.loading = True
        local.focus()
        self.refresh_lists()

    def refresh_lists(self) -> None:
        """Compute both lists again off the UI thread; the tables fill when they are ready."""
        self._compute_lists()

    def action_refresh_lists(self) -> None:
        self.refresh_lists()

    @work(thread=True, exclusive=True, group="home-lists", exit_on_error=False)
    def _compute_lists(self) -> None:
        from edgellm.catalog import inventory

        profile = self.app.profile
        try:
            wishes = self.app.flags.wishes()  # the margins and context the app opens models with
            local = inventory.local_models(profile, wishes)
            picks = inventory.recommended(profile, wishes)
        except Exception as error:
            self.app.call_from_thread(self.app.show_error, error, self.refresh_lists)
            return
        self.post_message(ListsReady(local, picks, inventory.store_is_empty(), inventory.store_problem()))

    def on_lists_ready(self, message: ListsReady) -> None:
        self._local = {str(model.path): model for model in message.local}
        local = self.query_one("#local-models", DataTable)
        local.clear()
        for model in message.local:
            local.add_row(
                model.name,
                size(model.size),
                model.verdict,
                tokens_per_s(model.tokens_per_s),
                tokens_per_s(model.measured_tokens_per_s),
                model.source,
                key=str(model.path),
            )
        if not message.local:
            local.add_row("no model files found: see the recommended ones below", "", "", "", "", "", key="")
        picks = self.query_one("#recommended-models", DataTable)
        picks.clear()
        for pick in message.picks:
            picks.add_row(
                pick.name,
                pick.quant,
                size(pick.size),
                pick.where,
                tokens_per_s(pick.tokens_per_s),
                tokens_per_s(pick.measured_tokens_per_s),
                kld_short(pick.kld, pick.kld_measured),
                key=f"{pick.repo}:{pick.quant}",
            )
        local.loading = picks.loading = False
        banner = self.query_one("#home-banner", Static)
        text = message.problem or (FIRST_RUN if message.store_empty else "")
        banner.update(text)
        banner.set_class(bool(text), "shown")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "local-models":
            model = self._local.get(event.row_key.value or "")
            event.data_table.border_subtitle = said(model.reason) if model is not None and model.reason else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "local-models":
            if event.row_key.value:
                self.app.post_message(ChatWith(event.row_key.value))
        elif event.data_table.id == "recommended-models" and event.row_key.value:
            self.app.post_message(ChooseRemote(event.row_key.value))  # the models screen plans it, then downloads

    def on_store_changed(self, message: StoreChanged) -> None:
        message.stop()
        self.refresh_lists()

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """The home screen's actions for the command palette."""
        return [("Refresh models", "list the local and the recommended models again (Ctrl+R)", self.refresh_lists)]
