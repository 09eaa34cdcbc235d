"""The CLI's consumer of progress events: one stderr line that rewrites itself, and notices as `edgellm: note:` in
the command line's terms."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from edgellm.cli.words import CLI
from edgellm.events import Event, Notice, Progress
from edgellm.formatting import progress
from edgellm.words import worded


class ProgressLine:
    """A report for the CLI: progress rewritten in place on a terminal (a line every 5 s otherwise, for logs),
    notices and warnings on lines of their own. With show_progress=False only the notices are shown."""

    def __init__(
        self, out: IO[str] | None = None, show_progress: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out if out is not None else sys.stderr
        self.show_progress, self.clock = show_progress, clock
        self.tty = self.out.isatty()
        self.shown: float | None = None  # when the open progress line was last drawn; None when none is open

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice):
            self._end_line()
            label = "warning" if event.kind == "warning" else "note"
            self.out.write(f"edgellm: {label}: {worded(event, CLI)}\n")
            self.out.flush()
        elif isinstance(event, Progress) and self.show_progress:
            self._progress(event)

    def _progress(self, event: Progress) -> None:
        now = self.clock()
        due = self.shown is None or now - self.shown >= (0.2 if self.tty else 5.0)
        if due or event.finished:
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
