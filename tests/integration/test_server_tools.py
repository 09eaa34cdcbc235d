"""Tool calls through `edgellm serve` and the official openai client, on copies of the test model that carry a
Qwen-style (Hermes `<tool_call>`), a Qwen-3.5-style (XML parameters), a Llama-3-style (bare JSON) and a Mistral-style
(`[TOOL_CALLS]`) template, and on
the test model itself (no template: the generic format). A named tool_choice makes the grammar write a call whose
arguments validate against the tool's schema, whole and streamed (the pieces add up to the same call); a round trip
renders through the template; `auto` with no marker is plain text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest

from tests.support.server import ServerProcess
from tests.support.tool_models import TEMPLATES, with_chat_template

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": WEATHER},
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module", params=["hermes", "qwen-xml", "llama3", "mistral", "generic"])
def server(request: pytest.FixtureRequest, test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    folder = tmp_path_factory.mktemp(f"tools-{request.param}")
    model = test_model
    if request.param != "generic":
        model = with_chat_template(test_model, folder / f"{request.param}.gguf", TEMPLATES[request.param])
    started = ServerProcess("-m", str(model), "-c", "1024", "--parallel", "2", env={"EDGELLM_HOME": str(folder)})
    try:
        yield request.param, started.wait_ready()
    finally:
        started.kill()


@pytest.fixture
def client(server: tuple[str, ServerProcess]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server[1].url}/v1", api_key="none", max_retries=0, timeout=180)


def test_a_named_tool_choice_returns_a_call_whose_arguments_validate(client: openai.OpenAI) -> None:
    for seed in range(3):
        answer = client.chat.completions.create(
            model="m", messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=1.0, seed=seed, max_tokens=120
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.function.name == "get_weather"
        assert len(call.id) == 9 and call.id.isalnum()
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_streamed_call_deltas_add_up_to_the_whole_call(client: openai.OpenAI) -> None:
    asked = dict(model="m", messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0, max_tokens=120)
    whole = client.chat.completions.create(**asked).choices[0].message.tool_calls[0]
    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(stream=True, **asked):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            if delta.id is not None:  # a call's first piece: index, id, type, name and empty arguments
                assert delta.index not in calls and delta.type == "function" and delta.function.arguments == ""
                calls[delta.index] = {"id": delta.id, "name": delta.function.name, "arguments": ""}
            else:
                calls[delta.index]["arguments"] += delta.function.arguments
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == whole.function.name
    assert calls[0]["arguments"] == whole.function.arguments  # temperature 0: the same call, piece by piece
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER)


def test_required_calls_some_tool(server: tuple[str, ServerProcess], client: openai.OpenAI) -> None:
    """The test model may go on calling until the limit: then a JSON call cut short keeps its arguments as written
    (the OpenAI API's way with finish_reason "length"), a Qwen XML call cut short is left out; every call that is
    whole validates."""
    answer = client.chat.completions.create(
        model="m", messages=ASK, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=120
    )
    choice = answer.choices[0]
    calls = choice.message.tool_calls
    assert calls and all(call.function.name in ("get_weather", "add") for call in calls)
    assert choice.finish_reason in ("tool_calls", "length")
    whole = calls[:-1] if choice.finish_reason == "length" and server[0] != "qwen-xml" else calls
    for call in whole:
        schema = WEATHER if call.function.name == "get_weather" else TOOLS[1]["function"]["parameters"]
        jsonschema.validate(json.loads(call.function.arguments), schema)


def test_a_round_trip_renders_the_call_and_its_result(client: openai.OpenAI) -> None:
    """The call comes back as the assistant's message, the result as a tool message; the template renders both and
    the model answers."""
    first = client.chat.completions.create(
        model="m", messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0, max_tokens=120
    )
    call = first.choices[0].message.tool_calls[0]
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    answer = client.chat.completions.create(
        model="m", messages=history, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=8
    )
    assert answer.choices[0].message.tool_calls is None
    alone = client.chat.completions.create(model="m", messages=ASK, max_tokens=1)
    grown = answer.usage.prompt_tokens - alone.usage.prompt_tokens
    assert grown > len(call.function.arguments) // 4  # the call and its result are in the prompt


def test_auto_without_a_marker_is_plain_text(server: tuple[str, ServerProcess], client: openai.OpenAI) -> None:
    """The base test model never writes a call's marker: `auto` leaves it free, and its text is the content."""
    if server[0] == "generic":  # the generic format's auto is a JSON answer or a call, never free text
        answer = client.chat.completions.create(
            model="m", messages=ASK, tools=TOOLS, tool_choice="auto", temperature=0, max_tokens=150
        )
        message = answer.choices[0].message
        assert message.tool_calls or (message.content and answer.choices[0].finish_reason == "stop")
        return
    answer = client.chat.completions.create(
        model="m", messages=ASK, tools=TOOLS, temperature=0, max_tokens=12, extra_body={"ignore_eos": True}
    )
    choice = answer.choices[0]
    assert choice.message.tool_calls is None and choice.message.content
    assert choice.finish_reason == "length"


def test_bad_tools_are_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="tool_choice names"):
        client.chat.completions.create(
            model="m", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}
        )
    with pytest.raises(openai.BadRequestError, match=r"tools\[0\].function.parameters must be a JSON schema"):
        bad = [{"type": "function", "function": {"name": "f", "parameters": ["x"]}}]
        client.chat.completions.create(model="m", messages=ASK, tools=bad)


def test_what_a_grammar_cannot_enforce_in_a_tool_is_left_to_the_tool_and_logged(
    server: tuple[str, ServerProcess], client: openai.OpenAI
) -> None:
    """Clients rarely write tools' schemas for a grammar (`format: uri`, `uniqueItems`): the rest is enforced, the
    request is answered, and the server's log names what was not enforced."""
    schema = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 30},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 2, "uniqueItems": True},
        },
        "required": ["url", "tags"],
        "additionalProperties": False,
    }
    fetch = [{"type": "function", "function": {"name": "fetch", "parameters": schema}}]
    named = {"type": "function", "function": {"name": "fetch"}}
    answer = client.chat.completions.create(
        model="m", messages=ASK, tools=fetch, tool_choice=named, temperature=0, max_tokens=150
    )
    arguments = json.loads(answer.choices[0].message.tool_calls[0].function.arguments)
    assert set(arguments) == {"url", "tags"} and len(arguments["tags"]) <= 2
    server[1].wait_for_line(r"tool fetch: not enforced by the grammar: #/properties/url/format, .*uniqueItems")
