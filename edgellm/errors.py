"""Typed errors: each names the problem and carries its data, so a front end can tell them apart by type.

Every one is a EdgellmError: the CLI prints `edgellm: error: <message>` (the message words the way out in
command-line terms) and exits 2; a TUI or the server reads the fields and offers its own way out.
No code tells errors apart by matching their text.
"""

from __future__ import annotations

from pathlib import Path


class EdgellmError(Exception):
    """Bad input or an impossible request; the CLI prints `edgellm: error: <message>` and exits 2."""

    exit_code = 2


class EngineFailed(EdgellmError):
    """llama.cpp failed while it ran a model that had loaded (a decode error, a GPU out of memory): not bad input,
    so exit 1."""

    exit_code = 1


class EngineUnavailable(EdgellmError):
    """llama.cpp cannot be used as installed: the llama-cpp-python release differs from the one edgellm is written
    for (`installed`, `expected`)."""

    def __init__(self, message: str, installed: str, expected: str) -> None:
        super().__init__(message)
        self.installed, self.expected = installed, expected


class Cancelled(EdgellmError):
    """Long work (a download, a conversion) stopped on request; a download keeps its partial file to resume."""


class ModelFileError(EdgellmError):
    """A model file (or checkpoint) that cannot be used. `problem`: missing, directory, permission, truncated,
    incomplete, shards, not-gguf, not-folder, corrupt, unreadable, unsupported or ambiguous."""

    def __init__(self, message: str, path: Path | str, problem: str) -> None:
        super().__init__(message)
        self.path, self.problem = Path(path), problem


class DoesNotFit(EdgellmError):
    """The model or the settings asked for do not fit the machine; the message names the nearest that would."""

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class NoModel(EdgellmError):
    """No model was named and none in the store fits."""


class LoadFailed(EdgellmError):
    """llama.cpp could not load the model. `cause`: memory, architecture or other."""

    def __init__(self, message: str, path: Path, cause: str) -> None:
        super().__init__(message)
        self.path, self.cause = path, cause


class HubError(EdgellmError):
    """The Hub answered with an error for `repo`."""

    def __init__(self, message: str, repo: str) -> None:
        super().__init__(message)
        self.repo = repo


class HubUnreachable(HubError):
    """The Hub (or the mirror in HF_ENDPOINT) could not be reached: a network error, worth a retry."""

    def __init__(self, message: str, repo: str, endpoint: str) -> None:
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

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ContextOverflow(EdgellmError):
    """A message (or prompt) does not fit the context: `needed` tokens where `available` are left."""

    def __init__(self, message: str, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed, self.available = needed, available


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

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class WorkerLost(EdgellmError):
    """A worker went away (or the network went silent) while a split model ran: the reply ends, what was shown
    stays. Not bad input: exit 1."""

    exit_code = 1

    def __init__(self, message: str, endpoints: list[str]) -> None:
        super().__init__(message)
        self.endpoints = endpoints
