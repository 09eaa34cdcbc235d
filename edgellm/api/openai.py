"""The OpenAI API's shapes as pure functions: request bodies checked into typed requests, replies shaped as the
API's objects and stream chunks, errors as its error objects. No HTTP and no model here.

A parameter that would change the result and is not supported is refused by name (400), never ignored; a
parameter that changes nothing here (`user`, `n: 1`, `logprobs: false`) is accepted; an unknown one is refused,
as the OpenAI API itself refuses it.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from edgellm.engine.contract import GenerationOptions, GenerationStats, Sampling
from edgellm.errors import ImageRefused
from edgellm.grammar.json_schema import UnsupportedSchema, check_schema, enforceable
from edgellm.media import MARKER
from edgellm.media.images import Image
from edgellm.media.sources import image_from_url
from edgellm.templates.tools import Delta, Tool, ToolCall, ToolChoice

MAX_STOP_SEQUENCES = 16
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """An answer that is an error: its HTTP status and the API's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)


@dataclass(frozen=True)
class ResponseFormat:
    """`response_format`: a JSON object (`schema` None: any) the reply must be."""

    schema: dict[str, Any] | None = None
    name: str = ""


@dataclass(frozen=True)
class CompletionRequest:
    """One checked request: a conversation (chat) or a raw prompt (completions), with its options."""

    options: GenerationOptions
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the token counts
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    echo: bool = False  # completions: the prompt goes before the completion in the text
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    grammar: str | None = None  # a GBNF grammar (llama-server's `grammar`)
    logprobs: int | None = None  # None: none; k: each token's log-probability and the top k


# --- reading values ------------------------------------------------------------------------------------------


def _number(name: str, low: float, high: float) -> Callable[[Any], float]:
    def read(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise bad(f"{name} must be a number from {low:g} to {high:g}, not {json.dumps(value)}", name)
        return float(value)

    return read


def _integer(name: str, low: int, high: int | None = None) -> Callable[[Any], int]:
    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            limit = f"from {low} to {high}" if high is not None else f"of {low} or more"
            raise bad(f"{name} must be a whole number {limit}, not {json.dumps(value)}", name)
        return value

    return read


def _boolean(name: str) -> Callable[[Any], bool]:
    def read(value: Any) -> bool:
        if not isinstance(value, bool):
            raise bad(f"{name} must be true or false, not {json.dumps(value)}", name)
        return value

    return read


def _text(value: str, where: str) -> str:
    """A string that can reach the tokenizer: JSON lets a lone surrogate (\\ud83d) through, UTF-8 does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(
            f"{where} holds text that is not valid Unicode (a lone surrogate escape such as \\ud83d)", where
        ) from None
    return value


def _stop(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad("stop must be a string or a list of non-empty strings", "stop")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise bad(f"stop takes at most {MAX_STOP_SEQUENCES} sequences, not {len(stops)}", "stop")
    return tuple(_text(stop, "stop") for stop in stops)


def _stream_options(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) - {"include_usage", "include_obfuscation"}:
        raise bad("stream_options takes include_usage (true or false)", "stream_options")
    return _boolean("stream_options.include_usage")(value.get("include_usage", False))


# Parameters that change the result and are not done here: refused unless they hold their neutral value.
def _neutral(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value in values


UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (_neutral(None, 1), "only one choice per request (n: 1)"),
    "best_of": (_neutral(None, 1), "only one choice per request (best_of: 1)"),
    "functions": (_neutral(None, []), "the legacy `functions` are not supported: send them as `tools`"),
    "function_call": (_neutral(None, "none", "auto"), "the legacy `function_call` is not supported: use `tool_choice`"),
    "logit_bias": (_neutral(None, {}), "logit_bias is not supported"),
    "suffix": (_neutral(None, ""), "suffix (fill-in-the-middle) is not supported"),
    "modalities": (_neutral(None, ["text"]), "only text replies"),
    "audio": (_neutral(None), "audio is not supported"),
    "prediction": (_neutral(None), "predicted outputs are not supported"),
    "reasoning_effort": (_neutral(None), "reasoning_effort is not supported: the model reasons as its template says"),
    "web_search_options": (_neutral(None), "web search is not supported"),
}
# Parameters that change nothing in this server's answer: accepted and left aside.
HARMLESS = {
    "model",
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
}


Given = Callable[[str, Callable[[Any], Any], Any], Any]  # (key, how to read it, the value when it is absent)


def sampling_given(given: Given, sampling: Sampling, where: str = "") -> Sampling:
    """The sampling a request's fields set (read with `given`) over `sampling`; `where` goes before each field's name
    in errors ("options." in Ollama's API)."""
    return replace(
        sampling,
        temp=given("temperature", _number(f"{where}temperature", 0, 2), sampling.temp),
        top_p=given("top_p", _number(f"{where}top_p", 0, 1), sampling.top_p),
        top_k=given("top_k", _integer(f"{where}top_k", 0), sampling.top_k),
        min_p=given("min_p", _number(f"{where}min_p", 0, 1), sampling.min_p),
        repeat_penalty=given("repeat_penalty", _number(f"{where}repeat_penalty", 0, 10), sampling.repeat_penalty),
        frequency_penalty=given(
            "frequency_penalty", _number(f"{where}frequency_penalty", -2, 2), sampling.frequency_penalty
        ),
        presence_penalty=given(
            "presence_penalty", _number(f"{where}presence_penalty", -2, 2), sampling.presence_penalty
        ),
    )


def _options(
    body: dict[str, Any], defaults: GenerationOptions, n_ctx: int, allowed: set[str], default_max_tokens: int
) -> tuple[GenerationOptions, bool, bool]:
    """The options every request shares, checked; the server's own settings fill what the request leaves out."""
    for name in body:
        if name in UNSUPPORTED:
            is_neutral, why = UNSUPPORTED[name]
            if not is_neutral(body[name]):
                raise bad(f"{name} is not supported by this server: {why}", name, "unsupported_parameter")
        elif name not in allowed and name not in HARMLESS:
            raise bad(f"unrecognized request argument supplied: {name}", name, "unknown_parameter")

    def given(name: str, read: Callable[[Any], Any], fallback: Any) -> Any:
        value = body.get(name)
        return fallback if value is None else read(value)

    sampling = sampling_given(given, defaults.sampling)
    max_tokens = given("max_completion_tokens", _integer("max_completion_tokens", 1), None)
    if max_tokens is None:
        max_tokens = given("max_tokens", _integer("max_tokens", 1), default_max_tokens)
    within_context(body, max_tokens, n_ctx)
    seed = given("seed", _integer("seed", -(2**63), 2**63 - 1), defaults.seed)
    options = replace(
        defaults,
        sampling=sampling,
        max_tokens=max_tokens,
        seed=seed if seed == -1 else seed % 0xFFFFFFFF,  # llama.cpp's seeds are 32-bit; 0xFFFFFFFF means random
        stop=given("stop", _stop, defaults.stop),
        ignore_eos=given("ignore_eos", _boolean("ignore_eos"), defaults.ignore_eos),
        cache_prompt=given("cache_prompt", _boolean("cache_prompt"), True),
    )
    stream = given("stream", _boolean("stream"), False)
    include_usage = given("stream_options", _stream_options, False) and stream
    return options, stream, include_usage


def within_context(body: dict[str, Any], max_tokens: int, n_ctx: int) -> None:
    """Refuse a `max_tokens` past the model's context of `n_ctx` tokens (a request is checked against the model's
    context once its model is known, without being read again)."""
    if max_tokens > n_ctx:
        name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        raise bad(
            f"{name} is {max_tokens}, more than this server's context of {n_ctx} tokens; ask for fewer",
            name,
            "context_length_exceeded",
        )


COMMON = {
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
    "max_tokens",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "cache_prompt",
    "ignore_eos",
}


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    return body


def parse_chat(body: Any, defaults: GenerationOptions, n_ctx: int, *, local_files: bool = True) -> CompletionRequest:
    """A /v1/chat/completions body, checked; the images it names are read (file:// URLs only with `local_files`: a
    server reads them for clients on its own machine alone)."""
    body = _object(body)
    options, stream, include_usage = _options(
        body,
        defaults,
        n_ctx,
        COMMON
        | {
            "messages",
            "max_completion_tokens",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
            "grammar",
            "logprobs",
            "top_logprobs",
        },
        defaults.max_tokens,
    )
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    response_format = _response_format(body.get("response_format"))
    grammar = _grammar(body.get("grammar"))
    if tools and choice.mode != "none" and (response_format is not None or grammar is not None):
        which = "response_format" if response_format is not None else "grammar"
        raise bad(f"{which} cannot be combined with tools: send one or the other", which)
    if response_format is not None and grammar is not None:
        raise bad("response_format cannot be combined with grammar: send one or the other", "grammar")
    return CompletionRequest(
        options,
        stream,
        include_usage,
        messages=_messages(body.get("messages"), body.get("tools"), local_files),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=_boolean("parallel_tool_calls")(body.get("parallel_tool_calls", True)),
        response_format=response_format,
        grammar=grammar,
        logprobs=_chat_logprobs(body.get("logprobs"), body.get("top_logprobs")),
    )


MAX_TOOLS = 128
MAX_TOP_LOGPROBS = 20
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise bad(f"tools must be a list of at most {MAX_TOOLS} functions", "tools")
    tools = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(item, dict) or item.get("type") != "function" or not isinstance(function, dict):
            raise bad(f'{where} must be {{"type": "function", "function": {{name, description, parameters}}}}', where)
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise bad(f"{where}.function.name must be 1 to 64 letters, digits, _ or -", f"{where}.function.name")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise bad(f"{where}.function.parameters must be a JSON schema object", f"{where}.function.parameters")
        try:
            enforced, dropped = enforceable(parameters)
        except UnsupportedSchema as error:
            where = f"{where}.function.parameters"
            raise bad(f"{where}: {error}", where, "unsupported_schema") from None
        description = function.get("description", "")
        tools.append(
            Tool(
                name,
                description if isinstance(description, str) else "",
                parameters,
                enforced if dropped else None,
                tuple(error.path for error in dropped),
            )
        )
    if len({tool.name for tool in tools}) != len(tools):
        raise bad("tools holds two functions of one name: give each its own", "tools")
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise bad("tool_choice is required but no tools were given", "tool_choice")
        return ToolChoice(value)
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(value, dict) or value.get("type") != "function" or not isinstance(name, str):
        raise bad(
            'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": ...}}',
            "tool_choice",
        )
    if name not in {tool.name for tool in tools}:
        raise bad(f"tool_choice names {json.dumps(name)}, which is not among the tools", "tool_choice")
    return ToolChoice("function", name)


def _enforceable(schema: Any, where: str) -> None:
    """A schema the grammar can enforce whole; else 400 naming the keyword that cannot be."""
    try:
        check_schema(schema)
    except UnsupportedSchema as error:
        raise bad(f"{where}: {error}", where, "unsupported_schema") from None


def _response_format(value: Any) -> ResponseFormat | None:
    if value is None or value == {"type": "text"}:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return ResponseFormat()
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema", {}) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad("response_format.json_schema must hold a `schema` object", "response_format.json_schema")
        _enforceable(schema, "response_format.json_schema.schema")
        name = spec.get("name", "") if isinstance(spec, dict) else ""
        return ResponseFormat(schema or {"type": "object"}, name if isinstance(name, str) else "")
    raise bad('response_format.type must be "text", "json_object" or "json_schema"', "response_format")


def _grammar(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad("grammar must be a GBNF grammar as a string", "grammar")
    return _text(value, "grammar")


def _chat_logprobs(logprobs: Any, top: Any) -> int | None:
    wanted = False if logprobs is None else _boolean("logprobs")(logprobs)
    count = 0 if top is None else _integer("top_logprobs", 0, MAX_TOP_LOGPROBS)(top)
    if top is not None and not wanted:
        raise bad("top_logprobs needs logprobs: true", "top_logprobs")
    return count if wanted else None


def _text_logprobs(value: Any) -> int | None:
    """/v1/completions' `logprobs`: how many most likely tokens to show (0 to 5 in OpenAI's API; 20 here)."""
    if value is None or value is False:
        return None
    if value is True:
        return 0
    return _integer("logprobs", 0, MAX_TOP_LOGPROBS)(value)


def parse_text(
    body: Any, defaults: GenerationOptions, n_ctx: int, default_max_tokens: int | None = None
) -> CompletionRequest:
    """A /v1/completions body, checked. Without max_tokens it writes `default_max_tokens`; by default 16 tokens, as
    the OpenAI API does, unless the server was started with -n."""
    body = _object(body)
    if default_max_tokens is None:
        default_max_tokens = 16 if defaults.max_tokens < 0 else defaults.max_tokens
    options, stream, include_usage = _options(
        body, defaults, n_ctx, COMMON | {"prompt", "echo", "logprobs", "grammar"}, default_max_tokens
    )
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        raise bad("one prompt per request: send each prompt in its own request", "prompt")
    if not isinstance(prompt, str):
        raise bad("prompt must be a string", "prompt")
    echo = body.get("echo")
    return CompletionRequest(
        options,
        stream,
        include_usage,
        prompt=_text(prompt, "prompt"),
        echo=False if echo is None else _boolean("echo")(echo),
        grammar=_grammar(body.get("grammar")),
        logprobs=_text_logprobs(body.get("logprobs")),
    )


def _messages(value: Any, tools: Any, local_files: bool) -> list[dict[str, Any]]:
    """The conversation, checked; the images its `image_url` parts name are read (numbered across the request)."""
    if not isinstance(value, list) or not value:
        raise bad("messages must be a non-empty list of {role, content} objects", "messages")
    images: list[Image] = []
    messages = [_message(item, index, images, local_files) for index, item in enumerate(value)]
    if images:
        where = marker_in(value, "messages") or marker_in(tools, "tools")
        if where is not None:
            raise bad(marker_refused(where), where, "image_marker_in_text")
    return messages


def marker_in(value: Any, where: str, skip: frozenset[str] = frozenset({"image_url"})) -> str | None:
    """Where a text of `value` (a request's JSON, at `where`) that holds MARKER is; None when none does. The fields
    named in `skip` (the images themselves) are not text. Walked without recursion: JSON may nest deep."""
    waiting: list[tuple[str, Any]] = [(where, value)]
    while waiting:
        path, item = waiting.pop()
        if isinstance(item, str) and MARKER in item:
            return path
        if isinstance(item, list):
            waiting.extend((f"{path}[{index}]", inner) for index, inner in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            waiting.extend((f"{path}.{key}", inner) for key, inner in reversed(item.items()) if key not in skip)
    return None


def marker_refused(where: str) -> str:
    """Why text that holds MARKER cannot go beside images: MARKER is where an image goes in the prompt."""
    return (
        f"{where} holds the text {MARKER}, which marks where an image goes and cannot be sent beside images: "
        "take it out of the text or break it up (such as <__media __>)"
    )


MESSAGE_FIELDS = {
    "role",
    "content",
    "name",
    "reasoning_content",
    "refusal",
    "annotations",
    "tool_calls",
    "tool_call_id",
    "function_call",
    "audio",
}


def _message(item: Any, index: int, images: list[Image], local_files: bool) -> dict[str, Any]:
    """One message, checked; the images its parts name are read and added to `images` (the request's so far)."""
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise bad(f"{where} must be an object with role and content", where)
    role = item.get("role")
    if role == "function":
        raise bad(f"{where}: function messages are the legacy API: send the result as a tool message", f"{where}.role")
    if role not in ROLES and role != "tool":
        raise bad(f"{where}.role must be one of {', '.join([*ROLES, 'tool'])}, not {json.dumps(role)}", f"{where}.role")
    for name in item:
        if name in ("function_call", "audio") and item[name] not in (None, []):
            raise bad(f"{where}.{name} is not supported: send calls as tool_calls", f"{where}.{name}")
        if name not in MESSAGE_FIELDS:
            raise bad(f"{where}: unrecognized field {name}", f"{where}.{name}", "unknown_parameter")
    content = item.get("content")
    if content is None and role == "assistant":  # the API's own replies carry null beside tool calls or a refusal
        content = ""
    text, found = _content(content, where, role, len(images), local_files)
    message: dict[str, Any] = {"role": ROLES.get(role, "tool"), "content": _text(text, f"{where}.content")}
    if found:
        message["images"] = found
        images.extend(found)
    reasoning = item.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning and role == "assistant":
        message["reasoning_content"] = _text(reasoning, f"{where}.reasoning_content")
    if role == "assistant" and item.get("tool_calls"):
        message["tool_calls"] = _past_calls(item["tool_calls"], f"{where}.tool_calls")
    if role == "tool":
        call = item.get("tool_call_id")
        if not isinstance(call, str) or not call:
            raise bad(f"{where}.tool_call_id must name the call this result answers", f"{where}.tool_call_id")
        message["tool_call_id"] = call
        if isinstance(item.get("name"), str):
            message["name"] = item["name"]
    return message


def _past_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's calls, as the API writes them: id, type function, name and arguments (a JSON string)."""
    if not isinstance(value, list):
        raise bad(f"{where} must be a list of calls", where)
    calls = []
    for index, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", "{}") if isinstance(function, dict) else None
        if not isinstance(name, str) or not isinstance(arguments, (str, dict)):
            raise bad(
                f"{where}[{index}] must be {{id, type: function, function: {{name, arguments}}}}", f"{where}[{index}]"
            )
        ident = call.get("id") if isinstance(call.get("id"), str) else ""
        calls.append({"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}})
    return calls


IMAGE_URL_FIELDS = {"url", "detail"}
IMAGE_DETAILS = (None, "auto", "low", "high")  # the projector reads every image at its own size: all alike here
IMAGE_CODES = {"remote": "remote_image_url", "url": "invalid_image_url"}  # any other problem: invalid_image


def _content(value: Any, where: str, role: Any, before: int, local_files: bool) -> tuple[str, list[Image]]:
    """A message's text and images: a string, or a list of parts whose texts are joined by newlines, each
    `image_url` part read as its image and written as MARKER where it stands among the texts. `before`: the images
    of the request's earlier messages. Other parts (audio, files) are refused."""
    if isinstance(value, str):
        return value, []
    if not isinstance(value, list):
        raise bad(f"{where}.content must be a string or a list of text and image_url parts", f"{where}.content")
    texts: list[str] = []
    images: list[Image] = []
    for number, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            number_in_request = before + len(images) + 1
            images.append(_image_part(part, f"{where}.content[{number}]", role, number_in_request, local_files))
            texts.append(MARKER)
        else:
            raise bad(
                f"{where}.content[{number}]: only text and image_url parts are supported, not {json.dumps(kind)}",
                f"{where}.content",
            )
    return "\n".join(texts), images


def _image_part(part: dict[str, Any], where: str, role: Any, number: int, local_files: bool) -> Image:
    """An `image_url` part's image (`number`: its place among the request's images, from 1): a data URL, or a file
    URL on this machine (with `local_files`); remote URLs are refused (an edge device may be offline)."""
    param = where.rpartition(".content")[0] + ".content"
    if role != "user":
        raise bad(f"{where}: only user messages carry images, not {role} messages", param)
    found = part.get("image_url")
    url = found.get("url") if isinstance(found, dict) else found
    if not isinstance(url, str) or not url:
        raise bad(
            f'{where} must be {{"type": "image_url", "image_url": {{"url": "data:image/png;base64,..."}}}}', param
        )
    if isinstance(found, dict):
        for name in found:
            if name not in IMAGE_URL_FIELDS:
                raise bad(f"{where}.image_url: unrecognized field {name}", param, "unknown_parameter")
        if found.get("detail") not in IMAGE_DETAILS:
            raise bad(f'{where}.image_url.detail must be "auto", "low" or "high"', param)
    if not local_files and url.strip()[:5].lower() == "file:":
        raise bad(
            f"{where}.image_url: file URLs are read only for clients on the server's own machine: send the image "
            "as a data URL (data:image/png;base64,...)",
            param,
            "invalid_image_url",
        )
    try:
        return image_from_url(url, index=number)
    except ImageRefused as error:
        raise bad(f"{where}.image_url: {error}", param, IMAGE_CODES.get(error.problem, "invalid_image")) from None


# --- answers -------------------------------------------------------------------------------------------------


def finish_reason(stop_reason: str, called: bool = False) -> str:
    """The API's finish_reason for edgellm's stop reason: a length or the full context is "length"; a reply that
    called tools and ended on its own is "tool_calls"."""
    if stop_reason in ("length", "context"):
        return "length"
    return "tool_calls" if called else "stop"


# A token's log-probability as the session gives it: its text, its bytes, its logprob, and the most likely tokens'.
TokenChoice = tuple[str, bytes, float]
TokenLogprobs = tuple[TokenChoice, list[TokenChoice]]


def chat_logprobs(found: list[TokenLogprobs]) -> dict[str, Any]:
    """`choices[].logprobs` of a chat answer or chunk."""

    def one(choice: TokenChoice) -> dict[str, Any]:
        return {"token": choice[0], "logprob": choice[2], "bytes": list(choice[1])}

    return {
        "content": [{**one(chosen), "top_logprobs": [one(t) for t in top]} for chosen, top in found],
        "refusal": None,
    }


def text_logprobs(found: list[TokenLogprobs], offset: int = 0) -> dict[str, Any]:
    """`choices[].logprobs` of a legacy completion: tokens, their logprobs, their offsets in the text, the top ones."""
    offsets, at = [], offset
    for chosen, _ in found:
        offsets.append(at)
        at += len(chosen[0])
    return {
        "tokens": [chosen[0] for chosen, _ in found],
        "token_logprobs": [chosen[2] for chosen, _ in found],
        "top_logprobs": [{t[0]: t[2] for t in top} for _, top in found],
        "text_offset": offsets,
    }


def tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in calls
    ]


def delta_chunks(deltas: list[Delta]) -> list[list[Delta]]:
    """The pieces of calls grouped into chunks where each call appears once: fragments of one call that follow each
    other are joined, and a call's first piece (with `arguments: ""`) stays in a chunk of its own before them."""
    chunks: list[list[Delta]] = []
    for delta in deltas:
        chunk = chunks[-1] if chunks else None
        mine = [index for index, found in enumerate(chunk or []) if found.index == delta.index]
        if chunk is not None and not mine:
            chunk.append(delta)
        elif chunk is not None and delta.name is None and chunk[mine[0]].name is None:
            joined = chunk[mine[0]]
            chunk[mine[0]] = Delta(index=joined.index, arguments=joined.arguments + delta.arguments)
        else:
            chunks.append([delta])
    return chunks


def tool_delta(delta: Delta) -> dict[str, Any]:
    """One streamed piece of a call: its first carries index, id, type, name and empty arguments; later ones only
    index and an arguments fragment."""
    if delta.name is not None:
        return {
            "index": delta.index,
            "id": delta.id,
            "type": "function",
            "function": {"name": delta.name, "arguments": ""},
        }
    return {"index": delta.index, "function": {"arguments": delta.arguments}}


def usage(stats: GenerationStats | None) -> dict[str, int]:
    prompt = stats.prompt_tokens if stats else 0
    completion = stats.completion_tokens if stats else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def timings(stats: GenerationStats | None, dropped_messages: int = 0, n_ctx: int = 0) -> dict[str, Any]:
    """edgellm's own figures for one reply (as llama-server adds `timings`): what was evaluated (the images' context
    positions and encoding time too, when the prompt had images), how fast, and how many old messages were left out
    of a context of `n_ctx`."""
    data = stats.as_dict() if stats is not None else {}
    return {
        **{
            key: data.get(key)
            for key in ("prompt_evaluated", "ttft_ms", "prompt_tokens_per_s", "tokens_per_s", "stop_reason", "queue_ms")
        },
        **{key: data[key] for key in ("image_tokens", "image_ms") if key in data},  # when the prompt had images
        "dropped_messages": dropped_messages,
        "n_ctx": n_ctx,
    }


@dataclass(frozen=True)
class Answer:
    """What every object of one answer shares: its id, its time and the model's name."""

    chat: bool
    model: str
    id: str = ""
    created: int = 0

    @classmethod
    def start(cls, chat: bool, model: str) -> Answer:
        prefix = "chatcmpl-" if chat else "cmpl-"
        return cls(chat, model, prefix + uuid.uuid4().hex[:24], int(time.time()))

    def _object(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    def whole(
        self,
        text: str,
        reasoning: str,
        stats: GenerationStats | None,
        dropped_messages: int = 0,
        n_ctx: int = 0,
        calls: list[ToolCall] | None = None,
        logprobs: list[TokenLogprobs] | None = None,
        text_offset: int = 0,
    ) -> dict[str, Any]:
        """The non-streamed answer."""
        reason = finish_reason(stats.stop_reason if stats is not None else "interrupted", bool(calls))
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": None if calls and not text else text}
            if reasoning:
                message["reasoning_content"] = reasoning
            if calls:
                message["tool_calls"] = tool_calls(calls)
            found = chat_logprobs(logprobs) if logprobs is not None else None
            choice = {"index": 0, "message": message, "logprobs": found, "finish_reason": reason}
            answer = self._object("chat.completion", [choice])
        else:
            found = text_logprobs(logprobs, text_offset) if logprobs is not None else None
            answer = self._object(
                "text_completion", [{"text": text, "index": 0, "logprobs": found, "finish_reason": reason}]
            )
        return {**answer, "usage": usage(stats), "timings": timings(stats, dropped_messages, n_ctx)}

    def chunk(
        self,
        text: str = "",
        reasoning: str = "",
        finish: str | None = None,
        first: bool = False,
        calls: list[Delta] | None = None,
        logprobs: list[TokenLogprobs] | None = None,
        text_offset: int = 0,
    ) -> dict[str, Any]:
        """One streamed piece: the first carries the role; the last carries finish_reason and no text. `text_offset`:
        where `text` starts in the whole completion (a legacy completion's logprobs count from it)."""
        if self.chat:
            delta: dict[str, Any] = (
                {"role": "assistant", "content": None if calls and not text else ""} if first else {}
            )
            if text:
                delta["content"] = text
            if reasoning:
                delta["reasoning_content"] = reasoning
            if calls:
                delta["tool_calls"] = [tool_delta(call) for call in calls]
            found = chat_logprobs(logprobs) if logprobs else None
            choice = {"index": 0, "delta": delta, "logprobs": found, "finish_reason": finish}
            return self._object("chat.completion.chunk", [choice])
        found = text_logprobs(logprobs, text_offset) if logprobs else None
        return self._object("text_completion", [{"text": text, "index": 0, "logprobs": found, "finish_reason": finish}])

    def usage_chunk(self, stats: GenerationStats | None, dropped_messages: int = 0, n_ctx: int = 0) -> dict[str, Any]:
        """The last chunk when stream_options.include_usage: no choices, the token counts."""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._object(kind, []), "usage": usage(stats), "timings": timings(stats, dropped_messages, n_ctx)}


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: JSON` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def model_list(models: list[tuple[str, int]], vision: Collection[str] = ()) -> dict[str, Any]:
    """GET /v1/models: each model's id and its file's time; those named in `vision` (a projector goes with them)
    carry `"capabilities": ["completion", "vision"]`."""

    def listed(name: str, created: int) -> dict[str, Any]:
        found: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": "edgellm"}
        if name in vision:
            found["capabilities"] = ["completion", "vision"]
        return found

    return {"object": "list", "data": [listed(name, created) for name, created in models]}


# --- embeddings ----------------------------------------------------------------------------------------------

MAX_EMBEDDING_INPUTS = 2048  # as OpenAI's own limit


@dataclass(frozen=True)
class EmbeddingsRequest:
    """One checked /v1/embeddings request."""

    inputs: list[str]
    base64: bool = False  # encoding_format base64: each vector as little-endian float32 bytes, base64-encoded
    dimensions: int | None = None  # asked for; the model's own width is the only one given


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    """A /v1/embeddings body: `input` a string or a list of strings (token ids are refused by name)."""
    body = _object(body)
    for name in body:
        if name not in ("input", "model", "encoding_format", "dimensions", "user"):
            raise bad(f"unrecognized request argument supplied: {name}", name, "unknown_parameter")
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or len(texts) > MAX_EMBEDDING_INPUTS:
        raise bad(f"input must be a string or a list of 1 to {MAX_EMBEDDING_INPUTS} strings", "input")
    if not all(isinstance(text, str) for text in texts):
        raise bad("input: only text is supported, not token ids: send strings", "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad(f"encoding_format must be float or base64, not {json.dumps(encoding)}", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None:
        dimensions = _integer("dimensions", 1)(dimensions)
    return EmbeddingsRequest(
        [_text(text, f"input[{index}]") for index, text in enumerate(texts)], encoding == "base64", dimensions
    )


def normalize(vector: list[float]) -> list[float]:
    """The vector at unit length (L2), as both APIs give embeddings; a zero vector stays zero."""
    length = math.sqrt(sum(value * value for value in vector))
    return [value / length for value in vector] if length else list(vector)


def embedding_list(model: str, vectors: list[list[float]], prompt_tokens: int, base64: bool) -> dict[str, Any]:
    """The /v1/embeddings answer: each input's vector, normalised to length 1 (as OpenAI's and llama-server's)."""
    import base64 as b64
    import struct

    def encoded(vector: list[float]) -> list[float] | str:
        unit = normalize(vector)
        return b64.b64encode(struct.pack(f"<{len(unit)}f", *unit)).decode("ascii") if base64 else unit

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encoded(vector)}
            for index, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
