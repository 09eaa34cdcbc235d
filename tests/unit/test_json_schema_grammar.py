"""JSON Schema to GBNF (edgellm.grammar), checked with the test recognizer tests/support/gbnf_match.py: each schema's
grammar admits the valid instances listed and refuses the invalid ones, the number ranges exactly (every number of a
window, for many bounds), and every keyword a grammar cannot enforce is refused by name and path. The instances are
checked against the schemas with the `jsonschema` package too, where it is installed."""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import date
from decimal import Decimal

import pytest

from edgellm.grammar.gbnf import Rules, literal, rule_name
from edgellm.grammar.json_schema import (
    JSON_OBJECT_GRAMMAR,
    SchemaConverter,
    UnsupportedSchema,
    check_schema,
    decimal_range,
    integer_range,
    schema_grammar,
)
from edgellm.grammar.regex import UnsupportedRegex, pattern_gbnf
from tests.support.gbnf_match import matches, parse

# --- the schemas: (name, schema, valid instances, invalid instances), simplest first --------------------------------

NODE = {
    "type": "object",
    "properties": {
        "value": {"type": "integer"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3},
    },
    "required": ["value"],
}
CASES: list[tuple[str, object, list[str], list[str]]] = [
    ("boolean", {"type": "boolean"}, ["true", "false", " true"], [" true\n", '"true"', "1", "null", "tru"]),
    (
        "short string",
        {"type": "string", "minLength": 2, "maxLength": 4},
        ['"ab"', '"abcd"', r'"a\"b"', r'"\u00e9x"', '"é€😀"', r'"\n\t"'],
        ['"a"', '"abcde"', '"a\nb"', "12", r'"\ud83d\ude00"', '"ab'],
    ),
    (
        "integer range",
        {"type": "integer", "minimum": -10, "exclusiveMaximum": 100},
        ["-10", "0", "7", "99"],
        ["-11", "100", "1.0", "-0", "05", "1e1", '"5"'],
    ),
    (
        "number range",
        {"type": "number", "minimum": 0, "maximum": 100},
        ["0", "3.5", "99.999", "100", "100.0", "100.000", "0.0", "42"],
        ["100.5", "-1", "1e2", "-0", "-0.5", "100.01", "00.5", ".5", "5."],
    ),
    (
        "enum",
        {"enum": ["red", "green", None, 42, {"a": [1, 2]}, 'say "hi"\n']},
        ['"red"', '"green"', "null", "42", '{"a":[1,2]}', r'"say \"hi\"\n"'],
        ['"blue"', '{"a":[1]}', "43", '"Red"'],
    ),
    (
        "nullable date",
        {"type": ["string", "null"], "format": "date"},
        ['"2024-02-29"', '"2000-02-29"', '"2023-12-31"', '"1999-04-30"', "null"],
        ['"2023-02-29"', '"1900-02-29"', '"2023-13-01"', '"2023-04-31"', '"2023-1-01"', '"2023-00-10"', '"2023-01-00"'],
    ),
    (
        "formats",
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "at": {"type": "string", "format": "date-time"},
                "t": {"format": "time"},
            },
            "required": ["id"],
        },
        [
            '{"id": "123e4567-e89b-12d3-a456-426614174000"}',
            '{"id": "123E4567-E89B-12D3-A456-426614174000", "at": "2024-05-01T23:59:59Z"}',
            '{"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-05-01T00:00:00.123+02:00", "t": "08:30:00"}',
            '{"id": "123e4567-e89b-12d3-a456-426614174000", "t": "23:59:59.5-05:30"}',
        ],
        [
            '{"id": "123e4567-e89b-12d3-a456-42661417400"}',
            '{"id": "123e4567e89b12d3a456426614174000"}',
            '{"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-05-01T24:00:00Z"}',
            '{"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-05-01T12:00:00"}',
            '{"id": "123e4567-e89b-12d3-a456-426614174000", "t": "12:60:00"}',
            '{"t": "08:30:00", "id": "123e4567-e89b-12d3-a456-426614174000"}',
        ],
    ),
    (
        "tuple",
        {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "integer"}],
            "items": {"type": "boolean"},
            "minItems": 1,
            "maxItems": 4,
        },
        ['["a"]', '["a", 1]', '["a",1,true]', '[ "a", 1, true, false ]'],
        ["[]", "[1]", '["a", "b"]', '["a", 1, 2]', '["a", 1, true, false, true]', '["a",]'],
    ),
    (
        "patterns and extra properties",
        {
            "type": "object",
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2,3}$"},
                "note": {"type": "string", "pattern": "ok"},
            },
            "required": ["code"],
            "additionalProperties": {"type": "integer"},
        },
        [
            '{"code": "ABC-12"}',
            '{"code": "XYZ-123", "note": "it is ok!"}',
            '{"code": "XYZ-123", "note": "ok", "n": 5, "codes": 7}',
            '{"code": "XYZ-123", "cod": 1}',
        ],
        [
            '{"code": "AB-12"}',
            '{"code": "ABC-1234"}',
            '{"code": "ABC-12", "note": "no"}',
            '{"code": "ABC-12", "n": "x"}',
            '{"code": "ABC-12", "code": 5}',
            '{"code": "ABC-12", "note": "ok", "note": 1}',
            '{"n": 5}',
        ],
    ),
    (
        "person",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "email": {"type": "string"},
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^\\d{5}$"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "kind": {"const": "person"},
                "contact": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
            },
            "required": ["name", "kind"],
        },
        [
            '{"name": "Ann", "kind": "person"}',
            '{"name": "Ann", "age": 150, "kind": "person"}',
            '{\n  "name": "Ann",\n  "address": {\n    "city": "Oslo",\n    "zip": "01234"\n  },\n  "kind": "person"\n}',
            '{"name": "A", "email": "a@b", "kind": "person", "contact": null}',
        ],
        [
            '{"name": "", "kind": "person"}',
            '{"name": "Ann"}',
            '{"name": "Ann", "kind": "robot"}',
            '{"name": "Ann", "age": -1, "kind": "person"}',
            '{"name": "Ann", "address": {"zip": "01234"}, "kind": "person"}',
            '{"name": "Ann", "address": {"city": "Oslo", "zip": "1234"}, "kind": "person"}',
            '{"name": "Ann", "address": {"city": "Oslo", "x": 1}, "kind": "person"}',
            '{"name": "Ann", "kind": "person", "extra": 1}',
            '{"kind": "person", "name": "Ann"}',
        ],
    ),
    (
        "recursive tree",
        {"$ref": "#/$defs/node", "$defs": {"node": NODE}},
        [
            '{"value": 1}',
            '{"value": 1, "children": []}',
            '{"value": 1, "children": [{"value": 2}, {"value": 3, "children": [{"value": 4, "children": []}]}]}',
        ],
        [
            "{}",
            '{"value": 1, "children": [{}]}',
            '{"value": 1, "children": [{"value": "x"}]}',
            '{"value": 1, "children": [{"value": 1}, {"value": 1}, {"value": 1}, {"value": 1}]}',
        ],
    ),
    (
        "allOf with a base",
        {
            "allOf": [
                {"$ref": "#/definitions/base"},
                {"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]},
            ],
            "definitions": {"base": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
        },
        ['{"id": 1, "extra": true}'],
        ['{"id": 1}', '{"extra": true}', '{"id": 1, "extra": true, "more": 1}'],
    ),
    (
        "tool choice",
        {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"name": {"const": "get_weather"}, "arguments": {"type": "object"}},
                    "required": ["name", "arguments"],
                },
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": "search"},
                        "arguments": {
                            "type": "object",
                            "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
                            "required": ["query"],
                            "additionalProperties": True,
                        },
                    },
                    "required": ["name", "arguments"],
                },
            ]
        },
        [
            '{"name": "get_weather", "arguments": {}}',
            '{"name": "get_weather", "arguments": {"city": "Paris"}}',
            '{"name": "search", "arguments": {"query": "x"}}',
            '{"name": "search", "arguments": {"query": "x", "limit": 3, "lang": "en", "deep": {"a": [1, null]}}}',
        ],
        [
            '{"name": "search", "arguments": {"limit": 3}}',
            '{"name": "search", "arguments": {"query": "x", "limit": 0}}',
            '{"name": "other", "arguments": {}}',
        ],
    ),
    (
        "any value",
        {},
        ['{"a": [1, -2.5e-3, "x", true, null, {}], "b": {"c": []}}', "3", '"s"', "null", "[[[]]]"],
        ["{a: 1}", "[1,]", "01", "'x'", '{"a" 1}'],
    ),
]


@pytest.mark.parametrize(("name", "schema", "valid", "invalid"), CASES, ids=[case[0] for case in CASES])
def test_a_schemas_grammar_admits_exactly_its_valid_instances(
    name: str, schema: object, valid: list[str], invalid: list[str]
) -> None:
    grammar = schema_grammar(schema)
    assert grammar.startswith("root ::= ")
    for text in valid:
        json.loads(text)  # the instances are JSON
        assert matches(grammar, text), f"{name}: refused valid {text!r}\n{grammar}"
    for text in invalid:
        assert not matches(grammar, text), f"{name}: admitted invalid {text!r}\n{grammar}"


# invalid instances that JSON Schema itself admits: left out of the grammars by design (see json_schema's docstring),
# or refused by a format jsonschema checks only with extra packages (rfc3339-validator)
BY_DESIGN = {
    " true\n",  # whitespace after the value: the text ends with it
    "1.0",  # an integer is written as one
    "-0",
    "1e1",
    "1e2",  # a bounded number has no exponent
    '{"name": "Ann", "kind": "person", "extra": 1}',  # additionalProperties absent: none
    '{"id": 1, "extra": true, "more": 1}',
    '{"kind": "person", "name": "Ann"}',  # the schema's order
    '{"t": "08:30:00", "id": "123e4567-e89b-12d3-a456-426614174000"}',
}
FORMAT_ONLY = {
    '{"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-05-01T24:00:00Z"}',
    '{"id": "123e4567-e89b-12d3-a456-426614174000", "at": "2024-05-01T12:00:00"}',
    '{"id": "123e4567-e89b-12d3-a456-426614174000", "t": "12:60:00"}',
}


def test_the_instances_agree_with_jsonschema() -> None:
    """The valid instances are valid by the `jsonschema` package; the invalid ones are invalid, but for those left
    out by design."""
    jsonschema = pytest.importorskip("jsonschema")
    validator_class = jsonschema.Draft202012Validator
    for name, schema, valid, invalid in CASES:
        validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
        for text in valid:
            assert validator.is_valid(json.loads(text)), (name, text)
        for text in invalid:
            try:
                instance = json.loads(text)
            except ValueError:
                continue  # not JSON at all
            assert not validator.is_valid(instance) or text in BY_DESIGN | FORMAT_ONLY, (name, text)


def test_every_grammar_is_well_formed_with_unique_rule_names() -> None:
    for _, schema, _, _ in CASES:
        grammar = schema_grammar(schema)
        names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
        assert len(names) == len(set(names))
        assert all(re.fullmatch(r"[a-zA-Z0-9-]+", name) for name in names)
        parse(grammar)  # every rule it refers to is defined


def test_the_json_object_grammar_admits_any_object_and_nothing_else() -> None:
    for text in ["{}", '{"a": 1}', '{"a": {"b": [1, "x", null]}, "c": true}', ' {\n  "a": 1\n}']:
        assert matches(JSON_OBJECT_GRAMMAR, text)
    for text in ["[]", "1", '"x"', '{"a": 1,}', "{", '{"a": 1} {}']:
        assert not matches(JSON_OBJECT_GRAMMAR, text)


def test_whitespace_is_bounded() -> None:
    grammar = schema_grammar({"type": "array"})
    assert matches(grammar, "[\n" + " " * 20 + "1]")
    assert not matches(grammar, "[\n" + " " * 21 + "1]")
    assert not matches(grammar, "[  1]")  # one space, or a newline and an indent


# --- objects: every subset of optional properties, linear rules ----------------------------------------------------


@pytest.mark.parametrize("required", [(), ("a",), ("b",), ("d",), ("a", "c"), ("b", "d"), ("a", "b", "c", "d")])
@pytest.mark.parametrize("extra", [None, True])
def test_an_object_admits_every_subset_holding_the_required_properties_in_order(
    required: tuple[str, ...], extra: object
) -> None:
    names = ["a", "b", "c", "d"]
    schema: dict[str, object] = {"type": "object", "properties": {n: {"type": "integer"} for n in names}}
    schema["required"] = list(required)
    if extra is not None:
        schema["additionalProperties"] = extra
    grammar = schema_grammar(schema)
    for size in range(len(names) + 1):
        for present in itertools.combinations(names, size):
            text = json.dumps({name: 1 for name in present})
            assert matches(grammar, text) == (set(required) <= set(present)), (schema, text)
            if extra:
                assert matches(grammar, json.dumps({**{n: 1 for n in present}, "zz": 2})) == (
                    set(required) <= set(present)
                )
    if len(required) < 2:
        assert not matches(grammar, '{"b": 1, "a": 1}')  # declared order only


def test_an_objects_rules_grow_linearly_with_its_properties() -> None:
    def size(count: int) -> int:
        properties = {f"p{i}": {"type": "string"} for i in range(count)}
        return len(schema_grammar({"type": "object", "properties": properties}))

    assert size(80) < 2.2 * size(40) < 4.8 * size(20)
    grammar = schema_grammar({"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(40)}})
    assert matches(grammar, json.dumps({"p3": 1, "p17": 2, "p39": 3}))


def test_extra_keys_are_never_a_declared_name() -> None:
    schema = {"type": "object", "properties": {"ab": {"type": "integer"}, "a": {"type": "integer"}}}
    grammar = schema_grammar({**schema, "additionalProperties": {"type": "string"}})
    for key, admitted in [("a", False), ("ab", False), ("abc", True), ("b", True), ("", True), ("x y", True)]:
        assert matches(grammar, json.dumps({key: "s"})) == admitted, key


# --- arrays: every length against minItems, maxItems, prefixItems, items ------------------------------------------


@pytest.mark.parametrize("prefix", [0, 1, 2])
@pytest.mark.parametrize("items", ["integer", False])
def test_an_array_admits_exactly_the_lengths_its_counts_allow(prefix: int, items: object) -> None:
    for low, high in itertools.product([None, 0, 1, 2, 3], [None, 0, 1, 2, 3]):
        schema: dict[str, object] = {"type": "array", "items": {"type": "integer"} if items else False}
        if prefix:
            schema["prefixItems"] = [{"type": "integer"}] * prefix
        if low is not None:
            schema["minItems"] = low
        if high is not None:
            schema["maxItems"] = high
        most = high if items else min(prefix, high if high is not None else prefix)
        if most is not None and (low or 0) > most:
            with pytest.raises(UnsupportedSchema) as refused:
                schema_grammar(schema)
            assert refused.value.keyword == "minItems"
            continue
        grammar = schema_grammar(schema)
        for length in range(6):
            allowed = length >= (low or 0) and (most is None or length <= most)
            assert matches(grammar, json.dumps(list(range(length)))) == allowed, (schema, length)
        assert not matches(grammar, '["x"]')


# --- numbers: the range generator, exhaustively -------------------------------------------------------------------

BOUNDS = [None, -1001, -100, -99, -10, -1, 0, 1, 9, 10, 99, 101, 1000]
NUMBERS = list(range(-120, 121)) + [n * sign for n in (999, 1000, 1001, 1002, 9999, 12345) for sign in (1, -1)]


def test_integer_ranges_admit_exactly_their_integers() -> None:
    for low, high in itertools.product(BOUNDS, BOUNDS):
        expression = integer_range(low, high)
        if low is not None and high is not None and low > high:
            assert expression is None
            continue
        assert expression is not None
        grammar = f"root ::= {expression}\n"
        for number in NUMBERS:
            inside = (low is None or number >= low) and (high is None or number <= high)
            assert matches(grammar, str(number)) == inside, (low, high, number, expression)
        for text in ["-0", "00", "01", "-01", "+1", "1.0", "1e1", ""]:
            assert not matches(grammar, text), (low, high, text)


def test_integer_ranges_with_large_random_bounds() -> None:
    rng = random.Random(7)
    for _ in range(60):
        low, high = sorted(rng.randint(-(10 ** rng.randint(1, 9)), 10 ** rng.randint(1, 9)) for _ in range(2))
        grammar = f"root ::= {integer_range(low, high)}\n"
        near = [low - 1, low, low + 1, high - 1, high, high + 1, 0, -1, 1]
        for number in near + [rng.randint(low - 1000, high + 1000) for _ in range(20)]:
            assert matches(grammar, str(number)) == (low <= number <= high), (low, high, number)


DECIMAL_BOUNDS = [
    None,
    (-100, True),
    (-10, False),
    (-1, True),
    (0, True),
    (0, False),
    (1, False),
    (9, True),
    (100, True),
]
DECIMAL_TEXTS = [
    text
    for whole in [0, 1, 2, 8, 9, 10, 11, 99, 100, 101, 1000]
    for sign in ("", "-")
    for text in (f"{sign}{whole}", f"{sign}{whole}.0", f"{sign}{whole}.00", f"{sign}{whole}.5", f"{sign}{whole}.001")
    if text not in ("-0", "-0.0", "-0.00")
]


def test_decimal_ranges_admit_exactly_their_numbers() -> None:
    for low, high in itertools.product(DECIMAL_BOUNDS, DECIMAL_BOUNDS):
        expression = decimal_range(low, high)
        inside = [
            text
            for text in DECIMAL_TEXTS
            if (low is None or Decimal(text) > low[0] or (low[1] and Decimal(text) == low[0]))
            and (high is None or Decimal(text) < high[0] or (high[1] and Decimal(text) == high[0]))
        ]
        if expression is None:
            assert not inside, (low, high)
            continue
        grammar = f"root ::= {expression}\n"
        for text in DECIMAL_TEXTS:
            assert matches(grammar, text) == (text in inside), (low, high, text, expression)
        for text in ["-0", "-0.0", "1e1", "1.", ".5", "01", "+1", "1.5e3"]:
            assert not matches(grammar, text), (low, high, text)


def test_integer_bounds_with_fractions_round_inwards_and_draft4_flags_count() -> None:
    grammar = schema_grammar({"type": "integer", "minimum": 1.5, "maximum": 4.5})
    assert [n for n in range(-2, 8) if matches(grammar, str(n))] == [2, 3, 4]
    grammar = schema_grammar({"type": "integer", "minimum": 2, "exclusiveMinimum": True, "maximum": 5})
    assert [n for n in range(-2, 8) if matches(grammar, str(n))] == [3, 4, 5]
    grammar = schema_grammar({"type": "integer", "minimum": 2, "exclusiveMinimum": 3, "exclusiveMaximum": 6})
    assert [n for n in range(-2, 8) if matches(grammar, str(n))] == [4, 5]


# --- patterns -------------------------------------------------------------------------------------------------------

PATTERNS = [
    ("^[a-z]+$", ["abc", "z"], ["", "aB", "abc1"]),
    ("^\\d{3}-\\d{4}$", ["555-1234"], ["5551234", "55-1234", "555-12345"]),
    ("abc", ["abc", "xxabcxx", 'q"abc\\'], ["ab", "acb"]),
    ("^ab|cd$", ["abz", "zcd", "ab"], ["zab", "cdz"]),
    ("^(?:ab|cd){2,3}?$", ["abcd", "cdcdab"], ["ab", "abcdabcd"]),
    ('^["\\\\]+$', ['"', "\\", '"\\"'], ["", "a"]),
    ("^[^a]$", ["b", '"', "é"], ["a", "", "bc"]),
    ("^.$", ["a", "😀", '"'], ["\n", "ab"]),
    ("^a\\nb\\tc$", ["a\nb\tc"], ["anbtc"]),
    ("^\\w+\\s\\S$", ["ab_1 x", "a\tb"], ["a  x", "a-b x"]),
    ("^x\\.y\\/z\\-\\u00e9$", ["x.y/z-é"], ["xay/z-é"]),
    ("^[\\w.-]+@[a-z]+\\.(com|org)$", ["a.b-c@ex.com", "x@y.org"], ["a@b.net", "@x.com"]),
    ("^(a|b)*c?$", ["", "abab", "abc", "c"], ["cc", "ca"]),
    ("^[0-9a-fA-F]{2,}$", ["ff", "0A1b"], ["f", "fg"]),
]


@pytest.mark.parametrize(("pattern", "valid", "invalid"), PATTERNS, ids=[case[0] for case in PATTERNS])
def test_a_pattern_admits_the_strings_it_matches(pattern: str, valid: list[str], invalid: list[str]) -> None:
    grammar = schema_grammar({"type": "string", "pattern": pattern})
    for value in valid + invalid:
        expected = re.search(pattern, value) is not None
        assert expected == (value in valid), (pattern, value)  # the examples agree with Python's re
        assert matches(grammar, json.dumps(value, ensure_ascii=False)) == expected, (pattern, value, grammar)


def test_a_negated_class_or_a_dot_leaves_control_characters_out() -> None:
    for pattern in ("^[^a]$", "^.$", "^\\S$", "^\\D$", "^\\W$"):
        grammar = schema_grammar({"type": "string", "pattern": pattern})
        assert matches(grammar, '"%"'), pattern
        for control in ("\n", "\t", "\x01"):
            assert not matches(grammar, json.dumps(control)), (pattern, control)


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        ("(?=a)b", "lookahead"),
        ("(?<!a)b", "lookbehind"),
        ("(a)\\1", "backreference"),
        ("(?<name>a)", "named group"),
        ("(?P<n>a)", "named group"),
        ("\\bword", "word boundary"),
        ("a^b", "anchor"),
        ("a$b", "anchor"),
        ("b(^a)", "anchor"),
        ("(a$)+", "anchor"),
        ("a*+", "quantifier on a quantifier"),
        ("a{2}{3}", "quantifier on a quantifier"),
        ("*a", "nothing to repeat"),
        ("(a*)+", "can match nothing"),
        ("a{2001}", "over 2000"),
        ("\\p{L}", "Unicode property"),
        ("[b-a]", "out of order"),
        ("(ab", "unclosed"),
        ("\\q", "unknown escape"),
    ],
)
def test_a_pattern_with_a_feature_a_grammar_cannot_express_is_refused(pattern: str, feature: str) -> None:
    with pytest.raises(UnsupportedRegex, match=feature):
        pattern_gbnf(pattern, Rules())
    with pytest.raises(UnsupportedSchema) as refused:
        schema_grammar({"type": "object", "properties": {"p": {"type": "string", "pattern": pattern}}})
    assert (refused.value.keyword, refused.value.path) == ("pattern", "#/properties/p/pattern")
    assert feature in str(refused.value)


# --- what is refused ------------------------------------------------------------------------------------------------

REFUSALS = [
    ({"not": {"type": "string"}}, "not", "#/not"),
    ({"type": "object", "if": {}, "then": {}}, "if", "#/if"),
    ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties", "#/patternProperties"),
    ({"type": "object", "propertyNames": {"maxLength": 3}}, "propertyNames", "#/propertyNames"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems", "#/uniqueItems"),
    ({"type": "array", "contains": {"type": "integer"}}, "contains", "#/contains"),
    ({"type": "array", "minContains": 1}, "minContains", "#/minContains"),
    ({"type": "array", "maxContains": 1}, "maxContains", "#/maxContains"),
    ({"type": "object", "minProperties": 1}, "minProperties", "#/minProperties"),
    ({"type": "object", "maxProperties": 1}, "maxProperties", "#/maxProperties"),
    ({"type": "object", "dependentRequired": {}}, "dependentRequired", "#/dependentRequired"),
    ({"type": "object", "dependentSchemas": {}}, "dependentSchemas", "#/dependentSchemas"),
    ({"type": "number", "multipleOf": 2}, "multipleOf", "#/multipleOf"),
    ({"type": "object", "unevaluatedProperties": False}, "unevaluatedProperties", "#/unevaluatedProperties"),
    ({"type": "string", "format": "email"}, "format", "#/format"),
    ({"type": "string", "format": "uri"}, "format", "#/format"),
    ({"type": "string", "format": "hostname"}, "format", "#/format"),
    ({"type": "string", "format": "ipv4"}, "format", "#/format"),
    ({"type": "integer", "format": "int32"}, "format", "#/format"),
    ({"$ref": "https://example.com/schema.json"}, "$ref", "#/$ref"),
    ({"$ref": "#/$defs/missing"}, "$ref", "#/$ref"),
    ({"type": "object", "requird": ["a"]}, "requird", "#/requird"),
    ({"properties": {"age": {"type": "number", "minimum": 0.5}}}, "minimum", "#/properties/age/minimum"),
    ({"type": "number", "exclusiveMaximum": 9.75}, "exclusiveMaximum", "#/exclusiveMaximum"),
    ({"type": "integer", "minimum": 5, "maximum": 3}, "minimum", "#/minimum"),
    ({"allOf": [{"type": "string", "maxLength": 3}, {"maxLength": 4}]}, "maxLength", "#/allOf"),
    ({"type": "string", "pattern": "^a", "maxLength": 3}, "maxLength", "#/maxLength"),
    ({"type": "string", "format": "date", "minLength": 3}, "minLength", "#/minLength"),
    ({"enum": ["a", "bbb"], "maxLength": 2}, "maxLength", "#/maxLength"),
    ({"type": "integer", "enum": ["a"]}, "enum", "#/enum"),
    ({"type": "strings"}, "type", "#/type"),
    ({"type": "string", "maxLength": 5000}, "maxLength", "#/maxLength"),
    ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "$ref", "#/$defs/a/$ref"),
    (
        {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"},
        "$ref",
        "#/$defs/a/anyOf/0/$ref",
    ),
    (
        {"properties": {"p": {"items": [{"type": "integer"}], "additionalItems": {"not": {}}}}},
        "not",
        "#/properties/p/additionalItems/not",
    ),
    ({"properties": {"a/b": {"tpye": "string"}}}, "tpye", "#/properties/a~1b/tpye"),
    ({"type": "object", "properties": {"a": False}, "required": ["a"]}, "required", "#/required"),
    (False, "false", "#"),
    ({"$ref": "#"}, "$ref", "#/$ref"),
    ({"$defs": {"a": {"$ref": "#/$defs/a", "type": "string"}}, "$ref": "#/$defs/a"}, "$ref", "#/$defs/a"),
]


@pytest.mark.parametrize(("schema", "keyword", "path"), REFUSALS, ids=[f"{r[1]}@{r[2]}" for r in REFUSALS])
def test_a_keyword_a_grammar_cannot_enforce_is_refused_by_name_and_path(
    schema: object, keyword: str, path: str
) -> None:
    with pytest.raises(UnsupportedSchema) as refused:
        check_schema(schema)
    assert (refused.value.keyword, refused.value.path) == (keyword, path)
    assert keyword in str(refused.value) and path in str(refused.value)
    with pytest.raises(UnsupportedSchema):
        schema_grammar(schema)


def test_annotations_are_accepted_and_ignored() -> None:
    annotated = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/x",
        "$comment": "c",
        "title": "T",
        "description": "D",
        "type": "object",
        "properties": {
            "a": {"type": "integer", "default": 1, "examples": [1], "deprecated": True, "readOnly": True},
            "b": {"type": "string", "writeOnly": True},
        },
    }
    check_schema(annotated)
    plain = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    assert schema_grammar(annotated) == schema_grammar(plain)


def test_additional_properties_absent_means_none_and_true_means_any() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert not matches(schema_grammar(schema), '{"a": 1, "b": 2}')
    assert matches(schema_grammar({**schema, "additionalProperties": True}), '{"a": 1, "b": {"c": [2]}}')
    assert matches(schema_grammar({**schema, "additionalProperties": {}}), '{"b": "x"}')
    assert matches(schema_grammar({"type": "object"}), "{}")
    assert matches(schema_grammar({"type": "object"}), '{"a": 1}')  # an object alone: any object, as llama.cpp
    assert not matches(schema_grammar({"type": "object", "properties": {}}), '{"a": 1}')
    assert matches(schema_grammar({"type": "object", "required": ["x"]}), '{"x": [1]}')


def test_a_date_is_a_real_day() -> None:
    grammar = schema_grammar({"type": "string", "format": "date"})
    assert not matches(grammar, '"0000-01-01"') and matches(grammar, '"0001-01-01"')  # year 0: not a date in Python
    for year in (1900, 2000, 2023, 2024):
        for month, day in itertools.product(range(0, 14), range(0, 33)):
            try:
                real = bool(date(year, month, day))
            except ValueError:
                real = False
            assert matches(grammar, f'"{year:04}-{month:02}-{day:02}"') == real, (year, month, day)


def test_keywords_beside_anyof_or_a_ref_apply_to_each_alternative() -> None:
    properties = {"a": {"type": "integer"}, "b": {"type": "string"}}
    grammar = schema_grammar(
        {"type": "object", "properties": properties, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
    )
    assert [matches(grammar, text) for text in ["{}", '{"a": 1}', '{"b": "x"}', '{"a": 1, "b": "x"}']] == [
        False,
        True,
        True,
        True,
    ]
    grammar = schema_grammar({"$ref": "#/$defs/s", "maxLength": 3, "$defs": {"s": {"type": "string", "minLength": 1}}})
    assert [matches(grammar, json.dumps("x" * n)) for n in range(5)] == [False, True, True, True, False]


def test_a_schema_may_refer_to_itself_inside_an_object_or_array() -> None:
    grammar = schema_grammar({"type": "object", "properties": {"child": {"$ref": "#"}}})
    assert matches(grammar, '{"child": {"child": {}}}') and not matches(grammar, '{"child": 1}')
    linked = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"v": {"type": "integer"}, "next": {"$ref": "#/$defs/node", "required": ["v"]}},
            }
        },
        "$ref": "#/$defs/node",
    }
    grammar = schema_grammar(linked)
    for text, admitted in [
        ("{}", True),
        ('{"next": {"v": 1, "next": {"v": 2}}}', True),
        ('{"next": {}}', False),
        ('{"next": {"v": 1, "next": {}}}', False),
    ]:
        assert matches(grammar, text) == admitted, text


def test_a_schema_without_type_takes_the_types_its_keywords_are_about() -> None:
    grammar = schema_grammar({"minimum": 1, "maxLength": 2})
    assert matches(grammar, "5") and matches(grammar, '"ab"')
    assert not matches(grammar, "0") and not matches(grammar, '"abc"') and not matches(grammar, "null")


def test_a_converter_builds_one_grammar_from_several_schemas() -> None:
    rules = Rules()
    converter = SchemaConverter(rules)
    tools = {
        "add": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
        "tree": {"$ref": "#/$defs/node", "$defs": {"node": NODE}},
    }
    calls = []
    ws = converter.primitive("ws")
    for name, parameters in tools.items():
        arguments = converter.visit(parameters, f"{name}-arguments")
        head = literal(f'{{"name": "{name}", "arguments": ')
        calls.append(rules.add(f"{name}-call", f'{head} {arguments} {ws} "}}"'))
    grammar = rules.text(" | ".join(calls))
    parse(grammar)
    assert matches(grammar, '{"name": "add", "arguments": {"a": 1, "b": 2}}')
    assert matches(grammar, '{"name": "tree", "arguments": {"value": 1, "children": [{"value": 2}]}}')
    assert not matches(grammar, '{"name": "add", "arguments": {"value": 1}}')
    assert not matches(grammar, '{"name": "tree", "arguments": {"a": 1, "b": 2}}')


# --- the GBNF helpers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["plain", 'quote " and \\ backslash', "new\nline\ttab\r", "\x00\x01\x1f\x7f", "é€😀 \u2028"]
)
def test_a_literal_matches_its_text_exactly(text: str) -> None:
    written = literal(text)
    assert "\n" not in written and "\x00" not in written
    assert matches(f"root ::= {written}\n", text)
    assert not matches(f"root ::= {written}\n", text + "x")


def test_rules_keep_order_share_bodies_and_suffix_clashing_names() -> None:
    rules = Rules()
    assert rules.add("item", '"a"') == "item"
    assert rules.add("other", '"a"') == "item"  # the same body: the first name
    assert rules.add("item", '"b"') == "item-2"  # a name taken by another body
    assert rules.add("root", '"c"') == "root-2"  # root is the grammar's own
    assert rules.add("a b_c.d", '"d"') == "a-b-c-d"
    assert rule_name("ünï code!") == "n-code"
    assert rules.text("item | item-2") == (
        'root ::= item | item-2\nitem ::= "a"\nitem-2 ::= "b"\nroot-2 ::= "c"\na-b-c-d ::= "d"\n'
    )


def test_a_reasoning_block_may_come_before_the_value() -> None:
    from edgellm.grammar.gbnf import after_reasoning

    grammar = after_reasoning(schema_grammar({"type": "boolean"}), starts_in_reasoning=False)
    assert matches(grammar, "true") and matches(grammar, "<think>a < b, so</think>\ntrue")
    assert not matches(grammar, "<think>true") and not matches(grammar, "maybe true")
    opened = after_reasoning(schema_grammar({"type": "boolean"}), starts_in_reasoning=True)
    assert matches(opened, "thinking</think> false") and not matches(opened, "false")
