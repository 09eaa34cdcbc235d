"""The Ollama API's pure parts: request bodies checked into the OpenAI layer's requests (options, format, tools,
messages in Ollama's shape, keep_alive's forms), and the answers shaped as Ollama's lines and objects, each proven
to parse with the official ollama client's own pydantic models."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from httpx._decoders import LineDecoder
from ollama._types import (
    ChatResponse,
    EmbeddingsResponse,
    EmbedResponse,
    GenerateResponse,
    ListResponse,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
)
from pydantic import TypeAdapter

from edgellm.api import ollama, openai
from edgellm.api.ollama import (
    FOREVER,
    KEEP_ALIVE_DEFAULT,
    Durations,
    Loaded,
    ModelFacts,
    OllamaError,
    OllamaRequest,
    keep_alive,
    parse_chat,
    parse_generate,
)
from edgellm.api.openai import CompletionRequest, ResponseFormat
from edgellm.engine.contract import GenerationOptions, Sampling
from edgellm.templates.tools import ToolCall, ToolChoice

DEFAULTS = GenerationOptions(sampling=Sampling(temp=0.8, top_k=40), seed=-1, max_tokens=512, stop=("<eos>",))
HI = [{"role": "user", "content": "Hi"}]
GEMMA = ModelFacts(
    name="unsloth/gemma-3-270m-GGUF:Q4_K_M",
    size=253_114_432,
    modified_at=1_765_081_334.25,
    digest="a" * 64,
    architecture="gemma3",
    parameters=268_098_176,
    quantization="Q4_K_M",
    context_length=32768,
    capabilities=("completion",),
    template="{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
    embedding_length=640,
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def refused(body: object, parse: Any = parse_chat, status: int = 400) -> OllamaError:
    with pytest.raises(OllamaError) as raised:
        parse(body, DEFAULTS)
    assert raised.value.status == status
    assert raised.value.body() == {"error": raised.value.message}
    return raised.value


def chat(**body: Any) -> OllamaRequest:
    return parse_chat({"model": "gemma3", "messages": HI, **body}, DEFAULTS)


def completion(request: OllamaRequest) -> CompletionRequest:
    assert request.completion is not None
    return request.completion


# --- errors and names ------------------------------------------------------------------------------------------


def test_errors_carry_their_status_and_ollamas_error_object() -> None:
    error = ollama.bad("options must be an object")
    assert (error.status, error.message, error.body()) == (400, "options must be an object", {"error": error.message})
    missing = ollama.not_found("nosuch:latest")
    assert missing.status == 404 and missing.body() == {"error": "model 'nosuch:latest' not found"}
    assert re.search(r"model '(.*)' not found", missing.message)[1] == "nosuch:latest"  # type: ignore[index]


def test_the_model_is_named_by_model_or_the_deprecated_name() -> None:
    assert ollama.model_name({"model": "gemma3:270m"}) == "gemma3:270m"
    assert ollama.model_name({"name": "gemma3"}) == "gemma3"  # Continue's /api/show
    assert ollama.model_name({"model": "a", "name": "b"}) == "a"
    for body in ({}, {"model": ""}, {"model": "  "}, {"model": 3}, {"name": None}):
        with pytest.raises(OllamaError, match="model is required") as raised:
            ollama.model_name(body)
        assert raised.value.status == 400
    with pytest.raises(OllamaError, match="JSON object"):
        ollama.model_name(["gemma3"])
    assert "model is required" in refused({"messages": HI}).message


@pytest.mark.parametrize(
    ("name", "tagged", "bare"),
    [
        ("foo", "foo:latest", "foo"),
        ("foo:latest", "foo:latest", "foo"),
        ("owner/repo:Q4_K_M", "owner/repo:Q4_K_M", "owner/repo:Q4_K_M"),
        ("owner/repo", "owner/repo:latest", "owner/repo"),
        ("localhost:5000/foo", "localhost:5000/foo:latest", "localhost:5000/foo"),
        ("localhost:5000/foo:latest", "localhost:5000/foo:latest", "localhost:5000/foo"),
        ("localhost:5000/foo:7b", "localhost:5000/foo:7b", "localhost:5000/foo:7b"),
    ],
)
def test_names_take_latest_when_they_have_no_tag(name: str, tagged: str, bare: str) -> None:
    assert ollama.with_tag(name) == tagged
    assert ollama.without_latest(name) == bare
    assert ollama.without_latest(ollama.with_tag(bare)) == bare


def test_copy_takes_a_source_and_a_destination() -> None:
    assert ollama.copy_names({"source": "a", "destination": "b:1"}) == ("a", "b:1")
    for body in ({"source": "a"}, {"destination": "b"}, {"source": "", "destination": "b"}, {"source": 1}, "a"):
        with pytest.raises(OllamaError) as raised:
            ollama.copy_names(body)
        assert raised.value.status == 400


# --- keep_alive ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        (300, 300.0),
        (1.5, 1.5),
        (0, 0.0),
        (0.0, 0.0),
        (-1, FOREVER),
        (-0.5, FOREVER),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("300ms", 0.3),
        ("10s", 10.0),
        ("1.5h", 5400.0),
        (".5h", 1800.0),
        ("2h45m30.5s", 9930.5),
        ("1500us", 0.0015),
        ("1500µs", 0.0015),
        ("250ns", 2.5e-7),
        ("+5m", 300.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("-1m", FOREVER),
        ("-1", FOREVER),
        ("-0", 0.0),
        ("300", 300.0),
        ("2.5", 2.5),
        (" 24h ", 86400.0),
        (10**400, 2.0**53),
        (-(10**400), FOREVER),
        (math.inf, FOREVER),
    ],
)
def test_keep_alive_takes_seconds_or_a_go_duration(value: Any, seconds: float | None) -> None:
    found = keep_alive(value)
    if seconds is None:
        assert found is None and found is KEEP_ALIVE_DEFAULT
    else:
        assert found == pytest.approx(seconds) and isinstance(found, float)
    assert FOREVER == math.inf


@pytest.mark.parametrize(
    "value",
    [True, False, "1e3", "inf", "5 minutes", "m", "5x", "1h-30m", "5m10", "1d", "-", ".", "abc", [], {}, [5], math.nan],
)
def test_keep_alive_refuses_other_values_naming_the_forms_it_takes(value: Any) -> None:
    with pytest.raises(OllamaError) as raised:
        keep_alive(value)
    assert raised.value.status == 400
    assert "keep_alive" in raised.value.message and '"5m"' in raised.value.message


def test_a_request_carries_its_keep_alive() -> None:
    assert chat().keep_alive is None
    assert chat(keep_alive="10m").keep_alive == 600.0
    assert chat(keep_alive=-1).keep_alive == FOREVER
    assert "keep_alive" in refused({"model": "m", "keep_alive": "soon"}).message
    assert parse_generate({"model": "m", "prompt": "", "keep_alive": 0}, DEFAULTS).keep_alive == 0.0


# --- chat requests ---------------------------------------------------------------------------------------------


def test_a_chat_streams_unless_told_not_to() -> None:
    assert completion(chat()).stream
    assert completion(chat(stream=None)).stream
    assert not completion(chat(stream=False)).stream
    assert "stream" in refused({"model": "m", "messages": HI, "stream": "no"}).message


def test_a_chat_request_becomes_the_openai_layers_request() -> None:
    request = chat()
    assert request.model == "gemma3" and request.think is None and request.context == () and not request.raw
    found = completion(request)
    assert found.messages == HI and found.prompt is None and not found.include_usage
    assert found.tools == () and found.tool_choice == ToolChoice("none") and found.response_format is None
    assert found.options == GenerationOptions(
        sampling=DEFAULTS.sampling, seed=-1, max_tokens=512, stop=("<eos>",), cache_prompt=True
    )


def test_options_override_the_server_defaults() -> None:
    options = completion(
        chat(
            options={
                "num_predict": 64,
                "temperature": 0.2,
                "top_k": 5,
                "top_p": 0.5,
                "min_p": 0.1,
                "repeat_penalty": 1.1,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "seed": 42,
                "stop": ["</s>", "User:"],
            }
        )
    ).options
    sampling = options.sampling
    assert (sampling.temp, sampling.top_k, sampling.top_p, sampling.min_p) == (0.2, 5, 0.5, 0.1)
    assert (sampling.repeat_penalty, sampling.presence_penalty, sampling.frequency_penalty) == (1.1, 0.5, -0.5)
    assert options.max_tokens == 64 and options.seed == 42 and options.stop == ("</s>", "User:")
    assert completion(chat(options={"stop": "END"})).options.stop == ("END",)
    assert completion(chat(options={"stop": ["", "END"]})).options.stop == ("END",)
    assert completion(chat(options={"stop": []})).options.stop == ()
    assert completion(chat(options={"seed": 2**40})).options.seed == 2**40 % 0xFFFFFFFF
    assert completion(chat(options={"seed": -1})).options.seed == -1
    assert completion(chat(options={"temperature": None})).options.sampling.temp == 0.8


@pytest.mark.parametrize("predict", [-1, -2, 0])
def test_num_predict_without_a_limit_leaves_the_servers_own(predict: int) -> None:
    assert completion(chat(options={"num_predict": predict})).options.max_tokens == DEFAULTS.max_tokens


def test_runner_options_and_unknown_or_retired_keys_are_accepted_and_ignored() -> None:
    ignored = {
        "num_ctx": 8192,
        "num_batch": 512,
        "num_gpu": 99,
        "num_thread": 4,
        "main_gpu": 0,
        "use_mmap": True,
        "num_keep": 5,
        "typical_p": 0.9,
        "repeat_last_n": 64,
        "mirostat": 2,
        "mirostat_eta": 0.1,
        "mirostat_tau": 5.0,
        "tfs_z": 1.0,
        "penalize_newline": True,
        "numa": False,
        "low_vram": False,
        "use_mlock": False,
        "vocab_only": False,
        "logits_all": False,
        "embedding_only": False,
        "draft_num_predict": 4,
        "something_new": {"any": "thing"},
    }
    assert completion(chat(options=ignored)).options == completion(chat()).options


def test_unknown_top_level_fields_are_accepted_and_ignored() -> None:
    request = chat(truncate=True, shift=False, images=None, template="", suffix="", foo={"bar": 1}, format="")
    assert completion(request).messages == HI and completion(request).response_format is None


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"temperature": "hot"}, "options.temperature"),
        ({"temperature": 9}, "options.temperature"),
        ({"top_p": 2}, "options.top_p"),
        ({"top_k": 1.5}, "options.top_k"),
        ({"top_k": True}, "options.top_k"),
        ({"min_p": -1}, "options.min_p"),
        ({"repeat_penalty": "x"}, "options.repeat_penalty"),
        ({"presence_penalty": 5}, "options.presence_penalty"),
        ({"frequency_penalty": []}, "options.frequency_penalty"),
        ({"num_predict": "10"}, "options.num_predict"),
        ({"num_predict": -3}, "options.num_predict"),
        ({"seed": 1.5}, "options.seed"),
        ({"stop": 5}, "options.stop"),
        ({"stop": ["a", 5]}, "options.stop"),
        ({"stop": [str(n) for n in range(17)]}, "options.stop"),
    ],
)
def test_wrong_values_of_the_options_used_are_refused_by_name(options: dict[str, Any], named: str) -> None:
    assert named in refused({"model": "m", "messages": HI, "options": options}).message


def test_options_must_be_an_object() -> None:
    assert "options must be an object" in refused({"model": "m", "messages": HI, "options": [1]}).message


def test_format_asks_for_json_or_a_schema() -> None:
    assert completion(chat(format="json")).response_format == ResponseFormat(None)
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    assert completion(chat(format=schema)).response_format == ResponseFormat(schema)
    assert completion(chat(format={})).response_format == ResponseFormat(None)
    assert completion(chat(format=None)).response_format is None


def test_a_format_the_grammar_cannot_enforce_is_refused_naming_format() -> None:
    error = refused({"model": "m", "messages": HI, "format": {"type": "string", "format": "email"}})
    assert error.message.startswith("format: ") and "email" in error.message
    assert "format must be" in refused({"model": "m", "messages": HI, "format": "yaml"}).message
    assert "format must be" in refused({"model": "m", "messages": HI, "format": 3}).message
    both = refused({"model": "m", "messages": HI, "format": "json", "tools": [WEATHER_TOOL]})
    assert "format cannot be combined with tools" in both.message


@pytest.mark.parametrize(
    ("body", "named", "parsers"),
    [
        ({"template": "{{ .Prompt }}"}, "template", (parse_chat, parse_generate)),
        ({"suffix": "}\n"}, "suffix", (parse_chat, parse_generate)),
    ],
)
def test_what_this_server_cannot_do_is_refused_by_name(body: dict[str, Any], named: str, parsers: Any) -> None:
    for parse in parsers:
        error = refused({"model": "m", "messages": HI, "prompt": "Hi", **body}, parse)
        assert named in error.message


def test_images_on_a_message_are_named_by_where_they_are() -> None:
    body = {"model": "m", "messages": [*HI, {"role": "user", "content": "x", "images": ["AAAA"]}]}
    assert refused(body).message.startswith("messages[1].images[0]:")
    assert completion(chat(messages=[{"role": "user", "content": "x", "images": []}])).messages == [
        {"role": "user", "content": "x"}
    ]


def test_tools_in_the_openai_shape_are_given_to_the_model_with_auto_choice() -> None:
    found = completion(chat(tools=[WEATHER_TOOL]))
    assert [tool.name for tool in found.tools] == ["get_weather"] and found.tool_choice == ToolChoice("auto")
    untyped = {"function": WEATHER_TOOL["function"]}  # some clients leave out "type"
    assert [tool.name for tool in completion(chat(tools=[untyped])).tools] == ["get_weather"]
    assert completion(chat(tools=[])).tool_choice == ToolChoice("none")
    error = refused({"model": "m", "messages": HI, "tools": [{"type": "function", "function": {"name": "a b"}}]})
    assert "tools[0].function.name" in error.message
    assert "tools must be a list" in refused({"model": "m", "messages": HI, "tools": "get_weather"}).message


def test_ollama_shaped_calls_and_results_in_the_history_are_converted() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "I should call the tool.",
            "tool_calls": [
                {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
            ],
        },
        {"role": "tool", "content": "18 °C", "tool_name": "get_weather", "tool_call_id": "call_1"},
        {"role": "tool", "content": "20 °C", "tool_name": "get_weather"},
        {"role": "tool", "content": "?"},
    ]
    found = completion(chat(messages=messages, tools=[WEATHER_TOOL])).messages
    assert found == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "I should call the tool.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                },
                {"id": "", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
            ],
        },
        {"role": "tool", "content": "18 °C", "tool_call_id": "call_1", "name": "get_weather"},
        {"role": "tool", "content": "20 °C", "tool_call_id": "get_weather", "name": "get_weather"},
        {"role": "tool", "content": "?", "tool_call_id": ""},
    ]


def test_messages_are_checked_and_their_extras_ignored() -> None:
    found = completion(chat(messages=[{"role": "assistant", "content": None, "extra": 1}, *HI])).messages
    assert found == [{"role": "assistant", "content": ""}, *HI]
    assert completion(chat(messages=[{"role": "user", "content": "x", "thinking": "not mine"}])).messages == [
        {"role": "user", "content": "x"}
    ]
    for messages, named in (
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": ["x"]}], "messages[0].content"),
        (["Hi"], "messages[0]"),
        ({"role": "user"}, "messages must be a list"),
        ([{"role": "user", "content": "\ud83d"}], "messages[0].content"),
        ([{"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {}}}]}], "tool_calls[0]"),
    ):
        assert named in refused({"model": "m", "messages": messages}).message


@pytest.mark.parametrize("messages", [None, []])
def test_a_chat_without_messages_only_loads_the_model(messages: Any) -> None:
    body: dict[str, Any] = {"model": "gemma3", "keep_alive": 0}
    if messages is not None:
        body["messages"] = messages
    request = parse_chat(body, DEFAULTS)
    assert request == OllamaRequest("gemma3", None, 0.0, None)


@pytest.mark.parametrize(
    ("value", "think"), [(None, None), (True, True), (False, False), ("low", True), ("medium", True), ("max", True)]
)
def test_think_takes_a_switch_or_a_level(value: Any, think: bool | None) -> None:
    assert chat(think=value).think is think
    assert parse_generate({"model": "m", "prompt": "x", "think": value}, DEFAULTS).think is think


@pytest.mark.parametrize("value", ["none", "extreme", 1, [], {"level": "high"}])
def test_other_think_values_are_refused(value: Any) -> None:
    assert "think must be" in refused({"model": "m", "messages": HI, "think": value}).message


def test_logprobs_ask_for_each_tokens_log_probability() -> None:
    assert completion(chat()).logprobs is None
    assert completion(chat(logprobs=True)).logprobs == 0
    assert completion(chat(logprobs=True, top_logprobs=5)).logprobs == 5
    assert completion(chat(logprobs=False, top_logprobs=5)).logprobs is None
    assert "top_logprobs" in refused({"model": "m", "messages": HI, "logprobs": True, "top_logprobs": 21}).message
    assert "logprobs" in refused({"model": "m", "messages": HI, "logprobs": "yes"}).message


def test_a_request_body_must_be_an_object() -> None:
    assert "JSON object" in refused([1, 2]).message
    assert "JSON object" in refused("hi", parse_generate).message


# --- generate requests -----------------------------------------------------------------------------------------


def test_a_prompt_goes_through_the_template_after_the_system_prompt() -> None:
    request = parse_generate({"model": "m", "prompt": "Why is the sky blue?", "system": "Be brief."}, DEFAULTS)
    found = completion(request)
    assert found.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    assert found.prompt is None and found.stream and not request.raw
    plain = completion(parse_generate({"model": "m", "prompt": "Hi", "system": ""}, DEFAULTS))
    assert plain.messages == HI


def test_a_raw_prompt_is_completed_as_it_is() -> None:
    request = parse_generate(
        {"model": "m", "prompt": "<start_of_turn>user\nHi", "raw": True, "system": "ignored", "stream": False},
        DEFAULTS,
    )
    assert request.raw
    found = completion(request)
    assert found.prompt == "<start_of_turn>user\nHi" and found.messages is None and not found.stream


def test_generate_takes_the_context_of_an_earlier_answer() -> None:
    request = parse_generate({"model": "m", "prompt": "And then?", "context": [2, 105, 7]}, DEFAULTS)
    assert request.context == (2, 105, 7)
    assert parse_generate({"model": "m", "prompt": "x", "context": None}, DEFAULTS).context == ()
    for context in ([1, "2"], [1.5], [-1], [True], "1 2 3", {"ids": [1]}):
        assert "context must be" in refused({"model": "m", "prompt": "x", "context": context}, parse_generate).message


def test_generate_options_format_and_think_are_read_as_chats_are() -> None:
    found = completion(
        parse_generate({"model": "m", "prompt": "x", "options": {"num_predict": 5}, "format": "json"}, DEFAULTS)
    )
    assert found.options.max_tokens == 5 and found.response_format == ResponseFormat(None)


@pytest.mark.parametrize("prompt", [None, ""])
def test_an_empty_prompt_only_loads_the_model(prompt: str | None) -> None:
    body: dict[str, Any] = {"model": "gemma3:270m", "keep_alive": "0s"}
    if prompt is not None:
        body["prompt"] = prompt
    assert parse_generate(body, DEFAULTS) == OllamaRequest("gemma3:270m", None, 0.0, None)


def test_generate_checks_its_text_fields() -> None:
    assert "prompt must be a string" in refused({"model": "m", "prompt": ["a"]}, parse_generate).message
    assert "system must be a string" in refused({"model": "m", "prompt": "a", "system": 1}, parse_generate).message
    assert "raw" in refused({"model": "m", "prompt": "a", "raw": "yes"}, parse_generate).message
    assert "prompt" in refused({"model": "m", "prompt": "\udc00"}, parse_generate).message


# --- answers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, 1_765_081_334.25, 1_765_081_334.999_999_999_9, 1_765_081_334.123_456, 1e9 + 0.5])
def test_timestamps_are_rfc_3339_that_python_and_pydantic_read(t: float) -> None:
    text = ollama.timestamp(t)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", text), text
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None and parsed.timestamp() == pytest.approx(t, abs=1e-5)
    assert TypeAdapter(datetime).validate_python(text) == parsed


def test_a_timestamp_counts_from_the_epoch_in_utc() -> None:
    assert ollama.timestamp(0) == "1970-01-01T00:00:00.000000000Z"
    assert ollama.timestamp(1_765_081_334.5) == "2025-12-07T04:22:14.500000000Z"
    assert ollama.timestamp(ollama.FAR_FUTURE).startswith("2318-01-01T00:00:00")


def test_durations_are_whole_nanoseconds() -> None:
    assert ollama.ns(1.5) == 1_500_000_000 and ollama.ns(0) == 0 and ollama.ns(1e-9) == 1
    assert ollama.ns(-0.1) == 0
    assert isinstance(ollama.ns(0.25), int)


def test_durations_leave_out_the_zero_stats_as_ollama_does() -> None:
    full = Durations(total_s=2.0, load_s=0.5, prompt_tokens=12, prompt_s=0.25, eval_tokens=30, eval_s=1.2)
    assert full.as_dict() == {
        "total_duration": 2_000_000_000,
        "load_duration": 500_000_000,
        "prompt_eval_count": 12,
        "prompt_eval_duration": 250_000_000,
        "eval_count": 30,
        "eval_duration": 1_200_000_000,
    }
    assert Durations(total_s=0.01, load_s=0.0).as_dict() == {"total_duration": 10_000_000, "load_duration": 0}
    warm = Durations(total_s=1.0, load_s=0.0, prompt_tokens=4, prompt_s=0.1, eval_tokens=0, eval_s=0.0).as_dict()
    assert "eval_count" not in warm and "eval_duration" not in warm and warm["prompt_eval_count"] == 4


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        ("eos", "stop"),
        ("stop", "stop"),
        ("repetition", "stop"),
        ("loop", "stop"),
        ("interrupted", "stop"),
        ("length", "length"),
        ("context", "length"),
        ("load", "load"),
        ("unload", "unload"),
    ],
)
def test_done_reason_is_stop_or_length(stop: str, reason: str) -> None:
    assert ollama.done_reason(stop) == reason


def test_tool_calls_carry_their_arguments_as_objects() -> None:
    calls = [
        ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_2", "now", ""),
        ToolCall("call_3", "cut", '{"city": "Par'),  # a call cut short: no arguments rather than a broken object
    ]
    assert ollama.tool_calls(calls) == [
        {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_2", "function": {"index": 1, "name": "now", "arguments": {}}},
        {"id": "call_3", "function": {"index": 2, "name": "cut", "arguments": {}}},
    ]


def test_chat_lines_parse_as_the_clients_chat_response() -> None:
    at = ollama.timestamp(1_765_081_334.0)
    thinking = ollama.chat_line("gemma3:latest", at, thinking="Hmm.")
    assert thinking == {
        "model": "gemma3:latest",
        "created_at": at,
        "message": {"role": "assistant", "content": "", "thinking": "Hmm."},
        "done": False,
    }
    line = ollama.chat_line("gemma3:latest", at, content="Hel")
    assert line["message"] == {"role": "assistant", "content": "Hel"} and line["done"] is False
    calls = ollama.chat_line("m", at, calls=[ToolCall("c1", "get_weather", '{"city": "Paris"}')])
    parsed = ChatResponse.model_validate(calls)
    assert parsed.message.tool_calls is not None
    assert parsed.message.tool_calls[0].function.arguments == {"city": "Paris"}
    durations = Durations(2.0, 0.0, 5, 0.1, 7, 1.5)
    done = ollama.chat_done("m", at, "stop", durations)
    assert done["done"] is True and done["done_reason"] == "stop" and done["eval_count"] == 7
    assert done["message"] == {"role": "assistant", "content": ""}
    whole = ChatResponse.model_validate(ollama.chat_done("m", at, "length", durations, "Hello", "Hmm."))
    assert (whole.message.content, whole.message.thinking, whole.done_reason) == ("Hello", "Hmm.", "length")
    assert whole.eval_duration == 1_500_000_000 and whole.prompt_eval_count == 5
    loaded = ollama.chat_done("m", at, "load", None)
    assert loaded == {
        "model": "m",
        "created_at": at,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "load",
    }
    for shaped in (thinking, line, loaded):
        ChatResponse.model_validate(shaped)


def test_generate_lines_parse_as_the_clients_generate_response() -> None:
    at = ollama.timestamp(1_765_081_334.0)
    line = ollama.generate_line("m", at, response="The sky")
    assert line == {"model": "m", "created_at": at, "response": "The sky", "done": False}
    assert ollama.generate_line("m", at, thinking="so")["thinking"] == "so"
    done = ollama.generate_done("m", at, "stop", Durations(1.0, 0.2, 3, 0.1, 4, 0.5), [2, 105, 7, 9])
    assert done["done"] is True and done["context"] == [2, 105, 7, 9] and done["response"] == ""
    parsed = GenerateResponse.model_validate(done)
    assert parsed.context == [2, 105, 7, 9] and parsed.load_duration == 200_000_000
    unloaded = ollama.generate_done("m", at, "unload", None, None)
    assert "context" not in unloaded and unloaded["done_reason"] == "unload"
    for shaped in (line, unloaded, ollama.generate_done("m", at, "stop", None, [], "Blue.", "Rayleigh")):
        GenerateResponse.model_validate(shaped)


def test_logprobs_come_with_each_line_when_asked_for() -> None:
    found = [(("Hi", b"Hi", -0.25), [("Hi", b"Hi", -0.25), ("Hey", b"Hey", -1.5)])]
    line = ollama.chat_line("m", "2026-01-01T00:00:00.000000000Z", content="Hi", logprobs=found)
    assert line["logprobs"] == [
        {
            "token": "Hi",
            "logprob": -0.25,
            "bytes": [72, 105],
            "top_logprobs": [
                {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]},
            ],
        }
    ]
    parsed = ChatResponse.model_validate(line)
    assert parsed.logprobs is not None and parsed.logprobs[0].logprob == -0.25
    done = ollama.generate_done("m", "2026-01-01T00:00:00Z", "stop", None, None, logprobs=found)
    assert GenerateResponse.model_validate(done).logprobs is not None
    assert "logprobs" not in ollama.generate_line("m", "2026-01-01T00:00:00Z", "x")


def test_ndjson_is_one_compact_line_per_object() -> None:
    line = ollama.ndjson({"message": {"content": "a\nb\r\n\u2028c\u2029\x85 é 日本"}, "done": False})
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line
    assert line.startswith(b'{"message":{"content":') and b", " not in line and "日本".encode() in line
    assert json.loads(line) == {"message": {"content": "a\nb\r\n\u2028c\u2029\x85 é 日本"}, "done": False}
    # ollama-python reads a stream with httpx's line reader, which splits where str.splitlines does
    decoder = LineDecoder()
    lines = decoder.decode((line + ollama.ndjson({"done": True})).decode())
    assert [json.loads(text) for text in lines] == [json.loads(line), {"done": True}]
    assert ollama.ndjson({}) == b"{}\n"


def test_the_version_is_dotted_numbers() -> None:
    assert ollama.version() == {"version": ollama.VERSION}
    assert tuple(map(int, re.sub(r"^v|-.*", "", ollama.VERSION).split("."))) >= (0, 1, 0)  # as Open WebUI reads it


@pytest.mark.parametrize(
    ("count", "size"),
    [
        (None, ""),
        (268_098_176, "268.10M"),
        (7_615_616_512, "7.6B"),
        (8_030_261_248, "8.0B"),
        (8_000_000_000, "8B"),
        (1_000_000, "1M"),
        (494_032_768, "494.03M"),
        (70_553_706_496, "70.6B"),
        (135_000, "135K"),
        (999, "999"),
    ],
)
def test_parameter_sizes_are_written_as_ollama_writes_them(count: int | None, size: str) -> None:
    assert ollama.parameter_size(count) == size


def test_details_describe_the_model_from_its_header() -> None:
    assert ollama.details(GEMMA) == {
        "parent_model": "",
        "format": "gguf",
        "family": "gemma3",
        "families": ["gemma3"],
        "parameter_size": "268.10M",
        "quantization_level": "Q4_K_M",
    }


def test_tags_list_each_model_as_the_client_reads_it() -> None:
    other = ModelFacts("mymodel:latest", 10, 0.0, "b" * 64, "llama", None, "F16", None, ("completion", "tools"))
    answer = ollama.tags([GEMMA, other])
    first = answer["models"][0]
    assert first["name"] == first["model"] == GEMMA.name and first["size"] == GEMMA.size
    assert first["digest"] == "a" * 64 and first["capabilities"] == ["completion"]
    parsed = ListResponse.model_validate(answer)
    assert [model.model for model in parsed.models] == [GEMMA.name, "mymodel:latest"]
    assert parsed.models[0].modified_at == datetime.fromtimestamp(GEMMA.modified_at, timezone.utc)
    assert parsed.models[1].details is not None and parsed.models[1].details.parameter_size == ""
    assert ListResponse.model_validate(ollama.tags([])).models == []


def test_show_gives_the_header_facts_and_the_parameters_continue_reads() -> None:
    parameters = {"num_ctx": 4096, "stop": ["<end_of_turn>", 'say "hi"'], "temperature": 1.0, "top_p": 0.95}
    answer = ollama.show(GEMMA, parameters, system="Be brief.")
    assert answer["model_info"] == {
        "general.architecture": "gemma3",
        "general.parameter_count": 268_098_176,
        "gemma3.context_length": 32768,
        "gemma3.embedding_length": 640,
    }
    assert answer["template"] == GEMMA.template and answer["system"] == "Be brief." and answer["license"] == ""
    assert answer["capabilities"] == ["completion"] and answer["details"] == ollama.details(GEMMA)
    lines = answer["parameters"].split("\n")
    assert lines[0] == "num_ctx" + " " * 24 + "4096"
    # Continue reads each line with this pattern and the stop values as JSON
    read = [re.fullmatch(r'(\S+)\s+((?:".*")|\S+)', line) for line in lines]
    assert all(read)
    assert [(m[1], m[2]) for m in read if m] == [
        ("num_ctx", "4096"),
        ("stop", '"<end_of_turn>"'),
        ("stop", '"say \\"hi\\""'),
        ("temperature", "1"),
        ("top_p", "0.95"),
    ]
    assert [json.loads(m[2]) for m in read if m and m[1] == "stop"] == ["<end_of_turn>", 'say "hi"']
    assert f"FROM {GEMMA.name}" in answer["modelfile"] and 'PARAMETER stop "<end_of_turn>"' in answer["modelfile"]
    parsed = ShowResponse.model_validate(answer)
    assert parsed.modelinfo is not None and parsed.modelinfo["gemma3.context_length"] == 32768
    assert parsed.modified_at is not None and parsed.parameters == answer["parameters"]


def test_show_leaves_out_the_header_facts_it_does_not_know() -> None:
    bare = ModelFacts("x:latest", 1, 0.0, "c" * 64, "llama", None, "Q8_0", None, ("completion",))
    answer = ollama.show(bare, {})
    assert answer["model_info"] == {"general.architecture": "llama"} and answer["parameters"] == ""
    ShowResponse.model_validate(answer)


def test_ps_lists_the_loaded_models_with_when_they_unload() -> None:
    loaded = [
        Loaded(GEMMA, 400_000_000, 0, 1_765_081_634.0, 4096),
        Loaded(GEMMA, 400_000_000, 400_000_000, None, 8192),
        Loaded(GEMMA, 1, 1, FOREVER, 2048),
        Loaded(GEMMA, 1, 1, 1e300, 1024),  # past any date: as for ever
    ]
    answer = ollama.ps(loaded)
    first = answer["models"][0]
    assert first == {
        "name": GEMMA.name,
        "model": GEMMA.name,
        "size": 400_000_000,
        "digest": GEMMA.digest,
        "details": ollama.details(GEMMA),
        "expires_at": ollama.timestamp(1_765_081_634.0),
        "size_vram": 0,
        "context_length": 4096,
    }
    parsed = ProcessResponse.model_validate(answer)
    assert [model.context_length for model in parsed.models] == [4096, 8192, 2048, 1024]
    forever = [model.expires_at for model in parsed.models[1:]]
    assert all(when is not None and when.year == 2318 for when in forever)
    assert datetime.fromisoformat(answer["models"][1]["expires_at"]).year == 2318  # as Open WebUI reads it


def test_embed_takes_one_text_or_a_list() -> None:
    assert ollama.embed_inputs({"model": "m", "input": "hello"}) == (["hello"], True, None)
    assert ollama.embed_inputs({"input": ["a", "b"], "truncate": False, "dimensions": 64}) == (["a", "b"], False, 64)
    for body, named in (
        ({}, "input"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", 1]}, "input"),
        ({"input": ["a", ""]}, "input"),
        ({"input": {"text": "a"}}, "input"),
        ({"input": "\ud83d"}, "input"),
        ({"input": "a", "truncate": "yes"}, "truncate"),
        ({"input": "a", "dimensions": 0}, "dimensions"),
        ({"input": "a", "dimensions": 1.5}, "dimensions"),
    ):
        with pytest.raises(OllamaError) as raised:
            ollama.embed_inputs(body)
        assert raised.value.status == 400 and named in raised.value.message


def test_the_legacy_embeddings_take_a_prompt() -> None:
    assert ollama.embeddings_prompt({"model": "m", "prompt": "hello"}) == "hello"
    for body in ({}, {"prompt": ""}, {"prompt": ["a"]}, "hello"):
        with pytest.raises(OllamaError) as raised:
            ollama.embeddings_prompt(body)
        assert raised.value.status == 400


def test_embedding_answers_parse_as_the_clients() -> None:
    answer = ollama.embed_answer("m", [[0.6, 0.8], [1.0, 0.0]], Durations(0.5, 0.1, 6))
    assert answer == {
        "model": "m",
        "embeddings": [[0.6, 0.8], [1.0, 0.0]],
        "total_duration": 500_000_000,
        "load_duration": 100_000_000,
        "prompt_eval_count": 6,
    }
    assert EmbedResponse.model_validate(answer).embeddings == [[0.6, 0.8], [1.0, 0.0]]
    assert EmbeddingsResponse.model_validate(ollama.embeddings_answer([0.1, 0.2])).embedding == [0.1, 0.2]
    assert ollama.embeddings_answer([]) == {"embedding": []}


def test_vectors_are_normalized_to_unit_length() -> None:
    assert openai.normalize([3.0, 4.0]) == pytest.approx([0.6, 0.8])
    assert openai.normalize([0.0, 0.0]) == [0.0, 0.0]
    assert openai.normalize([]) == []
    unit = openai.normalize([1.0, -2.0, 2.5, 0.1])
    assert math.sqrt(sum(v * v for v in unit)) == pytest.approx(1.0)


def test_pull_progress_lines_carry_what_is_known() -> None:
    digest = "sha256:" + "d" * 64
    lines = [
        ollama.pull_status("pulling manifest"),
        ollama.pull_status(f"pulling {'d' * 12}", digest, 1000, 250),
        ollama.pull_status("verifying sha256 digest"),
        ollama.pull_status("writing manifest"),
        ollama.pull_status("success"),
    ]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[1] == {"status": "pulling dddddddddddd", "digest": digest, "total": 1000, "completed": 250}
    assert ollama.pull_status("pulling x", digest, 1000, 0)["completed"] == 0
    parsed = [ProgressResponse.model_validate(line) for line in lines]
    assert parsed[1].completed == 250 and parsed[-1].status == "success"
