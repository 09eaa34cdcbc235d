"""A board left running for weeks, in a few minutes: rounds of chat turns, server requests and downloads, with the
resident memory (anonymous: what a leak grows), open files and threads of each process measured after a warm-up
and at the end. Goal: flat after warm-up.

Each round: 3 chat turns in this process (a ChatSession with its SQLite history, a new conversation every round),
10 requests to an `edgellm serve` process (chat and completions, streamed and not), and one pull of a small model
from a local Hub (tests/support/fakehub.py) followed by its removal, also in this process.
Usage: .venv/bin/python benchmarks/soak.py [--rounds 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

from _common import REPO, TEST_MODEL

sys.path.insert(0, str(REPO))
import httpx2 as httpx

from tests.support.fakehub import FakeHub, FakeRepo
from tests.support.server import ServerProcess, status_value


def figures(pid: int) -> dict[str, int]:
    """Anonymous RSS (KiB), open file descriptors and threads of a process, from /proc."""
    return {
        "rss_anon_kib": status_value(pid, "RssAnon"),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": status_value(pid, "Threads"),
    }


def chat_turns(session, round_: int) -> None:  # type: ignore[no-untyped-def]
    session.new()
    for turn in range(3):
        for _ in session.send(f"Round {round_}, turn {turn}: say something short."):
            pass


def server_requests(url: str, round_: int) -> None:
    with httpx.Client(timeout=120) as client:
        for i in range(10):
            if i % 2:
                body = {
                    "messages": [{"role": "user", "content": f"Hi {round_}.{i}"}],
                    "max_tokens": 8,
                    "stream": i % 4 == 1,
                }
                path = "/v1/chat/completions"
            else:
                body = {"prompt": f"Number {round_}.{i} is", "max_tokens": 8, "stream": i % 4 == 0}
                path = "/v1/completions"
            answer = client.post(url + path, json=body)
            answer.raise_for_status()


def pull_and_remove(cli_main) -> None:  # type: ignore[no-untyped-def]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli_main(["pull", "soak/tiny-GGUF"]) == 0
        assert cli_main(["rm", "soak/tiny-GGUF:Q8_0"]) == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgellm-soak-") as scratch:
        root = Path(scratch)
        os.environ.update(EDGELLM_HOME=str(root / "home"), HF_HOME=str(root / "hf-home"))
        os.environ.pop("HF_TOKEN", None)
        os.environ.pop("HF_HUB_OFFLINE", None)
        from edgellm.cli.main import build_parser
        from edgellm.cli.main import main as cli_main
        from edgellm.convert.tinymodel import write_tiny_llama
        from edgellm.session.flags import flags_of
        from edgellm.session.history import History
        from edgellm.session.host import ModelHost

        hub = FakeHub()
        hub.add("soak/tiny-GGUF", FakeRepo({"tiny-Q8_0.gguf": write_tiny_llama(root / "tiny-Q8_0.gguf")}))
        os.environ["HF_ENDPOINT"] = hub.endpoint
        host = ModelHost(flags_of(build_parser().parse_args(["chat", "-m", str(TEST_MODEL), "-n", "8"])))
        host.load(host.plan())
        history = History(root / "home" / "history.db")
        session = host.chat(history)
        server = ServerProcess("-m", str(TEST_MODEL), "-c", "2048", env={"EDGELLM_HOME": str(root / "server-home")})
        server.wait_ready()
        rows = []
        try:
            for round_ in range(options.rounds):
                chat_turns(session, round_)
                server_requests(server.url, round_)
                pull_and_remove(cli_main)
                if round_ + 1 in (options.warmup, options.rounds):
                    rows.append(
                        {
                            "round": round_ + 1,
                            "this process": figures(os.getpid()),
                            "server": figures(server.process.pid),
                            "python threads": threading.active_count(),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop(timeout=60)
            history.close()
            hub.close()
    warm, end = rows
    print(
        f"soak: {options.rounds} rounds (3 chat turns, 10 server requests, 1 pull and rm each); after round "
        f"{options.warmup} -> after round {options.rounds}:"
    )
    flat = True
    for who in ("this process", "server"):
        for key in ("rss_anon_kib", "open_files", "threads"):
            before, after = warm[who][key], end[who][key]
            growth = (after - before) / before if before else 0.0
            ok = growth < 0.05 if key == "rss_anon_kib" else after <= before
            flat &= ok
            print(f"  {who:<13} {key:<13} {before:>9} -> {after:<9} ({growth:+.1%}) {'ok' if ok else 'GREW'}")
    print(
        f"goal (flat after warm-up: anonymous RSS within 5%, no more files or threads): {'met' if flat else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
