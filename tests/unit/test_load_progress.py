"""A model's load without llama.cpp: the engine's stall watch, the session's throttled load events, the memory
checked before a load, and the CLI's bar (drawn only once a load has taken a while). Clocks are injected."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from edgellm.cli.progress import LOAD_BAR_AFTER_ENV, ProgressLine, load_bar, load_bar_after
from edgellm.cli.words import CLI
from edgellm.engine.local import LoadWatch
from edgellm.errors import LoadTimedOut, NotEnoughMemory
from edgellm.events import Notice, Progress
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.params import load_params
from edgellm.plan.planner import plan
from edgellm.reasons import reason
from edgellm.session.flags import LOAD_TIMEOUT_S, flags_from, load_config
from edgellm.session.loading import INTERVAL_S, LoadProgress, check_memory, device_of, needs
from edgellm.session.opening import ModelChoice, PlannedModel
from tests.support.specs import LLAMA_1B_Q4

GIB = 2**30


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- the engine's stall watch ------------------------------------------------------------------------------------


def test_the_watch_passes_progress_on_while_it_comes_and_stops_the_load_once_it_stalls() -> None:
    clock, told = Clock(), []
    watch = LoadWatch(told.append, stall_s=5.0, clock=clock)
    clock.now += 4.9
    assert watch(0.1) is True
    clock.now += 4.9  # 4.9 s since the last progress, 9.8 since the start: not a stall
    assert watch(0.5) is True
    clock.now += 5.1
    assert watch(0.6) is False and watch.stalled
    assert watch(0.7) is False, "a stopped load stays stopped"
    assert told == [0.1, 0.5]


def test_the_watch_counts_the_time_before_the_first_progress() -> None:
    clock = Clock()
    watch = LoadWatch(None, stall_s=1.0, clock=clock)
    clock.now += 1.5  # the file took longer than the timeout to open
    assert watch(0.0) is False and watch.stalled


def test_without_a_timeout_nothing_stalls() -> None:
    clock, told = Clock(), []
    watch = LoadWatch(told.append, clock=clock)
    clock.now += 10**6
    assert watch(1.0) is True and not watch.stalled and told == [1.0]


# --- the session's load events ------------------------------------------------------------------------------------


def test_load_events_are_per_mille_the_first_at_once_then_at_most_ten_a_second_then_the_last() -> None:
    clock, events = Clock(), []
    progress = LoadProgress(events.append, clock=clock)
    for step in range(1, 100):  # a report every 10 ms: 1 s of loading
        clock.now += 0.01
        progress(step / 100)
    clock.now += 0.01
    progress(1.0)
    progress.finish()  # the host's `finally`: the last event went already
    assert all(e.task == "load" and e.total == 1000 and e.unit == "‰" for e in events)
    assert events[0].done == 10 and not events[0].finished
    assert [e.finished for e in events] == [False] * (len(events) - 1) + [True]
    assert events[-1].done == 1000
    assert len(events) <= 2 + 1.0 / INTERVAL_S
    dones = [e.done for e in events]
    assert dones == sorted(dones)
    assert events[-2].eta_s is not None and 0 < events[-2].eta_s < 1.0


def test_a_failed_load_ends_its_bar_where_it_stopped_and_one_that_never_began_sends_nothing() -> None:
    clock, events = Clock(), []
    progress = LoadProgress(events.append, clock=clock)
    progress(0.25)
    clock.now += 1
    progress(0.4)
    progress.finish()
    progress.finish()
    assert [(e.done, e.finished) for e in events] == [(250, False), (400, False), (400, True)]
    silent: list = []
    never = LoadProgress(silent.append, clock=clock)
    never.finish()
    assert silent == []


# --- the memory, before llama.cpp is asked -----------------------------------------------------------------------


def planned_on(profile_name: str) -> PlannedModel:
    profile = resolve_profile(profile_name)
    chosen = plan(profile, LLAMA_1B_Q4)
    path = Path("/models/llama-1b-Q4_K_M.gguf")
    return PlannedModel(ModelChoice(path, LLAMA_1B_Q4, chosen), profile, load_params(path, chosen, -1))


def test_a_model_that_no_longer_fits_the_free_memory_is_one_line_with_both_figures() -> None:
    planned = planned_on("raspberry-pi-5-8gb")
    (need,) = needs(planned, with_draft=False)
    assert need.device == "RAM" and not need.gpu and need.needed > GIB // 2
    check_memory(planned, False, free=lambda gpu: need.needed)  # just enough: loads
    with pytest.raises(NotEnoughMemory) as raised:
        check_memory(planned, False, free=lambda gpu: GIB // 4)
    error = raised.value
    assert (error.needed, error.free, error.device) == (need.needed, GIB // 4, "RAM")
    said = error.explain(CLI)
    assert said.startswith(f"llama-1b-Q4_K_M.gguf needs {need.needed / GIB:.2f} GiB of RAM, has 0.25 GiB free")
    assert "-c" in said and "\n" not in said


def test_a_discrete_gpu_is_checked_apart_from_the_ram() -> None:
    planned = planned_on("laptop-rtx4060-8gb")
    devices = {need.device: need for need in needs(planned, with_draft=False)}
    gpu = next(need for need in devices.values() if need.gpu)
    assert "RAM" in devices and gpu.needed > 0
    with pytest.raises(NotEnoughMemory) as raised:
        check_memory(planned, False, free=lambda on_gpu: 64 * GIB if not on_gpu else gpu.needed - 1)
    assert raised.value.device == gpu.device
    assert device_of(planned) == gpu.device
    assert device_of(planned_on("raspberry-pi-5-8gb")) == "the CPU"


# --- the words and the flag ----------------------------------------------------------------------------------------


def test_a_stalled_load_names_the_file_the_device_and_the_flag() -> None:
    said = reason("load_timed_out", path="/m/x.gguf", device="the CPU", seconds=600.0)
    error = LoadTimedOut(said, Path("/m/x.gguf"), "the CPU", 600.0)
    assert error.explain(CLI) == (
        "loading /m/x.gguf onto the CPU stopped: no progress for 600 s; check the disk it is read from, or pass "
        "--load-timeout 1200"
    )
    assert "--load-timeout" not in str(error), "said plainly without the command line's flag"


def test_load_timeout_comes_from_the_command_line_or_config_toml(tmp_path: Path) -> None:
    assert flags_from(object(), {}).load_timeout == LOAD_TIMEOUT_S
    config = tmp_path / "config.toml"
    config.write_text("load-timeout = 1200\n")
    assert flags_from(object(), load_config(config)).load_timeout == 1200.0
    config.write_text("load-timeout = 0\n")
    with pytest.raises(Exception, match="above 0"):
        load_config(config)


# --- the CLI's bar -----------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def load(done: int, finished: bool = False) -> Progress:
    return Progress("load", done, 1000, finished=finished, unit="‰")


def test_a_fast_load_draws_nothing_and_leaves_an_open_line_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOAD_BAR_AFTER_ENV, raising=False)
    out, clock = Terminal(), Clock()
    line = ProgressLine(out, clock=clock)
    line(Progress("bench: decode", 1, 4, unit="runs"))
    for done in (0, 500):
        clock.now += 0.4
        line(load(done))
    clock.now += 0.1
    line(load(1000, finished=True))
    assert out.getvalue() == "\rbench: decode: 1 / 4 runs\x1b[K"


def test_a_slow_load_draws_its_bar_after_a_second_and_ends_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOAD_BAR_AFTER_ENV, raising=False)
    out, clock = Terminal(), Clock()
    line = ProgressLine(out, clock=clock)
    for done in (0, 300, 600):
        line(load(done))
        clock.now += 0.6
    line(load(1000, finished=True))
    line(Notice("after"))
    bar = load_bar(load(600), unicode=False)
    assert bar == "loading the model ##############----------  60%"
    assert out.getvalue() == (
        f"\r{load_bar(load(600))}\x1b[K\r{load_bar(load(1000, True))}\x1b[K\n"  # 0 and 300 came within the second
        "edgellm: note: after\n"
    )


def test_the_bar_waits_longer_in_a_log_and_the_environment_sets_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOAD_BAR_AFTER_ENV, raising=False)
    assert load_bar_after(tty=True) == 1.0 and load_bar_after(tty=False) == 5.0
    monkeypatch.setenv(LOAD_BAR_AFTER_ENV, "0")
    assert load_bar_after(tty=True) == 0.0
    out, clock = io.StringIO(), Clock()
    line = ProgressLine(out, clock=clock)
    line(load(0))
    line(load(1000, finished=True))
    assert out.getvalue() == f"{load_bar(load(0))}\n{load_bar(load(1000, True))}\n"
