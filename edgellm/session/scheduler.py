"""As many generations at once as the model decodes together, the rest waiting in order in a bounded queue.

`parallel` runner threads (the model's slots: one for a single-sequence model) take the jobs first come first served
and hand each job's events to the event loop that waits for them; the batched engine under them decodes the running
jobs together. Past the bound a request is refused at once (QueueFull). A job whose client went away is withdrawn,
or stopped at its next token. `drain` (SIGTERM) lets the running jobs finish and answers the waiting ones with
ShuttingDown.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

BATCH_S = 0.03


class QueueFull(Exception):
    """Every place in the queue is taken."""


class ShuttingDown(Exception):
    """The server is stopping and takes no more work."""


@dataclass(frozen=True)
class Started:
    """The job has the model: its events follow."""


@dataclass(frozen=True)
class Ended:
    """The job is over; `error` is what broke it, if anything did."""

    error: BaseException | None = None


@dataclass(eq=False)
class Job:
    """One request's work: `work(cancel)` yields events on the model thread; the loop reads them from `events`.

    The work's events reach the loop at most once per BATCH_S (the first at once): each hand-over wakes the event
    loop, whose thread then takes a core from llama.cpp's threads; batching halves that cost at 40 tokens/s and
    changes nothing on a board that writes fewer than 30."""

    work: Callable[[threading.Event], Generator[Any, None, None]]  # closed when it ends, early or not
    loop: asyncio.AbstractEventLoop
    cancel: threading.Event = field(default_factory=threading.Event)
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # when a runner took it
    on_end: Callable[[], None] | None = None  # called once the job is over, on the thread that ends it (whether or
    # not anyone still reads its events: a client gone before its answer began still lets its model go)
    _held: list[Any] = field(default_factory=list)
    _sent_at: float = -BATCH_S  # when the work's events were last handed over: the first goes at once

    def end(self, error: BaseException | None = None) -> None:
        """Hand the job's Ended to the loop, then run its on_end."""
        self.deliver(Ended(error))
        if self.on_end is not None:
            self.on_end()

    def deliver(self, event: Any) -> None:
        """Hand an event to the loop now, after any held ones."""
        self._held.append(event)
        self._flush()

    def send(self, event: Any) -> None:
        """Hand the work's event to the loop, batched (the model thread)."""
        self._held.append(event)
        now = time.monotonic()
        if now - self._sent_at >= BATCH_S:
            self._sent_at = now
            self._flush()

    def _flush(self) -> None:
        events, self._held = self._held, []
        if events:
            try:
                self.loop.call_soon_threadsafe(self._put, events)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _put(self, events: list[Any]) -> None:
        for event in events:
            self.events.put_nowait(event)


class Scheduler:
    """Runs up to `parallel` jobs at once, each on a runner thread; up to `waiting_limit` more wait their turn."""

    def __init__(self, waiting_limit: int, parallel: int = 1) -> None:
        self.waiting_limit = waiting_limit
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._closed = False
        self._condition = threading.Condition()
        self.parallel = 0
        self._threads: list[threading.Thread] = []
        self.grow(parallel)

    def grow(self, parallel: int) -> None:
        """Run up to `parallel` jobs at once from now on (once the model is loaded and its slots known)."""
        with self._condition:
            while self.parallel < parallel:
                self.parallel += 1
                thread = threading.Thread(target=self._serve, name=f"edgellm-runner-{self.parallel}", daemon=True)
                self._threads.append(thread)
                thread.start()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> int:
        """Jobs running now."""
        return len(self._running)

    def check_room(self) -> None:
        """QueueFull or ShuttingDown if a job submitted now would be refused: asked before a request's prompt is
        prepared, so a refused request costs no work."""
        with self._condition:
            self._refuse_if_full()

    def submit(self, job: Job) -> None:
        """Queue the job; QueueFull past the bound, ShuttingDown once draining."""
        with self._condition:
            self._refuse_if_full()
            self._waiting.append(job)
            self._condition.notify()

    def _refuse_if_full(self) -> None:
        if self._closed:
            raise ShuttingDown()
        beyond_the_runners = len(self._waiting) + len(self._running) - self.parallel  # those that will really wait
        if beyond_the_runners >= self.waiting_limit:
            raise QueueFull()

    def withdraw(self, job: Job) -> None:
        """Stop a job: taken out of the queue if it is waiting, stopped at its next token if it runs."""
        job.cancel.set()
        with self._condition:
            if job in self._waiting:
                self._waiting.remove(job)
                job.end()

    def drain(self, stop_running: bool = False) -> None:
        """Take no more jobs: the waiting ones end with ShuttingDown; the running ones finish, or stop at their
        next token if `stop_running` (a forced exit)."""
        with self._condition:
            self._closed = True
            refused, self._waiting = list(self._waiting), deque()
            if stop_running:
                for job in self._running:
                    job.cancel.set()
            self._condition.notify_all()
        for job in refused:
            job.end(ShuttingDown())

    def join(self, timeout: float | None = None) -> None:
        """Wait for the runners to finish their last jobs (after drain)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _serve(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._closed:
                    self._condition.wait()
                if not self._waiting:
                    return
                job = self._waiting.popleft()
                self._running.append(job)
            try:
                self._run(job)
            finally:
                with self._condition:
                    self._running.remove(job)

    @staticmethod
    def _run(job: Job) -> None:
        """Run one job; whatever happens, its request gets its Ended and the model thread goes on."""
        if job.cancel.is_set():
            job.end()
            return
        job.started_at = time.monotonic()
        job.deliver(Started())
        error: BaseException | None = None
        try:
            events = job.work(job.cancel)
            try:
                for event in events:
                    job.send(event)
            finally:
                events.close()
        except BaseException as failure:
            error = failure
        job.end(error)
