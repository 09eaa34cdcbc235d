"""Progress as events: what a real download from the local Hub reports, and the CLI's line that shows it."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from edgellm.cli.progress import ProgressLine
from edgellm.events import Notice, Progress
from edgellm.hub.download import Meter
from edgellm.hub.refs import parse_ref
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import Wishes
from edgellm.session.remote import RemoteChoice, choose_remote, pull, stored_or_pulled
from edgellm.storage import store
from tests.support.fakehub import FakeHub, FakeRepo, Faults, point_hub_at

REPO, FILE = "tests/noise-GGUF", "noise-Q8_0.gguf"
MIB = 2**20


@pytest.fixture(scope="session")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 MiB of random bytes: hundreds of network chunks, and a sha256 that only the whole file matches."""
    path = tmp_path_factory.mktemp("noise") / FILE
    path.write_bytes(os.urandom(48 * MIB))
    return path


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, noise: Path):
    server = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    server.add(REPO, FakeRepo({FILE: noise}))
    yield server
    server.close()


def choice() -> RemoteChoice:
    return choose_remote(parse_ref(f"{REPO}:Q8_0"), resolve_profile("raspberry-pi-5-8gb"), Wishes(), plan_forced=False)


def progress_of(events: list) -> list[Progress]:
    assert all(isinstance(event, Progress) and event.task == "download" for event in events), events
    return events


def test_download_reports_totals_in_order(hub: FakeHub, noise: Path) -> None:
    events: list = []
    model = pull(choice(), events.append)
    progress = progress_of(events)
    size = noise.stat().st_size
    assert progress[0].done == 0 and progress[0].rate is None  # the first at once, before any byte
    dones = [event.done for event in progress]
    assert dones == sorted(dones), "done never goes back without a rewind"
    assert all(event.total == size for event in progress)
    assert [event.finished for event in progress] == [False] * (len(progress) - 1) + [True]
    assert progress[-1].done == size and progress[-1].rate > 0
    assert model.path(store.store_dir()).read_bytes() == noise.read_bytes()


def test_events_are_throttled(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = []
    counted = Meter.advance
    monkeypatch.setattr(Meter, "advance", lambda meter, n: (chunks.append(n), counted(meter, n)))
    events: list = []
    began = time.monotonic()
    pull(choice(), events.append)
    elapsed = time.monotonic() - began
    # the first and the last, and between them at most one per interval of the time the download took
    assert len(events) <= 2 + elapsed / Meter.INTERVAL
    assert len(events) < len(chunks), (len(events), len(chunks))


def test_a_resumed_download_starts_at_the_bytes_it_had(hub: FakeHub, noise: Path) -> None:
    size = noise.stat().st_size
    part = store.store_dir() / REPO / (FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(noise.read_bytes()[: size // 3])
    events: list = []
    pull(choice(), events.append)
    progress = progress_of(events)
    assert progress[0].done == size // 3 and progress[0].rate is None  # resumed bytes are done, not fetched
    assert [event.done for event in progress] == sorted(event.done for event in progress)
    assert progress[-1].finished and progress[-1].done == size
    assert hub.transfers[-1] == (FILE, f"bytes={size // 3}-", size - size // 3), "only the rest was fetched"


def test_a_corrupted_byte_rewinds_the_count(hub: FakeHub, noise: Path) -> None:
    hub.repos[REPO].faults[FILE] = Faults(corrupt_left=1)
    events: list = []
    pull(choice(), events.append)
    dones = [event.done for event in progress_of(events)]
    falls = [i for i in range(1, len(dones)) if dones[i] < dones[i - 1]]
    assert len(falls) <= 1, dones  # only the rewind; it may fall between two events when the refetch is quick
    assert events[-1].finished and dones[-1] == noise.stat().st_size, "the bad copy is not counted twice"


def test_resolve_reports_notices_and_prints_nothing(hub: FakeHub, capsys: pytest.CaptureFixture) -> None:
    events: list = []
    stored = stored_or_pulled(
        parse_ref(f"{REPO}:Q8_0"), resolve_profile("raspberry-pi-5-8gb"), Wishes(), False, report=events.append
    )
    assert stored.name == f"{REPO}:Q8_0"
    assert events[0] == Notice(f"pulling {REPO}:Q8_0 (0.05 GiB)")
    assert isinstance(events[-1], Progress) and events[-1].finished
    assert capsys.readouterr() == ("", "")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def at(clock: list[float], seconds: float, line: ProgressLine, event) -> None:
    clock[0] = seconds
    line(event)


def test_progress_line_on_a_terminal_rewrites_itself() -> None:
    out, clock = Terminal(), [0.0]
    line = ProgressLine(out, clock=lambda: clock[0])
    at(clock, 0.0, line, Notice(f"pulling {REPO}:Q8_0 (2.00 GiB)"))
    at(clock, 0.0, line, Progress("download", 0, 2048 * MIB))
    at(clock, 0.1, line, Progress("download", MIB, 2048 * MIB, MIB, 2047.0))  # too soon after the last: skipped
    at(clock, 0.3, line, Progress("download", 3 * MIB, 2048 * MIB, 1.5 * MIB, 125.0))
    at(clock, 0.4, line, Progress("download", 2048 * MIB, 2048 * MIB, 1.5 * MIB, 0.0, finished=True))
    at(clock, 0.5, line, Notice("Q8_0 does not fit", "warning"))
    assert out.getvalue() == (
        f"edgellm: note: pulling {REPO}:Q8_0 (2.00 GiB)\n"
        "\r0.0 / 2,048.0 MiB\x1b[K"
        "\r3.0 / 2,048.0 MiB, 1.5 MiB/s, 2:05 left\x1b[K"
        "\r2,048.0 / 2,048.0 MiB, 1.5 MiB/s\x1b[K\n"
        "edgellm: warning: Q8_0 does not fit\n"
    )


def test_a_notice_starts_on_a_line_of_its_own() -> None:
    out, clock = Terminal(), [0.0]
    line = ProgressLine(out, clock=lambda: clock[0])
    at(clock, 0.0, line, Progress("download", MIB, 4 * MIB, MIB, 3.0))
    at(clock, 0.1, line, Progress("download", 2 * MIB, 4 * MIB, MIB, 2.0, finished=True))  # stopped by Ctrl-C
    at(clock, 0.1, line, Notice("download stopped; run the same command again to resume where it stopped"))
    at(clock, 0.2, line, Progress("download", 2 * MIB, 4 * MIB))
    at(clock, 0.2, line, Notice("mid-line"))
    assert out.getvalue() == (
        "\r1.0 / 4.0 MiB, 1.0 MiB/s, 0:03 left\x1b[K\r2.0 / 4.0 MiB, 1.0 MiB/s\x1b[K\n"
        "edgellm: note: download stopped; run the same command again to resume where it stopped\n"
        "\r2.0 / 4.0 MiB\x1b[K\n"
        "edgellm: note: mid-line\n"
    )


def test_progress_line_in_a_log_writes_a_line_every_5_s() -> None:
    out, clock = io.StringIO(), [100.0]
    line = ProgressLine(out, clock=lambda: clock[0])
    for second in range(12):
        at(clock, 100.0 + second, line, Progress("download", second * MIB, 20 * MIB, MIB, 20.0 - second))
    at(clock, 112.5, line, Progress("download", 20 * MIB, 20 * MIB, MIB, 0.0, finished=True))
    assert out.getvalue() == (
        "0.0 / 20.0 MiB, 1.0 MiB/s, 0:20 left\n"
        "5.0 / 20.0 MiB, 1.0 MiB/s, 0:15 left\n"
        "10.0 / 20.0 MiB, 1.0 MiB/s, 0:10 left\n"
        "20.0 / 20.0 MiB, 1.0 MiB/s\n"
    )


def test_progress_line_without_progress_shows_only_notices() -> None:
    out = Terminal()
    line = ProgressLine(out, show_progress=False)
    line(Progress("download", 0, MIB))
    line(Progress("download", MIB, MIB, MIB, 0.0, finished=True))
    line(Notice("download stopped; run the same command again to resume where it stopped"))
    assert out.getvalue() == "edgellm: note: download stopped; run the same command again to resume where it stopped\n"
