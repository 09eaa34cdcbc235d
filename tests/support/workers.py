"""`edgellm worker` run as a real process on free loopback ports, for the tests of models split across machines."""

from __future__ import annotations

import signal
import subprocess
import sys

from edgellm.engine.side_channel import free_port_pair


def start_worker(*args: str) -> tuple[subprocess.Popen, int]:
    """An `edgellm worker` on free loopback ports, returned once it says it is serving."""
    port = free_port_pair()
    process = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "worker", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stderr.readline()
    assert "edgellm worker: serving" in line, line + process.stderr.read()
    return process, port


def start_worker_on(port: int, *args: str) -> subprocess.Popen:
    """An `edgellm worker` on `port` (one that was lost there comes back), returned once it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "worker", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stderr.readline()
    assert "edgellm worker: serving" in line, line + process.stderr.read()
    return process


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, then its exit status (killed if it outlives a minute)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    finally:
        process.kill()
