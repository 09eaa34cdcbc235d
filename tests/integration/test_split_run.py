"""`edgellm run --rpc`: the model split across two loopback workers, in a watched child process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from edgellm.engine.side_channel import free_port_pair
from tests.support import assert_one_line_error, edgellm
from tests.support.workers import start_worker, stop

PROMPT = "The capital of France is"
# A continuation the model is sure of: a worker's CPU backend runs the plain quantized kernels where this machine's
# runs the repacked ones (AVX-512 layouts), so the logits differ in the last bits and a near-tie between two tokens can
# go either way after a few tokens of free text; counting has no near-ties.
COUNTING = "1, 2, 3, 4, 5,"


def split_run(test_model: Path, endpoints: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgellm", "run", "-m", str(test_model), "--temp", "0", "--rpc", endpoints, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_run_across_two_workers_says_what_the_model_says_locally(test_model: Path) -> None:
    import json

    local = edgellm("run", "-m", str(test_model), "-p", COUNTING, "-n", "8", "--temp", "0")
    first, first_port = start_worker("--memory", "8000", "-t", "1")
    second, second_port = start_worker("--memory", "4000", "-t", "1")
    try:
        done = edgellm(
            "run",
            "-m",
            str(test_model),
            "-p",
            COUNTING,
            "-n",
            "8",
            "--temp",
            "0",
            "--json",
            "--rpc",
            f"127.0.0.1:{first_port},127.0.0.1:{second_port}",
        )
    finally:
        assert stop(first) == 0 and stop(second) == 0
    assert done.returncode == 0, done.stderr
    text, report = done.stdout.rsplit("\n", 2)[0], json.loads(done.stdout.strip().splitlines()[-1])
    assert text.strip() == local.stdout.strip() and text.strip()
    settings = report["settings"]
    assert report["completion_tokens"] == 8 and settings["rpc"] == [
        f"127.0.0.1:{first_port}",
        f"127.0.0.1:{second_port}",
    ]
    assert settings["n_gpu_layers"] == sum(settings["tensor_split"]) > 1


def lose_a_worker_mid_reply(test_model: Path, how: signal.Signals) -> tuple[int, str, str, int]:
    """Start a long split run, wait for its text, then `how` the second worker; the run's exit code, stdout before,
    stdout after and stderr."""
    first, first_port = start_worker("-t", "1", "--memory", "8000")
    second, second_port = start_worker("-t", "1", "--memory", "4000")
    run = split_run(
        test_model,
        f"127.0.0.1:{first_port},127.0.0.1:{second_port}",
        "-p",
        "Once upon a time",
        "-n",
        "4000",
        "--ignore-eos",
    )
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
    code, shown, _rest, errors, port = lose_a_worker_mid_reply(test_model, signal.SIGKILL)
    assert code == 1 and len(shown) == 40
    lines = errors.strip().splitlines()
    assert len(lines) == 1 and f"RPC worker at 127.0.0.1:{port} went away mid-reply" in lines[0], errors
    assert "Traceback" not in errors and "GGML" not in errors


def test_a_worker_that_stops_answering_mid_reply_is_named(test_model: Path) -> None:
    code, _shown, _rest, errors, port = lose_a_worker_mid_reply(test_model, signal.SIGSTOP)
    assert code == 1 and f"127.0.0.1:{port}" in errors and "mid-reply" in errors and "Traceback" not in errors


def test_an_unreachable_worker_is_one_line_and_exit_2(test_model: Path) -> None:
    port = free_port_pair()
    assert_one_line_error(
        edgellm("run", "-m", str(test_model), "-p", PROMPT, "--rpc", f"127.0.0.1:{port}"),
        f"RPC worker at 127.0.0.1:{port} cannot be used",
        "edgellm worker",
    )


def test_bad_split_input_is_one_line_and_exit_2(test_model: Path) -> None:
    port = free_port_pair()
    where = f"127.0.0.1:{port}"
    assert_one_line_error(
        edgellm("run", "-m", str(test_model), "-p", PROMPT, "-ngl", "4", "--rpc", where),
        "a split places the layers itself",
        "drop -ngl",
    )
    assert_one_line_error(
        edgellm("chat", "--headless", "-m", str(test_model), "--rpc", where, input="Hi\n"),
        f"RPC worker at {where} cannot be used",
        "edgellm worker",
    )
    assert_one_line_error(
        edgellm("serve", "-m", str(test_model), "--port", "0", "--rpc", where),
        f"RPC worker at {where} cannot be used",
        "edgellm worker",
    )
    assert_one_line_error(
        edgellm("bench", "-m", str(test_model), "--rpc", where),
        f"RPC worker at {where} cannot be used",
        "edgellm worker",
    )
    assert_one_line_error(edgellm("chat", "--headless", "-m", str(test_model), "--rpc", "[::1]:50052"), "IPv4 only")
    assert_one_line_error(
        edgellm("run", "-m", str(test_model.parent), "-p", PROMPT, "--rpc", where), "a split plans one GGUF file"
    )


class SilentRelay:
    """A TCP relay to a worker, as a tunnel of one port is (no side channel beside it, so only silence can tell that
    the worker is gone), that can fall silent: it forwards nothing more and keeps the connections open, as a network
    that goes quiet does. `silent_after`: fall silent once that many bytes have gone to the worker."""

    def __init__(self, worker_port: int, silent_after: int | None = None) -> None:
        import socket
        import threading

        self.worker_port, self.silent_after, self.sent = worker_port, silent_after, 0
        self.silent, self.closed = threading.Event(), threading.Event()
        self.port = free_port_pair()  # nothing will listen on port + 1: no side channel
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            worker = socket.create_connection(("127.0.0.1", self.worker_port))
            self.sockets += [client, worker]
            threading.Thread(target=self._pump, args=(client, worker, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(worker, client, False), daemon=True).start()

    def _pump(self, source, target, to_worker: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data and not self.silent.is_set():  # one side closed: so does the other (a worker serves one
                try:  # client at a time, and waits on a connection left open)
                    target.shutdown(2)  # SHUT_RDWR: wakes the other pump's recv too
                except OSError:
                    pass
                return
            if self.silent.is_set():
                self.closed.wait()  # quiet: nothing more goes through, nothing is closed
                return
            target.sendall(data)
            if to_worker:
                self.sent += len(data)
                if self.silent_after is not None and self.sent >= self.silent_after:
                    self.silent.set()

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            sock.close()


def run_through(relay: SilentRelay, test_model: Path, *extra: str) -> subprocess.Popen:
    import os

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgellm",
            "run",
            "-m",
            str(test_model),
            "--temp",
            "0",
            "--rpc",
            f"127.0.0.1:{relay.port}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EDGELLM_RPC_SILENCE_S": "3"},
    )


def test_a_worker_without_a_side_channel_that_falls_silent_while_loading_is_named(test_model: Path) -> None:
    worker, port = start_worker("-t", "1", "--memory", "4000")
    relay = SilentRelay(port, silent_after=4 * 2**20)  # mid-way through sending it its layers
    run = run_through(relay, test_model, "-p", PROMPT, "-n", "8")
    try:
        _out, errors = run.communicate(timeout=120)  # the condition: the run ends by itself
    finally:
        run.kill()
        relay.close()
        worker.kill()
    assert relay.silent.is_set() and run.returncode == 1, errors
    lines = errors.strip().splitlines()
    assert (
        len(lines) == 1
        and f"the network to the RPC worker at 127.0.0.1:{relay.port} went silent while the model loaded" in lines[0]
    ), errors


def test_a_worker_without_a_side_channel_that_falls_silent_mid_reply_is_named(test_model: Path) -> None:
    worker, port = start_worker("-t", "1", "--memory", "4000")
    relay = SilentRelay(port)
    run = run_through(relay, test_model, "-p", "Once upon a time", "-n", "4000", "--ignore-eos")
    try:
        shown = run.stdout.read(40)  # the reply has begun
        relay.silent.set()
        _rest, errors = run.communicate(timeout=120)
    finally:
        run.kill()
        relay.close()
        worker.kill()
    assert run.returncode == 1 and len(shown) == 40, errors
    assert f"the network to the RPC worker at 127.0.0.1:{relay.port} went silent mid-reply" in errors
    assert "Traceback" not in errors
