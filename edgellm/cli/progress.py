"""The CLI's consumer of progress events: one stderr line that rewrites itself, and notices as `edgellm: note:` in
the command line's terms. A model's load is a bar, drawn only once the load has taken a while (`LOAD_BAR_AFTER_S` on a
terminal, `LOAD_LINE_AFTER_S` in a log; EDGELLM_LOAD_BAR_AFTER_S sets both): a fast load shows nothing."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import IO

from edgellm.cli.words import CLI
from edgellm.events import Event, Notice, Progress
from edgellm.formatting import duration, progress
from edgellm.session.loading import LOAD_TASK
from edgellm.words import worded

LOAD_BAR_AFTER_S = 1.0
LOAD_LINE_AFTER_S = 5.0  # not a terminal: the first line once a log would have had one anyway
LOAD_BAR_AFTER_ENV = "EDGELLM_LOAD_BAR_AFTER_S"
BAR_WIDTH = 24


def load_bar_after(tty: bool) -> float:
    """How long a load goes before its bar is drawn: EDGELLM_LOAD_BAR_AFTER_S when set (a number of seconds), else
    a second on a terminal and five in a log."""
    given = os.environ.get(LOAD_BAR_AFTER_ENV, "")
    try:
        return max(0.0, float(given))
    except ValueError:
        return LOAD_BAR_AFTER_S if tty else LOAD_LINE_AFTER_S


def load_bar(event: Progress, unicode: bool = True) -> str:
    """A load's progress as a bar: `loading the model ███████░░░░  52%, 0:03 left`."""
    share = event.done / event.total if event.total else 1.0
    filled = round(BAR_WIDTH * share)
    full, empty = ("█", "░") if unicode else ("#", "-")
    text = f"loading the model {full * filled}{empty * (BAR_WIDTH - filled)} {share * 100:3.0f}%"
    if event.eta_s is not None and not event.finished:
        text += f", {duration(event.eta_s)} left"
    return text


def own_stderr() -> IO[str]:
    """stderr as a stream of its own (its file descriptor duplicated): llama-cpp-python points descriptor 2 at
    /dev/null while it loads a model, and the load's bar is drawn meanwhile. sys.stderr itself where it has no
    descriptor (a test capturing it)."""
    try:
        duplicate = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return sys.stderr
    return open(duplicate, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


class ProgressLine:
    """A report for the CLI: progress rewritten in place on a terminal (a line every 5 s otherwise, for logs),
    notices and warnings on lines of their own. With show_progress=False only the notices are shown. Writes to
    `out`, by default stderr (`own_stderr`, so a load's bar shows while llama.cpp silences descriptor 2)."""

    def __init__(
        self, out: IO[str] | None = None, show_progress: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out if out is not None else own_stderr()
        self.show_progress, self.clock = show_progress, clock
        self.tty = self.out.isatty()
        encoding = getattr(self.out, "encoding", None)  # None: a stream in memory, which holds any text
        self.unicode = encoding is None or encoding.lower().replace("-", "").replace("_", "") == "utf8"
        self.shown: float | None = None  # when the open progress line was last drawn; None when none is open
        self.load_after = load_bar_after(self.tty)
        self.load_began: float | None = None  # when the load in progress first reported; None: no load
        self.load_drawn = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice):
            self._end_line()
            label = "warning" if event.kind == "warning" else "note"
            self.out.write(f"edgellm: {label}: {worded(event, CLI)}\n")
            self.out.flush()
        elif isinstance(event, Progress) and self.show_progress:
            if event.task == LOAD_TASK and not self._load_shown(event):
                return
            self._progress(event)

    def _load_shown(self, event: Progress) -> bool:
        """Whether this event of a model's load is drawn: not until the load has gone on for `load_after`, and its
        end only when its bar was drawn."""
        now = self.clock()
        if self.load_began is None:
            self.load_began = now
        drawn = self.load_drawn or now - self.load_began >= self.load_after
        if event.finished:
            self.load_began, self.load_drawn = None, False
        else:
            self.load_drawn = drawn
        return drawn

    def _progress(self, event: Progress) -> None:
        now = self.clock()
        due = self.shown is None or now - self.shown >= (0.2 if self.tty else 5.0)
        if due or event.finished:
            if event.task == LOAD_TASK:
                text = load_bar(event, self.unicode)
            else:
                text = progress(event, with_task=event.task != "download")
            self.out.write(f"\r{text}\x1b[K" if self.tty else text + "\n")
            self.shown = now
        if event.finished:
            self._end_line()
        self.out.flush()

    def _end_line(self) -> None:
        """Close an open progress line on a terminal, so what follows starts on a line of its own."""
        if self.tty and self.shown is not None:
            self.out.write("\n")
        self.shown = None
