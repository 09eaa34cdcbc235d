"""What both APIs' routes share: the server's state, reading a body, preparing a prompt, a request's job on its
model's scheduler (queued, watched for its client leaving, counted and logged once however it ends), and the
wording of the failures a reply can meet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
import traceback
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from typing import Any

from fastapi import Request

from edgellm.api.openai import ApiError, CompletionRequest
from edgellm.engine.batched import BatchedModel
from edgellm.errors import (
    ContextOverflow,
    EdgellmError,
    EmptyPrompt,
    GrammarDeadEnd,
    GrammarInvalid,
    ImageRefused,
    NoVision,
    TemplateRefused,
    WorkerLost,
    WorkerUnreachable,
)
from edgellm.grammar.json_schema import UnsupportedSchema
from edgellm.server.config import ServerConfig
from edgellm.server.metrics import Batching, Metrics, render
from edgellm.session.completion import ChatModel, Prepared, ReplyShape
from edgellm.session.events import AnswerPiece, ReasoningPiece, Reply, ToolCallPiece
from edgellm.session.scheduler import Ended, Job, QueueFull, Scheduler, ShuttingDown
from edgellm.session.served import Entry, Lease, ServedModels
from edgellm.templates.tools import Delta

RETRY_AFTER_S = 5
LEASING_THREADS = 64  # requests that may wait for a model's load at once
CLIENT_GONE = 499  # nginx's status for a client that closed the connection before the answer
ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/embeddings",
    "/health",
    "/metrics",
    "/slots",
    "/api/chat",
    "/api/generate",
    "/api/tags",
    "/api/show",
    "/api/ps",
    "/api/embed",
    "/api/embeddings",
    "/api/pull",
    "/api/delete",
    "/api/copy",
)


@dataclass
class ServerState:
    """What the routes share: the served models, the counters, whether the -m model is still loading."""

    config: ServerConfig
    models: ServedModels
    metrics: Metrics = field(default_factory=Metrics)
    preloading: bool = False  # the -m model is loading: /health says so
    stopping: bool = False
    running: dict[int, Reply] = field(default_factory=dict)  # replies being written, by id: their tokens count live
    log: Callable[[str], None] = lambda line: None
    _finishing: set[asyncio.Task[None]] = field(default_factory=set)
    _leasing: ThreadPoolExecutor = field(  # threads of their own: requests waiting for a load never starve the rest
        default_factory=lambda: ThreadPoolExecutor(max_workers=LEASING_THREADS, thread_name_prefix="edgellm-lease")
    )

    async def lease(self, entry: Entry, keep_alive: float | None = None, embed: bool = False) -> Lease:
        """Hold the model `entry` names, loading it first (off the event loop); a client that leaves while it
        loads lets it go once loaded."""
        if self.stopping:
            raise ShuttingDown()
        future = asyncio.get_running_loop().run_in_executor(
            self._leasing, self.models.acquire, entry, keep_alive, embed
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda done: None if done.exception() else done.result().release())
            raise

    def finish_later(self, job: Job, finish: Finish) -> None:
        """Count and log a request whose client left once its job has ended (at the next token)."""

        async def wait() -> None:
            error = await wait_end(job)
            finish.end(500 if error is not None else CLIENT_GONE, error)
            self._finishing.discard(task)

        task = asyncio.get_running_loop().create_task(wait())
        self._finishing.add(task)  # held until done: the loop keeps only weak references to tasks

    def metrics_text(self) -> str:
        running_tokens = sum(reply.stats.completion_tokens for reply in self.running.values() if reply.stats)
        loaded = self.models.loaded()
        return render(
            self.metrics,
            sum(served.scheduler.waiting for served in loaded),
            sum(served.scheduler.busy for served in loaded),
            running_tokens,
            bool(loaded),
            batching=self.batching(),
        )

    def batching(self) -> Batching:
        """The slots and steps of every loaded model, summed."""
        total = Batching(slots=0)
        for served in self.models.loaded():
            engine = served.model.model
            slots = engine.slots()
            busy = sum(slot.busy for slot in slots)
            if isinstance(engine, BatchedModel):
                found = Batching(len(slots), busy, engine.steps, engine.step_tokens, engine.step_sequences)
            else:
                found = Batching(len(slots), busy)
            total = Batching(*(a + b for a, b in zip(astuple(total), astuple(found), strict=True)))
        return total if total.slots else Batching()


async def embed_texts(lease: Lease, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
    """The texts' pooled vectors (not normalised) from the lease's embedder, and the tokens they took."""
    embedder = lease.served.embedder
    assert embedder is not None, "leased with embed=True"
    found = await asyncio.to_thread(embedder.embed, texts, truncate)
    return found.vectors, found.prompt_tokens


def printable(line: str) -> str:
    """A log line that cannot forge another: control characters (from a path or a parameter's name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "-"


def from_this_machine(request: Request) -> bool:
    """Whether the client connects from the server's own machine (a loopback address)."""
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON: 413 past `limit` bytes (checked before reading when the length is declared), 400 if it
    is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413, f"the request body is {int(declared)} bytes; this server takes at most {limit}", "request_too_large"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(
                413, f"the request body is over {limit} bytes, the most this server takes", "request_too_large"
            )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the request body is not valid JSON: {error}", "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "the request body is JSON nested too deeply", "invalid_json") from None


def grammar_source(request: CompletionRequest) -> str:
    """The request field its grammar came from."""
    if request.grammar is not None:
        return "grammar"
    return "response_format" if request.response_format is not None else "tools"


def shape(request: CompletionRequest) -> ReplyShape:
    """What the request asks the reply to be, for the session layer."""
    response = request.response_format
    return ReplyShape(
        tools=request.tools,
        tool_choice=request.tool_choice,
        parallel_tool_calls=request.parallel_tool_calls,
        json=response is not None,
        schema=response.schema if response is not None else None,
        grammar=request.grammar,
        logprobs=request.logprobs,
    )


def prepare(model: ChatModel, request: CompletionRequest) -> Prepared:
    """Render and tokenize the prompt (off the event loop: a long one takes a while), worded for the API."""
    try:
        return model.prepare_request(request.messages, request.prompt, request.options, shape(request))
    except ContextOverflow as error:
        n_ctx = model.n_ctx
        if error.reason is not None and error.reason.code == "prompt_and_reply_too_long":
            message = (
                f"the prompt is {error.reason['prompt']} tokens and max_tokens asks for {error.reason['wanted']} "
                f"more: together more than this server's {n_ctx}-token context; ask for fewer max_tokens or "
                f"shorten the prompt"
            )
            raise ApiError(400, message, "context_length_exceeded", "max_tokens") from None
        if request.messages is None:
            message = (
                f"the prompt is {error.needed} tokens, more than this server's {n_ctx}-token context "
                f"leaves for a reply; shorten the prompt"
            )
        else:
            message = (
                f"the last message needs {error.needed} tokens with the system prompt, more than the "
                f"{error.available} that this server's {n_ctx}-token context leaves for it once the reply "
                f"has room; shorten the message or ask for fewer max_tokens"
            )
        raise ApiError(400, message, "context_length_exceeded", "messages" if request.messages else "prompt") from None
    except TemplateRefused as error:
        raise ApiError(400, str(error), "template_error", "messages") from None
    except EmptyPrompt:
        raise ApiError(400, "the prompt is empty: send some text to complete", "empty_prompt", "prompt") from None
    except UnsupportedSchema as error:
        raise ApiError(400, str(error), "unsupported_schema", "response_format") from None
    except NoVision as error:  # images sent to a model that reads text only
        raise ApiError(400, str(error), "model_not_vision", "messages") from None
    except ImageRefused as error:  # an image its header passed but the projector could not read
        raise ApiError(400, str(error), "invalid_image", "messages") from None


def refused(error: BaseException) -> ApiError:
    """The 503 for a request the scheduler will not take."""
    if isinstance(error, QueueFull):
        return ApiError(
            503,
            "the server is busy: the queue of waiting requests is full; retry later",
            "queue_full",
            kind="server_error",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return ApiError(
        503,
        "the server is shutting down; this request was not started",
        "shutting_down",
        kind="server_error",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


@dataclass
class Started:
    """A request whose job has the model: its job, the task watching its client, and its end's bookkeeping."""

    job: Job
    watcher: asyncio.Task[None]
    finish: Finish


async def start_job(
    state: ServerState,
    http: Request,
    lease: Lease,
    prepared: Prepared,
    reply: Reply,
    started: float,
    after: Callable[[], None] | None = None,
) -> Started | None:
    """Queue the prepared reply on the lease's model and wait for it to start; None when its client left first
    (counted). `after`: what else needs the model once the reply is written, done in the job (the model is let go
    when the job ends). Refusals raise QueueFull or ShuttingDown."""
    model = lease.model

    def work(cancel: threading.Event) -> Generator[AnswerPiece | ReasoningPiece | ToolCallPiece, None, None]:
        yield from model.stream(prepared, reply, prepared.options, cancel)
        if after is not None:
            after()

    job = Job(work, asyncio.get_running_loop(), on_end=lease.release)  # the model is let go when the job ends
    lease.scheduler.submit(job)
    watcher = asyncio.create_task(_watch_disconnect(http, lease.scheduler, job))
    finish = Finish(state, http, reply, started, job, lease)
    try:
        first = await job.events.get()
    except BaseException:  # the handler was cancelled while its request waited
        watcher.cancel()
        lease.scheduler.withdraw(job)
        finish.end(CLIENT_GONE)
        raise
    if isinstance(first, Ended):  # withdrawn (its client left), or refused by a shutdown
        watcher.cancel()
        if first.error is not None:
            lease.release()
            raise first.error
        finish.end(CLIENT_GONE)
        return None
    state.running[id(reply)] = reply
    return Started(job, watcher, finish)


def failure_of(error: BaseException, request: CompletionRequest) -> ApiError:
    if isinstance(error, (GrammarDeadEnd, GrammarInvalid)):  # the request's grammar: its own fault, nobody else's
        code = "grammar_dead_end" if isinstance(error, GrammarDeadEnd) else "invalid_grammar"
        return ApiError(400, str(error), code, grammar_source(request))
    if isinstance(error, (WorkerLost, WorkerUnreachable)):  # a split's worker: the next request may find it back
        return ApiError(
            503,
            f"the reply failed: {error}",
            "worker_lost" if isinstance(error, WorkerLost) else "worker_unreachable",
            kind="server_error",
        )
    return ApiError(500, f"the reply failed: {type(error).__name__}: {error}", "generation_failed", kind="server_error")


@dataclass
class Pieces:
    """What a job wrote since it was last read: text, reasoning and pieces of calls, and whether (and how) it ended."""

    text: str = ""
    reasoning: str = ""
    calls: list[Delta] = field(default_factory=list)
    ended: bool = False
    error: BaseException | None = None


async def next_pieces(job: Job) -> Pieces:
    """The job's events since the last read, waited for and merged (the client reads slower than the model
    writes)."""
    events = [await job.events.get()]
    while not job.events.empty():
        events.append(job.events.get_nowait())
    found = Pieces()
    for event in events:
        if isinstance(event, AnswerPiece):
            found.text += event.text
        elif isinstance(event, ReasoningPiece):
            found.reasoning += event.text
        elif isinstance(event, ToolCallPiece):
            found.calls.append(event.delta)
        elif isinstance(event, Ended):
            found.ended, found.error = True, event.error
    return found


async def wait_end(job: Job) -> BaseException | None:
    """Wait for a job's end (the reply fills as it runs); what broke it, if anything."""
    while True:
        event = await job.events.get()
        if isinstance(event, Ended):
            return event.error


async def _watch_disconnect(http: Request, scheduler: Scheduler, job: Job) -> None:
    """Withdraw the job when its client closes the connection: queued, it leaves the queue; running, it stops at
    its next token."""
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            scheduler.withdraw(job)
            return


class Finish:
    """Counts and logs one request once, however it ends."""

    def __init__(self, state: ServerState, http: Request, reply: Reply, started: float, job: Job, lease: Lease) -> None:
        self.state, self.http, self.reply, self.started, self.job, self.lease = state, http, reply, started, job, lease
        self._done = False

    @property
    def queued_s(self) -> float:
        """How long the job waited in the server's queue for a runner."""
        job = self.job
        return 0.0 if job.started_at is None else max(0.0, job.started_at - job.submitted_at)

    def end(self, status: int, error: BaseException | None = None) -> None:
        """Count the request and its tokens, and log one line (with the traceback of a reply that broke)."""
        if self._done:
            return
        self._done = True
        self.lease.release()  # its keep-alive counts from now; an unload waits for a job still stopping
        state, reply, stats = self.state, self.reply, self.reply.stats
        state.running.pop(id(reply), None)
        path = self.http.url.path
        state.metrics.answered(path, status)
        if stats is not None:
            queued = self.queued_s + (stats.queue_ms or 0.0) / 1000
            state.metrics.replied(
                stats.prompt_tokens, stats.completion_tokens, stats.ttft_ms, stats.tokens_per_s, queued
            )
        speed = f" {stats.tokens_per_s:.1f} tok/s" if stats and stats.tokens_per_s else ""
        tokens = f" {stats.prompt_tokens}+{stats.completion_tokens} tokens" if stats else ""
        gone = " (client went away)" if status == CLIENT_GONE else ""
        state.log(
            printable(
                f"{client_of(self.http)} POST {path} {status}{tokens}{speed} "
                f"{time.perf_counter() - self.started:.2f} s{gone}"
            )
        )
        if isinstance(error, EdgellmError):  # said in its own words (a split's worker lost): no traceback
            state.log(printable(f"the reply failed: {error}"))
        elif error is not None:
            state.log("the reply failed:\n" + "".join(traceback.format_exception(error)).rstrip())
