"""The home screen driven through Textual's Pilot: the hardware gauges, the local and the recommended models."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from edgellm.hw.builtin import resolve_profile
from edgellm.session.flags import flags_from
from edgellm.storage import store
from edgellm.tui.app import EdgeApp
from edgellm.tui.gauges import Gauges, live_sampler, profile_gauges
from edgellm.tui.messages import ChatWith, ChooseRemote, StoreChanged
from edgellm.tui.screens.home import FIRST_RUN, HomeScreen
from edgellm.tui.widgets.hardware import HardwarePanel, gauges_text
from tests.support.tui import gauges_shown

GIB = 2**30


@pytest.fixture(autouse=True)
def no_other_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tools' model folders made empty and private, so only the store and the dev models are listed."""
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "user-home" / "hf"))
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "user-home" / "llama.cpp"))


def frozen(ram_used: float = 3.0, ram_total: float = 8.0, cpu: float = 25.0) -> Callable[[], Gauges]:
    return lambda: Gauges(int(ram_used * GIB), int(ram_total * GIB), cpu, ())


class RecordingApp(EdgeApp):
    """The app with the model opener and the other screens replaced by a record of what was asked."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chats: list[str] = []
        self.modes: list[str] = []
        self.remote_refs: list[str] = []

    def on_chat_with(self, message: ChatWith) -> None:
        message.prevent_default()
        self.chats.append(message.model)

    def on_choose_remote(self, message: ChooseRemote) -> None:
        message.prevent_default()
        self.remote_refs.append(message.ref)

    def switch_mode(self, mode: str):  # type: ignore[override]
        if mode != "home":
            self.modes.append(mode)
            return None
        return super().switch_mode(mode)


def make_app(profile: str = "raspberry-pi-5-8gb", sampler: Callable[[], Gauges] | None = None) -> RecordingApp:
    return RecordingApp(
        flags_from(argparse.Namespace(), {}), profile=resolve_profile(profile), sampler=sampler or frozen()
    )


async def until(pilot, condition: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {condition}")


def rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def filled(app: EdgeApp) -> bool:
    return isinstance(app.screen, HomeScreen) and not app.screen.query_one("#recommended-models").loading


def test_home_lists_the_store_and_recommendations(test_model: Path) -> None:
    stored = store.import_path(test_model)

    async def main() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: filled(app))
            local = rows(app.screen.query_one("#local-models", DataTable))
            assert local[0][0] == stored.name and local[0][2] == "CPU" and local[0][5] == "import"
            assert float(local[0][3]) > 5
            assert all(row[0] != test_model.stem for row in local)  # the dev copy is the same file: listed once
            picks = rows(app.screen.query_one("#recommended-models", DataTable))
            assert picks and all(row[3] == "CPU" for row in picks)
            assert not app.screen.query_one("#home-banner", Static).display

    asyncio.run(main())


def test_first_run_banner_when_the_store_is_empty() -> None:
    async def main() -> None:
        app = make_app("laptop-rtx4060-8gb")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: filled(app))
            banner = app.screen.query_one("#home-banner", Static)
            assert banner.display and str(banner.content) == FIRST_RUN
            local = rows(app.screen.query_one("#local-models", DataTable))
            assert all(row[5] == "dev" for row in local)
            assert rows(app.screen.query_one("#recommended-models", DataTable))

    asyncio.run(main())


def test_gauges_show_the_sampler_and_follow_it() -> None:
    reading = {"used": 3.0}

    async def main() -> None:
        app = make_app(sampler=lambda: frozen(ram_used=reading["used"])())
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.screen.query_one(HardwarePanel)
            await until(pilot, lambda: "3.0 / 8.0 GiB" in gauges_shown(panel))
            assert "Cortex-A76" in str(app.screen.query_one("#hw-facts", Static).content)
            assert "no GPU" in gauges_shown(panel)
            reading["used"] = 6.5
            await until(pilot, lambda: "6.5 / 8.0 GiB" in gauges_shown(panel), seconds=5)

    asyncio.run(main())


def test_gauges_text_for_gpus() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    text = gauges_text(laptop, Gauges(2 * GIB, 16 * GIB, 50.0, ((3 * GIB, 8 * GIB),))).plain
    assert "VRAM" in text and "3.0 / 8.0 GiB" in text and "RTX 4060" in text
    mac = resolve_profile("macbook-air-m2-16gb")
    assert "unified memory" in gauges_text(mac, profile_gauges(mac)).plain


def test_enter_chats_with_a_local_model_or_plans_a_recommended_one(test_model: Path) -> None:
    store.import_path(test_model)

    async def main() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: filled(app))
            app.screen.query_one("#local-models", DataTable).focus()
            await pilot.press("enter")
            await until(pilot, lambda: bool(app.chats))
            assert Path(app.chats[0]).resolve() == test_model.resolve()
            picks = app.screen.query_one("#recommended-models", DataTable)
            picks.focus()
            await pilot.press("enter")
            await until(pilot, lambda: bool(app.remote_refs))
            first = picks.get_row_at(0)
            assert app.remote_refs[0].endswith(f":{first[1]}") and "/" in app.remote_refs[0]  # owner/repo:QUANT

    asyncio.run(main())


def test_store_changed_refreshes_the_lists(test_model: Path) -> None:
    async def main() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: filled(app))
            table = app.screen.query_one("#local-models", DataTable)
            assert all(row[5] != "import" for row in rows(table))
            store.import_path(test_model)
            app.post_message(StoreChanged())
            await until(pilot, lambda: any(row[5] == "import" for row in rows(table)))
            assert not app.screen.query_one("#home-banner", Static).display
            titles = [title for title, _, _ in app.screen.commands()]
            assert "Refresh models" in titles

    asyncio.run(main())


def test_fits_in_80_by_24() -> None:
    async def main() -> None:
        app = make_app("laptop-rtx4060-8gb")
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: filled(app))
            panel = app.screen.query_one(HardwarePanel)
            local = app.screen.query_one("#local-models", DataTable)
            picks = app.screen.query_one("#recommended-models", DataTable)
            await until(pilot, lambda: local.region.height > 0 and picks.region.height > 0)
            assert panel.region.height <= 7
            assert local.region.height >= 4 and picks.region.height >= 4
            assert picks.region.bottom <= 23  # above the footer

    asyncio.run(main())


def test_live_sampler_reads_this_machine_and_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    from edgellm.hw.probes import LiveProbe

    laptop = resolve_profile("laptop-rtx4060-8gb")
    sampler = live_sampler(laptop)
    reading = sampler()
    assert reading.ram_total == psutil.virtual_memory().total and 0 <= reading.ram_used <= reading.ram_total
    assert reading.gpus == profile_gauges(laptop).gpus and sampler.has_nvidia
    monkeypatch.setattr(LiveProbe, "nvml_gpus", lambda self: [{"memory_total": 8 * GIB, "memory_free": 5 * GIB}])
    sampler.refresh_gpus()
    assert sampler().gpus == ((3 * GIB, 8 * GIB),)
    monkeypatch.setattr(LiveProbe, "nvml_gpus", lambda self: None)
    sampler.refresh_gpus()
    assert sampler().gpus == ((3 * GIB, 8 * GIB),)  # NVML gone: the last reading stays


def test_app_without_a_sampler_shows_this_machine() -> None:
    import psutil

    async def main() -> None:
        app = RecordingApp(flags_from(argparse.Namespace(), {}), profile=resolve_profile("raspberry-pi-5-8gb"))
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.screen.query_one(HardwarePanel)
            total = f"/ {psutil.virtual_memory().total / GIB:.1f} GiB"
            await until(pilot, lambda: total in gauges_shown(panel))

    asyncio.run(main())


def test_a_broken_model_shows_why_when_highlighted(tmp_path: Path) -> None:
    snapshot = tmp_path / "user-home" / "hf" / "models--someone--broken" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "broken-Q4_K_M.gguf").write_bytes(b"GGUF\x03\x00\x00\x00not really a model")

    async def main() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: filled(app))
            table = app.screen.query_one("#local-models", DataTable)
            assert rows(table)[0][:3] == ["someone/broken:Q4_K_M", "0 KiB", "cannot be read"]
            table.focus()
            table.move_cursor(row=0)
            await until(pilot, lambda: "broken-Q4_K_M.gguf" in str(table.border_subtitle or ""))

    asyncio.run(main())
