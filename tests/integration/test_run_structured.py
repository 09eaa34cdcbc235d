"""`edgellm run --format json | --json-schema | --grammar` and the REPL's `/set json on`, with the real llama.cpp on the
real test model: the text matches what was asked; a schema or grammar that cannot be used is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.support import assert_one_line_error, edgellm

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 15},
        "people": {"type": "integer", "minimum": 0, "maximum": 100000000},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "people", "capital"],
    "additionalProperties": False,
}


def run(model: Path, *more: str) -> str:
    done = edgellm("run", "-m", str(model), "-p", "A city as JSON:", "-n", "120", "-t", "2", *more)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_json_schema_inline_or_in_a_file_shapes_the_completion(test_model: Path, tmp_path: Path) -> None:
    for seed in ("1", "2"):
        jsonschema.validate(json.loads(run(test_model, "--json-schema", json.dumps(SCHEMA), "-s", seed)), SCHEMA)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    jsonschema.validate(json.loads(run(test_model, "--json-schema", str(schema), "--temp", "0")), SCHEMA)


def test_a_grammar_file_and_format_json(test_model: Path, tmp_path: Path) -> None:
    grammar = tmp_path / "answer.gbnf"
    grammar.write_text('root ::= "yes" | "no"\n')
    assert run(test_model, "--grammar", str(grammar)).strip() in ("yes", "no")
    assert run(test_model, "--format", "json", "--temp", "0").lstrip().startswith("{")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--json-schema", '{"type": "array", "uniqueItems": true}'), ("uniqueItems", "#/uniqueItems")),
        (("--json-schema", "{not json"), ("--json-schema is not valid JSON",)),
        (("--json-schema", "missing.json"), ("cannot read --json-schema missing.json",)),
        (("--grammar", "missing.gbnf"), ("cannot read --grammar missing.gbnf",)),
    ],
)
def test_what_cannot_be_used_is_one_line(test_model: Path, flags: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_one_line_error(edgellm("run", "-m", str(test_model), "-p", "x", *flags), *words)


def test_a_grammar_llama_cpp_cannot_parse_is_one_line(test_model: Path, tmp_path: Path) -> None:
    grammar = tmp_path / "bad.gbnf"
    grammar.write_text('root ::= "a" rest\n')
    done = edgellm("run", "-m", str(test_model), "-p", "x", "--grammar", str(grammar))
    assert_one_line_error(done, "could not parse the grammar", "rest")


def test_the_repl_answers_in_json_once_asked(test_model: Path) -> None:
    done = edgellm(
        "chat", "-m", str(test_model), "--headless", "-n", "60", "--temp", "0", input="/set json on\nA city, please.\n"
    )
    assert done.returncode == 0, done.stderr
    assert "replies are JSON objects" in done.stdout + done.stderr
    reply = done.stdout.split("replies are JSON objects", 1)[-1]
    assert reply.lstrip().startswith("{")
