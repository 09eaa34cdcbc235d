"""The history database: migrations, replies written as they stream, orphans marked interrupted."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgellm.engine.contract import GenerationStats
from edgellm.session.events import Timings
from edgellm.session.history import SCHEMA_VERSION, History, HistoryUnavailable


def test_schema_is_versioned(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    assert history.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    history.close()
    History(tmp_path / "h.db").close()  # opening again migrates nothing and keeps the data


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "h.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(HistoryUnavailable, match="newer than this edgellm knows"):
        History(tmp_path / "h.db")


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "h.db").write_text("this is not sqlite" * 100)
    with pytest.raises(HistoryUnavailable, match="move it aside|--no-history"):
        History(tmp_path / "h.db")


def test_conversation_round_trip(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    conversation = history.new_conversation("model.gguf", {"temp": 0.7})
    history.set_system(conversation, "Be brief.")
    history.add(conversation, "user", "What is   the\nsea?")
    reply = history.start_reply(conversation)
    history.update_reply(reply, "Salt", "")
    timings = Timings(GenerationStats(completion_tokens=12, tokens_per_s=40.0), context_used=57, n_ctx=2048)
    history.finish_reply(reply, "Salt water.", "thinking", False, timings)
    (listed,) = history.conversations()
    assert (listed.title, listed.model, listed.message_count, listed.settings) == (
        "What is the sea?",
        "model.gguf",
        3,
        {"temp": 0.7},
    )
    roles = [(m.role, m.content, m.state) for m in history.messages(conversation)]
    assert roles == [
        ("system", "Be brief.", "complete"),
        ("user", "What is   the\nsea?", "complete"),
        ("assistant", "Salt water.", "complete"),
    ]
    assert history.messages(conversation)[-1].timings == timings
    assert history.delete(conversation) and history.conversations() == []
    assert history.messages(conversation) == []  # messages go with their conversation


WRITER = """
import os, sys, time
from pathlib import Path
from edgellm.session.history import History
history = History(Path(sys.argv[1]))
conversation = history.new_conversation("m", {})
history.add(conversation, "user", "hi")
reply = history.start_reply(conversation)
history.update_reply(reply, "partial answ", "")
print("written", flush=True)
time.sleep(600)
"""


def test_reply_of_a_killed_writer_is_marked_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    alive = History(path)  # the writer lives: its reply is still streaming, not interrupted
    assert alive.recovered == 0 and alive.messages(1)[-1].state == "streaming"
    alive.close()
    writer.kill()
    writer.wait()
    history = History(path)
    assert history.recovered == 1
    last = history.messages(1)[-1]
    assert (last.content, last.interrupted) == ("partial answ", True)


def test_a_message_keeps_its_images_in_the_store_beside_the_database(tmp_path: Path) -> None:
    from edgellm.media.images import read_image
    from tests.support import images as make

    red, blue = read_image(make.png(4, 3, (250, 0, 0)), "red.png"), read_image(make.bmp(5, 2, (0, 0, 250)), "b.bmp")
    history = History(tmp_path / "h.db")
    conversation = history.new_conversation("model.gguf", {})
    history.add(conversation, "user", "what colours?", [red, blue])
    history.add(conversation, "user", "the red one again", [red])
    kept = sorted(path.name for path in (tmp_path / "images").rglob("*.*"))
    assert kept == sorted([f"{red.digest}.png", f"{blue.digest}.bmp"]), "each image once, whatever refers to it"
    first, second = history.messages(conversation)
    assert first.images == (red, blue) and second.images == (red,) and first.images_lost == 0
    next((tmp_path / "images").rglob(f"{blue.digest}.bmp")).unlink()  # deleted by hand
    first, _ = history.messages(conversation)
    assert first.images == (red,) and first.images_lost == 1
    history.close()


def test_a_history_of_schema_1_gains_images_and_keeps_its_messages(tmp_path: Path) -> None:
    from edgellm.session.history import MIGRATIONS

    db = sqlite3.connect(tmp_path / "h.db")
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO conversations (id, created, updated) VALUES (1, 0, 0)")
    db.execute("INSERT INTO messages (conversation_id, role, content, created, updated) VALUES (1, 'user', 'hi', 0, 0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    history = History(tmp_path / "h.db")
    (message,) = history.messages(1)
    assert message.content == "hi" and message.images == () and message.images_lost == 0
    history.close()
