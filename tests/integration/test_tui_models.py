"""The TUI's models and convert screens through Textual's Pilot: catalog verdicts, a download from the local fake
Hub stopped and resumed, a conversion into the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from edgellm.hw.builtin import resolve_profile
from edgellm.storage import store
from edgellm.tui.app import EdgeApp
from tests.support.fakehub import FakeHub

PROFILE = "cpu-laptop-8gb"


def make_app(start: str) -> EdgeApp:
    from edgellm.cli.main import build_parser
    from edgellm.session.flags import flags_of

    return EdgeApp(flags_of(build_parser().parse_args(["chat"])), profile=resolve_profile(PROFILE), start=start)


async def wait_for(pilot, condition: Callable[[], bool], seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(
        f"timed out waiting for {condition}; the screen is {pilot.app.screen!r}: "
        f"{getattr(pilot.app.screen, 'error', '')!r}"
    )


def test_catalog_shows_the_offline_verdict_for_the_profile() -> None:
    from textual.widgets import DataTable

    from edgellm.catalog.curated import load_catalog
    from edgellm.catalog.recommend import recommend
    from edgellm.tui.screens.picker import pick_text

    picks = {pick.name: pick for pick in recommend(resolve_profile(PROFILE), 0.0, online=False).picks}
    expected = {entry.repo: pick_text(picks.get(entry.name)) for entry in load_catalog()}

    async def run() -> dict[str, str]:
        app = make_app("models")
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.screen.query_one("#catalog-table", DataTable)
            await wait_for(pilot, lambda: table.row_count == len(expected))
            return {str(key.value): str(table.get_row(key)[-1]) for key in table.rows}

    shown = asyncio.run(run())
    assert shown == expected
    assert any(text != "does not fit" for text in shown.values())


async def click(pilot, selector: str) -> None:
    """Click a widget once it is laid out on the current screen (a click before lands nowhere)."""
    await wait_for(
        pilot, lambda: bool(pilot.app.screen.query(selector)) and pilot.app.screen.query_one(selector).region.width > 0
    )
    await pilot.click(selector)


def test_download_moves_is_stopped_keeps_its_part_and_resumes(hub: FakeHub, gguf_file: Path) -> None:
    from textual.widgets import Button, DataTable, Input, Label, ProgressBar

    from edgellm.tui.screens.plan import PlanScreen

    dest = store.store_dir() / "tests/tiny-GGUF" / "tiny-Q8_0.gguf"
    part = dest.with_name(dest.name + ".part")
    size = gguf_file.stat().st_size

    async def run() -> None:
        app = make_app("models")
        async with app.run_test(size=(120, 40)) as pilot:
            picker = app.screen
            picker.query_one("#repo-input", Input).value = "tests/tiny-GGUF:Q8_0"
            picker.query_one("#repo-input", Input).focus()
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: (
                    isinstance(app.screen, PlanScreen)
                    and bool(app.screen.query("#plan-download"))
                    and app.screen.query_one("#plan-download").region.width > 0
                ),
            )  # laid out: clickable
            assert "tests/tiny-GGUF:Q8_0" in str(app.screen.query_one("#plan-title", Label).render())
            assert app.screen.query_one("#plan-table")
            await click(pilot, "#plan-download")
            await wait_for(pilot, lambda: app.screen is picker)
            bar = picker.query_one("#download-bar", ProgressBar)
            await wait_for(pilot, lambda: app.screen is picker and (bar.progress or 0) >= 2**20)
            assert bar.total == size and "MiB" in str(picker.query_one("#download-stats", Label).render())
            await click(pilot, "#download-cancel")
            title = picker.query_one("#download-title", Label)
            await wait_for(pilot, lambda: str(title.render()).startswith("stopped: Download again to resume"))
            assert part.exists() and 0 < part.stat().st_size < size and not dest.exists()
            assert picker.query_one("#download-again", Button).display

            hub.repos["tests/tiny-GGUF"].faults.clear()
            await click(pilot, "#download-again")
            await wait_for(pilot, lambda: str(title.render()).startswith("done:"))
            assert picker.query_one("#download-chat", Button).display
            local = picker.query_one("#local-table", DataTable)
            await wait_for(pilot, lambda: local.row_count == 1)
            assert str(local.get_row_at(0)[0]) == "tests/tiny-GGUF:Q8_0"

    asyncio.run(run())
    assert dest.read_bytes() == gguf_file.read_bytes() and not part.exists()
    assert store.find("tests/tiny-GGUF:Q8_0") is not None
    resumed = [wanted for _, wanted, _ in hub.transfers if wanted and not wanted.startswith("bytes=0-")]
    assert len(resumed) == 1, "the second download asked only for the rest"


def test_a_download_stopped_before_a_restart_is_listed_and_resumes(hub: FakeHub, gguf_file: Path) -> None:
    from textual.widgets import DataTable, Label

    from edgellm.tui.screens.plan import PlanScreen

    dest = store.store_dir() / "tests/tiny-GGUF" / "tiny-Q8_0.gguf"
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(gguf_file.read_bytes()[: 2**20])  # what an earlier run of the app left when it stopped
    hub.repos["tests/tiny-GGUF"].faults.clear()

    async def run() -> None:
        app = make_app("models")
        async with app.run_test(size=(120, 40)) as pilot:
            picker = app.screen
            local = picker.query_one("#local-table", DataTable)
            await wait_for(pilot, lambda: local.row_count == 1)
            row = [str(cell) for cell in local.get_row_at(0)]
            assert row[0] == "tests/tiny-GGUF:Q8_0" and row[3] == "paused" and "1.0 MiB" in row[2]
            local.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PlanScreen))
            await click(pilot, "#plan-download")
            title = picker.query_one("#download-title", Label)
            await wait_for(pilot, lambda: str(title.render()).startswith("done:"))

    asyncio.run(run())
    assert dest.read_bytes() == gguf_file.read_bytes() and not part.exists()
    fetches = [wanted for _, wanted, _ in hub.transfers if wanted and wanted.endswith("-")]  # not the header reads
    assert fetches == [f"bytes={2**20}-"], "only the rest was asked for"


def test_conversion_ends_in_the_store(checkpoint: Path) -> None:
    from textual.widgets import Button, Input, Label, Log, ProgressBar, Select

    async def run() -> None:
        app = make_app("convert")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            screen.query_one("#convert-source", Input).value = str(checkpoint)
            screen.query_one("#convert-quant", Select).value = "Q8_0"
            await click(pilot, "#convert-start")
            state = screen.query_one("#convert-state", Label)
            await wait_for(pilot, lambda: str(state.render()).startswith(("done:", "failed:")), 120)
            assert str(state.render()) == "done: local/tiny-llama:Q8_0 is in the store"
            bar = screen.query_one("#bar-convert", ProgressBar)
            assert bar.total and bar.progress == bar.total
            assert screen.query_one("#convert-chat", Button).display
            assert not screen.query_one("#convert-cancel", Button).display
            assert isinstance(screen.query_one("#convert-log", Log), Log)

    asyncio.run(run())
    stored = store.find("local/tiny-llama:Q8_0")
    assert stored is not None and stored.path(store.store_dir()).is_file()


def test_a_missing_repo_is_shown_as_an_error_with_its_way_out(hub: FakeHub) -> None:
    from textual.widgets import Input

    from edgellm.errors import RepoNotFound
    from edgellm.tui.screens.error import ErrorScreen

    async def run() -> None:
        app = make_app("models")
        async with app.run_test(size=(120, 40)) as pilot:
            app.screen.query_one("#repo-input", Input).value = "nobody/missing-GGUF"
            app.screen.query_one("#repo-input", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
            assert isinstance(app.screen.error, RepoNotFound)
            assert app.screen.query("#way-models")

    asyncio.run(run())
