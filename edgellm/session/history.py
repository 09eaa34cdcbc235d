"""Chat history in SQLite (EDGELLM_HOME/history.db): conversations, messages, model, settings and timings.

A reply is written as it streams, before each piece is shown, with its writer's process id and start
time; a reply whose writer died (kill -9, a power cut on a board) is marked interrupted at the next start.
The schema is versioned with PRAGMA user_version and upgraded by the migrations below. One History may be
used from several threads (a Textual worker, a server's request threads): every call holds one lock.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgellm.errors import EdgellmError, HistoryUnavailable
from edgellm.events import Notice
from edgellm.media.images import Image
from edgellm.session.events import Timings
from edgellm.storage import disk
from edgellm.storage.images import ImageStore

T = TypeVar("T", bound=Callable[..., Any])

MIGRATIONS = (
    # 1: the first schema
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL DEFAULT '',
        reasoning TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'complete' CHECK (state IN ('complete', 'streaming', 'interrupted')),
        writer_pid INTEGER,
        writer_started REAL,
        timings TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
    """,
    # 2: a message's images, kept in the image store beside the database and named here by digest
    """
    ALTER TABLE messages ADD COLUMN images TEXT NOT NULL DEFAULT '[]'
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str
    settings: dict[str, Any]
    created: float
    updated: float
    message_count: int


@dataclass(frozen=True)
class SavedMessage:
    """A message as the history keeps it; a reply with its timings."""

    id: int
    role: str
    content: str
    reasoning: str
    state: str
    timings: Timings | None
    created: float
    images: tuple[Image, ...] = ()  # what the image store still holds of the message's images
    images_lost: int = 0  # its images the store no longer holds (deleted by hand)

    @property
    def interrupted(self) -> bool:
        return self.state == "interrupted"


def serialized(method: T) -> T:
    """Run the method holding the History's lock: one connection, shared by threads, one call at a time."""

    @functools.wraps(method)
    def locked(self: History, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class History:
    """One connection to the history database; every write is committed at once."""

    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        self.path = path
        self.images = ImageStore(path.parent / "images")  # beside the database: EDGELLM_HOME/images
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as error:
            trouble = disk.problem(error, path)
            if trouble is not None:  # the database may be fine: the disk is what fails
                raise HistoryUnavailable(
                    f"{disk.describe(path.parent, trouble)}, so the history cannot be written; free "
                    f"some space or use --no-history",
                    disk_problem=trouble,
                ) from None
            if isinstance(error, OSError):
                raise
            raise HistoryUnavailable(
                f"{path} is not a usable history database ({error}); move it aside to start "
                f"a new one, or use --no-history"
            ) from None
        self.pid = os.getpid()
        self.pid_started = _process_started(self.pid)
        self.recovered = self._mark_orphans_interrupted()

    @classmethod
    def open_or_none(cls, path: Path) -> History | None:
        """The history, or None with one warning (`disk.report`) when the disk holding it is full or read-only: the
        conversation goes on unsaved. A damaged database is still a HistoryUnavailable."""
        try:
            return cls(path)
        except HistoryUnavailable as error:
            if error.disk_problem is None:
                raise
            disk.report(
                Notice(
                    f"{disk.describe(path.parent, error.disk_problem)}: this conversation is not being saved", "warning"
                )
            )
            return None

    @serialized
    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this edgellm knows ({SCHEMA_VERSION})")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _mark_orphans_interrupted(self) -> int:
        """Replies left 'streaming' by a process that is gone are marked interrupted; returns how many."""
        rows = self.db.execute(
            "SELECT id, writer_pid, writer_started FROM messages WHERE state = 'streaming'"
        ).fetchall()
        orphans = [row[0] for row in rows if row[1] is None or row[2] is None or _process_started(row[1]) != row[2]]
        for message_id in orphans:
            self.db.execute(
                "UPDATE messages SET state = 'interrupted', updated = ? WHERE id = ?", (time.time(), message_id)
            )
        return len(orphans)

    # conversations

    @serialized
    def new_conversation(self, model: str, settings: dict[str, Any]) -> int:
        now = time.time()
        cursor = self.db.execute(
            "INSERT INTO conversations (model, settings, created, updated) VALUES (?, ?, ?, ?)",
            (model, json.dumps(settings), now, now),
        )
        return _row_id(cursor)

    @serialized
    def conversations(self) -> list[Conversation]:
        rows = self.db.execute(
            "SELECT c.id, c.title, c.model, c.settings, c.created, c.updated, COUNT(m.id) FROM conversations c "
            "LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY c.updated DESC, c.id DESC"
        ).fetchall()
        return [Conversation(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    @serialized
    def conversation(self, conversation_id: int) -> Conversation | None:
        return next((c for c in self.conversations() if c.id == conversation_id), None)

    @serialized
    def search(self, text: str) -> list[Conversation]:
        """Conversations whose title or any message contains `text` (case-insensitive), newest first."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        ids = {
            row[0]
            for row in self.db.execute(
                "SELECT id FROM conversations WHERE title LIKE ? ESCAPE '\\' UNION "
                "SELECT conversation_id FROM messages WHERE content LIKE ? ESCAPE '\\'",
                (pattern, pattern),
            )
        }
        return [c for c in self.conversations() if c.id in ids]

    @serialized
    def rename(self, conversation_id: int, title: str) -> bool:
        return (
            self.db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", (" ".join(title.split()), conversation_id)
            ).rowcount
            > 0
        )

    @serialized
    def delete(self, conversation_id: int) -> bool:
        return self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount > 0

    def _touch(self, conversation_id: int, title_from: str | None = None) -> None:
        now = time.time()
        self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        if title_from:
            title = " ".join(title_from.split())[:60]
            self.db.execute("UPDATE conversations SET title = ? WHERE id = ? AND title = ''", (title, conversation_id))

    # messages

    @serialized
    def messages(self, conversation_id: int) -> list[SavedMessage]:
        rows = self.db.execute(
            "SELECT id, role, content, reasoning, state, timings, created, images FROM messages "
            "WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        found = []
        for r in rows:
            images = self._images(r[7])
            found.append(
                SavedMessage(
                    r[0], r[1], r[2], r[3], r[4], _timings(r[5]), r[6], images, len(_names(r[7])) - len(images)
                )
            )
        return found

    def _images(self, saved: str) -> tuple[Image, ...]:
        """A message's images the store still holds (unreadable or missing ones left out)."""
        found = []
        for digest, name in _names(saved):
            try:
                image = self.images.get(digest, name)
            except EdgellmError:
                image = None
            if image is not None:
                found.append(image)
        return tuple(found)

    @serialized
    def add(self, conversation_id: int, role: str, content: str, images: Sequence[Image] = ()) -> int:
        """Add a message; its images go to the image store first (each kept once, whatever refers to it)."""
        for image in images:
            try:
                self.images.put(image)
            except OSError as error:
                raise sqlite3.OperationalError(f"the image {image.name} could not be kept: {error}") from None
        names = json.dumps([{"digest": image.digest, "name": image.name} for image in images])
        now = time.time()
        cursor = self.db.execute(
            "INSERT INTO messages (conversation_id, role, content, images, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
            (conversation_id, role, content, names, now, now),
        )
        self._touch(conversation_id, content if role == "user" else None)
        return _row_id(cursor)

    @serialized
    def delete_messages_from(self, conversation_id: int, message_id: int) -> None:
        """Remove a message and every later one of its conversation (a reply regenerated, a message edited); the
        system prompt stays, wherever it was inserted."""
        self.db.execute(
            "DELETE FROM messages WHERE conversation_id = ? AND id >= ? AND role != 'system'",
            (conversation_id, message_id),
        )
        self._touch(conversation_id)

    @serialized
    def set_system(self, conversation_id: int, content: str) -> None:
        """The conversation's system prompt: its first message, replaced or inserted."""
        now = time.time()
        updated = self.db.execute(
            "UPDATE messages SET content = ?, updated = ? WHERE id = "
            "(SELECT id FROM messages WHERE conversation_id = ? AND role = 'system' ORDER BY id LIMIT 1)",
            (content, now, conversation_id),
        ).rowcount
        if not updated:
            self.add(conversation_id, "system", content)

    @serialized
    def set_settings(self, conversation_id: int, settings: dict[str, Any]) -> None:
        """The settings the conversation continues with (sampling changed during it)."""
        self.db.execute("UPDATE conversations SET settings = ? WHERE id = ?", (json.dumps(settings), conversation_id))

    @serialized
    def start_reply(self, conversation_id: int) -> int:
        now = time.time()
        cursor = self.db.execute(
            "INSERT INTO messages (conversation_id, role, state, writer_pid, writer_started, created, updated) "
            "VALUES (?, 'assistant', 'streaming', ?, ?, ?, ?)",
            (conversation_id, self.pid, self.pid_started, now, now),
        )
        return _row_id(cursor)

    @serialized
    def update_reply(self, message_id: int, content: str, reasoning: str) -> None:
        self.db.execute(
            "UPDATE messages SET content = ?, reasoning = ?, updated = ? WHERE id = ?",
            (content, reasoning, time.time(), message_id),
        )

    @serialized
    def finish_reply(self, message_id: int, content: str, reasoning: str, interrupted: bool, timings: Timings) -> None:
        self.db.execute(
            "UPDATE messages SET content = ?, reasoning = ?, state = ?, timings = ?, writer_pid = NULL, updated = ? "
            "WHERE id = ?",
            (
                content,
                reasoning,
                "interrupted" if interrupted else "complete",
                json.dumps(timings.as_dict()),
                time.time(),
                message_id,
            ),
        )
        row = self.db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row:  # gone if the conversation was deleted meanwhile (`edgellm history rm` from another terminal)
            self._touch(row[0])


def _timings(saved: str | None) -> Timings | None:
    """A reply's saved timings; none for a message saved without (or with a record that is not JSON)."""
    if not saved:
        return None
    try:
        return Timings.from_dict(json.loads(saved))
    except ValueError:
        return None


def _names(saved: str | None) -> list[tuple[str, str]]:
    """The (digest, name) of each image a message's `images` column names; [] for anything odd."""
    try:
        items = json.loads(saved or "[]")
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [
        (item["digest"], str(item.get("name", "")))
        for item in items
        if isinstance(item, dict) and isinstance(item.get("digest"), str)
    ]


def _row_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT made."""
    assert cursor.lastrowid is not None, "an INSERT gives the row's id"
    return cursor.lastrowid
