"""The Ollama API on the server's port: the routes Open WebUI, Continue and the `ollama` clients call.

Thin like the OpenAI routes: `api.ollama` checks each body and shapes each answer, the served models hold the
models by name, the scheduler takes the turns. Streams are NDJSON (one object a line, never a blank one); an error
before the stream is `{"error": ...}` with its status, an error after it began is a last `{"error": ...}` line.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from edgellm.api import ollama
from edgellm.api.ollama import Durations, OllamaError, OllamaRequest
from edgellm.api.openai import ApiError, TokenLogprobs, normalize
from edgellm.errors import EdgellmError, UnknownToken
from edgellm.server.turns import (
    ServerState,
    Started,
    embed_texts,
    failure_of,
    next_pieces,
    prepare,
    read_json,
    refused,
    start_job,
    wait_end,
)
from edgellm.session.events import Reply
from edgellm.session.scheduler import QueueFull, ShuttingDown
from edgellm.session.served import Entry, Lease, ModelNotFound, NoRoom, facts

NDJSON = "application/x-ndjson"
RUNNING = "Ollama is running"  # what clients look for at GET / (edgellm answers in Ollama's words)


def add_routes(app: FastAPI, state: ServerState, require_key: Callable[[Request], Awaitable[None]]) -> None:
    """Ollama's routes on `app`."""
    guarded = [Depends(require_key)]

    @app.api_route("/", methods=["GET", "HEAD"])
    async def running() -> Response:
        return PlainTextResponse(RUNNING)

    @app.api_route("/api/version", methods=["GET", "HEAD"])
    async def version() -> JSONResponse:
        return JSONResponse(ollama.version())

    @app.api_route("/api/tags", methods=["GET", "HEAD"], dependencies=guarded)
    async def tags(request: Request) -> JSONResponse:
        listed = await asyncio.to_thread(_listed, state)
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(ollama.tags(listed))

    @app.post("/api/show", dependencies=guarded)
    async def show(request: Request) -> JSONResponse:
        body = await _body(state, request)
        entry = await _entry(state, ollama.model_name(body))
        try:
            found = await asyncio.to_thread(_facts, state, entry)
        except (EdgellmError, OSError, ValueError) as error:
            raise OllamaError(500, f"cannot read {entry.name}: {error}") from None
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(ollama.show(found, _parameters(state, entry)))

    @app.get("/api/ps", dependencies=guarded)
    async def ps(request: Request) -> JSONResponse:
        loaded = await asyncio.to_thread(_loaded, state)
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(ollama.ps(loaded))

    @app.post("/api/chat", dependencies=guarded)
    async def chat(request: Request) -> Response:
        return await _complete(state, request, generate=False)

    @app.post("/api/generate", dependencies=guarded)
    async def generate(request: Request) -> Response:
        return await _complete(state, request, generate=True)

    @app.post("/api/embed", dependencies=guarded)
    async def embed(request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await _body(state, request)
        keep_alive = ollama.keep_alive(body.get("keep_alive"))
        entry = await _entry(state, ollama.model_name(body))
        if body.get("input") in (None, "", []):  # no input: load the model (as Ollama does), embed nothing
            (await _lease(state, entry, keep_alive, embed=True)).release()
            answer = ollama.embed_answer(ollama.with_tag(entry.name), [], Durations(time.perf_counter() - started))
            state.metrics.answered(request.url.path, 200)
            return JSONResponse(answer)
        texts, truncate, dimensions = ollama.embed_inputs(body)
        loaded = state.models.is_loaded(entry)
        vectors, tokens, load_s = await _embed(state, entry, texts, truncate, keep_alive)
        if dimensions is not None:
            vectors = [vector[:dimensions] for vector in vectors]
        answer = ollama.embed_answer(
            ollama.with_tag(entry.name),
            [normalize(vector) for vector in vectors],
            Durations(time.perf_counter() - started, 0.0 if loaded else load_s, tokens),
        )
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(answer)

    @app.post("/api/embeddings", dependencies=guarded)
    async def embeddings(request: Request) -> JSONResponse:
        body = await _body(state, request)
        prompt = ollama.embeddings_prompt(body)
        entry = await _entry(state, ollama.model_name(body))
        vectors, _, _ = await _embed(state, entry, [prompt], True, ollama.keep_alive(body.get("keep_alive")))
        state.metrics.answered(request.url.path, 200)
        return JSONResponse(ollama.embeddings_answer(vectors[0]))

    @app.post("/api/pull", dependencies=guarded)
    async def pull(request: Request) -> Response:
        body = await _body(state, request)
        name = ollama.model_name(body)
        stream = body.get("stream", True) is not False
        return await _pull(state, request, name, stream)

    @app.delete("/api/delete", dependencies=guarded)
    async def delete(request: Request) -> Response:
        body = await _body(state, request)
        entry = await _entry(state, ollama.model_name(body), exact=True)
        if entry.stored is None:
            raise OllamaError(400, f"{entry.name} is the model this server was started with, not a stored one")
        await asyncio.to_thread(_delete, state, entry)
        state.log(f"deleted {entry.name}")
        state.metrics.answered(request.url.path, 200)
        return Response(status_code=200)

    @app.post("/api/copy", dependencies=guarded)
    async def copy(request: Request) -> Response:
        body = await _body(state, request)
        source, destination = ollama.copy_names(body)
        entry = await _entry(state, source, exact=True)
        await asyncio.to_thread(_copy, entry, ollama.with_tag(destination))
        state.metrics.answered(request.url.path, 200)
        return Response(status_code=200)


# --- what the routes share -----------------------------------------------------------------------------------


async def _body(state: ServerState, request: Request) -> dict[str, Any]:
    """The body as a JSON object, its faults in Ollama's words."""
    try:
        body = await read_json(request, state.config.max_body_bytes)
    except ApiError as error:
        raise OllamaError(error.status, error.message) from None
    if not isinstance(body, dict):
        raise ollama.bad("the request body must be a JSON object")
    return body


async def _entry(state: ServerState, name: str, exact: bool = False) -> Entry:
    """The model a name means (`:latest` is no tag; `exact`: a store name or alias, never a repo's best quant);
    404 `model 'x' not found` otherwise. The store is read off the event loop."""
    try:
        return await asyncio.to_thread(state.models.resolve, name, False, exact)
    except ModelNotFound:
        raise ollama.not_found(name) from None


def _facts(state: ServerState, entry: Entry) -> ollama.ModelFacts:
    """What the Ollama API tells of a model, `vision` among its capabilities when a projector goes with it."""
    found = facts(entry)
    if "vision" not in found.capabilities and state.models.reads_images(entry):
        found = replace(found, capabilities=(*found.capabilities, "vision"))
    return found


def _listed(state: ServerState) -> list[ollama.ModelFacts]:
    listed = []
    for entry in state.models.entries():
        try:
            listed.append(_facts(state, entry))
        except (EdgellmError, OSError, ValueError):  # a file that is gone or broken is left out of the list
            continue
    return listed


def _loaded(state: ServerState) -> list[ollama.Loaded]:
    now_wall, now = time.time(), time.monotonic()
    found = []
    for served in state.models.loaded():
        cpu, gpu = served.memory
        left = served.expires_in(now)
        expires = (
            None
            if served.keep_alive == ollama.FOREVER
            else now_wall + (left if left is not None else served.keep_alive)
        )
        found.append(ollama.Loaded(facts(served.entry), cpu + gpu, gpu, expires, served.planned.n_ctx))
    return found


def _parameters(state: ServerState, entry: Entry) -> dict[str, Any]:
    """What /api/show says the model runs with: the server's sampling defaults and the context it plans."""
    options = state.config.defaults
    sampling = options.sampling
    found: dict[str, Any] = {
        "temperature": sampling.temp,
        "top_k": sampling.top_k,
        "top_p": sampling.top_p,
        "min_p": sampling.min_p,
        "repeat_penalty": sampling.repeat_penalty,
    }
    loaded = next((served for served in state.models.loaded() if served.entry.path == entry.path), None)
    if loaded is not None:
        found["num_ctx"] = loaded.planned.n_ctx
    if options.stop:
        found["stop"] = list(options.stop)
    return found


async def _lease(state: ServerState, entry: Entry, keep_alive: float | None, embed: bool = False) -> Lease:
    """The lease, its failures in Ollama's words."""
    try:
        return await state.lease(entry, keep_alive, embed)
    except ShuttingDown:
        raise OllamaError(503, "the server is shutting down") from None
    except NoRoom as error:
        raise OllamaError(503, str(error)) from None
    except EdgellmError as error:  # does not fit, cannot load
        raise OllamaError(500, f"cannot load {entry.name}: {error}") from None
    except Exception as error:  # a bug: said in Ollama's shape all the same
        raise OllamaError(500, f"cannot load {entry.name}: {type(error).__name__}: {error}") from None


async def _embed(
    state: ServerState, entry: Entry, texts: list[str], truncate: bool, keep_alive: float | None
) -> tuple[list[list[float]], int, float]:
    """The texts' raw vectors, the tokens they took, and the model's load time."""
    started = time.perf_counter()
    lease = await _lease(state, entry, keep_alive, embed=True)
    load_s = time.perf_counter() - started
    try:
        vectors, tokens = await embed_texts(lease, texts, truncate)
    except EdgellmError as error:
        raise OllamaError(400, str(error)) from None
    finally:
        lease.release()
    return vectors, tokens, load_s


def _delete(state: ServerState, entry: Entry) -> None:
    """Unload the model (once its requests end) and forget it in the store."""
    from edgellm.storage import store

    assert entry.stored is not None
    state.models.unload(entry)
    try:
        store.remove(entry.stored.name)
    except EdgellmError as error:
        raise OllamaError(404, str(error)) from None


def _copy(entry: Entry, destination: str) -> None:
    from edgellm.storage import store

    try:
        if entry.stored is not None:
            store.copy(entry.stored, destination)
        else:
            store.import_path(entry.path, name=destination)
    except EdgellmError as error:
        raise OllamaError(400, str(error)) from None


# --- chat and generate ---------------------------------------------------------------------------------------


async def _complete(state: ServerState, http: Request, generate: bool) -> Response:
    started = time.perf_counter()
    body = await _body(state, http)
    parse = ollama.parse_generate if generate else ollama.parse_chat
    request = await asyncio.to_thread(parse, body, state.config.defaults)  # off the event loop: images are decoded
    entry = await _entry(state, request.model)
    name = ollama.with_tag(entry.name)
    if request.completion is None:  # no prompt: load the model, or unload it (keep_alive 0)
        return await _load_or_unload(state, http, entry, request, generate, started)
    loaded = state.models.is_loaded(entry)
    lease = await _lease(state, entry, request.keep_alive)
    load_s = 0.0 if loaded else time.perf_counter() - started
    try:
        model = lease.model
        lease.scheduler.check_room()
        try:
            prepared = await asyncio.to_thread(prepare, model, request.completion)
        except ApiError as error:
            raise OllamaError(error.status, error.message) from None
        try:
            prepared = model.after_context(prepared, request.context, request.completion.options.max_tokens)
        except UnknownToken as error:
            raise OllamaError(400, f"context: {error}; send back the context an answer gave") from None
        reply = Reply()
        lines = _Lines(name, generate, request, reply, load_s, started)
        # /api/generate gives the exchange's tokens back as `context`, unless they hold images (no token carries one)
        after = (
            (lambda: lines.take_context(model.exchange(prepared, reply))) if generate and not request.images else None
        )
        begun = await start_job(state, http, lease, prepared, reply, started, after)
    except (QueueFull, ShuttingDown) as refusal:
        lease.release()
        raise OllamaError(503, refused(refusal).message) from None
    except BaseException:
        lease.release()
        raise
    if begun is None:
        return Response(status_code=499)
    if request.completion.stream:
        return StreamingResponse(_stream(state, begun, lines), media_type=NDJSON)
    try:
        broken = await wait_end(begun.job)
    except BaseException:
        lease.scheduler.withdraw(begun.job)
        state.finish_later(begun.job, begun.finish)
        raise
    finally:
        begun.watcher.cancel()
    if broken is not None:
        failure = failure_of(broken, request.completion)
        begun.finish.end(failure.status, broken)
        return JSONResponse({"error": failure.message}, status_code=failure.status)
    begun.finish.end(200)
    return JSONResponse(lines.whole())


async def _load_or_unload(
    state: ServerState, http: Request, entry: Entry, request: OllamaRequest, generate: bool, started: float
) -> Response:
    """An empty prompt or no messages: load the model (done_reason "load"), or with keep_alive 0 unload it."""
    name = ollama.with_tag(entry.name)
    if request.keep_alive == 0:
        await asyncio.to_thread(state.models.unload, entry)
        reason = "unload"
    else:
        (await _lease(state, entry, request.keep_alive)).release()
        reason = "load"
    durations = Durations(time.perf_counter() - started)
    created = ollama.timestamp(time.time())
    if generate:
        answer = ollama.generate_done(name, created, reason, durations, None)
    else:
        answer = ollama.chat_done(name, created, reason, durations)
    state.metrics.answered(http.url.path, 200)
    return JSONResponse(answer)  # one object, streamed or not, as Ollama answers it


class _Lines:
    """The answer's lines as the reply grows: its pieces, then the last line with the stats."""

    def __init__(
        self,
        name: str,
        generate: bool,
        request: OllamaRequest,
        reply: Reply,
        load_s: float,
        started: float,
    ) -> None:
        self.name, self.generate, self.request, self.reply = name, generate, request, reply
        self.load_s, self.started = load_s, started
        self.context: list[int] | None = None  # /api/generate: the exchange's tokens, taken while the model is held
        self.show_thinking = request.think is not False
        self.sent_logprobs = 0  # the tokens whose log-probabilities went in the lines so far

    def take_context(self, tokens: list[int]) -> None:
        self.context = tokens

    def logprobs(self, ended: bool) -> list[TokenLogprobs] | None:
        """The log-probabilities not sent yet (when asked), up to the reply's tokens once it has ended."""
        found = self.reply.logprobs
        if (
            self.request.completion is None
            or self.request.completion.logprobs is None
            or len(found) <= self.sent_logprobs
        ):
            return None
        stats = self.reply.stats
        upto = stats.completion_tokens if ended and stats is not None else len(found)
        fresh, self.sent_logprobs = found[self.sent_logprobs : upto], max(self.sent_logprobs, upto)
        return fresh or None

    def piece(self, text: str, thinking: str, ended: bool = False) -> dict[str, Any] | None:
        thinking = thinking if self.show_thinking else ""
        logprobs = self.logprobs(ended)
        if not (text or thinking or logprobs):
            return None
        created = ollama.timestamp(time.time())
        if self.generate:
            return ollama.generate_line(self.name, created, text, thinking, logprobs)
        return ollama.chat_line(self.name, created, text, thinking, logprobs=logprobs)

    def calls(self) -> dict[str, Any] | None:
        """The reply's tool calls, whole, on a line of their own before the last (as Ollama streams them)."""
        if self.generate or not self.reply.tool_calls:
            return None
        return ollama.chat_line(self.name, ollama.timestamp(time.time()), calls=self.reply.tool_calls)

    def durations(self) -> Durations:
        stats = self.reply.stats
        if stats is None:
            return Durations(time.perf_counter() - self.started, self.load_s)
        eval_s = stats.completion_tokens / stats.tokens_per_s if stats.tokens_per_s else 0.0
        return Durations(
            time.perf_counter() - self.started,
            self.load_s,
            stats.prompt_tokens,
            (stats.ttft_ms or 0.0) / 1000,
            stats.completion_tokens,
            eval_s,
        )

    def last(
        self, text: str = "", thinking: str = "", calls: bool = False, logprobs: list[TokenLogprobs] | None = None
    ) -> dict[str, Any]:
        reason = ollama.done_reason(self.reply.stop_reason)
        created = ollama.timestamp(time.time())
        thinking = thinking if self.show_thinking else ""
        if self.generate:
            context = self.context
            return ollama.generate_done(self.name, created, reason, self.durations(), context, text, thinking, logprobs)
        found = self.reply.tool_calls if calls else None
        return ollama.chat_done(self.name, created, reason, self.durations(), text, thinking, found, logprobs)

    def whole(self) -> dict[str, Any]:
        return self.last(self.reply.content, self.reply.reasoning, calls=True, logprobs=self.logprobs(ended=True))


async def _stream(state: ServerState, begun: Started, lines: _Lines) -> AsyncIterator[bytes]:
    """The reply as NDJSON lines, pieces merged when the client reads slower than the model writes."""
    job, finish = begun.job, begun.finish
    ended = False
    error: BaseException | None = None
    try:
        while not ended:
            pieces = await next_pieces(job)  # pieces of calls are left: calls go whole, once the reply is done
            ended, error = pieces.ended, pieces.error
            line = lines.piece(pieces.text, pieces.reasoning, ended)
            if line is not None:
                yield ollama.ndjson(line)
        if error is not None:
            assert lines.request.completion is not None  # a request with nothing to complete has no job
            failure = failure_of(error, lines.request.completion)
            finish.end(failure.status, error)
            yield ollama.ndjson({"error": failure.message})
            return
        if job.cancel.is_set() and lines.reply.interrupted:  # its client left
            finish.end(499)
            return
        calls = lines.calls()
        if calls is not None:
            yield ollama.ndjson(calls)
        yield ollama.ndjson(lines.last())
        finish.end(200)
    finally:
        begun.watcher.cancel()
        if not ended:
            finish.lease.scheduler.withdraw(job)
            state.finish_later(job, finish)


# --- pulling -------------------------------------------------------------------------------------------------


async def _pull(state: ServerState, http: Request, name: str, stream: bool) -> Response:
    """Pull a model from the Hugging Face Hub into the store (the best-fitting quant unless the tag names one),
    its progress as Ollama's status lines; a pull stopped part-way resumes on the next."""
    from edgellm.events import Progress
    from edgellm.hub.refs import parse_ref
    from edgellm.session.remote import stored_or_pulled

    for prefix in ("hf.co/", "huggingface.co/", "https://huggingface.co/"):
        name = name.removeprefix(prefix)
    bare = ollama.without_latest(name)
    try:
        ref = parse_ref(bare)
    except EdgellmError as error:
        raise OllamaError(400, str(error)) from None
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
    cancel = threading.Event()
    digest = hashlib.sha256(ref.name.encode()).hexdigest()  # the file's own is known only once it is whole

    def report(event: Any) -> None:
        if isinstance(event, Progress) and event.task == "download":
            line = ollama.pull_status(f"pulling {digest[:12]}", f"sha256:{digest}", event.total, event.done)
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def work() -> None:
        try:
            models = state.models
            stored = stored_or_pulled(
                ref, models.profile, models.flags.wishes(), models.flags.offline, report=report, cancel=cancel
            )
            for status in ("verifying sha256 digest", "writing manifest", "success"):
                loop.call_soon_threadsafe(lines.put_nowait, ollama.pull_status(status))
            state.log(f"pulled {stored.name}")
            loop.call_soon_threadsafe(lines.put_nowait, None)
        except BaseException as error:
            loop.call_soon_threadsafe(lines.put_nowait, error)

    await lines.put(ollama.pull_status("pulling manifest"))
    thread = threading.Thread(target=work, name="edgellm-pull", daemon=True)
    thread.start()

    async def produce() -> AsyncIterator[dict[str, Any] | BaseException]:
        try:
            while True:
                item = await lines.get()
                if item is None:
                    return
                yield item
                if isinstance(item, BaseException):
                    return
        finally:
            cancel.set()  # a client that leaves stops the download (the next pull resumes it)

    if not stream:
        last: dict[str, Any] = {}
        async for item in produce():
            if isinstance(item, BaseException):
                raise _pull_error(item)
            last = item
        state.metrics.answered(http.url.path, 200)
        return JSONResponse(last)

    async def body() -> AsyncIterator[bytes]:
        async for item in produce():
            yield ollama.ndjson(_pull_error(item).body() if isinstance(item, BaseException) else item)
        state.metrics.answered(http.url.path, 200)

    return StreamingResponse(body(), media_type=NDJSON)


def _pull_error(error: BaseException) -> OllamaError:
    if isinstance(error, EdgellmError):
        return OllamaError(500, f"pull failed: {error}")
    return OllamaError(500, f"pull failed: {type(error).__name__}: {error}")
