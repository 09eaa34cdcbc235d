"""Typed messages that workers post to the screens: batches of a reply, progress, a loaded model, an error.

Those the app sends to every screen do not bubble, so they never come back up to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from edgellm.events import Notice, Progress

if TYPE_CHECKING:
    from edgellm.session.chat import ChatSession
    from edgellm.session.events import Reply
    from edgellm.session.opening import PlannedModel


class ReplyPieces(Message):
    """Text of the reply produced since the last batch (posted at most every few tens of milliseconds)."""

    def __init__(self, answer: str, reasoning: str) -> None:
        super().__init__()
        self.answer, self.reasoning = answer, reasoning


class ReplyNotice(Message):
    """A notice met during a turn (old turns left out, the loop guard, a history write that failed)."""

    def __init__(self, notice: Notice) -> None:
        super().__init__()
        self.notice = notice


class ReplyFinished(Message):
    """The turn is over: the whole reply with its timings (interrupted when stopped early)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply


class ProgressUpdate(Message, bubble=False):
    """How far a download or a conversion is; a newer update of the same task replaces one not yet handled."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ProgressUpdate) and message.progress.task == self.progress.task


class OpenerProgress(ProgressUpdate, bubble=False):
    """Progress of the model opener (a -hf model pulled before it loads), drawn by the chat."""


class WorkNotice(Message):
    """A notice from long work (a download, a conversion, the model opener)."""

    def __init__(self, notice: Notice) -> None:
        super().__init__()
        self.notice = notice


class ChatWith(Message):
    """Ask the app to load a model (a path or a store name) and open the chat on it."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model


class ChooseRemote(Message):
    """Ask the models screen to plan a Hub model (owner/repo[:QUANT]) and offer its download."""

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref


class ModelLoading(Message, bubble=False):
    """A model is being planned and loaded (the chat shows it in its status line)."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model


class ModelReady(Message, bubble=False):
    """A model is loaded and its chat session made."""

    def __init__(self, session: ChatSession, planned: PlannedModel) -> None:
        super().__init__()
        self.session, self.planned = session, planned


class ModelLoadFailed(Message, bubble=False):
    """The model could not be planned or loaded; the chat has none (the error is shown by the app)."""


class StoreChanged(Message, bubble=False):
    """The model store changed (a download or a conversion finished, a model was removed): lists refresh."""


class ResumeConversation(Message):
    """Open a saved conversation (edgellm chat --resume ID)."""

    def __init__(self, conversation_id: int) -> None:
        super().__init__()
        self.conversation_id = conversation_id
