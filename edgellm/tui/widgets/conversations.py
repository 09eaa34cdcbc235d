"""The history sidebar: the saved conversations, newest first, with a search box."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView

if TYPE_CHECKING:
    from edgellm.session.history import Conversation


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        when = time.strftime("%b %d %H:%M", time.localtime(conversation.updated))
        super().__init__(Label(Text.assemble(conversation.title or "untitled", "\n", (when, "dim"))))
        self.conversation = conversation


class ConversationList(Vertical):
    """Search box and list; posts Chosen when a conversation is picked."""

    DEFAULT_CSS = """
    ConversationList { width: 30; border-right: solid $panel-lighten-1; }
    ConversationList Input { margin: 0; }
    ConversationList ListView { height: 1fr; }
    ConversationList .title { text-style: bold; padding: 0 1; }
    ConversationList ListItem { padding: 0 1; }
    """

    class Chosen(Message):
        def __init__(self, conversation_id: int) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class Searched(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        yield Label("History", classes="title")
        yield Input(placeholder="search (F7)", id="history-search")
        yield ListView(id="history-list")

    def show(self, conversations: list[Conversation], current: int | None) -> None:
        listing = self.query_one(ListView)
        listing.clear()
        items = [ConversationItem(conversation) for conversation in conversations]
        listing.extend(items)
        for index, item in enumerate(items):
            if item.conversation.id == current:
                listing.index = index

    @property
    def highlighted(self) -> Conversation | None:
        item = self.query_one(ListView).highlighted_child
        return item.conversation if isinstance(item, ConversationItem) else None

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, ConversationItem):
            self.post_message(self.Chosen(event.item.conversation.id))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Searched(event.value))
