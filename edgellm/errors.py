"""Typed errors: each names the problem and carries its data, so a front end can tell them apart by type.

Every one is a UserError: the CLI prints `edgellm: error: <message>` (the message words the way out in
command-line terms) and exits 2; a TUI or the server reads the fields and offers its own way out.
No code tells errors apart by matching their text.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input or an impossible request; the CLI prints `edgellm: error: <message>` and exits 2."""

    exit_code = 2


class EngineFailed(UserError):
    """llama.cpp failed while it ran a model that had loaded (a decode error, a GPU out of memory): not bad input,
    so exit 1."""

    exit_code = 1


class Cancelled(UserError):
    """Long work (a download, a conversion) stopped on request; a download keeps its partial file to resume."""


class ModelFileError(UserError):
    """A model file (or checkpoint) that cannot be used. `problem`: missing, directory, permission, truncated,
    incomplete, split, not-gguf, not-folder, corrupt, unreadable, unsupported or ambiguous."""

    def __init__(self, message: str, path: Path | str, problem: str) -> None:
        super().__init__(message)
        self.path, self.problem = Path(path), problem


class DoesNotFit(UserError):
    """The model or the settings asked for do not fit the machine; the message names the nearest that would."""

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class NoModel(UserError):
    """No model was named and none in the store fits."""


class LoadFailed(UserError):
    """llama.cpp could not load the model. `cause`: memory, architecture or other."""

    def __init__(self, message: str, path: Path, cause: str) -> None:
        super().__init__(message)
        self.path, self.cause = path, cause


class HubError(UserError):
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


class OfflineMode(UserError):
    """The model is not stored and offline mode forbids fetching it."""


class DiskError(UserError):
    """Writing to this machine's disk failed (full, read-only, no permission)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ContextOverflow(UserError):
    """A message (or prompt) does not fit the context: `needed` tokens where `available` are left."""

    def __init__(self, message: str, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed, self.available = needed, available


class TemplateRefused(UserError):
    """The model's chat template refused the conversation (a role it does not support, an order it forbids)."""


class InvalidSetting(UserError):
    """A chat setting with an unknown key or a bad value."""

    def __init__(self, message: str, key: str, value: str | None = None) -> None:
        super().__init__(message)
        self.key, self.value = key, value


class HistoryUnavailable(UserError):
    """The history database cannot be used (corrupt, newer schema, history off, or `disk_problem`: the disk holding
    it is full or read-only, the database itself may be fine)."""

    def __init__(self, message: str, disk_problem: str | None = None) -> None:
        super().__init__(message)
        self.disk_problem = disk_problem


class NoSuchConversation(UserError):
    """No saved conversation has this id."""

    def __init__(self, message: str, conversation_id: int) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id


class WorkerUnreachable(UserError):
    """An RPC worker that cannot be used: it does not answer, speaks another protocol version, or went away."""

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class WorkerLost(UserError):
    """A worker went away (or the network went silent) while a split model ran: the reply ends, what was shown
    stays. Not bad input: exit 1."""

    exit_code = 1

    def __init__(self, message: str, endpoints: list[str]) -> None:
        super().__init__(message)
        self.endpoints = endpoints
