"""A power cut mid-reply, 50 times: the chat process is killed with SIGKILL at a random point of a reply (seeded:
after a random number of the reply's bytes have reached the screen), and after each cut the history is whole
(`PRAGMA integrity_check`), holds everything the person saw of the reply, and marks it interrupted."""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgellm.session.history import History

CUTS = 50
SEED = 20261127


def shown_until_cut(model: Path, env: dict[str, str], cut_after: int) -> str:
    """Start a chat, send one message, kill -9 the process once `cut_after` bytes of the reply are on stdout;
    everything it wrote to stdout before dying."""
    chat = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "chat", "-m", str(model), "-n", "400", "--ignore-eos", "--temp", "0.8"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert chat.stdin is not None and chat.stdout is not None
    chat.stdin.write(b"Tell me a long story about the sea.\n")
    chat.stdin.flush()
    shown = b""
    deadline = time.monotonic() + 120
    while len(shown) < cut_after:
        assert time.monotonic() < deadline, "the reply never reached the screen"
        ready, _, _ = select.select([chat.stdout], [], [], 1.0)
        if ready:
            piece = os.read(chat.stdout.fileno(), 4096)
            assert piece, "the chat ended before the cut"
            shown += piece
    chat.send_signal(signal.SIGKILL)
    chat.wait(30)
    shown += chat.stdout.read()  # what it wrote before dying is still in the pipe
    return shown.decode("utf-8", errors="ignore")


@pytest.mark.slow
def test_fifty_power_cuts_lose_nothing_that_was_shown(test_model: Path, edgellm_home: Path) -> None:
    chance = random.Random(SEED)
    env = {**os.environ, "EDGELLM_HOME": str(edgellm_home), "PYTHONUNBUFFERED": "1"}
    database = edgellm_home / "history.db"
    for cut in range(CUTS):
        shown = shown_until_cut(test_model, env, chance.randint(1, 300))
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"cut {cut}"
        history = History(database)  # opening it marks the replies whose writer died as interrupted
        try:
            ((content, state),) = history.db.execute(
                "SELECT content, state FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1"
            ).fetchall()
        finally:
            history.close()
        assert state == "interrupted", f"cut {cut}"
        assert content.startswith(shown.strip("\n")) or shown.strip() == "", (
            f"cut {cut}: the screen showed {shown[-80:]!r}, the history kept {content[-80:]!r}"
        )
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM conversations").fetchone()[0] == CUTS
