"""Events that long work reports to whichever front end drives it: notices and progress, as data.

A producer takes a `report` callable and calls it with these; the CLI prints them on stderr, a TUI would
draw them as toasts and progress bars. Producers never print.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edgellm.reasons import Reason


@dataclass(frozen=True)
class Notice:
    """Something the user should know, in one line. `kind` lets a front end treat some apart (warnings); `reason`,
    when the notice names a way out, lets a front end say it in its own terms (`text` says it plainly)."""

    text: str
    kind: str = "note"  # note | warning
    reason: Reason | None = None


@dataclass(frozen=True)
class Progress:
    """How far a long task is: `done` of `total` units (bytes for downloads), with a rate when known."""

    task: str  # what is being done: "download", "convert", ...
    done: int
    total: int
    rate: float | None = None  # units per second over the part actually transferred
    eta_s: float | None = None
    finished: bool = False
    unit: str = "bytes"  # or "tensors" (quantize)


Event = Notice | Progress
Report = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A report that shows nothing (quiet modes, tests)."""


@contextlib.contextmanager
def ctrl_c_sets(event: threading.Event) -> Iterator[threading.Event]:
    """While inside, Ctrl-C sets `event` rather than raising: long work checks it between tokens and inside a prompt
    (run, bench), so no interrupt can land where Python drops it (a ctypes callback, a finalizer). Main thread only;
    elsewhere the caller's event is the way to stop."""
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
