"""The grammars edgellm.grammar writes, read by llama.cpp itself: every grammar of the unit tests' schemas parses in
llama.cpp's grammar parser, and llama.cpp's grammar sampler lets the valid instances through token by token (the test
model's vocabulary) and stops invalid ones."""

from __future__ import annotations

import json

import pytest

from edgellm.grammar.json_schema import JSON_OBJECT_GRAMMAR, schema_grammar
from tests.support.grammar_llama import accepts, parses
from tests.unit.test_json_schema_grammar import CASES, PATTERNS


@pytest.fixture(autouse=True)
def _needs_the_test_model(test_model: object) -> None:
    """The vocabulary is the test model's."""


def test_llama_cpp_refuses_a_broken_grammar() -> None:
    assert not parses("root ::= undefined-rule\n")
    assert not parses('root ::= "unclosed\n')


@pytest.mark.parametrize(("name", "schema", "valid", "invalid"), CASES, ids=[case[0] for case in CASES])
def test_llama_cpp_parses_each_grammar_and_follows_it(
    name: str, schema: object, valid: list[str], invalid: list[str]
) -> None:
    grammar = schema_grammar(schema)
    assert parses(grammar), grammar
    for text in valid:
        assert accepts(grammar, text), f"{name}: llama.cpp refused valid {text!r}\n{grammar}"
    for text in invalid:
        assert not accepts(grammar, text), f"{name}: llama.cpp admitted invalid {text!r}\n{grammar}"


@pytest.mark.parametrize(("pattern", "valid", "invalid"), PATTERNS, ids=[case[0] for case in PATTERNS])
def test_llama_cpp_follows_each_pattern(pattern: str, valid: list[str], invalid: list[str]) -> None:
    grammar = schema_grammar({"type": "string", "pattern": pattern})
    assert parses(grammar), grammar
    for value in valid:
        assert accepts(grammar, json.dumps(value, ensure_ascii=False)), (pattern, value)
    for value in invalid:
        assert not accepts(grammar, json.dumps(value, ensure_ascii=False)), (pattern, value)


def test_llama_cpp_reads_the_large_grammars() -> None:
    grammars = [
        JSON_OBJECT_GRAMMAR,
        schema_grammar({"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(60)}}),
        schema_grammar({"type": "array", "items": {"type": "string", "maxLength": 2000}, "maxItems": 2000}),
        schema_grammar({"type": "integer", "minimum": -(10**15), "maximum": 10**18 + 7}),
        schema_grammar({"type": "string", "pattern": "^(a{0,100}b){0,20}$"}),
    ]
    for grammar in grammars:
        assert parses(grammar), grammar[:2000]
    assert accepts(grammars[0], '{"a": [1, {"b": null}], "c": "d"}')
    assert accepts(grammars[3], "1000000000000000007") and not accepts(grammars[3], "1000000000000000008")
