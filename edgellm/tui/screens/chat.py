"""The chat: the conversation streamed as Markdown, the history beside it, the status line under it.

Every turn is the chat session's: this screen sends, stops and shows. A thread iterates the turn and
posts the reply in batches (never one UI call per token, never waiting on the UI). While a model loads, its progress
is drawn as a bar (after a second: a quick load shows none), and a message sent meanwhile waits for it. Images go with
the next message: attached by their path (Ctrl+O) or by pasting one, shown above the message box until it is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from edgellm.errors import EdgellmError, ImageRefused
from edgellm.events import Notice
from edgellm.media.images import Image
from edgellm.session.events import AnswerPiece, ReasoningPiece, ReplyDone, Timings
from edgellm.tui.clipboard import code_blocks, copy
from edgellm.tui.messages import (
    ModelLoadFailed,
    ModelLoading,
    ModelReady,
    OpenerProgress,
    ReplyFinished,
    ReplyNotice,
    ReplyPieces,
    ResumeConversation,
)
from edgellm.tui.widgets.attach import AttachedImage, AttachedImages, AttachField
from edgellm.tui.widgets.conversations import ConversationList
from edgellm.tui.widgets.loadbar import LoadBar
from edgellm.tui.widgets.message import ChatMessage, reply_meta
from edgellm.tui.widgets.modebar import ModeBar
from edgellm.tui.widgets.prompt import PromptInput
from edgellm.tui.widgets.status import StatusLine, status_text
from edgellm.tui.words import explain, told

if TYPE_CHECKING:
    from textual import getters

    from edgellm.session.chat import ChatSession, Turn
    from edgellm.session.history import Conversation, SavedMessage
    from edgellm.session.opening import PlannedModel
    from edgellm.tui.base import EdgellmApp

BATCH_S = 0.1  # reply text reaches the screen at most this often (the first piece at once)
LOAD_BAR_AFTER_S = 1.0  # a load's bar is drawn once it has taken this long (a download's at once)
WAITING = "sending when the model is loaded"
SIDEBAR_MIN_WIDTH = 100  # below this terminal width the history starts hidden


class TurnFailed(Message):
    """The turn could not run (the message does not fit the context, the template refused it)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class ChatScreen(Screen[None]):
    """The conversation with the loaded model."""

    if TYPE_CHECKING:
        app = getters.app(EdgellmApp)  # for the type checker only: the app is edgellm's

    DEFAULT_CSS = """
    ChatScreen #chat-body { height: 1fr; }
    ChatScreen #chat-main { width: 1fr; }
    ChatScreen #messages { height: 1fr; padding: 0 1; }
    ChatScreen .notice { color: $warning; margin: 0 0 1 0; }
    ChatScreen .note { color: $text-muted; margin: 0 0 1 0; }
    ChatScreen #editing { height: 1; color: $warning; padding: 0 1; display: none; }
    """

    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new", "New"),
        Binding("ctrl+r", "regenerate", "Retry"),
        Binding("ctrl+e", "edit_last", "Edit", priority=True),
        Binding("ctrl+o", "attach", "Attach image", show=False),
        Binding("ctrl+y", "copy_reply", "Copy", priority=True, show=False),
        Binding("ctrl+k", "copy_code", "Copy code", priority=True, show=False),
        Binding("ctrl+s", "settings", "Settings"),
        Binding("ctrl+b", "toggle_history", "History", show=False),
        Binding("f6", "rename", "Rename", show=False, priority=True),
        Binding("f7", "search", "Search", show=False, priority=True),
        Binding("delete", "delete_conversation", "Delete", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.session: ChatSession | None = None
        self.planned: PlannedModel | None = None
        self.reply: ChatMessage | None = None  # the reply being streamed
        self._sent = ""  # the last message sent, put back in the box if its turn fails
        self._sent_images: tuple[Image, ...] = ()  # and its images, attached again
        self.attached: list[Image] = []  # the images that go with the next message
        self.editing = False
        self.state = ""
        self.timings: Timings | None = None
        self.context_used: int | None = None
        self.loading_model: str | None = None  # the model being loaded, as the status line names it
        self._loading_since = 0.0
        self._released: ChatSession | None = None  # the session let go of for the load (kept if planning fails)
        self.waiting: str | None = None  # a message sent during the load, sent once the model is ready

    def compose(self) -> ComposeResult:
        yield Header()
        yield ModeBar("chat")
        with Horizontal(id="chat-body"):
            yield ConversationList()
            with Vertical(id="chat-main"):
                yield LoadBar(id="load-progress")
                yield VerticalScroll(id="messages")
                yield Static("editing the last message: Enter sends it, Esc leaves it as it was", id="editing")
                yield AttachField(id="attach")
                yield AttachedImages(id="attached")
                yield PromptInput(id="prompt")
                yield StatusLine(id="status", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ConversationList).display = self.app.size.width >= SIDEBAR_MIN_WIDTH
        app_session = getattr(self.app, "session", None)
        if app_session is not None and self.session is None:
            self._use_session(app_session, getattr(self.app, "planned", None))
        self._show_status()
        self.query_one(PromptInput).focus()

    # the model

    def on_model_loading(self, message: ModelLoading) -> None:
        # the app let go of the model in use: nothing is sent until the next model is ready
        self._released = self.session or self._released
        self.session, self.planned, self.timings, self.context_used = None, None, None, None
        self._leave_editing()
        self.loading_model = Path(message.model).name or "the model"
        self._loading_since = time.monotonic()
        self.state = f"loading {self.loading_model}…"
        self._show_status()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.planned, self.state, self.loading_model, self._released = None, "", None, None
        self.query_one(LoadBar).hide()
        self._clear_messages()
        self._give_back_waiting()
        self._show_status()

    def on_opener_progress(self, message: OpenerProgress) -> None:
        """A download's bar at once; a load's once the load has taken LOAD_BAR_AFTER_S (a quick one shows none)."""
        progress = message.progress
        bar = self.query_one(LoadBar)
        if progress.finished:
            bar.hide()
        elif progress.task != "load" or time.monotonic() - self._loading_since >= LOAD_BAR_AFTER_S:
            name = self.loading_model or "the model"
            bar.show(progress, f"{'Loading' if progress.task == 'load' else 'Downloading'} {name} …")

    async def on_model_ready(self, message: ModelReady) -> None:
        kept = message.session is self._released and self.loading_model is not None  # planning failed: the old model
        self._use_session(message.session, message.planned)
        if kept:
            self._give_back_waiting()  # it was written for the model asked for: the person sends it again
        elif self.waiting is not None:
            text, self.waiting = self.waiting, None
            await self._send(text)

    def _use_session(self, session: ChatSession, planned: PlannedModel | None) -> None:
        self.session, self.planned, self.loading_model, self._released = session, planned, None, None
        self.state, self.timings, self.context_used = "", None, None
        self._leave_editing()
        self.query_one(LoadBar).hide()
        self._clear_messages()
        for notice in [*(planned.notices if planned else []), *session.opening_notices()]:
            self._mount_notice(notice)
        self._show_status()
        self._refresh_history()
        self.query_one(PromptInput).focus()

    def _give_back_waiting(self) -> None:
        """The message that waited for a load that did not bring its model: back in the box, nothing typed lost."""
        if self.waiting is None:
            return
        prompt = self.query_one(PromptInput)
        if not prompt.text:
            prompt.text = self.waiting
        self.waiting = None

    def on_resume_conversation(self, message: ResumeConversation) -> None:
        self._open_conversation(message.conversation_id)

    # sending and streaming

    async def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        text = event.text
        if not text.strip() and not self.attached:
            return
        if self.session is None and self.loading_model is not None:
            self._wait_for_model(text)
            return
        await self._send(text)

    def _wait_for_model(self, text: str) -> None:
        """A message sent while the model loads: shown, and sent once the model is ready."""
        if self.waiting is not None:
            self.app.notify(f"a message is waiting already: {WAITING}", severity="warning")
            return
        self.waiting = text
        self.query_one(PromptInput).clear()
        self._mount(ChatMessage("user", text, images=self.attached))
        self._show_status()

    async def _send(self, text: str) -> None:
        session = self._ready()
        if session is None:
            return
        editing = self.editing
        attached = () if editing else tuple(self.attached)  # an edited message keeps the images it had
        self._sent, self._sent_images = text, attached
        try:
            turn = session.edit_last(text) if editing else session.send(text, attached)
        except EdgellmError as error:
            if not self.query_one(PromptInput).text:
                self.query_one(PromptInput).text = text  # a message that waited for the model: nothing is lost
            self.app.show_error(error)
            return
        prompt = self.query_one(PromptInput)
        if prompt.text == text:
            prompt.clear()
        self._leave_editing()
        images = turn.images
        if editing:
            self._remove_from_last_user()
        if attached:
            self.attached.clear()
            await self._show_attached()
        await self._show_reply(turn, ChatMessage("user", text, images=images))

    async def _show_reply(self, turn: Turn, *before: ChatMessage) -> None:
        """The reply's place on screen (after `before`), then the turn on a thread. The model starts once these are
        mounted and drawn: on a small machine, layout work beside the prompt's evaluation slows both (measured: the
        messages composed while the prompt was read cost the UI thread ~45 ms of a core then, TTFT +40%)."""
        self.reply = ChatMessage("assistant")
        self.state = "writing… (Esc stops)"
        self._show_status()
        self.query_one(PromptInput).cursor_blink = False  # a steady cursor while the reply streams: no redraws
        await self.query_one("#messages").mount_all([*before, self.reply])
        self._follow()
        self.call_after_refresh(self._run_turn, turn)

    @work(thread=True, group="reply", exit_on_error=False)
    def _run_turn(self, turn: Turn) -> None:
        answer: list[str] = []
        reasoning: list[str] = []
        flushed_at: float | None = None
        finished: ReplyFinished | None = None

        def flush() -> None:
            nonlocal flushed_at
            if answer or reasoning:
                self.post_message(ReplyPieces("".join(answer), "".join(reasoning)))
                answer.clear()
                reasoning.clear()
            flushed_at = time.monotonic()

        try:
            with turn:
                for event in turn:
                    if isinstance(event, AnswerPiece):
                        answer.append(event.text)
                    elif isinstance(event, ReasoningPiece):
                        reasoning.append(event.text)
                    elif isinstance(event, Notice):
                        flush()
                        self.post_message(ReplyNotice(event))
                    elif isinstance(event, ReplyDone):
                        flush()
                        finished = ReplyFinished(event.reply)  # posted once the turn is over: Enter then works
                        continue
                    if flushed_at is None or time.monotonic() - flushed_at >= BATCH_S:
                        flush()
        except Exception as error:
            self.post_message(TurnFailed(error))
            return
        if finished is not None:
            self.post_message(finished)

    async def on_reply_pieces(self, message: ReplyPieces) -> None:
        if self.reply is not None and self.is_attached:
            await self.reply.append(message.answer, message.reasoning)

    def on_chat_message_grew(self, message: ChatMessage.Grew) -> None:
        self._follow()  # only when the reply took another line: a redraw in place needs no scroll

    def on_reply_notice(self, message: ReplyNotice) -> None:
        self._mount_notice(message.notice, before=self.reply)

    async def on_reply_finished(self, message: ReplyFinished) -> None:
        if not self.is_attached:  # the app is closing: the reply is saved already
            return
        reply = message.reply
        timings = reply.timings()
        if self.reply is not None:
            await self.reply.finish(
                reply.content, reply.reasoning, interrupted=reply.interrupted, meta=reply_meta(timings)
            )
        self.reply = None
        self.query_one(PromptInput).cursor_blink = True
        self.timings, self.context_used = timings, reply.context_used
        self.state = "stopped" if reply.interrupted else ""
        self._show_status()
        self._refresh_history()
        self._follow()

    def on_turn_failed(self, message: TurnFailed) -> None:
        """The screen shows the conversation as the session kept it, and the message is back in the box."""
        self.reply, self.state = None, ""
        self._clear_messages()
        for entry in self.session.entries if self.session is not None else []:
            self._mount(ChatMessage(entry.role, entry.content, entry.reasoning, images=entry.images))
        prompt = self.query_one(PromptInput)
        prompt.cursor_blink = True
        if self._sent and not prompt.text:
            prompt.text = self._sent
        if self._sent_images and not self.attached:
            self.attached.extend(self._sent_images)
            self.call_later(self._show_attached)
        self._show_status()
        self.app.show_error(message.error)

    # actions

    def action_stop(self) -> None:
        if self.session is not None and self.session.busy:
            self.session.cancel()
        elif self.editing:
            self._leave_editing()
            self.query_one(PromptInput).clear()

    def stop_work(self) -> None:
        """The app is quitting: stop the reply being written."""
        if self.session is not None:
            self.session.cancel()

    def action_new(self) -> None:
        session = self._ready()
        if session is None:
            return
        try:
            session.new()
        except EdgellmError as error:
            self.app.show_error(error)
            return
        self._leave_editing()
        self._clear_messages()
        self.timings, self.context_used = None, None
        for notice in session.opening_notices():
            self._mount_notice(notice)
        self._show_status()
        self._refresh_history()
        self.query_one(PromptInput).focus()

    async def action_regenerate(self) -> None:
        session = self._ready()
        if session is None:
            return
        try:
            turn = session.regenerate()
        except EdgellmError as error:
            self.app.show_error(error)
            return
        replies = self._messages("assistant")
        if replies:
            self._remove_from(replies[-1])
        await self._show_reply(turn)

    def action_edit_last(self) -> None:
        users = self._messages("user")
        if self._ready() is None or not users:
            self.app.notify("there is no message to edit yet", severity="warning")
            return
        prompt = self.query_one(PromptInput)
        prompt.text = users[-1].content
        prompt.move_cursor(prompt.document.end)
        self.editing = True
        self.query_one("#editing").display = True
        prompt.focus()

    def action_attach(self) -> None:
        """The path field, for an image to go with the next message (a model that reads text only says so)."""
        if self._can_attach():
            self.query_one(AttachField).open()

    async def on_attach_field_chosen(self, event: AttachField.Chosen) -> None:
        if await self._attach_image(event.path):
            event.field.close()
            self.query_one(PromptInput).focus()

    def on_attach_field_cancelled(self, event: AttachField.Cancelled) -> None:
        self.query_one(AttachField).close()
        self.query_one(PromptInput).focus()

    async def on_prompt_input_path_pasted(self, event: PromptInput.PathPasted) -> None:
        """A pasted image path attaches the image; when this model cannot take one, it is typed in as pasted."""
        if self.session is not None and self.session.vision:
            await self._attach_image(event.path)
            return
        event.prompt.insert(event.text)
        if self.session is not None:
            self._can_attach()  # says the model reads text only, and the way out

    async def on_prompt_input_empty_backspace(self, event: PromptInput.EmptyBackspace) -> None:
        if self.attached:
            self.attached.pop()
            await self._show_attached()

    async def on_attached_image_removed(self, event: AttachedImage.Removed) -> None:
        if 0 <= event.index < len(self.attached):
            del self.attached[event.index]
            await self._show_attached()

    def _can_attach(self) -> bool:
        """Whether the model takes images; else a notice of why not and the way out."""
        if self.session is None:
            self._ready()  # says why there is no model
            return False
        if not self.session.vision:
            self.app.notify(explain(self.session.text_only()), severity="warning", timeout=8)
            return False
        return True

    async def _attach_image(self, path: Path) -> bool:
        """Read and check the image at `path` and attach it; a refused one is a notice. Whether it was attached."""
        if not self._can_attach():
            return False
        assert self.session is not None  # _can_attach said there is one
        try:
            image = self.session.read_image(path)
        except ImageRefused as error:
            self.app.notify(explain(error), severity="error", timeout=8)
            return False
        if any(attached.digest == image.digest for attached in self.attached):
            self.app.notify(f"{image.name} is attached already", severity="warning")
            return True
        self.attached.append(image)
        await self._show_attached()
        return True

    async def _show_attached(self) -> None:
        await self.query_one(AttachedImages).show(self.attached)

    def action_copy_reply(self) -> None:
        message = self._chosen_reply()
        if message is None:
            self.app.notify("no reply to copy yet", severity="warning")
            return
        self.app.notify(f"copied the reply to the {copy(self.app, message.content)}")

    def action_copy_code(self) -> None:
        message = self._chosen_reply()
        blocks = code_blocks(message.content) if message is not None else []
        if not blocks:
            self.app.notify("no code block in the reply", severity="warning")
            return
        self.app.notify(f"copied the code block to the {copy(self.app, blocks[-1])}")

    def action_settings(self) -> None:
        from edgellm.tui.screens.settings import SettingsScreen

        session = self._ready()
        if session is not None:

            def applied(done: bool | None) -> None:
                if done:
                    self.app.notify("settings applied to this conversation")

            self.app.push_screen(SettingsScreen(session), applied)

    def action_toggle_history(self) -> None:
        sidebar = self.query_one(ConversationList)
        sidebar.display = not sidebar.display
        if sidebar.display:
            self._refresh_history()

    def action_rename(self) -> None:
        from edgellm.tui.screens.dialogs import AskText

        session = self._ready()
        if session is None:
            return

        def rename(title: str | None) -> None:
            if title is None:
                return
            try:
                session.rename(title)
            except EdgellmError as error:
                self.app.show_error(error)
                return
            self._refresh_history()

        current = next((c.title for c in self._conversations() if c.id == session.conversation_id), "")
        self.app.push_screen(AskText("Title of this conversation", current), rename)

    def action_search(self) -> None:
        sidebar = self.query_one(ConversationList)
        sidebar.display = True
        sidebar.query_one("#history-search").focus()

    def action_delete_conversation(self) -> None:
        from edgellm.tui.screens.dialogs import Confirm

        session = self._ready()
        sidebar = self.query_one(ConversationList)
        chosen = sidebar.highlighted if sidebar.display else None
        if session is None or chosen is None:
            self.app.notify("choose a conversation in the history first (Ctrl+B shows it)", severity="warning")
            return

        def delete(yes: bool | None) -> None:
            if not yes:
                return
            try:
                session.delete(chosen.id)
            except EdgellmError as error:
                self.app.show_error(error)
                return
            if session.conversation_id is None and not session.entries:
                self._clear_messages()
            self._refresh_history()

        self.app.push_screen(Confirm(f"Delete “{chosen.title or 'untitled'}” and its messages?"), delete)

    def commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        """This screen's actions for the command palette."""
        return [
            ("Chat: stop the reply", "stop generating, keeping what was written (Esc)", self.action_stop),
            ("Chat: new conversation", "start over; the old one stays in the history (Ctrl+N)", self.action_new),
            ("Chat: answer again", "regenerate the last reply (Ctrl+R)", self.action_regenerate),
            ("Chat: edit the last message", "change it and get a new answer (Ctrl+E)", self.action_edit_last),
            (
                "Chat: attach an image",
                "to the next message: its path, or paste one in the box (Ctrl+O)",
                self.action_attach,
            ),
            ("Chat: copy the reply", "to the clipboard (Ctrl+Y)", self.action_copy_reply),
            ("Chat: copy the code block", "the reply's last code block (Ctrl+K)", self.action_copy_code),
            ("Chat: settings", "system prompt and sampling for this conversation (Ctrl+S)", self.action_settings),
            ("Chat: show or hide the history", "the saved conversations (Ctrl+B)", self.action_toggle_history),
            ("Chat: rename the conversation", "give it a title (F6)", self.action_rename),
            ("Chat: search the history", "find a conversation by its text (F7)", self.action_search),
            ("Chat: delete the conversation", "the one chosen in the history (Del)", self.action_delete_conversation),
        ]

    # the history sidebar

    def on_conversation_list_chosen(self, message: ConversationList.Chosen) -> None:
        self._open_conversation(message.conversation_id)

    def on_conversation_list_searched(self, message: ConversationList.Searched) -> None:
        session = self._ready(quiet=True)
        if session is None:
            return
        try:
            found = session.search(message.text) if message.text.strip() else session.conversations()
        except EdgellmError as error:
            self.app.show_error(error)
            return
        self.query_one(ConversationList).show(found, session.conversation_id)

    def _open_conversation(self, conversation_id: int) -> None:
        session = self._ready()
        if session is None:
            return
        try:
            saved = session.load(conversation_id)
        except EdgellmError as error:
            self.app.show_error(error)
            return
        self._leave_editing()
        self._show_saved(saved)
        self._refresh_history()
        self.query_one(PromptInput).focus()

    def _show_saved(self, saved: list[SavedMessage]) -> None:
        self._clear_messages()
        last = None
        for message in saved:
            if message.role == "system":
                continue
            timings = message.timings or Timings()
            meta = reply_meta(timings, message.interrupted) if message.role == "assistant" else ""
            self._mount(
                ChatMessage(
                    message.role,
                    message.content,
                    message.reasoning,
                    interrupted=message.interrupted,
                    meta=meta,
                    images=message.images,
                    images_lost=message.images_lost,
                )
            )
            last = message.timings if message.role == "assistant" and message.timings else last
        self.timings = last
        self.context_used = last.context_used if last else None
        self._show_status()

    def _conversations(self) -> list[Conversation]:
        if self.session is None:
            return []
        try:
            return self.session.conversations()
        except EdgellmError:
            return []

    def _refresh_history(self) -> None:
        if self.session is None:
            return
        sidebar = self.query_one(ConversationList)
        sidebar.show(self._conversations(), self.session.conversation_id)

    # helpers

    def _ready(self, quiet: bool = False) -> ChatSession | None:
        """The session, when a model is loaded and no reply is being written; else a notice and None."""
        if self.session is None:
            if not quiet:
                self.app.notify(
                    "a model is being loaded: a moment"
                    if getattr(self.app, "loading_model", False)
                    else "no model loaded yet: choose one on Home (F2) or Models (F3)",
                    severity="warning",
                )
            return None
        if self.session.busy:
            if not quiet:
                self.app.notify("a reply is still being written: Esc stops it", severity="warning")
            return None
        return self.session

    def _messages(self, role: str | None = None) -> list[ChatMessage]:
        return [m for m in self.query_one("#messages").query(ChatMessage) if role is None or m.role == role]

    def _chosen_reply(self) -> ChatMessage | None:
        focused = self.focused
        if isinstance(focused, ChatMessage) and focused.role == "assistant":
            return focused
        replies = [m for m in self._messages("assistant") if m.content]
        return replies[-1] if replies else None

    def _mount(self, widget: ChatMessage) -> None:
        self.query_one("#messages").mount(widget)
        self._follow()

    def _mount_notice(self, notice: Notice, before: ChatMessage | None = None) -> None:
        line = Static(told(notice), classes="notice" if notice.kind == "warning" else "note", markup=False)
        self.query_one("#messages").mount(line, before=before)

    def _follow(self) -> None:
        self.query_one("#messages").scroll_end(animate=False, immediate=False)

    def _remove_from(self, first: ChatMessage) -> None:
        """Remove `first` and everything shown after it."""
        children = list(self.query_one("#messages").children)
        for child in children[children.index(first) :]:
            child.remove()

    def _remove_from_last_user(self) -> None:
        users = self._messages("user")
        if users:
            self._remove_from(users[-1])

    def _clear_messages(self) -> None:
        self.query_one("#messages").remove_children()
        self.reply = None

    def _leave_editing(self) -> None:
        self.editing = False
        self.query_one("#editing").display = False

    def _show_status(self) -> None:
        planned = self.planned
        model = (
            Path(str(planned.choice.path)).name
            if planned
            else (Path(self.session.model_name).name if self.session else None)
        )
        settings = planned.params if planned else None
        split = planned.split if planned else None
        on_workers = (split.layers_on_workers, split.workers) if split else None
        state = f"{self.state} · {WAITING}" if self.waiting is not None and self.state else self.state
        self.query_one(StatusLine).update(
            status_text(
                model,
                settings.n_gpu_layers if settings else None,
                planned.choice.spec.n_layers if planned else None,
                self.context_used,
                settings.n_ctx if settings else None,
                self.timings,
                state,
                on_workers,
            ),
            layout=False,  # one line high whatever it says: a redraw, never a layout
        )
