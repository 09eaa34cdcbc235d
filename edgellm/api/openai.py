"""The OpenAI API's shapes as pure functions: request bodies checked into typed requests, replies shaped as the
API's objects and stream chunks, errors as its error objects. No HTTP and no model here.

A parameter that would change the result and is not supported is refused by name (400), never ignored; a
parameter that changes nothing here (`user`, `n: 1`, `logprobs: false`) is accepted; an unknown one is refused,
as the OpenAI API itself refuses it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edgellm.engine.contract import GenerationOptions, GenerationStats

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
class CompletionRequest:
    """One checked request: a conversation (chat) or a raw prompt (completions), with its options."""

    options: GenerationOptions
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the token counts
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    echo: bool = False  # completions: the prompt goes before the completion in the text


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
    "tools": (_neutral(None, []), "tool calling is not supported"),
    "tool_choice": (_neutral(None, "none", "auto"), "tool calling is not supported"),
    "functions": (_neutral(None, []), "function calling is not supported"),
    "function_call": (_neutral(None, "none", "auto"), "function calling is not supported"),
    "logprobs": (_neutral(None, False, 0), "log probabilities are not returned"),
    "top_logprobs": (_neutral(None, 0), "log probabilities are not returned"),
    "logit_bias": (_neutral(None, {}), "logit_bias is not supported"),
    "response_format": (_neutral(None, {"type": "text"}), "only text replies: structured output is not supported"),
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
    "parallel_tool_calls",
    "prompt_cache_key",
    "safety_identifier",
}


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

    sampling = defaults.sampling
    sampling = replace(
        sampling,
        temp=given("temperature", _number("temperature", 0, 2), sampling.temp),
        top_p=given("top_p", _number("top_p", 0, 1), sampling.top_p),
        top_k=given("top_k", _integer("top_k", 0), sampling.top_k),
        min_p=given("min_p", _number("min_p", 0, 1), sampling.min_p),
        repeat_penalty=given("repeat_penalty", _number("repeat_penalty", 0, 10), sampling.repeat_penalty),
        frequency_penalty=given("frequency_penalty", _number("frequency_penalty", -2, 2), sampling.frequency_penalty),
        presence_penalty=given("presence_penalty", _number("presence_penalty", -2, 2), sampling.presence_penalty),
    )
    max_tokens = given("max_completion_tokens", _integer("max_completion_tokens", 1), None)
    if max_tokens is None:
        max_tokens = given("max_tokens", _integer("max_tokens", 1), default_max_tokens)
    if max_tokens > n_ctx:
        name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        raise bad(
            f"{name} is {max_tokens}, more than this server's context of {n_ctx} tokens; ask for fewer",
            name,
            "context_length_exceeded",
        )
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


def parse_chat(body: Any, defaults: GenerationOptions, n_ctx: int) -> CompletionRequest:
    """A /v1/chat/completions body, checked."""
    body = _object(body)
    options, stream, include_usage = _options(
        body, defaults, n_ctx, COMMON | {"messages", "max_completion_tokens"}, defaults.max_tokens
    )
    return CompletionRequest(options, stream, include_usage, messages=_messages(body.get("messages")))


def parse_text(
    body: Any, defaults: GenerationOptions, n_ctx: int, default_max_tokens: int | None = None
) -> CompletionRequest:
    """A /v1/completions body, checked. Without max_tokens it writes `default_max_tokens`; by default 16 tokens, as
    the OpenAI API does, unless the server was started with -n."""
    body = _object(body)
    if default_max_tokens is None:
        default_max_tokens = 16 if defaults.max_tokens < 0 else defaults.max_tokens
    options, stream, include_usage = _options(body, defaults, n_ctx, COMMON | {"prompt", "echo"}, default_max_tokens)
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
    )


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise bad("messages must be a non-empty list of {role, content} objects", "messages")
    return [_message(item, index) for index, item in enumerate(value)]


def _message(item: Any, index: int) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise bad(f"{where} must be an object with role and content", where)
    role = item.get("role")
    if role in ("tool", "function"):
        raise bad(f"{where}: {role} messages are not supported: this server does no tool calling", f"{where}.role")
    if role not in ROLES:
        raise bad(f"{where}.role must be one of {', '.join(ROLES)}, not {json.dumps(role)}", f"{where}.role")
    for name in item:
        if name in ("tool_calls", "function_call", "audio") and item[name] not in (None, []):
            raise bad(f"{where}.{name} is not supported: this server does no tool calling or audio", f"{where}.{name}")
        if name not in (
            "role",
            "content",
            "name",
            "reasoning_content",
            "refusal",
            "annotations",
            "tool_calls",
            "function_call",
            "audio",
        ):
            raise bad(f"{where}: unrecognized field {name}", f"{where}.{name}", "unknown_parameter")
    content = item.get("content")
    if content is None and role == "assistant":  # the API's own replies carry null beside tool calls or a refusal
        content = ""
    message = {"role": ROLES[role], "content": _text(_content(content, where), f"{where}.content")}
    reasoning = item.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning and role == "assistant":
        message["reasoning_content"] = _text(reasoning, f"{where}.reasoning_content")
    return message


def _content(value: Any, where: str) -> str:
    """A message's text: a string, or a list of text parts joined; other parts (images, audio) are refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{where}.content: only text parts are supported, not {json.dumps(kind)}", f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad(f"{where}.content must be a string or a list of text parts", f"{where}.content")


# --- answers -------------------------------------------------------------------------------------------------


def finish_reason(stop_reason: str) -> str:
    """The API's finish_reason for edgellm's stop reason: a length or the full context is "length"."""
    return "length" if stop_reason in ("length", "context") else "stop"


def usage(stats: GenerationStats | None) -> dict[str, int]:
    prompt = stats.prompt_tokens if stats else 0
    completion = stats.completion_tokens if stats else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def timings(stats: GenerationStats | None, dropped_messages: int = 0, n_ctx: int = 0) -> dict[str, Any]:
    """edgellm's own figures for one reply (as llama-server adds `timings`): what was evaluated, how fast, and how
    many old messages were left out of a context of `n_ctx`."""
    data = stats.as_dict() if stats is not None else {}
    return {
        **{
            key: data.get(key)
            for key in ("prompt_evaluated", "ttft_ms", "prompt_tokens_per_s", "tokens_per_s", "stop_reason", "queue_ms")
        },
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
        self, text: str, reasoning: str, stats: GenerationStats | None, dropped_messages: int = 0, n_ctx: int = 0
    ) -> dict[str, Any]:
        """The non-streamed answer."""
        reason = finish_reason(stats.stop_reason if stats is not None else "interrupted")
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if reasoning:
                message["reasoning_content"] = reasoning
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
            answer = self._object("chat.completion", [choice])
        else:
            answer = self._object(
                "text_completion", [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}]
            )
        return {**answer, "usage": usage(stats), "timings": timings(stats, dropped_messages, n_ctx)}

    def chunk(
        self, text: str = "", reasoning: str = "", finish: str | None = None, first: bool = False
    ) -> dict[str, Any]:
        """One streamed piece: the first carries the role; the last carries finish_reason and no text."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            if reasoning:
                delta["reasoning_content"] = reasoning
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return self._object("chat.completion.chunk", [choice])
        return self._object("text_completion", [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}])

    def usage_chunk(self, stats: GenerationStats | None, dropped_messages: int = 0, n_ctx: int = 0) -> dict[str, Any]:
        """The last chunk when stream_options.include_usage: no choices, the token counts."""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._object(kind, []), "usage": usage(stats), "timings": timings(stats, dropped_messages, n_ctx)}


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: JSON` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def model_list(model_id: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "edgellm"}]}
