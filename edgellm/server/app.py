"""The HTTP face of one loaded model: FastAPI routes over the stateless completion, the scheduler and the metrics.

Thin by design: the request is checked by `protocol`, the prompt prepared by the chat layer (`ChatModel`), the
turn taken through the `Scheduler`, and the answer shaped by `protocol` again. No chat history is written.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgellm.api import openai
from edgellm.api.openai import Answer, ApiError, CompletionRequest
from edgellm.engine.batched import BatchedModel
from edgellm.errors import (
    ContextOverflow,
    EdgellmError,
    EmptyPrompt,
    GrammarDeadEnd,
    GrammarInvalid,
    TemplateRefused,
    WorkerLost,
    WorkerUnreachable,
)
from edgellm.grammar.json_schema import UnsupportedSchema
from edgellm.server.config import ServerConfig
from edgellm.server.metrics import CONTENT_TYPE, Batching, Metrics, render
from edgellm.server.scheduler import Ended, Job, QueueFull, Scheduler, ShuttingDown
from edgellm.session.completion import ChatModel, Prepared, ReplyShape
from edgellm.session.events import AnswerPiece, ReasoningPiece, Reply, ToolCallPiece
from edgellm.templates.tools import Delta

RETRY_AFTER_S = 5
CLIENT_GONE = 499  # nginx's status for a client that closed the connection before the answer
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/slots")


@dataclass
class ServerState:
    """What the routes share: the model once loaded, the turn-taking, the counters."""

    config: ServerConfig
    scheduler: Scheduler
    metrics: Metrics = field(default_factory=Metrics)
    model: ChatModel | None = None  # None while loading
    stopping: bool = False
    running: dict[int, Reply] = field(default_factory=dict)  # replies being written, by id: their tokens count live
    log: Callable[[str], None] = lambda line: None
    _finishing: set[asyncio.Task[None]] = field(default_factory=set)

    def ready_model(self) -> ChatModel:
        if self.stopping:
            raise _refused(ShuttingDown())
        if self.model is None:
            raise ApiError(
                503,
                "the model is still loading; retry when GET /health answers ok",
                "model_loading",
                kind="server_error",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return self.model

    def finish_later(self, job: Job, finish: _Finish) -> None:
        """Count and log a request whose client left once its job has ended (at the next token)."""

        async def wait() -> None:
            error = await _wait_end(job)
            finish.end(500 if error is not None else CLIENT_GONE, error)
            self._finishing.discard(task)

        task = asyncio.get_running_loop().create_task(wait())
        self._finishing.add(task)  # held until done: the loop keeps only weak references to tasks

    def metrics_text(self) -> str:
        running_tokens = sum(reply.stats.completion_tokens for reply in self.running.values() if reply.stats)
        return render(
            self.metrics,
            self.scheduler.waiting,
            self.scheduler.busy,
            running_tokens,
            self.model is not None,
            batching=self.batching(),
        )

    def batching(self) -> Batching:
        if self.model is None:
            return Batching(slots=self.scheduler.parallel)
        engine = self.model.model
        slots = engine.slots()
        busy = sum(slot.busy for slot in slots)
        if isinstance(engine, BatchedModel):
            return Batching(len(slots), busy, engine.steps, engine.step_tokens, engine.step_sequences)
        return Batching(len(slots), busy)


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="edgellm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.edgellm = state
    if state.config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(state.config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    async def require_key(request: Request) -> None:
        """The bearer token, compared in constant time; never logged, never echoed."""
        key = state.config.api_key
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # headers arrive as latin-1: compare the bytes the client sent with the key's UTF-8 bytes
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("latin-1"), key.encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send it as `Authorization: Bearer KEY`",
                "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error_response(state, request, error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = {
            404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(error.status_code, str(error.detail))
        return _error_response(state, request, ApiError(error.status_code, message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:  # a bug: logged with its traceback
        return _error_response(
            state,
            request,
            ApiError(500, f"internal error: {type(error).__name__}: {error}", "internal_error", kind="server_error"),
        )

    @app.get("/health")
    async def health() -> JSONResponse:
        status, code = ("stopping", 503) if state.stopping else ("loading", 503) if state.model is None else ("ok", 200)
        return JSONResponse({"status": status}, status_code=code)

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def metrics() -> Response:
        return Response(state.metrics_text(), media_type=CONTENT_TYPE)

    @app.get("/slots", dependencies=[Depends(require_key)])
    async def slots(request: Request) -> JSONResponse:
        """Each slot's state, as llama-server's /slots shows it."""
        model = state.model
        found = [slot.as_dict() for slot in model.model.slots()] if model is not None else []
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(found)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models(request: Request) -> JSONResponse:
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(openai.model_list(state.config.model_id, state.config.created))

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    async def chat_completions(request: Request) -> Response:
        return await _complete(state, request, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(require_key)])
    async def completions(request: Request) -> Response:
        return await _complete(state, request, chat=False)

    return app


def _error_response(state: ServerState, request: Request, error: ApiError) -> JSONResponse:
    path = request.url.path
    state.metrics.answered(path if path in ENDPOINTS else "other", error.status)
    state.log(printable(f"{_client(request)} {request.method} {path} {error.status} {error.message}"))
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def printable(line: str) -> str:
    """A log line that cannot forge another: control characters (from a path or a parameter's name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


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


def _prepare(model: ChatModel, request: CompletionRequest) -> Prepared:
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


def _refused(error: BaseException) -> ApiError:
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


async def _complete(state: ServerState, http: Request, chat: bool) -> Response:
    started = time.perf_counter()
    body = await read_json(http, state.config.max_body_bytes)
    model = state.ready_model()
    parse = openai.parse_chat if chat else openai.parse_text
    request = parse(body, state.config.defaults, model.n_ctx)
    try:
        state.scheduler.check_room()  # before the prompt is prepared: a refused request costs nothing
    except (QueueFull, ShuttingDown) as refusal:
        raise _refused(refusal) from None
    for tool in request.tools:  # said, never silent: what the grammar leaves to the tool
        if tool.unenforced:
            state.log(printable(f"tool {tool.name}: not enforced by the grammar: {', '.join(tool.unenforced)}"))
    prepared = await asyncio.to_thread(_prepare, model, request)
    reply = Reply()

    def work(cancel: threading.Event) -> Generator[AnswerPiece | ReasoningPiece | ToolCallPiece, None, None]:
        return model.stream(prepared, reply, prepared.options, cancel)

    job = Job(work, asyncio.get_running_loop())
    try:
        state.scheduler.submit(job)
    except (QueueFull, ShuttingDown) as refusal:
        raise _refused(refusal) from None
    watcher = asyncio.create_task(_watch_disconnect(http, state.scheduler, job))
    finish = _Finish(state, http, reply, started, job)
    try:
        first = await job.events.get()
    except BaseException:  # the handler was cancelled while its request waited
        watcher.cancel()
        state.scheduler.withdraw(job)
        raise
    if isinstance(first, Ended):  # withdrawn (its client left), or refused by a shutdown
        watcher.cancel()
        if first.error is not None:
            raise _refused(first.error)
        finish.end(CLIENT_GONE)
        return Response(status_code=CLIENT_GONE)
    state.running[id(reply)] = reply
    answer = Answer.start(chat, state.config.model_id)
    text_before = request.prompt if request.echo and request.prompt else ""
    if request.stream:
        return StreamingResponse(
            _stream(state, request, answer, job, watcher, finish, text_before),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        error = await _wait_end(job)
    except BaseException:  # the handler itself was cancelled
        state.scheduler.withdraw(job)
        state.finish_later(job, finish)
        raise
    finally:
        watcher.cancel()
    if error is not None:
        failure = _failure(error, request)
        finish.end(failure.status, error)
        return JSONResponse(failure.body(), status_code=failure.status)
    if job.cancel.is_set() and reply.interrupted:
        finish.end(CLIENT_GONE)
        return Response(status_code=CLIENT_GONE)
    finish.end(200)
    return JSONResponse(
        answer.whole(
            text_before + reply.content,
            reply.reasoning,
            reply.stats,
            reply.dropped_messages,
            reply.n_ctx,
            calls=reply.tool_calls,
            logprobs=reply.logprobs[: _tokens(reply)] if request.logprobs is not None else None,
            text_offset=len(text_before),
        )
    )


def _tokens(reply: Reply) -> int:
    return reply.stats.completion_tokens if reply.stats is not None else len(reply.logprobs)


def _failure(error: BaseException, request: CompletionRequest) -> ApiError:
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


async def _wait_end(job: Job) -> BaseException | None:
    """Wait for a job's end (the reply fills as it runs); what broke it, if anything."""
    while True:
        event = await job.events.get()
        if isinstance(event, Ended):
            return event.error


async def _stream(
    state: ServerState,
    request: CompletionRequest,
    answer: Answer,
    job: Job,
    watcher: asyncio.Task[None],
    finish: _Finish,
    text_before: str,
) -> AsyncIterator[bytes]:
    """The reply as server-sent events: pieces as they come (merged when the client reads slower than the model
    writes), then the finish reason, the usage if asked, and [DONE]."""
    error: BaseException | None = None
    ended = False
    try:
        reply = finish.reply
        first = bool(request.tools) and request.tool_choice.mode != "none"  # the first chunk waits: content or calls
        if not first:
            yield openai.sse(answer.chunk(text_before, first=True))
        sent_logprobs, offset = 0, len(text_before)  # log-probabilities sent; where the next text starts
        while not ended:
            events = [await job.events.get()]
            while not job.events.empty():
                events.append(job.events.get_nowait())
            text = reasoning = ""
            calls: list[Delta] = []
            for event in events:
                if isinstance(event, AnswerPiece):
                    text += event.text
                elif isinstance(event, ReasoningPiece):
                    reasoning += event.text
                elif isinstance(event, ToolCallPiece):
                    calls.append(event.delta)
                elif isinstance(event, Ended):
                    ended, error = True, event.error
            if first and not (text or reasoning or calls or ended):
                continue  # the first chunk says whether the reply is content or calls: nothing yet
            logprobs = None
            if request.logprobs is not None and len(reply.logprobs) > sent_logprobs:
                upto = len(reply.logprobs) if not ended else _tokens(reply)
                logprobs, sent_logprobs = reply.logprobs[sent_logprobs:upto], max(sent_logprobs, upto)
            groups = openai.delta_chunks(calls) or [[]]
            if first:
                chunk = answer.chunk(text_before + text, reasoning, first=True, calls=groups[0], logprobs=logprobs)
                first = False
            elif text or reasoning or calls or logprobs:
                chunk = answer.chunk(text, reasoning, calls=groups[0], logprobs=logprobs, text_offset=offset)
            else:
                continue
            offset += len(text)
            yield openai.sse(chunk)
            for group in groups[1:]:  # a call's first piece and its arguments go in chunks of their own
                yield openai.sse(answer.chunk(calls=group))
        if error is not None:
            failure = _failure(error, request)
            finish.end(failure.status, error)
            yield openai.sse(failure.body())
        elif job.cancel.is_set() and reply.interrupted:  # its client left (the watcher saw it first)
            finish.end(CLIENT_GONE)
            return
        else:
            yield openai.sse(answer.chunk(finish=openai.finish_reason(reply.stop_reason, bool(reply.tool_calls))))
            if request.include_usage:
                yield openai.sse(answer.usage_chunk(reply.stats, reply.dropped_messages, reply.n_ctx))
            finish.end(200)
        yield openai.sse("[DONE]")
    finally:
        watcher.cancel()
        if not ended:  # the client went away: stop the reply at its next token, count it once it has stopped
            state.scheduler.withdraw(job)
            state.finish_later(job, finish)


async def _watch_disconnect(http: Request, scheduler: Scheduler, job: Job) -> None:
    """Withdraw the job when its client closes the connection: queued, it leaves the queue; running, it stops at
    its next token."""
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            scheduler.withdraw(job)
            return


class _Finish:
    """Counts and logs one request once, however it ends."""

    def __init__(self, state: ServerState, http: Request, reply: Reply, started: float, job: Job) -> None:
        self.state, self.http, self.reply, self.started, self.job = state, http, reply, started, job
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
                f"{_client(self.http)} POST {path} {status}{tokens}{speed} "
                f"{time.perf_counter() - self.started:.2f} s{gone}"
            )
        )
        if isinstance(error, EdgellmError):  # said in its own words (a split's worker lost): no traceback
            state.log(printable(f"the reply failed: {error}"))
        elif error is not None:
            state.log("the reply failed:\n" + "".join(traceback.format_exception(error)).rstrip())
