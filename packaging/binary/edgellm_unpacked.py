"""The one-file binary's unpacked folder, seen from the program inside it (onefile.sh unpacks; this keeps it tidy).

onefile.sh starts the program with EDGELLM_UNPACKED set to `new` (it has just unpacked into the cache) or
`temporary` (it could not use the cache, and unpacked into a temporary folder for this run). A run from the cache
holds a shared lock on its folder's marker for as long as it lives; a `new` run removes the other versions' folders
that no running program holds, and partial unpacks left behind for an hour; a `temporary` run removes its folder
when it exits. Standard library only: this runs before edgellm is imported.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

ENV = "EDGELLM_UNPACKED"
MARKER = ".edgellm-unpacked"  # onefile.py's MARKER
ABANDONED_S = 3600  # a partial unpack older than this was left by a run that died

_held: list[IO[bytes]] = []  # the lock on our own folder, kept open for the process's life


def settle(executable: str) -> None:
    """Run at the program's start, before anything else: lock, tidy or arrange to remove the unpacked folder."""
    how = os.environ.pop(ENV, "")  # the child processes edgellm starts are not first runs
    folder = Path(executable).resolve().parent
    if not (folder / MARKER).is_file():
        return  # the one-folder build, run as it is
    if how == "temporary":
        remove_at_exit(folder)
        return
    with contextlib.suppress(OSError):  # no locks on this file system: then nothing is removed under us either
        _held.append(_lock(folder, fcntl.LOCK_SH))
    if how == "new":
        with contextlib.suppress(OSError):
            remove_unused(folder.parent, keep=folder)


def _lock(folder: Path, kind: int) -> IO[bytes]:
    handle = open(folder / MARKER, "rb")  # held open: the lock lasts as long as the file is open
    try:
        fcntl.flock(handle, kind)
    except OSError:
        handle.close()
        raise
    return handle


def remove_unused(base: Path, keep: Path) -> list[Path]:
    """Remove from the cache `base` every version's folder (a symlink `KEY` to `.KEY.XXXXXX`) other than `keep`
    that no program holds, and folders with no link to them (partial unpacks, or a version whose link went) older
    than an hour that no program holds; the removed."""
    base = base.resolve()
    removed: list[Path] = []
    linked: set[Path] = set()
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") or not entry.is_symlink():
            continue
        target = entry.resolve()
        linked.add(target)
        if target != keep and target.parent == base and _remove_if_free(target, link=entry):
            removed.append(target)
    now = time.time()
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink() and entry not in linked:
            if entry != keep and now - entry.stat().st_mtime > ABANDONED_S:
                if not (entry / MARKER).exists():  # a partial unpack, which no program can run
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
                elif _remove_if_free(entry):
                    removed.append(entry)
    return removed


def _remove_if_free(folder: Path, link: Path | None = None) -> bool:
    """Remove `folder` (and the `link` to it) unless a running program holds its marker's lock."""
    try:
        lock = _lock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # in use (or not a folder onefile.sh made)
    with lock:
        if link is not None:
            link.unlink()
        shutil.rmtree(folder, ignore_errors=True)
    return True


def remove_at_exit(folder: Path) -> None:
    """Remove `folder` when the program exits, a SIGTERM or SIGHUP included (unless edgellm handles them itself)."""
    atexit.register(shutil.rmtree, folder, ignore_errors=True)

    def exit_on(signum: int, frame: Any) -> None:
        sys.exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, exit_on)
