"""A model split across RPC workers, run in a watched child process: what `--rpc` gives every front end.

ggml aborts the process that runs a split when a worker goes away, and waits forever when the network goes silent.
So the weights and the KV cache live in a child process (edgellm.engine.split_child) that joins the workers, loads
the model once and runs one generation at a time; this side holds the vocabulary (a vocab-only load: tokenizing,
the chat template's tokens, the metadata) and offers what a Model offers, so the chat session, the server and
bench drive it as they drive a model loaded here.

While the child works (loading, or generating) this side watches: it looks at each worker's side channel when the
child is quiet (the side channel answers even while the worker computes); when one misses MISSES_TO_LOSE times
running, or the child dies and a side channel is gone, the generation ends with WorkerLost naming the worker.
Workers without a side channel (a plain llama.cpp rpc-server, a tunnel of one port) are given WATCHDOG_S of silence
(EDGELLM_RPC_SILENCE_S) while the model loads (the child tells each step of it) or mid-reply; a prompt being read
is given all the time it takes. After a loss the next generation starts a new child once the workers answer again:
the model reloads, and the conversation, which the session keeps, goes on.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import (
    GenerationOptions,
    GenerationStats,
    Grammar,
    LoadParams,
    Sampling,
    SlotState,
    TokenLogprob,
    text_only,
)
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LocalModel, load
from edgellm.errors import EngineFailed, GrammarDeadEnd, GrammarInvalid, LoadFailed, WorkerLost, WorkerUnreachable

if TYPE_CHECKING:
    from edgellm.media.images import Image

WATCHDOG_S = 30.0  # silence that ends a load or a reply, for workers without a side channel to look at
POLL_S = 1.0  # how often the workers' side channels are looked at while the child is quiet
MISSES_TO_LOSE = 3  # side-channel answers missed running before a worker counts as gone (a busy network drops one)
TICK_S = 0.1  # how often a quiet wait looks at a cancel
CANCEL_GRACE_S = 5.0  # a cancelled generation that says nothing for this long is ended with its child
VOCAB_CTX = 64  # the context of the vocab-only load (it holds no tokens: generation runs in the child)


def silence_allowed() -> float:
    """The silence that ends a load or a reply for workers without a side channel: EDGELLM_RPC_SILENCE_S (a slow
    link may need more), else WATCHDOG_S."""
    try:
        value = float(os.environ.get("EDGELLM_RPC_SILENCE_S", WATCHDOG_S))
    except ValueError:
        return WATCHDOG_S
    return value if value > 0 else WATCHDOG_S


def options_to_wire(options: GenerationOptions) -> dict[str, Any]:
    return asdict(options)


def options_from_wire(data: dict[str, Any]) -> GenerationOptions:
    grammar = data.get("grammar")
    return GenerationOptions(
        **{
            **data,
            "sampling": Sampling(**data["sampling"]),
            "stop": tuple(data["stop"]),
            "special_text": tuple(data.get("special_text", ())),
            "grammar": None
            if grammar is None
            else Grammar(grammar["gbnf"], tuple(grammar["trigger_patterns"]), tuple(grammar["trigger_tokens"])),
        }
    )


def logprobs_to_wire(found: list[TokenLogprob]) -> list[Any]:
    return [[item.token, item.logprob, [list(pair) for pair in item.top]] for item in found]


def logprobs_from_wire(data: list[Any]) -> list[TokenLogprob]:
    return [TokenLogprob(token, logprob, tuple((int(i), float(p)) for i, p in top)) for token, logprob, top in data]


def gone_workers(endpoints: list[str], timeout: float = 2.0) -> list[str]:
    """Of the watched workers, those whose side channel does not answer (stopped, killed, or cut off)."""
    from edgellm.engine.endpoint import parse_endpoint
    from edgellm.engine.side_channel import fetch_profile

    return [where for where in endpoints if fetch_profile(parse_endpoint(where), timeout=timeout) is None]


def unreachable_workers(endpoints: tuple[str, ...], timeout: float = 2.0) -> list[str]:
    """Of the workers without a side channel, those that no longer answer the protocol's hello (asked once the child
    that held their one client slot is gone)."""
    from edgellm.engine.endpoint import parse_endpoint
    from edgellm.engine.rpc import check_worker

    found = []
    for where in endpoints:
        try:
            check_worker(parse_endpoint(where), timeout=timeout)
        except WorkerUnreachable:
            found.append(where)
    return found


class _Stopped(Exception):
    """A cancel that the child did not answer in time (or came while it loaded): the child was ended."""


def lost(endpoints: list[str], silent: bool, phase: str) -> WorkerLost:
    names = ", ".join(endpoints)
    plural = "s" if len(endpoints) > 1 else ""
    what = (
        f"the network to the RPC worker{plural} at {names} went silent"
        if silent
        else f"the RPC worker{plural} at {names} went away"
    )
    if phase == "loading":
        return WorkerLost(
            f"{what} while the model loaded: restart `edgellm worker` there, or run without it", endpoints
        )
    return WorkerLost(
        f"{what} mid-reply; the reply ends here (what was shown is kept): restart `edgellm worker` "
        f"there to go on, or run without it",
        endpoints,
    )


class SplitModel:
    """A model split across RPC workers, run by a child process: the engine contract's `Model`, its vocabulary
    answered by a vocab-only load here."""

    parallel = 1  # one generation at a time: the child runs one

    def __init__(
        self,
        params: LoadParams,
        watched: tuple[str, ...],
        vocab: LocalModel,
        log: LlamaLog,
        watchdog_s: float | None = None,
    ) -> None:
        self.params = params
        self.watched = watched  # the workers whose side channel answers
        self.unwatched = tuple(where for where in params.rpc_servers if where not in watched)
        self.vocab = vocab  # vocab only
        self.log = log  # the child writes llama.cpp's log to the same file
        self.load_ms = 0.0
        self.watchdog_s = watchdog_s if watchdog_s is not None else silence_allowed()
        self._n_ctx = params.n_ctx
        self._child: subprocess.Popen[str] | None = None
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()  # None: the child's stdout ended
        self._errors: Any = None  # the child's stderr, a file: a pipe could fill and block it
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one generation at a time, and no two children
        self._closed = False

    @classmethod
    def open(
        cls,
        params: LoadParams,
        watched: tuple[str, ...],
        log: LlamaLog,
        keep_terminal: bool = False,
        cancel: threading.Event | None = None,
    ) -> SplitModel:
        """Load the vocabulary here and the model in a child that joins the workers (each checked first:
        WorkerUnreachable); the load is watched as a generation is, and `cancel` set ends it (KeyboardInterrupt)."""
        vocab = load(
            replace(
                params,
                vocab_only=True,
                n_ctx=VOCAB_CTX,
                n_batch=VOCAB_CTX,
                rpc_servers=(),
                tensor_split=(),
                n_gpu_layers=0,
            ),
            log,
            keep_terminal,
        )
        model = cls(params, watched, vocab, log)
        try:
            with model._lock:
                model._start(cancel)
        except _Stopped:
            vocab.close()
            raise KeyboardInterrupt from None
        except BaseException:  # a failure, or Ctrl-C while it loads: the child goes at once
            model._stop_child(kill=True)
            vocab.close()
            raise
        return model

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def metadata(self) -> dict[str, str]:
        return self.vocab.metadata

    @property
    def token_bos(self) -> int:
        return self.vocab.token_bos

    @property
    def token_eos(self) -> int:
        return self.vocab.token_eos

    @property
    def other_processes(self) -> tuple[int, ...]:
        """The child, which holds this machine's share of the model (bench reads its peak memory)."""
        return (self._child.pid,) if self._child is not None else ()

    @property
    def vision(self) -> bool:
        return False  # a split model's projector is not loaded: images need the whole model here

    def tokenize_with_images(
        self, text: str, images: Sequence[Image], *, add_bos: bool, special: bool = True
    ) -> list[int]:
        raise text_only(self.params.path)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self.vocab.tokenize(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        return self.vocab.detokenize(tokens, special=special)

    def generation(
        self, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> RemoteGeneration:
        # no drafting across workers: each round's batch and cut would cross the network twice
        return RemoteGeneration(self, prompt_tokens, replace(options, speculation="off"), cancel)

    def slots(self) -> list[SlotState]:
        busy = self._lock.locked()
        return [SlotState(0, busy, self._n_ctx, 0)]

    def close(self) -> None:
        """End the child (it frees the workers' memory) and free the vocabulary, once no generation runs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_child()
            self.vocab.close()

    # the child

    def _start(self, cancel: threading.Event | None = None) -> None:
        """Check each worker, start a child and wait until it has loaded the model (the caller holds the lock)."""
        from edgellm.engine.child import module_command
        from edgellm.engine.endpoint import parse_endpoint
        from edgellm.engine.rpc import check_worker

        for where in self.params.rpc_servers:
            check_worker(parse_endpoint(where))  # one line, exit 2: never ggml's abort
        self._errors = tempfile.TemporaryFile(mode="w+", errors="replace")
        self._events = queue.Queue()
        try:
            child = subprocess.Popen(
                module_command("edgellm.engine.split_child"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                text=True,
                start_new_session=True,
                env={**os.environ, "GGML_NO_BACKTRACE": "1"},
            )
        except OSError:
            self._errors.close()
            self._errors = None
            raise
        self._child = child
        threading.Thread(
            target=self._read, args=(child, self._events), name="edgellm-split-reader", daemon=True
        ).start()
        self._send({"load": {**asdict(self.params), "path": str(self.params.path)}})
        event = self._next("loading", cancel)
        while "loading" in event:  # the child's progress: the load goes on
            event = self._next("loading", cancel)
        if "error" in event:
            raise self._failure(event, "loading")
        self.load_ms, self._n_ctx = event["loaded"], event["n_ctx"]

    @staticmethod
    def _read(child: subprocess.Popen[str], events: queue.Queue[dict[str, Any] | None]) -> None:
        assert child.stdout is not None  # stdout=PIPE
        for line in child.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
        events.put(None)

    def _send(self, message: dict[str, Any]) -> None:
        """One line to the child (a job, a generation, a cancel); a child already gone is told by its exit."""
        child = self._child
        if child is None:
            return
        assert child.stdin is not None  # stdin=PIPE
        try:
            child.stdin.write(json.dumps(message) + "\n")
            child.stdin.flush()
        except (OSError, ValueError):
            pass

    def _next(self, phase: str, cancel: threading.Event | None = None, on_cancel: Any = None) -> dict[str, Any]:
        """The child's next event, watching the workers meanwhile; WorkerLost or EngineFailed when the child or a
        worker is gone (the child is ended then). `cancel` set: `on_cancel()` is called (it asks the child to stop),
        and a child that then says nothing for CANCEL_GRACE_S (at once while it loads) is ended: _Stopped."""
        misses = {where: 0 for where in self.watched}
        quiet_since = last_poll = time.monotonic()
        cancelled_at = None
        while True:
            if cancel is not None and cancel.is_set() and cancelled_at is None:
                cancelled_at = time.monotonic()
                if on_cancel is not None:
                    on_cancel()
            try:
                event = self._events.get(timeout=TICK_S)
            except queue.Empty:
                now = time.monotonic()
                if cancelled_at is not None and (phase == "loading" or now - cancelled_at > CANCEL_GRACE_S):
                    self._stop_child(kill=True)  # a reply stuck on a worker, or a load nobody waits for
                    raise _Stopped() from None
                if now - last_poll < POLL_S:
                    continue
                last_poll = now
                for where in self.watched:
                    misses[where] = misses[where] + 1 if gone_workers([where]) else 0
                gone = [where for where, count in misses.items() if count >= MISSES_TO_LOSE]
                silent = (
                    bool(self.unwatched) and phase in ("loading", "replying") and now - quiet_since > self.watchdog_s
                )
                if (gone or silent) and self._events.empty():
                    self._stop_child(kill=True)
                    raise lost(gone or list(self.unwatched), silent and not gone, phase) from None
                continue
            if event is None:
                raise self._ended(phase)
            return event

    def _ended(self, phase: str) -> Exception:
        """Why the child ended by itself: a worker gone (ggml aborted it), or a failure in its last words."""
        child = self._child
        code = child.wait() if child is not None else None
        last = "no message"
        if self._errors is not None:
            self._errors.seek(0)
            last = (self._errors.read().strip().splitlines() or ["no message"])[-1]
        self._stop_child()
        gone = gone_workers(list(self.watched)) + unreachable_workers(self.unwatched)
        if gone:
            return lost(gone, False, phase)
        when = "while loading" if phase == "loading" else "mid-reply"
        return EngineFailed(
            f"the split model's process ended {when} (exit {code}): {last}; a worker may have "
            f"refused the work or gone away: see its terminal"
        )

    def _failure(self, event: dict[str, Any], phase: str) -> Exception:
        """The error the child reported (it ends after one)."""
        self._stop_child()
        kind, message = event.get("kind"), event["error"]
        if kind == "unreachable":
            return WorkerUnreachable(message, event.get("endpoint", ""))
        if kind == "load":
            return LoadFailed(message, self.params.path, event.get("cause", "other"))
        return EngineFailed(
            f"the split model failed {'while loading' if phase == 'loading' else 'mid-reply'}: {message}"
        )

    def _stop_child(self, kill: bool = False) -> None:
        child, self._child = self._child, None
        if child is not None:
            if not kill:
                assert child.stdin is not None  # stdin=PIPE
                try:
                    child.stdin.close()  # the child's end of work: it frees the model and exits
                except (OSError, ValueError):
                    pass
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            if child.poll() is None:
                child.kill()
            child.wait()
        if self._errors is not None:
            self._errors.close()
            self._errors = None


class RemoteGeneration:
    """A generation run by a split model's child: iterate it for text pieces; `stats` (its counts grow as tokens
    come) and `tokens` (the KV cache's view of the reply: the tokens of the pieces yielded) are complete once it
    ends, also when it ends early."""

    def __init__(
        self,
        model: SplitModel,
        prompt_tokens: list[int],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.options = options
        self.cancel = cancel
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.stats = GenerationStats(prompt_tokens=len(prompt_tokens), prompt_evaluated=len(prompt_tokens))

    def __iter__(self) -> Generator[str, None, None]:
        model, stats = self.model, self.stats
        if self.cancel is not None and self.cancel.is_set():  # cancelled before it started: nothing is evaluated
            stats.stop_reason, stats.prompt_evaluated = "interrupted", 0
            return
        with model._lock:
            if model._closed:
                raise EngineFailed("the split model was closed; open it again")
            ident, cancelled, sent, done, phase = next(model._ids), False, False, False, "prompt"

            def cancel_once() -> None:
                nonlocal cancelled
                if not cancelled:
                    cancelled = True
                    model._send({"cancel": ident})

            try:
                if model._child is None:
                    model._start(self.cancel)  # after a lost worker: the model reloads once the workers answer
                model._send({"generate": ident, "tokens": self.prompt_tokens, "options": options_to_wire(self.options)})
                sent = True
                while True:
                    event = model._next(phase, self.cancel, cancel_once)
                    if "error" in event:
                        raise model._failure(event, phase)
                    if event.get("id") != ident:
                        continue  # what is left of an earlier generation
                    if "text" in event:
                        phase = "replying"
                        stats.completion_tokens = event["n"]
                        self.tokens += event["tokens"]
                        self.logprobs += logprobs_from_wire(event.get("logprobs", []))
                        yield event["text"]
                    elif "refused" in event:  # the request's grammar: the child goes on
                        self._take(event, stop_reason=True)
                        self.tokens, done = event["tokens"], True
                        refused = GrammarDeadEnd if event["refused"] == "dead_end" else GrammarInvalid
                        raise refused(event["message"])
                    elif "done" in event:
                        self._take(event, stop_reason=True)
                        self.tokens, done = event["tokens"], True
                        return
            except _Stopped:
                pass  # cancelled, and the child did not stop in time: it was ended; the next reply reloads
            finally:
                if not done:
                    stats.stop_reason = "interrupted"
                    if sent:
                        self._finish_early(ident, cancel_once)

    def _take(self, event: dict[str, Any], stop_reason: bool) -> None:
        """The child's figures for this generation (its stop reason too, unless it was ended from here)."""
        for key, value in event["done"].items():
            if key != "stop_reason" or stop_reason:
                setattr(self.stats, key, value)

    def _finish_early(self, ident: int, cancel_once: Any) -> None:
        """Ended before the child said it was done (closed by its consumer, an error): stop the child's generation
        and take its figures; `tokens` stay those of the pieces yielded (the child's cache may hold more: the next
        generation finds where they part). A child that does not stop is ended."""
        model = self.model
        if model._child is None:
            return
        cancel_once()
        asked = threading.Event()
        asked.set()
        try:
            while True:
                event = model._next("replying", asked, lambda: None)
                if "error" in event:
                    model._stop_child()
                    return
                if event.get("id") == ident and "done" in event:
                    self._take(event, stop_reason=False)
                    return
        except Exception:
            model._stop_child(kill=True)
