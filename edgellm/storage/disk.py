"""What a full or read-only disk means to edgellm: the words for it, and the writes it can do without.

llama.cpp's log, the model spec cache and the chat history are kept when the disk lets them be; when it does not,
edgellm goes on without them and says so once, naming the disk and what is not being kept (`lost`). The problem
is read from the errno, or, for SQLite (which reports a full disk as a "disk I/O error"), by asking the file
system itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from edgellm.events import Notice

PROBLEMS = {
    errno.ENOSPC: "is full",
    errno.EDQUOT: "has no quota left for this user",
    errno.EROFS: "is read-only",
    errno.EACCES: "is not writable by this user",
    errno.EPERM: "is not writable by this user",
}


def problem(error: BaseException | None, where: Path) -> str | None:
    """What is wrong with the disk holding `where` ("is full", "is read-only", ...), from `error`'s errno, else
    from the file system; None when the disk is fine (the fault lies elsewhere)."""
    code = getattr(error, "errno", None)
    if code in PROBLEMS:
        return PROBLEMS[code]
    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return PROBLEMS[errno.EROFS]
    if stats.f_bavail * stats.f_frsize < 64 * 1024:  # less than SQLite needs for one more page and its journal
        return PROBLEMS[errno.ENOSPC]
    if not os.access(folder, os.W_OK):
        return PROBLEMS[errno.EACCES]
    return None


def describe(folder: Path, trouble: str) -> str:
    return f"the disk holding {folder} {trouble}"


told: list[Notice] = []  # what was said, for a front end that sets `report` late, and for tests


def _unheard(notice: Notice) -> None:
    """Until a front end says how it tells (the CLI a line, the TUI a toast), a notice goes unheard."""


report: Callable[[Notice], None] = _unheard  # each front end points this at its own way of telling
_told: set[str] = set()
_held: list[list[Notice]] = []


def lost(what: str, folder: Path, error: BaseException) -> bool:
    """Tell, once per `what`, that `what` cannot be written in `folder` because of the disk, and go on without it.
    False (and nothing said) when the disk is not the cause: the caller raises `error` as before."""
    trouble = problem(error, folder)
    if trouble is None:
        return False
    if what not in _told:
        _told.add(what)
        notice = Notice(f"{describe(folder, trouble)}: {what} is not being kept", "warning")
        told.append(notice)
        (_held[-1].append if _held else report)(notice)
    return True


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Notices wait until the block ends: while llama-cpp-python points fds 1 and 2 at /dev/null (a model
    loading), a warning written to stderr would be lost."""
    queue: list[Notice] = []
    _held.append(queue)
    try:
        yield
    finally:
        del _held[next(i for i, held in enumerate(_held) if held is queue)]  # by identity: empty queues are equal
        for notice in queue:
            report(notice)
