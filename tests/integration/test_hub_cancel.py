"""Cancelling long work from another thread: a download keeps its .part and resumes; a conversion leaves nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edgellm.errors import Cancelled
from edgellm.events import Event, Progress
from edgellm.hub.refs import parse_ref
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import Wishes
from edgellm.session.remote import choose_remote, pull
from edgellm.storage import store
from tests.support.fakehub import FakeHub


def cancel_after(cancel: threading.Event, n_bytes: int, seen: list[Progress]):
    def report(event: Event) -> None:
        if isinstance(event, Progress):
            seen.append(event)
            if event.done >= n_bytes:
                cancel.set()

    return report


def test_cancelled_download_keeps_its_part_and_resumes(hub: FakeHub, gguf_file: Path) -> None:
    choice = choose_remote(parse_ref("tests/tiny-GGUF:Q8_0"), resolve_profile("cpu-laptop-8gb"), Wishes())
    cancel, seen = threading.Event(), []
    with pytest.raises(Cancelled):
        pull(choice, cancel_after(cancel, 2**20, seen), cancel=cancel)
    dest = store.store_dir() / "tests/tiny-GGUF" / "tiny-Q8_0.gguf"
    part = dest.with_name(dest.name + ".part")
    size = gguf_file.stat().st_size
    assert not dest.exists() and 2**20 <= part.stat().st_size < size
    assert seen[-1].finished and seen[-1].done < size
    assert store.find(choice.name) is None

    kept = part.stat().st_size
    hub.repos["tests/tiny-GGUF"].faults.clear()
    hub.transfers.clear()
    model = pull(choice, lambda event: None)
    assert dest.read_bytes() == gguf_file.read_bytes() and not part.exists()
    assert store.find(choice.name) == model
    resumed = [(wanted, sent) for _, wanted, sent in hub.transfers if wanted and not wanted.startswith("bytes=0-")]
    assert resumed == [(f"bytes={kept}-", size - kept)], "only the rest was asked for"


def test_cancel_set_before_start_fetches_nothing(hub: FakeHub) -> None:
    choice = choose_remote(parse_ref("tests/tiny-GGUF:Q8_0"), resolve_profile("cpu-laptop-8gb"), Wishes())
    hub.transfers.clear()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        pull(choice, lambda event: None, cancel=cancel)
    # the header read of choose_remote may be recorded late (the server notes a transfer after sending it):
    # what counts is that the download itself asked for nothing, whole or from an offset
    assert [wanted for _, wanted, _ in hub.transfers if wanted is None or wanted.endswith("-")] == []


@pytest.mark.parametrize("quant, task", [("Q8_0", "convert"), ("Q4_K_M", "convert"), ("Q4_K_M", "quantize")])
def test_cancelled_conversion_leaves_no_file(checkpoint: Path, quant: str, task: str) -> None:
    from edgellm.convert.pipeline import plan_conversion, run_conversion

    conversion = plan_conversion(checkpoint, quant, "auto", resolve_profile("cpu-laptop-8gb"))
    cancel = threading.Event()

    def report(event: Event) -> None:
        if isinstance(event, Progress) and event.task == task:
            cancel.set()

    with pytest.raises(Cancelled):
        run_conversion(conversion, report, cancel=cancel)
    assert not conversion.target.parent.exists()  # neither the file, its partial, nor the folder made for it
    assert store.find(conversion.name) is None
