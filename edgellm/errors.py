"""Typed errors: each names the problem and carries its data, so a front end can tell them apart by type and word
the way out in its own terms.

`EdgellmError` is every failure edgellm expects and explains, as opposed to a bug: bad input, a model that does not
fit, a Hub that does not answer, llama.cpp failing. Its message says the problem plainly; an error whose way out is a
setting carries a `Reason` (edgellm.words), and `explain(terms)` words it in a front end's terms: the command line
names the flag (`-c 2048`), the TUI its setting, the server the request field. The CLI prints `edgellm: error:
<explanation>` and exits with `exit_code`. No code tells errors apart by matching their text.
"""

from __future__ import annotations

import threading
from pathlib import Path

from edgellm.reasons import Reason, reason
from edgellm.words import PLAIN, Terms, say


class EdgellmError(Exception):
    """A failure edgellm explains: its message, and (when its way out is a setting) the `reason` behind it. Bad input
    or an impossible request: exit 2."""

    exit_code = 2

    def __init__(self, message: str | Reason) -> None:
        self.reason = message if isinstance(message, Reason) else None
        super().__init__(say(message) if isinstance(message, Reason) else message)

    def explain(self, terms: Terms = PLAIN) -> str:
        """The problem and its way out in `terms`."""
        return say(self.reason, terms) if self.reason is not None else str(self)

    def as_reason(self) -> Reason:
        """The error as a reason, to be said inside another (its text when it has no reason of its own)."""
        return self.reason if self.reason is not None else reason("text", text=str(self))


class EngineFailed(EdgellmError):
    """llama.cpp failed while it ran a model that had loaded (a decode error, a GPU out of memory): not bad input,
    so exit 1."""

    exit_code = 1


class GrammarInvalid(EdgellmError):
    """A grammar (GBNF, or one built from a JSON schema) that llama.cpp's grammar parser refuses."""


class GrammarDeadEnd(EdgellmError):
    """A grammar that admits no token at some point of a reply: that reply ends with this error (llama.cpp itself
    would stop the process); the engine goes on with the next request."""


class EngineUnavailable(EdgellmError):
    """llama.cpp cannot be used as installed: the llama-cpp-python release differs from the one edgellm is written
    for (`installed`, `expected`)."""

    def __init__(self, message: str, installed: str, expected: str) -> None:
        super().__init__(message)
        self.installed, self.expected = installed, expected


class Cancelled(EdgellmError):
    """Long work (a download, a conversion) stopped on request; a download keeps its partial file to resume."""


def check_cancel(cancel: threading.Event | None, what: str) -> None:
    """Raise Cancelled when `cancel` is set: how a front end stops long work running on another thread."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{what} stopped")


class ModelFileError(EdgellmError):
    """A model file (or checkpoint) that cannot be used. `problem`: missing, directory, permission, truncated,
    incomplete, shards, not-gguf, not-folder, corrupt, unreadable, unsupported or ambiguous."""

    def __init__(self, message: str, path: Path | str, problem: str, way_out: str | None = None) -> None:
        super().__init__(message)
        self.path, self.problem, self.way_out = Path(path), problem, way_out

    def explain(self, terms: Terms = PLAIN) -> str:
        """The message, and the way out it names (`way_out`, a `Terms.way` name: a GGUF file that cannot be used)."""
        return f"{self}; {terms.way(self.way_out)}" if self.way_out else str(self)


class DoesNotFit(EdgellmError):
    """The model (`model`: its path or repo) or the settings asked for do not fit the machine; the reason says what
    was asked, what it needs and the nearest setting that would fit."""

    def __init__(self, reason: str | Reason, model: str | None = None) -> None:
        super().__init__(reason)
        self.model = model


class DraftIncompatible(EdgellmError):
    """A draft model that cannot draft for the model (`why`: the first difference in their vocabularies)."""

    def __init__(self, message: str | Reason, draft: Path, model: Path, why: str) -> None:
        super().__init__(message)
        self.draft, self.model, self.why = draft, model, why


class NoModel(EdgellmError):
    """No model was named and none in the store fits."""


class LoadFailed(EdgellmError):
    """llama.cpp could not load the model. `cause`: memory, architecture or other."""

    def __init__(self, message: str | Reason, path: Path, cause: str) -> None:
        super().__init__(message)
        self.path, self.cause = path, cause


class HubError(EdgellmError):
    """The Hub answered with an error for `repo`."""

    def __init__(self, message: str | Reason, repo: str) -> None:
        super().__init__(message)
        self.repo = repo


class HubUnreachable(HubError):
    """The Hub (or the mirror in HF_ENDPOINT) could not be reached: a network error, worth a retry."""

    def __init__(self, message: str | Reason, repo: str, endpoint: str) -> None:
        super().__init__(message, repo)
        self.endpoint = endpoint


class RepoNotFound(HubError):
    """No such repo, or a private one without a token."""


class GatedRepo(HubError):
    """A repo whose licence must be accepted, and a token that may read it."""


class NoSuchQuant(HubError):
    """The repo has no file of the quant asked for (or none edgellm may choose); `available` lists what it has."""

    def __init__(self, message: str, repo: str, quant: str | None, available: list[str]) -> None:
        super().__init__(message, repo)
        self.quant, self.available = quant, available


class OfflineMode(EdgellmError):
    """The model is not stored and offline mode forbids fetching it."""


class DiskError(EdgellmError):
    """Writing to this machine's disk failed (full, read-only, no permission)."""

    def __init__(self, message: str | Reason, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ContextOverflow(EdgellmError):
    """A message (or prompt) does not fit the context: `needed` tokens where `available` are left."""

    def __init__(self, message: str | Reason, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed, self.available = needed, available


class InputTooLong(EdgellmError):
    """A text to embed that does not fit the embedding context, and may not be truncated: input `index` (from 0) is
    `tokens` tokens where the context holds `context`."""

    def __init__(self, message: str | Reason, index: int, tokens: int, context: int) -> None:
        super().__init__(message)
        self.index, self.tokens, self.context = index, tokens, context


class UnknownToken(EdgellmError):
    """A token id outside the model's vocabulary (sent by a client, as Ollama's `context`): llama.cpp would abort."""

    def __init__(self, token: int, n_vocab: int) -> None:
        super().__init__(f"token {token} is not in this model's vocabulary of {n_vocab} tokens")
        self.token, self.n_vocab = token, n_vocab


class EmptyPrompt(EdgellmError):
    """A prompt with no tokens at all (an empty text on a model that adds no BOS): nothing to continue from."""


class TemplateRefused(EdgellmError):
    """The model's chat template refused the conversation (a role it does not support, an order it forbids)."""


class InvalidSetting(EdgellmError):
    """A chat setting with an unknown key or a bad value."""

    def __init__(self, message: str, key: str, value: str | None = None) -> None:
        super().__init__(message)
        self.key, self.value = key, value


class HistoryUnavailable(EdgellmError):
    """The history database cannot be used (corrupt, newer schema, history off, or `disk_problem`: the disk holding
    it is full or read-only, the database itself may be fine)."""

    def __init__(self, message: str, disk_problem: str | None = None) -> None:
        super().__init__(message)
        self.disk_problem = disk_problem


class NoSuchConversation(EdgellmError):
    """No saved conversation has this id."""

    def __init__(self, message: str, conversation_id: int) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id


class WorkerUnreachable(EdgellmError):
    """An RPC worker that cannot be used: it does not answer, speaks another protocol version, or went away."""

    def __init__(self, message: str | Reason, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class WorkerLost(EdgellmError):
    """A worker went away (or the network went silent) while a split model ran: the reply ends, what was shown
    stays. Not bad input: exit 1."""

    exit_code = 1

    def __init__(self, message: str, endpoints: list[str]) -> None:
        super().__init__(message)
        self.endpoints = endpoints


class LoadTimedOut(EdgellmError):
    """A model load that made no progress for `seconds` (--load-timeout): stopped, naming the file (`path`) and the
    device it was loading onto (`device`)."""

    def __init__(self, message: str | Reason, path: Path, device: str, seconds: float) -> None:
        super().__init__(message)
        self.path, self.device, self.seconds = path, device, seconds


class NotEnoughMemory(EdgellmError):
    """The memory a model needs (`needed` bytes on `device`) is more than is free there now (`free` bytes): said before
    llama.cpp is asked to load it."""

    def __init__(self, message: str | Reason, needed: int, free: int, device: str) -> None:
        super().__init__(message)
        self.needed, self.free, self.device = needed, free, device


class ImageRefused(EdgellmError):
    """An image that cannot be read (`problem`: missing, unreadable, not-image, format, truncated, too-large,
    empty, remote, url), named by `source` (a path, a URL's scheme, "image 2 of the request")."""

    def __init__(self, message: str | Reason, source: str, problem: str) -> None:
        super().__init__(message)
        self.source, self.problem = source, problem


class NoVision(EdgellmError):
    """Images were sent to a model that reads text only (`model`: its file name), or a projector that does not belong
    to the model (`projector`, `why`)."""

    def __init__(self, message: str | Reason, model: str, projector: str = "", why: str = "") -> None:
        super().__init__(message)
        self.model, self.projector, self.why = model, projector, why
