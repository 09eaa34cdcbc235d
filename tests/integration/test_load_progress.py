"""A model's load with the real llama.cpp on the real test model, through every command that loads one: its bar on
stderr (never stdout), a load that stalls past --load-timeout as one line naming the file and the device, and a model
that does not fit the memory free now as one line "needs X GiB, has Y GiB free" before llama.cpp is asked.

The bar waits a second (five in a log) before it is drawn; EDGELLM_LOAD_BAR_AFTER_S=0 draws it at once here, where the
test model loads in well under that. --load-timeout 0.001 is a stall for certain: llama.cpp reads the file's metadata
and vocabulary (more than a millisecond) before it first reports progress. The free memory is a stand-in in-process
(`session.loading.free_now`): no subprocess can be given a smaller machine.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edgellm.cli.main import main
from tests.support import assert_one_line_error, edgellm
from tests.support.server import ServerProcess

DRAW_AT_ONCE = {"EDGELLM_LOAD_BAR_AFTER_S": "0"}
MIB = 2**20


def test_run_draws_the_load_bar_on_stderr_and_keeps_stdout_for_the_text(test_model: Path) -> None:
    done = edgellm(
        "run", "-m", str(test_model), "-p", "Paris is", "-n", "4", "--temp", "0", "-t", "2", "--json", env=DRAW_AT_ONCE
    )
    assert done.returncode == 0, done.stderr
    bars = done.stderr.splitlines()
    assert bars and all(line.startswith("loading the model ") for line in bars), done.stderr
    assert bars[-1].endswith("100%")  # the last event: finished, the bar full
    assert "loading" not in done.stdout
    text, _, record = done.stdout.rstrip("\n").rpartition("\n")
    assert json.loads(record)["completion_tokens"] == 4 and text


def test_serve_draws_its_load_bar_in_its_log(test_model: Path) -> None:
    server = ServerProcess("-m", str(test_model), "-t", "2", "-c", "512", env=DRAW_AT_ONCE)
    try:
        server.wait_ready()
        assert server.wait_for_line(r"^loading the model .*100%$")
    finally:
        server.stop()


@pytest.mark.parametrize("command", [("run", "-p", "hi"), ("chat",)])  # chat piped: the line chat, as headless
def test_a_stalled_load_is_one_line_naming_the_file_the_device_and_the_flag(
    test_model: Path, command: tuple[str, ...]
) -> None:
    done = edgellm(*command, "-m", str(test_model), "-t", "2", "--load-timeout", "0.001", input="hi\n")
    assert_one_line_error(done, str(test_model), "onto the CPU", "no progress for 0.001 s", "--load-timeout")


def test_bench_says_a_stalled_load_in_the_same_line_after_its_own_progress(test_model: Path) -> None:
    done = edgellm("bench", "-r", "1", "--pp", "8", "--tg", "4", "-m", str(test_model), "--load-timeout", "0.001")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    *before, last = done.stderr.strip().splitlines()
    assert all(line.startswith("bench: ") for line in before), done.stderr  # its runs' progress line, in a log
    assert last.startswith(f"edgellm: error: loading {test_model} onto the CPU stopped") and "--load-timeout" in last


def test_a_stalled_load_of_the_batched_engine_is_the_same_line(test_model: Path, tmp_path: Path) -> None:
    batch = tmp_path / "requests.jsonl"
    batch.write_text(json.dumps({"prompt": "hi", "max_tokens": 2}) + "\n")
    done = edgellm("run", "--batch", str(batch), "-np", "2", "-m", str(test_model), "--load-timeout", "0.001")
    assert_one_line_error(done, str(test_model), "onto the CPU", "--load-timeout")


def test_serve_stops_on_a_stalled_load_with_its_line(test_model: Path) -> None:
    server = ServerProcess("-m", str(test_model), "-t", "2", "--load-timeout", "0.001")
    try:
        line = server.wait_for_line(r"^edgellm: error: ")
        assert server.process.wait(120) == 2
    finally:
        server.kill()
    assert str(test_model) in line.string and "--load-timeout" in line.string, server.log


@pytest.fixture
def little_free_memory(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """This machine with 64 MiB free now (the test model needs about 0.3 GiB); the devices asked about."""
    from edgellm.session import loading

    asked: list[bool] = []
    monkeypatch.setattr(loading, "free_now", lambda gpu: asked.append(gpu) or 64 * MIB)
    return asked


@pytest.fixture
def llama_cpp_never_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgellm.engine import batched, local

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("llama.cpp was asked to load a model that does not fit")

    monkeypatch.setattr(local, "load", refused)
    monkeypatch.setattr(batched, "load", refused)


@pytest.mark.parametrize(
    "command",
    [
        ("run", "-p", "hi"),
        ("chat", "--headless", "--no-history"),
        ("bench", "-r", "1", "--pp", "8", "--tg", "4"),
        ("serve", "--port", "0"),
    ],
)
def test_a_model_that_does_not_fit_the_free_memory_is_one_line_before_llama_cpp_is_asked(
    test_model: Path,
    little_free_memory: list[bool],
    llama_cpp_never_loads: None,
    command: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = main([*command, "-m", str(test_model), "-t", "2"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    # bench's progress through its runs and the server's log are lines of their own
    lines = [line for line in err.splitlines() if not line.startswith("bench: ") and "edgellm serve: " not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"edgellm: error: {test_model.name} needs 0."), lines[0]
    assert "GiB of RAM, has 0.06 GiB free" in lines[0] and "-c" in lines[0]
    assert little_free_memory == [False]  # this machine's memory, asked once: no GPU layers planned here


def test_force_loads_whatever_the_free_memory(test_model: Path, little_free_memory: list[bool]) -> None:
    assert main(["run", "-m", str(test_model), "-p", "hi", "-n", "1", "-t", "2", "--force"]) == 0
    assert little_free_memory == []
