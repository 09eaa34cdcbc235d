"""One chat session, independent of any terminal: the conversation, its history and its settings.

Front ends drive it (the REPL today, the TUI next): `send` returns a Turn, an iterator of events, which a
thread of any front end may run; `cancel` may be called from any other thread. One turn at a time: the
conversation cannot change under a turn in progress. Each piece of a reply is written to the history before
it is yielded, so whatever a front end shows is saved; a turn that ends early (cancelled, an error, closed
by its front end) is saved as interrupted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from edgellm.engine.contract import GenerationOptions, settings_record, text_only
from edgellm.errors import (
    EdgellmError,
    HistoryUnavailable,
    InvalidSetting,
    NoSuchConversation,
    NoVision,
    WorkerLost,
    WorkerUnreachable,
)
from edgellm.events import Notice
from edgellm.media.images import Image
from edgellm.session.completion import ChatModel, ReplyShape, json_messages, reply_notices
from edgellm.session.events import ChatEvent, Reply, ReplyDone, Timings, ToolCallPiece
from edgellm.session.flags import MODEL_FLAGS
from edgellm.session.history import Conversation, History, SavedMessage
from edgellm.storage import disk

SAMPLING_KEYS = ("temp", "top-k", "top-p", "min-p", "repeat-penalty")  # Sampling fields, named as the flags
OPTION_FIELDS = {"n-predict": "max_tokens", "seed": "seed"}  # GenerationOptions fields
SETTINGS = (*SAMPLING_KEYS, *OPTION_FIELDS, "stop", "think", "loop-guard", "json")
SWITCH = {"on": True, "off": False}
BUSY = "a reply is still being written; cancel it first"
T = TypeVar("T")


@dataclass
class Entry:
    """A message of the conversation in memory, with its id in the history once saved."""

    role: str
    content: str
    reasoning: str = ""
    id: int | None = None
    images: tuple[Image, ...] = ()  # a user message's images, in the order they were attached

    def as_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning:
            chat["reasoning_content"] = self.reasoning  # the template's own rule decides whether it goes back
        if self.images:
            chat["images"] = self.images
        return chat


@dataclass(frozen=True)
class SessionStats:
    replies: tuple[Timings, ...]  # each reply's timings, oldest first

    @property
    def last(self) -> Timings | None:
        return self.replies[-1] if self.replies else None

    @property
    def tokens(self) -> int:
        return sum(reply.stats.completion_tokens for reply in self.replies)

    @property
    def mean_tokens_per_s(self) -> float | None:
        rates = [reply.stats.tokens_per_s for reply in self.replies if reply.stats.tokens_per_s]
        return sum(rates) / len(rates) if rates else None


class Turn:
    """One exchange: iterate it for its events. `cancel()` stops this turn only, even before it starts.

    A front end that stops iterating early (an error while drawing, a thread torn down) must `close()` it, or use
    it as a context manager: that saves the reply as interrupted and frees the model for the next turn.
    """

    def __init__(
        self, session: ChatSession, number: int, text: str | None, keep: int, images: tuple[Image, ...] = ()
    ) -> None:
        self.id = number
        self.text = text  # the new user message; None answers the last one again (regenerate)
        self.images = images  # the new message's images
        self.keep = keep  # entries kept before this turn: the rest are replaced once the prompt is known to fit
        self.cancelled = threading.Event()
        self.finished = False
        self._events = session._run(self)

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        """End the turn here; only the thread that iterates it may close it (others call `cancel`)."""
        self._events.close()
        self.finished = True

    def __iter__(self) -> Iterator[ChatEvent]:
        return self._events

    def __enter__(self) -> Turn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ChatSession:
    model: ChatModel
    history: History | None
    model_name: str
    options: GenerationOptions = GenerationOptions()
    system_prompt: str | None = None
    show_reasoning: bool = True
    json_replies: bool = False  # every reply a JSON object, enforced by a grammar (`/set json on`)
    entries: list[Entry] = field(default_factory=list)
    conversation_id: int | None = None
    _replies: list[Timings] = field(default_factory=list)
    _turns: int = 0
    _current: Turn | None = None
    _starting: threading.Lock = field(default_factory=threading.Lock)
    _notices: list[Notice] = field(default_factory=list)  # history failures met inside a turn, not yet yielded
    _history_lost: bool = False  # the database failed during this session and was let go

    # the conversation

    def chat_messages(self, entries: list[Entry] | None = None) -> list[dict[str, Any]]:
        """The conversation (or `entries`) as the chat template takes it, the system prompt first."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [entry.as_chat() for entry in (self.entries if entries is None else entries)]

    def opening_notices(self) -> list[Notice]:
        return self.model.opening_notices()

    def saved_settings(self) -> dict[str, Any]:
        """The settings in force, saved with a new conversation: the keys `run --json` reports, and the template."""
        return {**settings_record(self.model.model.params, self.options), "template": self.model.template.name}

    @property
    def stats(self) -> SessionStats:
        return SessionStats(tuple(self._replies))

    # turns

    @property
    def vision(self) -> bool:
        """The model reads images: a message may carry them."""
        return self.model.vision

    def text_only(self) -> NoVision:
        """What sending an image to this model says when it reads text only (its way out: a projector)."""
        return text_only(self.model.model.params.path)

    def read_image(self, path: Path) -> Image:
        """An image file to attach to the next message, checked now: NoVision when the model reads text only,
        ImageRefused (naming the file and the way out) when it cannot be read as an image."""
        from edgellm.media.images import read_image_file

        if not self.vision:
            raise self.text_only()
        return read_image_file(path)

    def send(self, text: str, images: Sequence[Image] = ()) -> Turn:
        """Start a turn answering `text` (and its `images`); iterate the Turn for its events. NoVision at once when
        the model reads text only."""
        if not text.strip() and not images:
            raise EdgellmError("a message needs some text")
        if images and not self.vision:
            raise self.text_only()
        return self._start(text, lambda: len(self.entries), tuple(images))

    def regenerate(self) -> Turn:
        """Answer the last user message again, replacing the last reply."""

        def keep() -> int:
            if not self.entries or self.entries[-1].role != "assistant":
                raise EdgellmError("there is no reply to regenerate yet")
            return len(self.entries) - 1

        return self._start(None, keep)

    def edit_last(self, text: str) -> Turn:
        """Replace the last user message (and the reply to it) with `text`, and answer it."""
        if not text.strip():
            raise EdgellmError("the new message needs some text")

        def keep() -> int:
            index = next((i for i in range(len(self.entries) - 1, -1, -1) if self.entries[i].role == "user"), None)
            if index is None:
                raise EdgellmError("there is no message to edit yet")
            return index

        last_user = next((entry for entry in reversed(self.entries) if entry.role == "user"), None)
        return self._start(text, keep, last_user.images if last_user is not None else ())  # its images stay

    def cancel(self, turn_id: int | None = None) -> None:
        """Stop the turn in progress (or turn `turn_id`, if it is still the latest); safe from any thread."""
        turn = self._current
        if turn is not None and (turn_id is None or turn.id == turn_id):
            turn.cancel()

    @property
    def busy(self) -> bool:
        """A turn was started and has not finished: the conversation must not change under it."""
        return self._current is not None and not self._current.finished

    def _idle(self) -> None:
        if self.busy:
            raise EdgellmError(BUSY)

    def _start(self, text: str | None, keep: Callable[[], int], images: tuple[Image, ...] = ()) -> Turn:
        with self._starting:  # two threads cannot both start a turn
            self._idle()
            self._turns += 1
            self._current = Turn(self, self._turns, text, keep(), images)
            return self._current

    def _run(self, turn: Turn) -> Generator[ChatEvent, None, None]:
        try:
            yield from self._exchange(turn)
        finally:
            turn.finished = True

    def _exchange(self, turn: Turn) -> Iterator[ChatEvent]:
        new = [Entry("user", turn.text, images=turn.images)] if turn.text is not None else []
        kept = self.entries[: turn.keep] + new
        messages = self.chat_messages(kept)
        shape = ReplyShape(json=self.json_replies)
        if self.json_replies:
            messages = json_messages(messages, None)
        prepared = self.model.prepare(messages, self.options)  # raises before anything changes
        prepared = self.model.constrain(prepared, shape, self.options)
        self._forget_from(turn.keep)
        self.entries = kept
        user = kept[-1]
        reply, reply_id = Reply(), None
        pieces = self.model.stream(prepared, reply, prepared.options, turn.cancelled)
        try:  # from here on, however the turn ends, memory and history get the reply
            reply_id = self._write(self._save_user if user.id is None else self._save_reply_start, user)
            yield from self._take_notices()
            try:
                for piece in pieces:
                    if reply_id is not None:  # saved before it is shown
                        self._write(History.update_reply, reply_id, reply.content, reply.reasoning)
                        if self._notices:  # per token: only when a write just failed
                            yield from self._take_notices()
                    if not isinstance(piece, ToolCallPiece):  # a chat offers no tools: none comes
                        yield piece
            except (WorkerLost, WorkerUnreachable) as error:  # a split's worker: this reply ends, the chat goes on
                self._notices.append(Notice(str(error), "warning", error.reason))
        finally:
            pieces.close()  # frees the model and completes the reply's timings, also when this turn is closed early
            self.entries.append(Entry("assistant", reply.content, reply.reasoning, reply_id))
            if reply_id is not None:
                self._write(
                    History.finish_reply, reply_id, reply.content, reply.reasoning, reply.interrupted, reply.timings()
                )
            self._replies.append(reply.timings())
        yield from self._take_notices()
        yield from reply_notices(reply)
        yield ReplyDone(reply)

    # the history

    def _write(self, write: Callable[..., Any], *args: Any) -> Any:
        """`write(history, *args)`; if the database fails (disk full, locked, deleted), the session goes on without
        it and says so once. Without a history, nothing is written."""
        if self.history is None:
            return None
        try:
            return write(self.history, *args)
        except sqlite3.Error as error:
            history, self.history, self._history_lost = self.history, None, True
            trouble = disk.problem(error, history.path)
            cause = (
                disk.describe(history.path.parent, trouble) if trouble else f"the history could not be saved ({error})"
            )
            self._notices.append(
                Notice(
                    f"{cause}: this conversation is not being saved from here on (what is "
                    f"on screen is all there is of it); the session goes on",
                    "warning",
                )
            )
            return None

    def _take_notices(self) -> Iterator[Notice]:
        while self._notices:
            yield self._notices.pop(0)

    def _save_user(self, history: History, user: Entry) -> int:
        if self.conversation_id is None:
            self.conversation_id = history.new_conversation(self.model_name, self.saved_settings())
            if self.system_prompt:
                history.set_system(self.conversation_id, self.system_prompt)
        user.id = history.add(self.conversation_id, "user", user.content, user.images)
        return history.start_reply(self.conversation_id)

    def _save_reply_start(self, history: History, user: Entry) -> int:
        assert self.conversation_id is not None, "a saved user message belongs to a saved conversation"
        return history.start_reply(self.conversation_id)

    def _forget_from(self, index: int) -> None:
        """Drop the saved messages of entries[index:] from the history (the caller drops them from memory)."""
        saved = [entry.id for entry in self.entries[index:] if entry.id is not None]
        if saved and self.conversation_id is not None:
            self._write(History.delete_messages_from, self.conversation_id, min(saved))

    def _ask(self, question: Callable[..., T], *args: Any) -> T:
        """A read or a change the person asked for: `question(history, *args)`. Without a history, or when the
        database fails, a HistoryUnavailable the front end shows (the session goes on)."""
        if self.history is None:
            raise HistoryUnavailable(
                "history is off: it failed earlier in this session"
                if self._history_lost
                else "history is off (--no-history)"
            )
        try:
            return question(self.history, *args)
        except sqlite3.Error as error:
            raise HistoryUnavailable(f"the history cannot be used ({error})") from None

    @contextmanager
    def _between_turns(self) -> Iterator[None]:
        """Change the conversation only while no turn runs, and start none meanwhile."""
        with self._starting:
            self._idle()
            yield

    # conversations

    def new(self) -> None:
        """Start a new conversation; the system prompt and the settings stay."""
        with self._between_turns():
            self.entries, self.conversation_id, self._replies = [], None, []

    def load(self, conversation_id: int) -> list[SavedMessage]:
        """Continue a saved conversation; returns its messages (for a front end to show)."""
        with self._between_turns():
            conversation = self._ask(History.conversation, conversation_id)
            if conversation is None:
                raise NoSuchConversation(f"no conversation {conversation_id}", conversation_id)
            messages = self._ask(History.messages, conversation_id)
            self.system_prompt = next((m.content for m in messages if m.role == "system"), None)
            self.entries = [
                Entry(m.role, m.content, m.reasoning, m.id, m.images) for m in messages if m.role != "system"
            ]
            self.conversation_id, self._replies = conversation_id, []
            self.options = self.options.with_saved(conversation.settings)  # its sampling, as it was left
            return messages

    def close(self) -> None:
        """Free the model's memory (before another is loaded); the session is not used after."""
        with self._between_turns():
            self.model.close()

    def conversations(self) -> list[Conversation]:
        return self._ask(History.conversations)

    def search(self, text: str) -> list[Conversation]:
        if not text.strip():
            raise EdgellmError("a search needs some text")
        return self._ask(History.search, text)

    def rename(self, title: str) -> None:
        if not title.strip():
            raise EdgellmError("a title needs some text")
        if self.conversation_id is None:
            raise EdgellmError("nothing to rename yet: a conversation is saved with its first message")
        self._ask(History.rename, self.conversation_id, title)

    def delete(self, conversation_id: int) -> None:
        with self._between_turns():
            if not self._ask(History.delete, conversation_id):
                raise NoSuchConversation(f"no conversation {conversation_id}", conversation_id)
            if conversation_id == self.conversation_id:
                self.entries, self.conversation_id, self._replies = [], None, []

    def set_system(self, text: str) -> None:
        """The system prompt of this conversation; empty text clears it."""
        with self._between_turns():
            self.system_prompt = text or None
            if self.conversation_id is not None:
                self._ask(History.set_system, self.conversation_id, text)

    def set(self, key: str, value: str) -> str:
        """Change one setting for the next turns (kept with the conversation); returns what it is now, in words.
        InvalidSetting if bad."""
        said = self._apply(key, value.strip())
        if self.conversation_id is not None and self.history is not None and not self._history_lost:
            self._ask(History.set_settings, self.conversation_id, self.saved_settings())
        return said

    def _apply(self, key: str, value: str) -> str:
        if key == "stop":
            stop = value.replace("\\n", "\n").replace("\\t", "\t")  # \n and \t may be typed as escapes
            self.options = replace(self.options, stop=(stop,) if stop else ())
            return f"stop = {stop!r}" if stop else "stop cleared"
        if key == "think":
            if value not in ("show", "hide"):
                raise InvalidSetting("think takes show or hide", key, value)
            self.show_reasoning = value == "show"
            return f"reasoning {'shown' if self.show_reasoning else 'hidden'}"
        if key == "json":
            if value not in SWITCH:
                raise InvalidSetting("json takes on or off", key, value)
            self.json_replies = SWITCH[value]
            return "replies are JSON objects" if self.json_replies else "replies are free text"
        if key == "loop-guard":
            if value not in SWITCH:
                raise InvalidSetting("loop-guard takes on or off", key, value)
            self.options = replace(self.options, loop_guard=SWITCH[value])
            return f"loop-guard = {value}"
        if key not in SAMPLING_KEYS and key not in OPTION_FIELDS:
            raise InvalidSetting(f"unknown setting {key!r}; the settings are {', '.join(SETTINGS)}", key, value)
        flag = next(flag for flag in MODEL_FLAGS if flag.dest == key.replace("-", "_"))
        assert flag.parse is not None, "every chat setting is a flag with a value"
        try:
            parsed = flag.parse(value)
        except ValueError as error:
            raise InvalidSetting(f"{key} {value}: {error}", key, value) from None
        if key in SAMPLING_KEYS:
            sampling = replace(self.options.sampling, **{key.replace("-", "_"): parsed})
            self.options = replace(self.options, sampling=sampling)
        else:
            self.options = replace(self.options, **{OPTION_FIELDS[key]: parsed})
        return f"{key} = {parsed}"
