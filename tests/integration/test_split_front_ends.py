"""`--rpc` on chat, serve and bench: a model split across a loopback worker, driven as a model loaded here, and what
each front end does when the worker goes away mid-reply (the session goes on; the server sends an error event)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import httpx2 as httpx

from edgellm.cli.main import build_parser
from edgellm.engine.split import SplitModel
from edgellm.events import Notice
from edgellm.session.events import AnswerPiece, ReplyDone
from edgellm.session.flags import flags_of
from edgellm.session.history import History
from edgellm.session.host import ModelHost
from tests.support import edgellm
from tests.support.server import ServerProcess
from tests.support.workers import start_worker, start_worker_on, stop

LONG = 3000  # tokens asked for a reply that is still being written when its worker is killed


def split_session(test_model: Path, port: int, history: History):
    host = ModelHost(
        flags_of(
            build_parser().parse_args(["chat", "-m", str(test_model), "--temp", "0", "--rpc", f"127.0.0.1:{port}"])
        )
    )
    planned = host.plan()
    model = host.load(planned).model
    return host, planned, model, host.chat(history)


def kill_after_pieces(turn, worker: subprocess.Popen, pieces: int = 10) -> list:
    """Iterate the turn, killing the worker once `pieces` pieces of the reply have come; every event."""
    events = []
    for event in turn:
        events.append(event)
        if sum(isinstance(e, AnswerPiece) for e in events) == pieces:
            worker.kill()
    return events


def test_a_chat_keeps_its_reply_when_the_worker_goes_and_goes_on_when_it_is_back(
    test_model: Path, tmp_path: Path
) -> None:
    worker, port = start_worker("-t", "1", "--memory", "4000")
    history = History(tmp_path / "history.db")
    host = None
    try:
        host, planned, loaded, session = split_session(test_model, port, history)
        assert isinstance(loaded, SplitModel) and planned.split is not None
        assert planned.params.rpc_servers == (f"127.0.0.1:{port}",)
        session.options = replace(session.options, max_tokens=LONG, ignore_eos=True, loop_guard=False)

        events = kill_after_pieces(session.send("Tell me a long story about the sea."), worker)
        worker.wait(timeout=30)
        notices = [e for e in events if isinstance(e, Notice)]
        done = events[-1]
        assert isinstance(done, ReplyDone) and done.reply.interrupted and done.reply.content
        assert any(
            f"RPC worker at 127.0.0.1:{port} went away mid-reply" in n.text and n.kind == "warning" for n in notices
        ), notices
        shown = "".join(e.text for e in events if isinstance(e, AnswerPiece))
        saved = history.messages(session.conversation_id)
        assert saved[-1].role == "assistant" and saved[-1].content == shown and saved[-1].interrupted
        # the tokens kept for the next turn's prompt are those of the text shown (the KV cache's view)
        text, tokens = session.model._recent[0]
        assert text.endswith(shown) and loaded.detokenize(tokens).decode(errors="replace").endswith(shown)

        # while the worker is down a turn says so and ends; the conversation stays as it was
        events = list(session.send("And then?"))
        assert any(f"127.0.0.1:{port} cannot be used" in e.text for e in events if isinstance(e, Notice)), events
        assert isinstance(events[-1], ReplyDone) and events[-1].reply.interrupted

        worker = start_worker_on(port, "-t", "1", "--memory", "4000")
        session.options = replace(session.options, max_tokens=8)
        events = list(session.send("What happened next?"))  # the model reloads on the worker that is back
        done = events[-1]
        assert isinstance(done, ReplyDone) and not done.reply.interrupted, events
        assert done.reply.stats.completion_tokens == 8 and done.reply.content
        assert [entry.role for entry in session.entries] == ["user", "assistant"] * 3
    finally:
        if host is not None:
            host.close()
        history.close()
        worker.kill()
        worker.wait()


def test_the_repl_ends_the_reply_line_says_which_worker_went_and_goes_on(test_model: Path) -> None:
    worker, port = start_worker("-t", "1", "--memory", "4000")
    chat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgellm",
            "chat",
            "--headless",
            "--no-history",
            "-m",
            str(test_model),
            "--temp",
            "0",
            "-n",
            str(LONG),
            "--ignore-eos",
            "--rpc",
            f"127.0.0.1:{port}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        chat.stdin.write("Tell me a long story about the sea.\n")
        chat.stdin.flush()
        shown = chat.stdout.read(40)  # the reply is being written
        worker.kill()
        chat.stdin.write("/set n-predict 4\nAnd then?\n")
        chat.stdin.close()
        bound = threading.Timer(180, chat.kill)  # a bound, not a pause: the chat ends by itself at end of input
        bound.start()
        out, errors = chat.stdout.read(), chat.stderr.read()
        chat.wait()
        bound.cancel()
    finally:
        chat.kill()
        worker.kill()
    assert chat.returncode == 0, errors
    replies = (shown + out).split("\n")
    assert len(replies[0]) >= 40 and replies[1] == "" and len(replies) == 3  # two replies, one line each
    assert f"warning: the RPC worker at 127.0.0.1:{port} went away mid-reply" in errors
    assert f"127.0.0.1:{port} cannot be used" in errors and "Traceback" not in errors


def test_the_server_sends_an_error_event_when_the_worker_goes_mid_stream(test_model: Path) -> None:
    worker, port = start_worker("-t", "1", "--memory", "4000")
    server = ServerProcess("-m", str(test_model), "--rpc", f"127.0.0.1:{port}")
    try:
        server.wait_ready()
        assert re.search(r"\d+ of 18 layers on 1 RPC worker,", server.log), server.log
        whole = httpx.post(
            f"{server.url}/v1/completions",
            json={"prompt": "1, 2, 3, 4, 5,", "max_tokens": 6, "temperature": 0},
            timeout=120,
        )
        assert whole.status_code == 200 and whole.json()["choices"][0]["text"].strip(), whole.text
        body = {"prompt": "Once upon a time", "max_tokens": LONG, "ignore_eos": True, "stream": True}
        events = []
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=120) as answer:
            for line in answer.iter_lines():
                if line.startswith("data:"):
                    events.append(line[5:].strip())
                    if len(events) == 10:
                        threading.Thread(target=worker.kill).start()
        errors = [json.loads(event)["error"] for event in events if event != "[DONE]" and "error" in event]
        assert len(errors) == 1 and errors[0]["code"] == "worker_lost", events[-3:]
        assert f"127.0.0.1:{port} went away" in errors[0]["message"]
        again = httpx.post(f"{server.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 4}, timeout=120)
        assert again.status_code == 503 and again.json()["error"]["code"] == "worker_unreachable"
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
        assert "Traceback" not in server.log
    finally:
        server.stop()
        worker.kill()


def test_bench_measures_a_split_and_keeps_it_apart_from_this_devices_speed(test_model: Path) -> None:
    worker, port = start_worker("-t", "1", "--memory", "4000")
    try:
        done = edgellm(
            "bench", "-m", str(test_model), "--pp", "16", "--tg", "4", "-r", "1", "--json", "--rpc", f"127.0.0.1:{port}"
        )
    finally:
        assert stop(worker) == 0
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)["runs"][0]
    assert run["placement"] == "rpc" and run["workers"] == [f"127.0.0.1:{port}"]
    assert run["tg"][0]["mean"] > 0 and run["pp"]["mean"] > 0 and run["estimate"]["tokens_per_s"] is None
    assert run["settings"]["rpc"] == [f"127.0.0.1:{port}"] and run["n_gpu_layers"] > 0
    assert run["peak_rss_bytes"] > 170 * 2**20  # the child holding this side's layers and embedding is counted
    planned = json.loads(edgellm("plan", "-m", str(test_model), "--json").stdout)
    assert planned["speed"]["measured"] is None  # a split's speed is not this machine's own


def test_the_tui_shows_a_lost_worker_as_a_notice_under_the_reply_it_kept(test_model: Path) -> None:
    from textual.widgets import Static

    from edgellm.tui.widgets.status import StatusLine
    from tests.support.tui import chat_app, long_reply_started, messages, run, until

    worker, port = start_worker("-t", "1", "--memory", "4000")
    app = chat_app(test_model, "-n", str(LONG), "--ignore-eos", "--rpc", f"127.0.0.1:{port}")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await long_reply_started(pilot, 40)
            assert "layers on 1 RPC worker" in str(app.screen.query_one(StatusLine).content)
            worker.kill()
            notice = f"RPC worker at 127.0.0.1:{port} went away mid-reply"
            await until(pilot, lambda: not app.session.busy and app.screen.reply is None, what="the reply to end")
            shown = [str(widget.content) for widget in app.screen.query(Static) if notice in str(widget.content)]
            assert len(shown) == 1, "no notice of the lost worker on screen"
            reply = messages(app)[-1]
            assert reply.role == "assistant" and len(reply.content) > 40  # what was written stays
            assert app.screen.__class__.__name__ == "ChatScreen"  # a notice, not an error dialog

    try:
        run(main)
    finally:
        worker.kill()
        worker.wait()


def test_the_tui_opens_another_model_over_the_same_workers(test_model: Path) -> None:
    """The model in use holds each worker's one client slot: the TUI lets it go before planning the next."""
    from tests.support.tui import chat_app, loaded, run, until

    worker, port = start_worker("-t", "1", "--memory", "4000")
    app = chat_app(test_model, "--rpc", f"127.0.0.1:{port}")

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await loaded(pilot)
            first = app.session
            app.open_model(str(test_model))
            await until(
                pilot,
                lambda: app.session is not None and app.session is not first and not app.loading_model,
                seconds=120,
                what="the model opened again",
            )
            assert app.screen.__class__.__name__ == "ChatScreen"  # no error dialog: the worker was free

    try:
        run(main)
    finally:
        assert stop(worker) == 0
