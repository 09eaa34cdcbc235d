"""llama-server as a benchmark's anchor: started on a free port with the settings edgellm's server gets (threads, flash
attention, batch), and waited for until its /health answers."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx2 as httpx
from _common import REPO, TEST_MODEL

sys.path.insert(0, str(REPO))
from tests.support.server import LoggedProcess

N_BATCH = 512


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_llama_server(
    binary: Path,
    threads: int,
    ctx: int,
    parallel: int | None,
    *,
    batch: int = N_BATCH,
    flash: str = "on",
    extra: Sequence[str] = (),
) -> LoggedProcess:
    """`llama-server -np PARALLEL -c CTX` (it splits -c across its slots; PARALLEL None: its own default) on the test
    model, batch and micro-batch `batch`, flash attention `flash`, and `extra` flags (`--embedding`...), ready."""
    port = free_port()
    slots = ["-np", str(parallel)] if parallel is not None else []
    server = LoggedProcess(
        "llama-server" + (f" -np {parallel}" if parallel is not None else ""),
        [str(binary), "-m", str(TEST_MODEL), "-c", str(ctx), *slots, "-t", str(threads)]
        + ["-tb", str(threads), "-b", str(batch), "-ub", str(batch), "-fa", flash, *extra]
        + ["--host", "127.0.0.1", "--port", str(port)],
    )
    server.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        while True:  # /health answers 503 while the model loads
            if server.process.poll() is not None:
                raise server.failed(f"exited ({server.process.returncode}) before it was ready")
            try:
                if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise server.failed("not ready within 300 s")
            time.sleep(0.2)
    except BaseException:
        server.kill()
        raise
