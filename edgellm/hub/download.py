"""Resumable, verified downloads of Hub files into the store.

A file is fetched into `NAME.part` beside its final place and renamed only once its sha256 matches the
Hub's LFS oid. The partial file survives errors, Ctrl-C and kill -9: the next run asks for the rest with
a Range request instead of starting again (huggingface_hub deletes its partial files on failure). Hashing
runs on a second thread while the next chunk arrives, so verifying costs no time on two cores.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgellm.errors import Cancelled, DiskError, EdgellmError, HubError, HubUnreachable, check_cancel
from edgellm.events import Notice, Progress, Report, ignore
from edgellm.formatting import gib
from edgellm.hub.client import endpoint, file_url, hub_errors, open_file
from edgellm.hub.files import RemoteFile

CHUNK = 8 * 2**20
RETRIES = 5  # network errors within one run; each retry resumes where the last stopped
PART = ".part"


class Meter:
    """Counts the bytes of a whole pull and reports them as Progress events: the first at once, then at most one
    every INTERVAL seconds, and a last one from finish(). Events carry totals, so a dropped one loses nothing.
    Bytes found on disk count as done but not towards the rate; a corrupted file rewinds them."""

    INTERVAL = 0.1

    def __init__(self, total: int, report: Report = ignore) -> None:
        self.total, self.report = total, report
        self.done = 0
        self.fetched = 0
        self.started = time.monotonic()
        self.reported: float | None = None

    def resumed(self, n_bytes: int) -> None:
        self.done += n_bytes
        self._tick()

    def advance(self, n_bytes: int) -> None:
        self.done += n_bytes
        self.fetched += n_bytes
        self._tick()

    def rewind(self, n_bytes: int) -> None:
        self.done -= n_bytes
        self._tick()

    def event(self, finished: bool = False) -> Progress:
        """Where the pull stands now; the rate is over the bytes fetched in this run only."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.fetched / elapsed if self.fetched else None
        eta = (self.total - self.done) / rate if rate else None
        return Progress("download", self.done, self.total, rate, eta, finished)

    def finish(self) -> None:
        """The last event: the pull is over (whole, or stopped when done < total)."""
        self.report(self.event(finished=True))

    def _tick(self) -> None:
        now = time.monotonic()
        if self.reported is None or now - self.reported >= self.INTERVAL:
            self.reported = now
            self.report(self.event())


class Hasher:
    """sha256 on a worker thread: hashlib drops the GIL on large buffers, so hashing overlaps the network.
    Small network chunks are gathered into 1 MiB blocks first, to keep the hand-offs few."""

    BLOCK = 2**20

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (block := self.blocks.get()) is not None:
            self.digest.update(block)

    def update(self, chunk: bytes) -> None:
        self.pending.append(chunk)
        self.pending_size += len(chunk)
        if self.pending_size >= self.BLOCK:
            self._hand_off()

    def _hand_off(self) -> None:
        if self.pending:
            self.blocks.put(b"".join(self.pending))
            self.pending, self.pending_size = [], 0

    def hexdigest(self) -> str:
        self._hand_off()
        self.blocks.put(None)
        self.thread.join()
        return self.digest.hexdigest()


def disk_error(path: Path, error: OSError) -> DiskError:
    """Writing the download failed on this machine (full disk, no permission): no retry, the partial stays."""
    return DiskError(
        f"cannot write {path}: {error.strerror or error}; free some space, or set EDGELLM_HOME to a "
        f"writable folder on a larger disk (the partial download is kept and resumed)",
        path,
    )


@contextmanager
def locked(part: Path) -> Iterator[None]:
    """One process at a time per file. The lock file is left in place: removing it would let two processes
    lock two different files of the same name."""
    lock_path = part.with_name(part.name + ".lock")
    try:
        lock = open(lock_path, "a")
    except OSError as error:
        raise disk_error(lock_path, error) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgellmError(
                f"{part.name[: -len(PART)]} is being downloaded by another edgellm process; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(
    repo: str, file: RemoteFile, commit: str, dest: Path, progress: Meter, cancel: threading.Event | None = None
) -> Path:
    """Download `file` to `dest`, resuming a partial `dest.part`; verified against the LFS sha256. Setting
    `cancel` stops it between chunks with Cancelled, the partial file kept."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise disk_error(dest.parent, error) from None
    part = dest.with_name(dest.name + PART)
    with locked(part):
        for attempt in (1, 2):
            digest = _transfer(repo, file, commit, part, progress, cancel)
            if part.stat().st_size == file.size and (file.sha256 is None or digest == file.sha256):
                break
            progress.rewind(part.stat().st_size)
            part.unlink()  # a corrupted byte: the only safe place to resume from is the start
            if attempt == 2:
                raise EdgellmError(
                    f"{repo}/{file.path}: the download does not match its sha256 twice in a row; "
                    f"the mirror may be serving a broken file ({endpoint()})"
                )
        os.replace(part, dest)
    return dest


def _hash_existing(part: Path, size: int) -> tuple[Hasher, int]:
    """A hasher fed with what the partial file holds, and how many bytes that is (a file too long starts over)."""
    hasher = Hasher()
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        return hasher, 0
    if have:
        with open(part, "rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
    return hasher, have


def _append(fd: int, chunk: bytes, part: Path) -> None:
    """Write all of `chunk`, unbuffered: what is counted as received is what is on disk."""
    view = memoryview(chunk)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as error:
        raise disk_error(part, error) from None


def _transfer(
    repo: str, file: RemoteFile, commit: str, part: Path, progress: Meter, cancel: threading.Event | None = None
) -> str:
    """Bring `part` up to the file's full size, resuming from what it holds, retrying network errors (not disk
    errors); returns the sha256 of the whole file, hashed as it was written."""
    url = file_url(repo, file.path, commit)
    hasher, have = _hash_existing(part, file.size)
    progress.resumed(have)
    for retry in range(RETRIES + 1):
        if have == file.size:
            break
        _stop_if_cancelled(cancel, hasher, f"{repo}/{file.path}")
        try:
            with hub_errors(repo):
                with open_file(url, have) as response:
                    if have and response.status_code != 206:  # the server ignored the Range: start over
                        progress.rewind(have)
                        have, hasher = 0, Hasher()
                    try:
                        fd = os.open(part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if have else os.O_TRUNC), 0o644)
                    except OSError as error:
                        raise disk_error(part, error) from None
                    try:
                        # chunks as they arrive: a dropped connection loses nothing that was received
                        for chunk in response.iter_bytes():
                            _append(fd, chunk, part)
                            hasher.update(chunk)
                            have += len(chunk)
                            progress.advance(len(chunk))
                            _stop_if_cancelled(cancel, hasher, f"{repo}/{file.path}")
                    finally:
                        os.close(fd)
        except HubUnreachable:
            if retry == RETRIES:
                raise
        except EdgellmError:  # disk errors and the Hub's answers: retrying would not help
            raise
        except Exception as error:  # the connection dropped mid-body: resume from what arrived
            if retry == RETRIES:
                raise HubUnreachable(
                    f"{repo}/{file.path}: the download kept failing ({error}); run the same "
                    f"command again to resume from {have} bytes",
                    repo,
                    endpoint(),
                ) from None
        if have < file.size and cancel is not None:
            cancel.wait(min(2**retry * 0.2, 5))
        elif have < file.size:
            time.sleep(min(2**retry * 0.2, 5))
    return hasher.hexdigest()


def _stop_if_cancelled(cancel: threading.Event | None, hasher: Hasher, what: str) -> None:
    """Stop the transfer when cancelled, ending the hasher's thread first."""
    if cancel is not None and cancel.is_set():
        hasher.hexdigest()
        check_cancel(cancel, f"the download of {what} (start it again to resume)")


def check_disk(folder: Path, needed: int) -> None:
    """Stop before starting when the store's file system cannot hold what is left to fetch."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DiskError(
            f"not enough disk: the download needs {gib(needed)} more but {probe} has {gib(free)} free; "
            f"free some space or set EDGELLM_HOME to a larger disk",
            probe,
        )


def remaining_bytes(files: list[tuple[RemoteFile, Path]]) -> int:
    """Bytes still to fetch: what is neither in place nor in a partial file."""
    total = 0
    for file, dest in files:
        if dest.exists():
            continue
        part = dest.with_name(dest.name + PART)
        total += file.size - (part.stat().st_size if part.exists() else 0)
    return total


STOPPED = "download stopped; run the same command again to resume where it stopped"


def check_inside(folder: Path, targets: list[tuple[RemoteFile, Path]], repo: str) -> None:
    """Refuse a download whose file would land outside `folder`, a symlink followed (the listing's names are
    checked already; this catches a link planted in the store)."""
    root = folder.resolve()
    for file, dest in targets:
        if not dest.resolve().is_relative_to(root):
            raise HubError(
                f"{repo}: {file.path} would be written to {dest.resolve()}, outside {folder} (a symbolic "
                f"link?); refused: remove the link",
                repo,
            )


def fetch_all(
    repo: str,
    commit: str,
    targets: list[tuple[RemoteFile, Path]],
    present: set[Path],
    report: Report,
    cancel: threading.Event | None = None,
    cancelled: str | None = None,
) -> None:
    """Fetch each (file, dest) whose dest is not in `present`, one Meter over them all. Ctrl-C or `cancel` keeps
    the partial file; Ctrl-C says how to resume, and a cancel says `cancelled` when given."""
    meter = Meter(sum(file.size for file, _ in targets), report)
    try:
        for file, dest in targets:
            if dest in present:
                meter.resumed(file.size)
            else:  # missing, or changed on the Hub since: fetched beside it, then renamed over it
                fetch(repo, file, commit, dest, meter, cancel)
    except KeyboardInterrupt:
        meter.finish()
        report(Notice(STOPPED))
        raise
    except Cancelled:
        meter.finish()
        if cancelled:
            report(Notice(cancelled))
        raise
    meter.finish()
