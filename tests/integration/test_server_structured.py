"""Structured output and logprobs through `edgellm serve` and the official openai client, on the test model: a
json_schema reply parses and validates for 50 seeds at temperature 1.0, for 8 schemas of growing complexity; a
keyword the grammar cannot enforce is a 400 naming it; a grammar with a dead end is that request's error and the
server answers the next; logprobs are the model's own (the top one is the chosen token at temperature 0)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import openai
import pytest

from tests.support.server import ServerProcess

SCHEMAS = [
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "n": {"type": "integer", "minimum": -5, "maximum": 120},
        },
        "required": ["color", "n"],
    },
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "nick": {"type": "string", "maxLength": 8},
        },
        "required": ["name"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 1, "maxItems": 3}
        },
        "required": ["tags"],
    },
    {
        "type": "object",
        "properties": {
            "person": {
                "type": "object",
                "properties": {
                    "age": {"type": "integer", "minimum": 0, "maximum": 130},
                    "address": {
                        "type": "object",
                        "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["zip"],
                    },
                },
                "required": ["age", "address"],
            }
        },
        "required": ["person"],
    },
    {
        "$defs": {
            "point": {
                "type": "object",
                "properties": {
                    "x": {"type": "integer", "minimum": 0, "maximum": 9},
                    "y": {"type": "integer", "minimum": 0, "maximum": 9},
                },
                "required": ["x", "y"],
            }
        },
        "type": "object",
        "properties": {"shape": {"anyOf": [{"$ref": "#/$defs/point"}, {"type": "null"}]}, "label": {"const": "p"}},
        "required": ["shape", "label"],
    },
    {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
            "day": {"type": "string", "format": "date"},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["code", "day", "id"],
    },
    {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "kind": {"oneOf": [{"type": "string", "maxLength": 5}, {"type": "integer", "minimum": 0, "maximum": 3}]},
            "note": {"type": ["string", "null"], "maxLength": 10},
            "items": {"type": "array", "items": {"enum": [1, 2, "x"]}, "maxItems": 4},
        },
        "required": ["score", "ratio", "kind", "note", "items"],
        "additionalProperties": False,
    },
]
SEEDS = 50


@pytest.fixture(scope="module")
def server(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("structured-home")
    started = ServerProcess("-m", str(test_model), "-c", "1024", "--parallel", "4", env={"EDGELLM_HOME": str(home)})
    try:
        yield started.wait_ready()
    finally:
        started.kill()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=300)


def structured(client: openai.OpenAI, schema: dict, seed: int, temperature: float = 1.0, **more):  # type: ignore[no-untyped-def]
    return client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Fill in the record."}],
        response_format={"type": "json_schema", "json_schema": {"name": "record", "schema": schema, "strict": True}},
        temperature=temperature,
        seed=seed,
        max_tokens=400,
        **more,
    )


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(SCHEMAS)))
def test_json_schema_replies_validate_for_every_seed(client: openai.OpenAI, number: int) -> None:
    schema = SCHEMAS[number]
    checker = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda seed: structured(client, schema, seed), range(SEEDS)))
    for seed, answer in enumerate(answers):
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", (seed, choice)
        checker.validate(json.loads(choice.message.content))


def test_json_object_is_an_object(client: openai.OpenAI) -> None:
    """Any object: a base model may add keys until max_tokens; every reply that ends of itself is one object."""
    ended = 0
    for seed in range(8):
        answer = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "A city as JSON."}],
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=seed,
            max_tokens=150,
        )
        text = answer.choices[0].message.content
        assert text.lstrip().startswith("{")
        if answer.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
            ended += 1
    assert ended


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"not": {"type": "string"}}, "not"),
        ({"type": "string", "format": "email"}, "email"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties"),
        ({"type": "number", "minimum": 0.5}, "minimum"),
        ({"type": "integer", "minimum": 5, "maximum": 3}, "no number is in range"),  # no value can be written
        ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength"),
    ],
)
def test_a_keyword_that_cannot_be_enforced_is_a_400_naming_it(
    client: openai.OpenAI, schema: dict, keyword: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=keyword):
        structured(client, schema, 0)


def test_a_grammar_with_a_dead_end_fails_that_request_alone(client: openai.OpenAI) -> None:
    """After "a", the grammar admits only a NUL character, which no token writes: llama.cpp would stop the process;
    here that request gets an error and the next is answered."""
    with pytest.raises(openai.BadRequestError, match="admits no token"):
        client.completions.create(
            model="m", prompt="Say a", max_tokens=8, temperature=0, extra_body={"grammar": 'root ::= "a" [\\x00]'}
        )
    with pytest.raises(openai.BadRequestError, match="could not parse the grammar"):
        client.completions.create(model="m", prompt="Say a", max_tokens=8, extra_body={"grammar": "root ::= undefined"})
    answer = structured(client, SCHEMAS[0], 1)
    assert "ok" in json.loads(answer.choices[0].message.content)


def test_top_logprob_is_the_chosen_token_at_temperature_zero(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Count to five."}],
        temperature=0,
        max_tokens=12,
        logprobs=True,
        top_logprobs=5,
        extra_body={"ignore_eos": True},
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == 12
    assert "".join(item.token for item in content) == answer.choices[0].message.content
    for item in content:
        assert len(item.top_logprobs) == 5
        assert item.top_logprobs[0].token == item.token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob)
        assert all(top.logprob <= 0 for top in item.top_logprobs)
        assert [t.logprob for t in item.top_logprobs] == sorted((t.logprob for t in item.top_logprobs), reverse=True)
        assert sum(math.exp(top.logprob) for top in item.top_logprobs) <= 1.0 + 1e-6
        assert bytes(item.bytes).decode("utf-8", errors="replace") == item.token


def test_streamed_logprobs_match_the_whole_answer(client: openai.OpenAI) -> None:
    asked = dict(
        model="m",
        messages=[{"role": "user", "content": "Name a colour."}],
        temperature=0,
        max_tokens=10,
        logprobs=True,
        top_logprobs=2,
        extra_body={"ignore_eos": True},
    )
    whole = client.chat.completions.create(**asked).choices[0].logprobs.content
    streamed = []
    for chunk in client.chat.completions.create(stream=True, **asked):
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed += chunk.choices[0].logprobs.content
    assert [(i.token, round(i.logprob, 4)) for i in streamed] == [(i.token, round(i.logprob, 4)) for i in whole]


def test_completion_logprobs_have_the_legacy_shape(client: openai.OpenAI) -> None:
    answer = client.completions.create(
        model="m", prompt="The sky is", max_tokens=6, temperature=0, logprobs=3, extra_body={"ignore_eos": True}
    )
    found = answer.choices[0].logprobs
    assert len(found.tokens) == len(found.token_logprobs) == len(found.top_logprobs) == 6
    assert "".join(found.tokens) == answer.choices[0].text
    assert found.text_offset[0] == 0 and found.text_offset[1] == len(found.tokens[0])
    for token, logprob, top in zip(found.tokens, found.token_logprobs, found.top_logprobs):
        assert logprob <= 0 and max(top.values()) == pytest.approx(logprob) and token in top
