"""The HTTP face of the served models: the app, its OpenAI routes (/v1), /health, /metrics and /slots, with the
Ollama API's routes (`ollama_routes`) beside them.

Thin by design: the request is checked by `api.openai`, its model leased from the served models, the prompt
prepared by the chat layer (`ChatModel`), the turn taken through the model's `Scheduler` (`turns`), and the answer
shaped by `api.openai` again. No chat history is written.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgellm.api import openai
from edgellm.api.ollama import OllamaError
from edgellm.api.openai import Answer, ApiError, CompletionRequest
from edgellm.errors import EdgellmError
from edgellm.server.metrics import CONTENT_TYPE
from edgellm.server.turns import (
    CLIENT_GONE,
    ENDPOINTS,
    Finish,
    ServerState,
    client_of,
    embed_texts,
    failure_of,
    from_this_machine,
    next_pieces,
    prepare,
    printable,
    read_json,
    refused,
    start_job,
    wait_end,
)
from edgellm.session.events import Reply
from edgellm.session.scheduler import Job, QueueFull, ShuttingDown
from edgellm.session.served import Entry, Lease, ModelNotFound, NoRoom

ANY_CONTEXT = 2**31  # the context a request is first checked against, before its model is known


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="edgellm", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.edgellm = state
    if state.config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(state.config.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
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

    @app.exception_handler(OllamaError)
    async def ollama_error(request: Request, error: OllamaError) -> JSONResponse:
        path = request.url.path
        state.metrics.answered(path if path in ENDPOINTS else "other", error.status)
        state.log(printable(f"{client_of(request)} {request.method} {path} {error.status} {error.message}"))
        return JSONResponse(error.body(), status_code=error.status)

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
        status, code = ("stopping", 503) if state.stopping else ("loading", 503) if state.preloading else ("ok", 200)
        return JSONResponse({"status": status}, status_code=code)

    @app.get("/metrics", dependencies=[Depends(require_key)])
    async def metrics() -> Response:
        return Response(state.metrics_text(), media_type=CONTENT_TYPE)

    @app.get("/slots", dependencies=[Depends(require_key)])
    async def slots(request: Request) -> JSONResponse:
        """Each slot's state, as llama-server's /slots shows it (with the model's name when several are loaded)."""
        loaded = state.models.loaded()
        found = [
            {**slot.as_dict(), **({"model": served.name} if len(loaded) > 1 else {})}
            for served in loaded
            for slot in served.model.model.slots()
        ]
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(found)

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models(request: Request) -> JSONResponse:
        state.metrics.answered(request.url.path, 200)
        entries, vision = await asyncio.to_thread(_models, state)
        return JSONResponse(openai.model_list([(entry.name, int(entry.modified)) for entry in entries], vision))

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    async def chat_completions(request: Request) -> Response:
        return await _complete(state, request, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(require_key)])
    async def completions(request: Request) -> Response:
        return await _complete(state, request, chat=False)

    @app.post("/v1/embeddings", dependencies=[Depends(require_key)])
    async def embeddings(request: Request) -> JSONResponse:
        body = await read_json(request, state.config.max_body_bytes)
        wanted = openai.parse_embeddings(body)
        lease = await openai_lease(state, await asyncio.to_thread(entry_or_404, state, body), embed=True)
        try:
            embedder = lease.served.embedder
            assert embedder is not None
            if wanted.dimensions is not None and wanted.dimensions != embedder.dimensions:
                raise openai.bad(
                    f"dimensions: {lease.served.name} gives vectors of {embedder.dimensions} and cannot shorten them; "
                    "leave dimensions out",
                    "dimensions",
                )
            try:
                vectors, tokens = await embed_texts(lease, wanted.inputs, truncate=False)
            except EdgellmError as error:
                raise openai.bad(str(error), "input") from None
        finally:
            lease.release()
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(openai.embedding_list(lease.served.name, vectors, tokens, wanted.base64))

    from edgellm.server import ollama_routes  # beside this module's routes: it builds on their pieces

    ollama_routes.add_routes(app, state, require_key)
    return app


def _models(state: ServerState) -> tuple[list[Entry], set[str]]:
    """The models the server can run, and the names of those that read images."""
    entries = state.models.entries()
    return entries, {entry.name for entry in entries if state.models.reads_images(entry)}


def _error_response(state: ServerState, request: Request, error: ApiError) -> JSONResponse:
    path = request.url.path
    state.metrics.answered(path if path in ENDPOINTS else "other", error.status)
    state.log(printable(f"{client_of(request)} {request.method} {path} {error.status} {error.message}"))
    body = {"error": error.message} if path.startswith("/api/") else error.body()  # Ollama's shape on its routes
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def entry_or_404(state: ServerState, body: Any) -> Entry:
    """The model an OpenAI request names (`model`); an unknown name means the -m model when there is one, since
    OpenAI clients send any name."""
    name = body.get("model") if isinstance(body, dict) else None
    if name is not None and not isinstance(name, str):
        raise openai.bad("model must be a string naming a model in GET /v1/models", "model")
    try:
        if not name:
            if state.models.default is None:
                raise openai.bad("model is required: name one of GET /v1/models", "model")
            return state.models.default
        return state.models.resolve(name, fallback=True)
    except ModelNotFound:
        raise ApiError(
            404,
            f"the model {name!r} does not exist here: GET /v1/models lists them",
            "model_not_found",
            "model",
        ) from None


async def openai_lease(state: ServerState, entry: Entry, embed: bool = False) -> Lease:
    """The lease, its failures worded for the OpenAI API."""
    try:
        return await state.lease(entry, embed=embed)
    except ShuttingDown as refusal:
        raise refused(refusal) from None
    except NoRoom as error:
        raise ApiError(503, str(error), "no_room", kind="server_error", headers={"Retry-After": "30"}) from None
    except EdgellmError as error:  # does not fit, cannot load: said in its own words
        raise ApiError(500, f"cannot load {entry.name}: {error}", "model_load_failed", kind="server_error") from None


async def _complete(state: ServerState, http: Request, chat: bool) -> Response:
    started = time.perf_counter()
    body = await read_json(http, state.config.max_body_bytes)
    # a bad request is said before any model loads; read off the event loop (its images are decoded or read), the
    # server's files named by file:// URLs only for clients on this machine
    if chat:
        local = from_this_machine(http)
        request = await asyncio.to_thread(
            openai.parse_chat, body, state.config.defaults, ANY_CONTEXT, local_files=local
        )
    else:
        request = await asyncio.to_thread(openai.parse_text, body, state.config.defaults, ANY_CONTEXT)
    lease = await openai_lease(state, await asyncio.to_thread(entry_or_404, state, body))
    try:
        model = lease.model
        openai.within_context(body, request.options.max_tokens, model.n_ctx)
        lease.scheduler.check_room()  # before the prompt is prepared: a refused request costs nothing
        for tool in request.tools:  # said, never silent: what the grammar leaves to the tool
            if tool.unenforced:
                state.log(printable(f"tool {tool.name}: not enforced by the grammar: {', '.join(tool.unenforced)}"))
        prepared = await asyncio.to_thread(prepare, model, request)
        reply = Reply()
        begun = await start_job(state, http, lease, prepared, reply, started)
    except (QueueFull, ShuttingDown) as refusal:
        lease.release()
        raise refused(refusal) from None
    except BaseException:
        lease.release()
        raise
    if begun is None:
        return Response(status_code=CLIENT_GONE)
    job, watcher, finish = begun.job, begun.watcher, begun.finish
    answer = Answer.start(chat, lease.served.name)
    text_before = request.prompt if request.echo and request.prompt else ""
    if request.stream:
        return StreamingResponse(
            _stream(state, request, answer, job, watcher, finish, text_before),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        error = await wait_end(job)
    except BaseException:  # the handler itself was cancelled
        finish.lease.scheduler.withdraw(job)
        state.finish_later(job, finish)
        raise
    finally:
        watcher.cancel()
    if error is not None:
        failure = failure_of(error, request)
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


async def _stream(
    state: ServerState,
    request: CompletionRequest,
    answer: Answer,
    job: Job,
    watcher: asyncio.Task[None],
    finish: Finish,
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
            pieces = await next_pieces(job)
            text, reasoning, calls, ended, error = (
                pieces.text,
                pieces.reasoning,
                pieces.calls,
                pieces.ended,
                pieces.error,
            )
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
            failure = failure_of(error, request)
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
            finish.lease.scheduler.withdraw(job)
            state.finish_later(job, finish)
