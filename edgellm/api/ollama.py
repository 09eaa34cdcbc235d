"""The Ollama API's shapes as pure functions: request bodies checked into the typed requests the OpenAI layer uses,
replies shaped as Ollama's NDJSON lines and objects, errors as its `{"error": "..."}`. No HTTP and no model here.

Ollama's API is lenient where OpenAI's is strict, and clients count on it: unknown fields and unknown `options` keys
(mirostat, tfs_z, num_ctx...) are accepted and ignored, `stream` is true unless said, a missing tag means `:latest`.
What would change the result and cannot be done here (a custom `template`, a `suffix`) is refused by name (400),
never ignored. `images` (base64) are read into checked images, each written as MARKER before its message's text.
Durations are whole nanoseconds; times are RFC 3339; tool-call arguments are JSON objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from edgellm.api.openai import (
    MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS,
    ROLES,
    ApiError,
    CompletionRequest,
    ResponseFormat,
    TokenChoice,
    TokenLogprobs,
    _boolean,
    _enforceable,
    _integer,
    _past_calls,
    _text,
    _tools,
    marker_in,
    marker_refused,
    sampling_given,
)
from edgellm.engine.contract import GenerationOptions
from edgellm.errors import ImageRefused
from edgellm.media import MARKER
from edgellm.media.images import Image
from edgellm.media.sources import image_from_base64
from edgellm.templates.tools import ToolCall, ToolChoice

VERSION = "0.30.0"  # the Ollama API level followed; clients parse it as dotted numbers (Open WebUI, VS Code)
FOREVER = math.inf  # keep_alive: a negative value keeps the model loaded for ever
KEEP_ALIVE_DEFAULT = None  # what keep_alive() answers, and OllamaRequest.keep_alive holds, when the request did not
# say: the server's own default applies
FAR_FUTURE = datetime(2318, 1, 1, tzinfo=timezone.utc).timestamp()  # expires_at of a model kept for ever (Ollama's
# "now + the longest Go duration" lands in 2318 too)
THINK_LEVELS = ("low", "medium", "high", "max")
CAPABILITIES = ("completion", "tools", "insert", "vision", "embedding", "thinking")


class OllamaError(Exception):
    """An answer that is an error: its HTTP status and Ollama's error object, `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


def bad(message: str) -> OllamaError:
    return OllamaError(400, message)


def not_found(name: str) -> OllamaError:
    """The 404 for a model the server does not have, worded as Ollama words it (Continue matches the words)."""
    return OllamaError(404, f"model '{name}' not found")


@contextmanager
def _as_ollama() -> Iterator[None]:
    """The OpenAI layer's checks, reused: their 400s become Ollama's error shape, their words kept."""
    try:
        yield
    except ApiError as error:
        raise OllamaError(error.status, error.message) from None


def _shown(value: Any) -> str:
    """A value as JSON, for a message that quotes what the client sent."""
    return json.dumps(value, ensure_ascii=False, default=str)[:200]


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    return body


# --- names ---------------------------------------------------------------------------------------------------


def model_name(body: Any) -> str:
    """The model a request names: `model`, or the deprecated `name` (Continue's /api/show, older pulls)."""
    body = _object(body)
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad('model is required: name one as `model`, such as "gemma3:270m"')
    return name


def with_tag(name: str) -> str:
    """`name:tag`, a missing tag being `latest`; a `:` before the last `/` is a host's port, not a tag."""
    if not name or name.rfind(":") > name.rfind("/"):
        return name
    return f"{name}:latest"


def without_latest(name: str) -> str:
    """The name without a `:latest` tag (`foo:latest` is `foo`); any other tag stays."""
    if name.endswith(":latest") and name.rfind(":") > name.rfind("/"):
        return name[: -len(":latest")]
    return name


def copy_names(body: Any) -> tuple[str, str]:
    """/api/copy's `source` and `destination`."""
    body = _object(body)
    source, destination = body.get("source"), body.get("destination")
    for field, value in (("source", source), ("destination", destination)):
        if not isinstance(value, str) or not value.strip():
            raise bad(f'{field} is required: /api/copy takes {{"source": model, "destination": new name}}')
    return source, destination


# --- keep_alive ----------------------------------------------------------------------------------------------

DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
BARE_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")


def _duration(text: str) -> float | None:
    """A Go duration (`5m`, `1h30m`, `300ms`, `-1.5h`, `0`) in seconds; None when the text is not one."""
    sign, rest = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:] if text[:1] == "+" else text)
    if rest == "0":
        return 0.0
    seconds, at = 0.0, 0
    while at < len(rest):
        part = DURATION_PART.match(rest, at)
        if part is None:
            return None
        seconds += float(part[1]) * DURATION_UNITS[part[2]]
        at = part.end()
    return sign * seconds if rest else None


def keep_alive(value: Any) -> float | None:
    """How long the model stays loaded after this request, in seconds: None when not said (the server's default),
    FOREVER for a negative value, 0.0 to unload as soon as the reply is done. A number is seconds; a string is a Go
    duration ("5m", "1h30m", "300ms") or a number of seconds ("300")."""
    if value is None or value == "":
        return KEEP_ALIVE_DEFAULT
    seconds: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = float(max(-1, min(value, 2**53)))  # a number too large for a float is as good as for ever
    elif isinstance(value, float) and not math.isnan(value):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        seconds = float(text) if BARE_NUMBER.fullmatch(text) else _duration(text)
    if seconds is None:
        raise bad(
            'keep_alive must be a number of seconds or a duration such as "5m", "1h30m" or "300ms" '
            f"(negative: keep the model loaded for ever; 0: unload it after this request), not {_shown(value)}"
        )
    return FOREVER if seconds < 0 else seconds + 0.0  # -0 is 0


# --- requests ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OllamaRequest:
    """One checked /api/chat or /api/generate request."""

    model: str  # the name as the client sent it (`model`, or the deprecated `name`)
    completion: CompletionRequest | None  # None: nothing to generate (no messages, an empty prompt): load or unload
    keep_alive: float | None  # seconds, FOREVER, 0.0 to unload now; None: not said
    think: bool | None  # None: not said
    context: tuple[int, ...] = ()  # /api/generate's `context`: the token ids of an earlier exchange, before the prompt
    raw: bool = False  # /api/generate's `raw`: the prompt is completed as it is, with no template
    images: bool = False  # /api/generate: the prompt carries images, so the answer gives no `context` (its tokens
    # cannot carry them)


def _options(value: Any, defaults: GenerationOptions) -> GenerationOptions:
    """Ollama's `options`: the ones that shape the reply applied over the server's defaults; the runner's (num_ctx,
    num_gpu, num_thread...) and retired or unknown keys (mirostat, tfs_z...) accepted and left aside."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise bad('options must be an object of model options, such as {"temperature": 0.7, "num_predict": 128}')

    def given(key: str, read: Callable[[Any], Any], fallback: Any) -> Any:
        found = value.get(key)
        return fallback if found is None else read(found)

    sampling = sampling_given(given, defaults.sampling, "options.")
    # num_predict: -1 (no limit) and -2 (fill the context) leave the server's own limit; 0 is no limit in Ollama too
    predict = given("num_predict", _integer("options.num_predict", -2), -1)
    seed = given("seed", _integer("options.seed", -(2**63), 2**63 - 1), defaults.seed)
    return replace(
        defaults,
        sampling=sampling,
        max_tokens=predict if predict > 0 else defaults.max_tokens,
        seed=seed if seed == -1 else seed % 0xFFFFFFFF,  # llama.cpp's seeds are 32-bit; 0xFFFFFFFF means random
        stop=given("stop", _stops, defaults.stop),
        cache_prompt=True,  # a request's common prefix with the previous one is reused, as Ollama does
    )


def _stops(value: Any) -> tuple[str, ...]:
    """`options.stop`: a string or a list of strings (empty ones mean nothing and are dropped)."""
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise bad(f"options.stop must be a string or a list of strings, not {_shown(value)}")
    stops = [stop for stop in stops if stop]
    if len(stops) > MAX_STOP_SEQUENCES:
        raise bad(f"options.stop takes at most {MAX_STOP_SEQUENCES} sequences, not {len(stops)}")
    return tuple(_text(stop, "options.stop") for stop in stops)


def _format(value: Any) -> ResponseFormat | None:
    """`format`: "json" (any JSON object) or a JSON schema the reply must match; "" or null: free text."""
    if value is None or value == "":
        return None
    if value == "json":
        return ResponseFormat()
    if not isinstance(value, dict):
        raise bad(f'format must be "json" or a JSON schema object, not {_shown(value)}')
    _enforceable(value, "format")
    return ResponseFormat(value) if value else ResponseFormat()


def _think(value: Any) -> bool | None:
    """`think`: true or false, or a level ("low" to "max"), which asks for thinking."""
    if value is None or isinstance(value, bool):
        return value
    if value in THINK_LEVELS:
        return True
    raise bad(f'think must be true, false or one of "low", "medium", "high", "max", not {_shown(value)}')


def _logprobs(wanted: Any, top: Any) -> int | None:
    """`logprobs` and `top_logprobs`: None for none; k for each token's log-probability and the k most likely."""
    count = 0 if top is None else _integer("top_logprobs", 0, MAX_TOP_LOGPROBS)(top)
    return count if wanted is not None and _boolean("logprobs")(wanted) else None


def _images(value: Any, where: str, before: int) -> list[Image]:
    """Ollama's `images`: each the image file's bytes in base64 (`before`: the request's images read so far, so
    each is numbered in the request)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad(f"{where} must be a list of images, each the file's bytes in base64, not {_shown(value)}")
    images = []
    for number, item in enumerate(value):
        try:
            images.append(image_from_base64(item, index=before + number + 1))
        except ImageRefused as error:
            raise bad(f"{where}[{number}]: {error}") from None
    return images


def _with_images(text: str, images: list[Image]) -> dict[str, Any]:
    """A message's content and images as the session takes them: the images go before the text, each MARKER on a
    line of its own (as Ollama places them)."""
    if not images:
        return {"content": text}
    return {"content": f"{MARKER}\n" * len(images) + text, "images": images}


def _no_markers(body: dict[str, Any], images: int) -> None:
    """Text that holds MARKER is refused beside images: it would be taken for one."""
    if not images:
        return
    for field in ("messages", "prompt", "system", "tools"):
        where = marker_in(body.get(field), field, frozenset({"images"}))
        if where is not None:
            raise bad(marker_refused(where))


def _refused(body: dict[str, Any]) -> None:
    """What Ollama does and this server cannot: said by name, never ignored."""
    if body.get("template"):
        raise bad("template is not supported: the model's own chat template is used; leave `template` out")
    if body.get("suffix"):
        raise bad("suffix is not supported: this server does not fill in the middle; leave `suffix` out")


def _tool_list(value: Any) -> Any:
    """Ollama's tools: OpenAI's shape, where clients may leave out `"type": "function"`."""
    if not isinstance(value, list):
        return value
    return [{"type": "function", **item} if isinstance(item, dict) and "type" not in item else item for item in value]


def _message(item: Any, index: int, images: list[Image]) -> dict[str, Any]:
    """One of Ollama's chat messages as the OpenAI layer holds it: assistant `thinking` as `reasoning_content`,
    calls with their arguments objects, a tool result answering its call by id or else by the tool's name; a user
    message's `images` read and added to `images` (the request's so far)."""
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise bad(f"{where} must be an object with role and content")
    role = item.get("role")
    if role not in ROLES and role != "tool":
        raise bad(f"{where}.role must be one of system, user, assistant, tool, not {_shown(role)}")
    content = item.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise bad(f"{where}.content must be a string, not {_shown(content)}")
    if item.get("images") and role != "user":
        raise bad(f"{where}.images: only user messages carry images, not {role} messages")
    found = _images(item.get("images"), f"{where}.images", len(images))
    images.extend(found)
    message: dict[str, Any] = {
        "role": ROLES.get(role, "tool"),
        **_with_images(_text(content, f"{where}.content"), found),
    }
    thinking = item.get("thinking")
    if role == "assistant" and isinstance(thinking, str) and thinking:
        message["reasoning_content"] = _text(thinking, f"{where}.thinking")
    if role == "assistant" and item.get("tool_calls"):
        message["tool_calls"] = _past_calls(item["tool_calls"], f"{where}.tool_calls")
    if role == "tool":
        name = item.get("tool_name")
        call = item.get("tool_call_id")
        message["tool_call_id"] = call if isinstance(call, str) and call else name if isinstance(name, str) else ""
        if isinstance(name, str) and name:
            message["name"] = name
    return message


def _messages(value: Any) -> tuple[list[dict[str, Any]], int]:
    """The conversation, checked, and how many images it carries."""
    if value is None:
        return [], 0
    if not isinstance(value, list):
        raise bad("messages must be a list of {role, content} objects")
    images: list[Image] = []
    return [_message(item, index, images) for index, item in enumerate(value)], len(images)


def _common(body: dict[str, Any], defaults: GenerationOptions) -> tuple[CompletionRequest, float | None, bool | None]:
    """What chat and generate share: the options, the stream, the format, log-probabilities, keep_alive, think."""
    _refused(body)
    stream = body.get("stream")
    request = CompletionRequest(
        _options(body.get("options"), defaults),
        stream=True if stream is None else _boolean("stream")(stream),
        response_format=_format(body.get("format")),
        logprobs=_logprobs(body.get("logprobs"), body.get("top_logprobs")),
    )
    return request, keep_alive(body.get("keep_alive")), _think(body.get("think"))


def parse_chat(body: Any, defaults: GenerationOptions) -> OllamaRequest:
    """An /api/chat body, checked. No messages: a request that only loads (or, with keep_alive 0, unloads)."""
    body = _object(body)
    model = model_name(body)
    with _as_ollama():
        request, alive, think = _common(body, defaults)
        messages, images = _messages(body.get("messages"))
        _no_markers(body, images)
        tools = _tools(_tool_list(body.get("tools")))
    if tools and request.response_format is not None:
        raise bad("format cannot be combined with tools: send one or the other")
    completion = replace(request, messages=messages, tools=tools, tool_choice=ToolChoice("auto" if tools else "none"))
    return OllamaRequest(model, completion if messages else None, alive, think)


def _context(value: Any) -> tuple[int, ...]:
    """/api/generate's `context`: the token ids an earlier answer gave back."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(token, int) and not isinstance(token, bool) and token >= 0 for token in value
    ):
        raise bad("context must be the list of token ids (whole numbers) an earlier answer gave back")
    return tuple(value)


def parse_generate(body: Any, defaults: GenerationOptions) -> OllamaRequest:
    """An /api/generate body, checked. Without `raw` the prompt is a user message after `system`, through the
    model's template; with it the prompt is completed as it is (and `system` is left aside, as Ollama does). An
    empty prompt: a request that only loads (or, with keep_alive 0, unloads)."""
    body = _object(body)
    model = model_name(body)
    with _as_ollama():
        request, alive, think = _common(body, defaults)
        prompt, system = body.get("prompt"), body.get("system")
        for field, text in (("prompt", prompt), ("system", system)):
            if text is not None and not isinstance(text, str):
                raise bad(f"{field} must be a string, not {_shown(text)}")
            _text(text or "", field)
        raw = body.get("raw")
        raw = False if raw is None else _boolean("raw")(raw)
    context = _context(body.get("context"))
    images = _images(body.get("images"), "images", 0)
    if images and raw:
        raise bad("images cannot be sent with raw: true (a raw prompt has no place for them): leave raw out")
    if images and context:
        raise bad(
            "images cannot be sent with context (its tokens cannot carry an image): send the conversation to "
            "/api/chat as messages instead"
        )
    _no_markers(body, len(images))
    if not prompt and not images:
        return OllamaRequest(model, None, alive, think, context, raw)
    if raw:
        completion = replace(request, prompt=prompt)
    else:
        messages = [{"role": "system", "content": system}] if system else []
        user = {"role": "user", **_with_images(prompt or "", images)}
        completion = replace(request, messages=[*messages, user])
    return OllamaRequest(model, completion, alive, think, context, raw, bool(images))


# --- answers -------------------------------------------------------------------------------------------------


def timestamp(t: float) -> str:
    """A unix time in RFC 3339 with nanoseconds, in UTC (`2026-12-07T04:22:14.123456789Z`), as Ollama writes its
    times; Python 3.11's datetime.fromisoformat and pydantic both read it."""
    seconds = math.floor(t)
    nanos = round((t - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def ns(seconds: float) -> int:
    """A duration as Ollama counts it: whole nanoseconds (never below zero)."""
    return max(0, round(seconds * 1e9))


@dataclass(frozen=True)
class Durations:
    """What one answer took: all of it, loading the model (0 when it was loaded), the prompt and the reply."""

    total_s: float
    load_s: float = 0.0
    prompt_tokens: int = 0
    prompt_s: float = 0.0
    eval_tokens: int = 0
    eval_s: float = 0.0

    def as_dict(self) -> dict[str, int]:
        """Ollama's stats, in nanoseconds; the prompt's and the reply's left out when zero, as Ollama leaves them."""
        found = {"total_duration": ns(self.total_s), "load_duration": ns(self.load_s)}
        for key, value in (
            ("prompt_eval_count", self.prompt_tokens),
            ("prompt_eval_duration", ns(self.prompt_s)),
            ("eval_count", self.eval_tokens),
            ("eval_duration", ns(self.eval_s)),
        ):
            if value:
                found[key] = value
        return found


def done_reason(stop_reason: str) -> str:
    """Ollama's done_reason for edgellm's stop reason: a length or the full context is "length", a load or an
    unload is itself, anything else (the end of turn, a stop sequence, a loop, an interruption) is "stop"."""
    if stop_reason in ("length", "context"):
        return "length"
    return stop_reason if stop_reason in ("load", "unload") else "stop"


def _arguments(text: str) -> dict[str, Any]:
    """A call's arguments as the object Ollama sends; text that is not a JSON object (a call cut short) is none."""
    try:
        found = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """The calls of a reply in Ollama's shape: arguments as an object, each with its index."""
    return [
        {"id": call.id, "function": {"index": index, "name": call.name, "arguments": _arguments(call.arguments)}}
        for index, call in enumerate(calls)
    ]


def token_logprobs(found: list[TokenLogprobs]) -> list[dict[str, Any]]:
    """`logprobs` of an answer or line: each token's text, log-probability and bytes, with the most likely ones."""

    def one(choice: TokenChoice) -> dict[str, Any]:
        return {"token": choice[0], "logprob": choice[2], "bytes": list(choice[1])}

    return [{**one(chosen), "top_logprobs": [one(t) for t in top]} for chosen, top in found]


def _finished(
    line: dict[str, Any], reason: str, durations: Durations | None, logprobs: list[TokenLogprobs] | None
) -> dict[str, Any]:
    line = {**line, "done": True, "done_reason": reason, **(durations.as_dict() if durations else {})}
    if logprobs:
        line["logprobs"] = token_logprobs(logprobs)
    return line


def chat_line(
    model: str,
    created_at: str,
    content: str = "",
    thinking: str = "",
    calls: list[ToolCall] | None = None,
    logprobs: list[TokenLogprobs] | None = None,
) -> dict[str, Any]:
    """One streamed /api/chat line: a piece of the reply (thinking before content), or whole calls."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = tool_calls(calls)
    line: dict[str, Any] = {"model": model, "created_at": created_at, "message": message, "done": False}
    if logprobs:
        line["logprobs"] = token_logprobs(logprobs)
    return line


def chat_done(
    model: str,
    created_at: str,
    done_reason: str,
    durations: Durations | None,
    content: str = "",
    thinking: str = "",
    calls: list[ToolCall] | None = None,
    logprobs: list[TokenLogprobs] | None = None,
) -> dict[str, Any]:
    """The last /api/chat line, or the whole answer when not streamed: done, why, and the stats."""
    line = chat_line(model, created_at, content, thinking, calls)
    return _finished(line, done_reason, durations, logprobs)


def generate_line(
    model: str,
    created_at: str,
    response: str = "",
    thinking: str = "",
    logprobs: list[TokenLogprobs] | None = None,
) -> dict[str, Any]:
    """One streamed /api/generate line: a piece of the reply or of its thinking."""
    line: dict[str, Any] = {"model": model, "created_at": created_at, "response": response}
    if thinking:
        line["thinking"] = thinking
    line["done"] = False
    if logprobs:
        line["logprobs"] = token_logprobs(logprobs)
    return line


def generate_done(
    model: str,
    created_at: str,
    done_reason: str,
    durations: Durations | None,
    context: list[int] | None,
    response: str = "",
    thinking: str = "",
    logprobs: list[TokenLogprobs] | None = None,
) -> dict[str, Any]:
    """The last /api/generate line, or the whole answer when not streamed: done, why, the token ids of the exchange
    (`context`, for a next request to continue from) and the stats."""
    line = generate_line(model, created_at, response, thinking)
    if context is not None:
        line["context"] = list(context)
    return _finished(line, done_reason, durations, logprobs)


# Characters a line reader may take for the end of a line (httpx's, as ollama-python reads a stream, splits where
# str.splitlines does), left raw by json.dumps: escaped, so that one object is always one line.
LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def ndjson(obj: dict[str, Any]) -> bytes:
    """One NDJSON line: compact JSON and a newline; never a blank line, never a break inside the object."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for found, escaped in LINE_BREAKS.items():
        text = text.replace(found, escaped)
    return f"{text}\n".encode()


def version() -> dict[str, str]:
    return {"version": VERSION}


# --- models --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """What the server knows of one model, from the store and the GGUF header."""

    name: str  # name:tag, such as "unsloth/gemma-3-270m-GGUF:Q4_K_M" or "mymodel:latest"
    size: int  # bytes of its file(s)
    modified_at: float  # unix time
    digest: str  # hex sha256 (64 characters): the stored one, or a hash of what identifies the file when unknown
    architecture: str  # general.architecture
    parameters: int | None  # the parameter count, when known
    quantization: str  # such as "Q4_K_M"
    context_length: int | None  # the context it was trained for
    capabilities: tuple[str, ...]  # of CAPABILITIES: "completion", "tools", "thinking", "embedding", "insert"
    template: str = ""  # its chat template, when it has one
    embedding_length: int | None = None


def parameter_size(count: int | None) -> str:
    """A parameter count as Ollama shows it: "268.10M", "7.6B", "8B" (whole numbers lose their decimals)."""
    if count is None:
        return ""
    for scale, unit, decimals in ((1e9, "B", 1), (1e6, "M", 2)):
        if count >= scale:
            number = count / scale
            return f"{number:.{0 if number.is_integer() else decimals}f}{unit}"
    return f"{count / 1e3:.0f}K" if count >= 1000 else str(count)


def details(facts: ModelFacts) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": facts.architecture,
        "families": [facts.architecture] if facts.architecture else None,
        "parameter_size": parameter_size(facts.parameters),
        "quantization_level": facts.quantization,
    }


def tags(models: list[ModelFacts]) -> dict[str, Any]:
    """/api/tags: the models the server can run."""
    return {
        "models": [
            {
                "name": facts.name,
                "model": facts.name,
                "modified_at": timestamp(facts.modified_at),
                "size": facts.size,
                "digest": facts.digest,
                "details": details(facts),
                "capabilities": list(facts.capabilities),
            }
            for facts in models
        ]
    }


def _parameter_value(value: Any) -> str:
    """A parameter's value as Ollama writes it: text quoted, whole numbers without a fraction."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


def _parameter_lines(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """Each parameter's key and value as Ollama writes them; a list (such as stop) gives a line to each value."""
    return [
        (key, _parameter_value(one))
        for key, value in parameters.items()
        for one in (value if isinstance(value, (list, tuple)) else [value])
    ]


def show(facts: ModelFacts, parameters: dict[str, Any], system: str = "") -> dict[str, Any]:
    """/api/show: the model's details, header facts (`model_info`), capabilities, template and the parameters it runs
    with (`parameters`: "num_ctx 4096"-style lines, which Continue reads for num_ctx and stop)."""
    arch = facts.architecture
    info: dict[str, Any] = {"general.architecture": arch}
    if facts.parameters is not None:
        info["general.parameter_count"] = facts.parameters
    if facts.context_length is not None:
        info[f"{arch}.context_length"] = facts.context_length
    if facts.embedding_length is not None:
        info[f"{arch}.embedding_length"] = facts.embedding_length
    modelfile = [f"# Modelfile of {facts.name}, as edgellm serves it", f"FROM {facts.name}"]
    lines = _parameter_lines(parameters)
    modelfile += [f"PARAMETER {key} {value}" for key, value in lines]
    return {
        "modelfile": "\n".join(modelfile) + "\n",
        "parameters": "\n".join(f"{key:<30} {value}" for key, value in lines),
        "template": facts.template,
        "system": system,
        "license": "",
        "details": details(facts),
        "model_info": info,
        "capabilities": list(facts.capabilities),
        "modified_at": timestamp(facts.modified_at),
    }


@dataclass(frozen=True)
class Loaded:
    """A model the server holds in memory now."""

    facts: ModelFacts
    size: int  # bytes it takes, weights and context
    size_vram: int  # of which on the GPU
    expires_at: float | None  # unix time it unloads at; None or FOREVER: kept until the server stops
    context_length: int  # the context it was loaded with


def ps(loaded: list[Loaded]) -> dict[str, Any]:
    """/api/ps: the models loaded now, with when each unloads."""
    return {
        "models": [
            {
                "name": model.facts.name,
                "model": model.facts.name,
                "size": model.size,
                "digest": model.facts.digest,
                "details": details(model.facts),
                "expires_at": timestamp(min(FAR_FUTURE if model.expires_at is None else model.expires_at, FAR_FUTURE)),
                "size_vram": model.size_vram,
                "context_length": model.context_length,
            }
            for model in loaded
        ]
    }


# --- embeddings ----------------------------------------------------------------------------------------------


def embed_inputs(body: Any) -> tuple[list[str], bool, int | None]:
    """/api/embed's texts (`input`: one or a list), whether to cut texts too long for the model (`truncate`, true
    unless said) and the length to cut each vector to (`dimensions`, None: the model's)."""
    body = _object(body)
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) and text for text in texts):
        raise bad(f"input must be a non-empty string or a list of non-empty strings, not {_shown(value)}")
    with _as_ollama():
        texts = [_text(text, "input") for text in texts]
        truncate = body.get("truncate")
        dimensions = body.get("dimensions")
        return (
            texts,
            True if truncate is None else _boolean("truncate")(truncate),
            None if dimensions is None else _integer("dimensions", 1)(dimensions),
        )


def embeddings_prompt(body: Any) -> str:
    """The legacy /api/embeddings' text (`prompt`)."""
    prompt = _object(body).get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad(f"prompt must be a non-empty string, the text to embed, not {_shown(prompt)}")
    with _as_ollama():
        return _text(prompt, "prompt")


def embed_answer(model: str, vectors: list[list[float]], durations: Durations) -> dict[str, Any]:
    """/api/embed's answer: a vector per input, in order."""
    return {
        "model": model,
        "embeddings": vectors,
        "total_duration": ns(durations.total_s),
        "load_duration": ns(durations.load_s),
        "prompt_eval_count": durations.prompt_tokens,
    }


def embeddings_answer(vector: list[float]) -> dict[str, Any]:
    """The legacy /api/embeddings' answer."""
    return {"embedding": vector}


# --- pulling -------------------------------------------------------------------------------------------------


def pull_status(
    status: str, digest: str | None = None, total: int | None = None, completed: int | None = None
) -> dict[str, Any]:
    """One /api/pull progress line: "pulling manifest", "pulling <digest[:12]>" with digest, total and completed
    bytes, "verifying sha256 digest", "writing manifest", "success"; what is not given is left out."""
    line: dict[str, Any] = {"status": status}
    for key, value in (("digest", digest), ("total", total), ("completed", completed)):
        if value is not None:
            line[key] = value
    return line
