"""`edgellm worker`: llama.cpp's RPC server on loopback, its side channel, and edgellm's own check of a worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgellm.engine.endpoint import Endpoint, parse_endpoints
from edgellm.engine.rpc import check_worker
from edgellm.engine.side_channel import fetch_profile, free_port_pair
from edgellm.errors import WorkerUnreachable
from tests.support import assert_one_line_error, edgellm
from tests.support.workers import start_worker, stop

MIB = 2**20


def test_a_worker_answers_edgellms_check_and_serves_its_profile() -> None:
    process, port = start_worker("--memory", "512", "-t", "1")
    try:
        status = check_worker(Endpoint("127.0.0.1", port))
        assert status.version[0] == 7 and len(status.devices) == 1
        free, total = status.devices[0]
        assert 0 < free <= total
        document = fetch_profile(Endpoint("127.0.0.1", port))
        assert document["memory_cap_bytes"] == 512 * MIB and document["devices"] == ["CPU"]
        assert document["profile"]["cpu"]["physical_cores"] >= 1 and document["rpc"] == f"127.0.0.1:{port}"
        assert check_worker(Endpoint("127.0.0.1", port)).version == status.version  # it serves client after client
    finally:
        assert stop(process) == 0


def test_a_worker_refuses_to_listen_beyond_loopback_without_the_explicit_flag(edgellm_home: Path) -> None:
    assert_one_line_error(
        edgellm("worker", "--host", "0.0.0.0"), "no authentication", "SSH tunnel", "--expose-unauthenticated"
    )
    assert_one_line_error(edgellm("worker", "--host", "::1"), "IPv4 only")


def test_a_taken_port_and_too_much_memory_are_one_line_errors() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(
            edgellm("worker", "--port", str(port)), f"cannot listen on 127.0.0.1:{port}", "choose another --port"
        )
    assert_one_line_error(
        edgellm("worker", "--port", str(free_port_pair()), "--memory", str(2**40 // MIB)),
        "is more than this device can give",
    )


def test_an_unreachable_or_silent_worker_is_a_clear_error_not_an_abort() -> None:
    port = free_port_pair()
    with pytest.raises(WorkerUnreachable, match=f"RPC worker at 127.0.0.1:{port} cannot be used .*edgellm worker"):
        check_worker(Endpoint("127.0.0.1", port), timeout=2)
    with socket.socket() as silent:  # accepts, never answers: a network gone quiet
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = Endpoint("127.0.0.1", silent.getsockname()[1])
        held = []
        threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
        with pytest.raises(WorkerUnreachable, match="did not answer within 0.5 s"):
            check_worker(endpoint, timeout=0.5)
    assert fetch_profile(endpoint, timeout=0.5) is None


def test_worker_lists_are_parsed_strictly() -> None:
    assert parse_endpoints("pi-a.local:50052,10.0.0.7:7000") == [
        Endpoint("pi-a.local", 50052),
        Endpoint("10.0.0.7", 7000),
    ]
    for bad in (
        "pi-a.local",
        "pi:0",
        "pi:70000",
        "a:1,a:1",
        ",",
        "[::1]:7000",
        "::1:7000",
        "localhost:7000,127.0.0.1:7000",
    ):  # the last: one worker under two names
        with pytest.raises(ValueError):
            parse_endpoints(bad)


def test_the_worker_never_imports_textual() -> None:
    code = (
        "import sys; from edgellm.cli.main import build_parser; from edgellm.cli.commands import worker; "
        "from edgellm.engine import rpc, side_channel; "
        "print([m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'edgellm.tui'))])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert done.stdout.strip() == "[]", done.stderr


def test_doctor_checks_each_worker(edgellm_home: Path) -> None:
    import json

    process, port = start_worker("--memory", "256")
    missing = free_port_pair()
    try:
        done = edgellm("doctor", "--json", "--rpc", f"127.0.0.1:{port},127.0.0.1:{missing}")
    finally:
        assert stop(process) == 0
    assert done.returncode == 1, done.stderr  # a problem found: the second worker
    report = json.loads(done.stdout)
    good, bad = report["workers"]
    assert good["reachable"] and good["protocol"].startswith("7.") and good["promised_bytes"] == 256 * MIB
    assert good["devices"][0]["total_bytes"] > 0 and good["served"] == ["CPU"]
    assert bad == {"endpoint": f"127.0.0.1:{missing}", "reachable": False}
    assert any(f"127.0.0.1:{missing}" in problem and "edgellm worker" in problem for problem in report["problems"])
    assert_one_line_error(edgellm("doctor", "--rpc", "nohost"), "--rpc", "HOST:PORT")
