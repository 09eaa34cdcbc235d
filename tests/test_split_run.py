"""`edgellm run --rpc`: the model split across two loopback workers, in a watched child process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import edgellm
from test_bad_input import assert_one_line_error
from edgellm.workers import free_port_pair
from test_worker import start_worker, stop

PROMPT = "The capital of France is"
# A continuation the model is sure of: a worker's CPU backend runs the plain quantized kernels where this machine's
# runs the repacked ones (AVX-512 layouts), so the logits differ in the last bits and a near-tie between two tokens can
# go either way after a few tokens of free text; counting has no near-ties.
COUNTING = "1, 2, 3, 4, 5,"


def split_run(test_model: Path, endpoints: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgellm", "run", "-m", str(test_model), "--temp", "0",
                             "--rpc", endpoints, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_across_two_workers_says_what_the_model_says_locally(test_model: Path) -> None:
    import json

    local = edgellm("run", "-m", str(test_model), "-p", COUNTING, "-n", "8", "--temp", "0")
    first, first_port = start_worker("--memory", "8000", "-t", "1")
    second, second_port = start_worker("--memory", "4000", "-t", "1")
    try:
        done = edgellm("run", "-m", str(test_model), "-p", COUNTING, "-n", "8", "--temp", "0", "--json", "--rpc",
                       f"127.0.0.1:{first_port},127.0.0.1:{second_port}")
    finally:
        assert stop(first) == 0 and stop(second) == 0
    assert done.returncode == 0, done.stderr
    text, report = done.stdout.rsplit("\n", 2)[0], json.loads(done.stdout.strip().splitlines()[-1])
    assert text.strip() == local.stdout.strip() and text.strip()
    settings = report["settings"]
    assert report["completion_tokens"] == 8 and settings["rpc"] == [f"127.0.0.1:{first_port}",
                                                                    f"127.0.0.1:{second_port}"]
    assert settings["n_gpu_layers"] == sum(settings["tensor_split"]) > 1


def lose_a_worker_mid_reply(test_model: Path, how: signal.Signals) -> tuple[int, str, str, int]:
    """Start a long split run, wait for its text, then `how` the second worker; the run's exit code, stdout before,
    stdout after and stderr."""
    first, first_port = start_worker("-t", "1", "--memory", "8000")
    second, second_port = start_worker("-t", "1", "--memory", "4000")
    run = split_run(test_model, f"127.0.0.1:{first_port},127.0.0.1:{second_port}", "-p", "Once upon a time",
                    "-n", "4000", "--ignore-eos")
    try:
        shown = run.stdout.read(40)  # the reply has begun: text is on the screen
        second.send_signal(how)
        code = run.wait(timeout=120)  # the condition: the run ends by itself
        rest = run.stdout.read()
        return code, shown, rest, run.stderr.read(), second_port
    finally:
        run.kill()
        second.kill()
        stop(first)


def test_a_worker_killed_mid_reply_ends_it_with_the_worker_named(test_model: Path) -> None:
    code, shown, rest, errors, port = lose_a_worker_mid_reply(test_model, signal.SIGKILL)
    assert code == 1 and len(shown) == 40
    lines = errors.strip().splitlines()
    assert len(lines) == 1 and f"RPC worker at 127.0.0.1:{port} went away mid-reply" in lines[0], errors
    assert "Traceback" not in errors and "GGML" not in errors


def test_a_worker_that_stops_answering_mid_reply_is_named(test_model: Path) -> None:
    code, shown, rest, errors, port = lose_a_worker_mid_reply(test_model, signal.SIGSTOP)
    assert code == 1 and f"127.0.0.1:{port}" in errors and "mid-reply" in errors and "Traceback" not in errors


def test_an_unreachable_worker_is_one_line_and_exit_2(test_model: Path) -> None:
    port = free_port_pair()
    assert_one_line_error(edgellm("run", "-m", str(test_model), "-p", PROMPT, "--rpc", f"127.0.0.1:{port}"),
                          f"RPC worker at 127.0.0.1:{port} cannot be used", "edgellm worker")


def test_bad_split_input_is_one_line_and_exit_2(test_model: Path) -> None:
    port = free_port_pair()
    where = f"127.0.0.1:{port}"
    assert_one_line_error(edgellm("run", "-m", str(test_model), "-p", PROMPT, "-ngl", "4", "--rpc", where),
                          "a split places the layers itself", "drop -ngl")
    assert_one_line_error(edgellm("chat", "--headless", "-m", str(test_model), "--rpc", where, input="Hi\n"),
                          f"RPC worker at {where} cannot be used", "edgellm worker")
    assert_one_line_error(edgellm("serve", "-m", str(test_model), "--port", "0", "--rpc", where),
                          f"RPC worker at {where} cannot be used", "edgellm worker")
    assert_one_line_error(edgellm("bench", "-m", str(test_model), "--rpc", where),
                          f"RPC worker at {where} cannot be used", "edgellm worker")
    assert_one_line_error(edgellm("chat", "--headless", "-m", str(test_model), "--rpc", "[::1]:50052"),
                          "IPv4 only")
    assert_one_line_error(edgellm("run", "-m", str(test_model.parent), "-p", PROMPT, "--rpc", where),
                          "a split plans one GGUF file")
