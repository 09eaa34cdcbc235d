"""The child process that runs a model split across RPC workers: it joins the workers (which cannot be undone in a
process), loads the model with the planned split, then runs generations one at a time until its stdin ends.

Driven by edgellm.engine.split (SplitModel) with JSON lines on stdin: {"load": LoadParams} first, then
{"generate": id, "tokens": [...], "options": {...}} and {"cancel": id}. It answers on stdout, one JSON line per
event: {"loading": fraction}... as tensors are read or sent, then {"loaded": ms, "n_ctx": n}; per generation
{"id", "text", "n"}... then {"id", "done": stats, "tokens"}; or
{"error": message, "kind"} after which it ends. When a worker goes away mid-run ggml aborts this process (exit 134):
the parent, which holds what was already shown, tells which worker it was.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

_events: TextIO = sys.stdout  # the parent's pipe; a copy of it once main() starts (see there)


def say(event: dict[str, Any]) -> None:
    _events.write(json.dumps(event) + "\n")
    _events.flush()


class Requests:
    """The parent's requests, read on a thread: generations queue up for the main thread; a cancel stops the
    generation it names at once, or before it starts."""

    def __init__(self, on_end: Callable[[], None]) -> None:
        self.generations: queue.Queue[dict[str, Any] | None] = queue.Queue()  # None: the end of the work
        self.on_end = on_end  # what the end of stdin does (while loading: leave at once)
        self._cancelled: set[int] = set()
        self._current: tuple[int, threading.Event] | None = None
        self._lock = threading.Lock()

    def read(self, lines: Any) -> None:
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "cancel" in message:
                with self._lock:
                    self._cancelled.add(message["cancel"])
                    if self._current is not None and self._current[0] == message["cancel"]:
                        self._current[1].set()
            elif "generate" in message:
                self.generations.put(message)
        self.generations.put(None)  # the parent closed our stdin (or died): the work is over
        self.on_end()

    def cancel_event(self, ident: int) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._current = (ident, event)
            if ident in self._cancelled:
                event.set()
        return event


def main() -> int:
    global _events
    # llama-cpp-python points fd 1 (and sys.stdout) at /dev/null while it loads: the events go to a copy of the pipe,
    # and anything else printed goes to stderr, never into the events
    _events = os.fdopen(os.dup(1), "w", encoding="utf-8")
    sys.stdout = sys.stderr
    from edgellm import paths
    from edgellm.engine import rpc
    from edgellm.engine.contract import LoadParams
    from edgellm.engine.endpoint import parse_endpoint
    from edgellm.engine.llama_log import LlamaLog
    from edgellm.engine.local import load
    from edgellm.engine.split import logprobs_to_wire, options_from_wire
    from edgellm.errors import GrammarDeadEnd, GrammarInvalid

    fields = json.loads(sys.stdin.readline())["load"]
    params = LoadParams(
        **{
            **fields,
            "path": Path(fields["path"]),
            "rpc_servers": tuple(fields["rpc_servers"]),
            "tensor_split": tuple(fields["tensor_split"]),
        }
    )
    endpoints = [parse_endpoint(where) for where in params.rpc_servers]
    for endpoint in endpoints:
        rpc.check_worker(endpoint)  # again, just before llama.cpp connects: ggml aborts on one that is gone
    rpc.join(endpoints)
    requests = Requests(on_end=lambda: os._exit(1))  # the parent gone while this loads: stop, free the workers
    threading.Thread(target=requests.read, args=(sys.stdin,), name="edgellm-split-requests", daemon=True).start()
    told = [-1.0]

    def progress(fraction: float) -> None:  # news for the parent's watchdog: the load goes on
        if fraction - told[0] >= 0.01 or fraction >= 1.0:
            told[0] = fraction
            try:
                say({"loading": round(fraction, 3)})
            except (OSError, ValueError):
                os._exit(1)  # the parent is gone

    loaded = load(params, LlamaLog(paths.log_path(), echo=False), progress=progress)
    requests.on_end = lambda: None  # from here the end of stdin ends the loop below, after the generation running
    say({"loaded": loaded.load_ms, "n_ctx": loaded.n_ctx})
    while (request := requests.generations.get()) is not None:
        ident = request["generate"]
        generation = loaded.generation(
            request["tokens"], options_from_wire(request["options"]), cancel=requests.cancel_event(ident)
        )
        sent = 0
        try:
            for piece in generation:  # each piece with the tokens it came from: the parent's view of the KV cache
                tokens, logprobs = generation.tokens[sent:], generation.logprobs[sent : len(generation.tokens)]
                sent = len(generation.tokens)
                event = {"id": ident, "text": piece, "n": generation.stats.completion_tokens, "tokens": tokens}
                say({**event, "logprobs": logprobs_to_wire(logprobs)} if logprobs else event)
        except (GrammarDeadEnd, GrammarInvalid) as error:  # this request's grammar: its error, the model stays
            refused = "dead_end" if isinstance(error, GrammarDeadEnd) else "invalid"
            say(
                {
                    "id": ident,
                    "refused": refused,
                    "message": str(error),
                    "done": generation.stats.as_dict(),
                    "tokens": generation.tokens,
                }
            )
            continue
        say({"id": ident, "done": generation.stats.as_dict(), "tokens": generation.tokens})
    loaded.close()
    return 0


if __name__ == "__main__":
    from edgellm.errors import LoadFailed, WorkerUnreachable

    try:
        sys.exit(main())
    except WorkerUnreachable as error:  # a worker gone between the parent's check and this one
        say({"error": str(error), "kind": "unreachable", "endpoint": error.endpoint})
        sys.exit(1)
    except LoadFailed as error:
        say({"error": str(error), "kind": "load", "cause": error.cause})
        sys.exit(1)
    except Exception as error:
        say({"error": str(error), "kind": "failed"})
        sys.exit(1)
