"""Route llama.cpp's own log: to EDGELLM_HOME/logs/edgellm.log always, to stderr with -v.

The last lines are kept in memory too, so a failed load can say why (unknown architecture...).
"""

from __future__ import annotations

import collections
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from edgellm.storage import disk

RECENT_LINES = 200
MAX_LOG_BYTES = 10 * 2**20  # past this the log is moved to edgellm.log.1 and started afresh


class LlamaLog:
    """Receives llama.cpp log text through a ctypes callback installed with llama_log_set."""

    def __init__(self, path: Path, echo: bool) -> None:
        self.path = path
        self.echo = echo
        self.recent: collections.deque[str] = collections.deque(maxlen=RECENT_LINES)
        self._file: IO[str] | None = None
        self._partial = ""

    def install(self) -> None:
        """Route llama.cpp's log here from now on (one process-wide callback, installed once)."""
        global _active
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size > MAX_LOG_BYTES:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "a", encoding="utf-8", errors="replace")
            self._file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} llama.cpp log ---\n")
        except OSError as error:
            self._give_up_file(error)
        _active = self
        _install_callback()

    def _give_up_file(self, error: OSError) -> None:
        """Go on without the log file (a full or read-only disk: said once); any other fault is raised."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass
        if not disk.lost("llama.cpp's log", self.path.parent, error):
            raise error

    def write(self, text: str) -> None:
        if self._file is not None:
            try:
                self._file.write(text)
            except (OSError, ValueError) as error:  # ValueError: written after the file was closed at exit
                if isinstance(error, OSError):
                    self._give_up_file(error)
                else:
                    self._file = None
        if self.echo:
            sys.stderr.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self.recent.extend(lines)

    def find(self, needle: str) -> str | None:
        """The most recent logged line containing `needle`."""
        for line in reversed(self.recent):
            if needle in line:
                return line.strip()
        return None

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as error:
                self._give_up_file(error)


_active: LlamaLog | None = None
interrupted = threading.Event()  # a Ctrl-C that landed in the callback, where it would be lost
_callback = None  # the ctypes callback llama.cpp holds: it must live as long as the process


def _install_callback() -> None:
    global _callback
    if _callback is not None:
        return
    import ctypes

    import llama_cpp

    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        try:
            if _active is not None:
                _active.write(text.decode("utf-8", errors="replace"))
        except KeyboardInterrupt:  # ctypes drops an exception raised in a callback: keep it for interrupt_after
            interrupted.set()

    _callback = llama_cpp.llama_log_callback(on_log)
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))


def route_projector_log() -> None:
    """Send libmtmd's log (a projector's loading and image encoding) where llama.cpp's goes: it has its own."""
    import ctypes

    from llama_cpp import mtmd_cpp

    _install_callback()
    mtmd_cpp.mtmd_log_set(_callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_callback, ctypes.c_void_p(0))


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Ctrl-C while llama.cpp works (a model loading) is kept and raised once the block ends. Python raises
    KeyboardInterrupt wherever it next runs Python code, which there is llama.cpp's log callback: ctypes drops an
    exception raised there, so the interrupt was lost and the command went on. The handler is the main thread's
    only (signals are its); the log callback keeps one that lands in it either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked: list[bool] = []
    interrupted.clear()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: asked.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if asked or interrupted.is_set():
        interrupted.clear()
        raise KeyboardInterrupt
