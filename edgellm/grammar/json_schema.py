"""A JSON Schema as the GBNF grammar of the JSON values valid against it, enforced exactly or refused.

`schema_grammar(schema)` is the whole grammar (rule `root`: one value, optionally after whitespace, ending the text);
`SchemaConverter` adds the rules of several schemas to one `Rules` (a tool call's arguments inside a larger grammar);
`check_schema` walks a schema as the converter does and raises UnsupportedSchema for the first keyword a grammar
cannot enforce. A grammar only ever admits valid values; it admits all of them except as follows, by design:

- Properties come in the schema's order (required ones always, optional ones when present), extra properties (where
  allowed) after them, with keys written without escapes and never equal to a declared property's name.
- `additionalProperties` absent means no extra properties beside declared or required ones (as llama.cpp's converter
  does: a model that invents keys is rarely wanted); `true` or `{}` allows any, a schema allows extra values of that
  schema. An object schema with none of `properties`, `required` and `additionalProperties` is any object.
- `oneOf` is read as `anyOf` (a grammar cannot tell that exactly one alternative matches).
- An integer is written without a fraction or exponent and never as `-0`; a number with a bound has no exponent.
- A schema without `type` has the types its keywords are about (`properties`: an object, `minLength`: a string...),
  any value when it has none; `enum`/`const` values are written compactly.
- Strings are JSON string text: no raw control characters, escapes allowed (no \\u escape of a UTF-16 surrogate).
- Whitespace between tokens is bounded: `ws ::= | " " | "\\n" [ \\t]{0,20}`, so that a small model cannot loop on
  spaces forever.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from edgellm.errors import EdgellmError
from edgellm.grammar.gbnf import STRING_CHAR, Rules, class_char, literal
from edgellm.grammar.regex import MAX_REPEAT, UnsupportedRegex, pattern_gbnf, quantifier

ANNOTATIONS = frozenset(
    {"title", "description", "examples", "default", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly"}
)
DEFINITIONS = frozenset({"$defs", "definitions"})  # where $ref targets live: no constraint of their own
TYPE_KEYWORDS = {
    "object": ("properties", "required", "additionalProperties"),
    "array": ("items", "prefixItems", "additionalItems", "minItems", "maxItems"),
    "string": ("minLength", "maxLength", "pattern", "format"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
}
GENERAL_KEYWORDS = frozenset({"type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf"})
KNOWN = (
    ANNOTATIONS
    | DEFINITIONS
    | GENERAL_KEYWORDS
    | {keyword for keywords in TYPE_KEYWORDS.values() for keyword in keywords}
)
REFUSED = {  # JSON Schema keywords a grammar cannot enforce, and what can be done instead
    "not": "rewrite it as the values that are allowed (enum, anyOf)",
    "if": "rewrite it with anyOf",
    "then": "rewrite it with anyOf",
    "else": "rewrite it with anyOf",
    "dependentRequired": "rewrite it with anyOf",
    "dependentSchemas": "rewrite it with anyOf",
    "dependencies": "rewrite it with anyOf",
    "patternProperties": "declare the properties by name",
    "propertyNames": "declare the properties by name",
    "unevaluatedProperties": "use additionalProperties",
    "unevaluatedItems": "use items",
    "minProperties": "make the properties required instead",
    "maxProperties": "declare the properties by name",
}
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
FORMATS = ("date", "time", "date-time", "uuid")
SEPARATOR = '{ws} "," {ws}'


class UnsupportedSchema(EdgellmError):
    """A JSON schema with a keyword a grammar cannot enforce exactly: `keyword`, at `path` (a JSON pointer into the
    schema, such as `#/properties/age/minimum`)."""

    def __init__(self, keyword: str, path: str, problem: str, way_out: str = "remove it from the schema") -> None:
        super().__init__(f"the JSON schema's {keyword!r} at {path} {problem}: {way_out}")
        self.keyword, self.path = keyword, path


def schema_grammar(schema: object) -> str:
    """The GBNF grammar (rule `root`) of one JSON value valid against `schema`, optionally after whitespace: the text
    ends with the value (a model is not left to write whitespace until its end-of-text)."""
    rules = Rules()
    converter = SchemaConverter(rules)
    value = converter.visit(schema, "schema")
    ws = converter.primitive("ws")
    return rules.text(f"{ws} {value}")


def check_schema(schema: object) -> None:
    """Raise UnsupportedSchema for the first keyword of `schema` that a grammar cannot enforce."""
    SchemaConverter(Rules()).visit(schema, "schema")


MAX_RELAXED = 64


def enforceable(schema: dict[str, Any]) -> tuple[dict[str, Any], list[UnsupportedSchema]]:
    """`schema` less the keywords a grammar cannot enforce (each taken out where it is, so the grammar enforces
    everything else), and what was taken out: for a tool's parameters, which a client rarely writes for a grammar
    (`format: uri`, `uniqueItems`...). Raises the UnsupportedSchema of a keyword that cannot be taken out."""
    relaxed: dict[str, Any] = json.loads(json.dumps(schema))
    dropped: list[UnsupportedSchema] = []
    for _ in range(MAX_RELAXED):
        try:
            check_schema(relaxed)
            return relaxed, dropped
        except UnsupportedSchema as error:
            if not _remove(relaxed, error.path):
                raise
            dropped.append(error)
    raise dropped[-1]


def _remove(document: Any, pointer: str) -> bool:
    """Remove what the JSON pointer `pointer` (`#/a/0/b`) names from `document`; whether it was there."""
    *path, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.lstrip("#").split("/")[1:]] or [""]
    found = document
    for part in path:
        if isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        elif isinstance(found, dict) and part in found:
            found = found[part]
        else:
            return False
    if isinstance(found, dict) and last in found:
        del found[last]
        return True
    return False


def _pointer(path: str, *segments: str | int) -> str:
    """`path` with `segments` appended, escaped as a JSON pointer's are."""
    return path + "".join("/" + str(segment).replace("~", "~0").replace("/", "~1") for segment in segments)


def _is_number(value: object) -> bool:
    """Whether `value` is a JSON number (an int of any size, or a finite float; not a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _json_types(value: object) -> set[str]:
    """The JSON Schema types `value` (decoded JSON) has."""
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"}
    if isinstance(value, str):
        return {"string"}
    return {"array"} if isinstance(value, list) else {"object"}


RefKey = tuple[int, str, str]  # a $ref: id(its document), its JSON pointer, the keywords beside it as JSON


class SchemaConverter:
    """Adds to `rules` the rules of JSON values valid against schemas: `visit(schema, name_hint)` is the name of the
    rule of one such value. `$ref`s resolve within the schema given to `visit` (`#`, `#/$defs/X`, any local JSON
    pointer); a schema may refer to itself inside an object or an array."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._primitives: dict[str, str] = {}
        self._document: object = None  # the schema given to `visit`, which $refs point into
        self._document_hint = ""
        self._documents: list[object] = []  # every document visited: kept alive, so their ids stay theirs
        self._refs: dict[RefKey, str] = {}  # the rule of each $ref's target
        self._open_refs: dict[RefKey, int] = {}  # the refs whose target is being converted: at what depth
        self._depth = 0  # how many objects and arrays the value being converted is inside

    def visit(self, schema: object, name_hint: str, document: object = None) -> str:
        """The name of a rule matching one JSON value valid against `schema`, its rules named after `name_hint`;
        UnsupportedSchema for a keyword a grammar cannot enforce. `document`: the whole schema `schema` is part of,
        which its $refs point into (by default `schema` itself)."""
        outer = self._document, self._document_hint
        document = schema if document is None else document
        self._document, self._document_hint = document, name_hint
        self._documents.append(document)
        try:
            return self._rule(self._body(schema, "#", name_hint), name_hint)
        finally:
            self._document, self._document_hint = outer

    # --- the shared rules -----------------------------------------------------------------------------------------

    def primitive(self, name: str) -> str:
        """The name of one of the shared rules: ws, char, string, number, integer, boolean, null, value, object,
        array (added on first use)."""
        if name not in self._primitives:
            if name in ("value", "object", "array"):  # they refer to each other: named before they are written
                for each in ("value", "object", "array"):
                    self._primitives[each] = self.rules.reserve(each)
                self._define_any_value()
            else:
                self._primitives[name] = self.rules.add(name, self._primitive_body(name))
        return self._primitives[name]

    def _primitive_body(self, name: str) -> str:
        digits = f'( "0" | [1-9] [0-9]{{0,{MAX_DIGITS - 1}}} )'
        bodies: dict[str, Callable[[], str]] = {
            "ws": lambda: '| " " | "\\n" [ \\t]{0,20}',
            "char": lambda: STRING_CHAR,
            "string": lambda: f'"\\"" {self.primitive("char")}* "\\""',
            "integer": lambda: f'"0" | "-"? [1-9] [0-9]{{0,{MAX_DIGITS - 1}}}',
            "number": lambda: f'"-"? {digits} {FRACTION} ( [eE] [-+]? [0-9]{{1,3}} )?',
            "boolean": lambda: '"true" | "false"',
            "null": lambda: '"null"',
        }
        return bodies[name]()

    def _define_any_value(self) -> None:
        value, object_, array = (self._primitives[name] for name in ("value", "object", "array"))
        ws, string = self.primitive("ws"), self.primitive("string")
        separator = SEPARATOR.format(ws=ws)
        scalars = " | ".join(self.primitive(name) for name in ("string", "number", "boolean", "null"))
        member = self.rules.add("member", f'{string} {ws} ":" {ws} {value}')
        self.rules.define(value, f"{object_} | {array} | {scalars}")
        self.rules.define(object_, f'"{{" {ws} ( {member} ( {separator} {member} )* {ws} )? "}}"')
        self.rules.define(array, f'"[" {ws} ( {value} ( {separator} {value} )* {ws} )? "]"')

    # --- one schema -----------------------------------------------------------------------------------------------

    def _rule(self, body: str, hint: str) -> str:
        """A rule name for `body`: itself when it is a rule's name already."""
        return body if re.fullmatch(r"[a-zA-Z0-9-]+", body) else self.rules.add(hint, body)

    def _body(self, schema: object, path: str, hint: str) -> str:
        """A GBNF expression for one JSON value valid against `schema` (at `path`)."""
        if schema is True or schema == {}:
            return self.primitive("value")
        if schema is False:
            raise UnsupportedSchema("false", path, "admits no value at all", "allow some value there")
        if not isinstance(schema, dict):
            raise UnsupportedSchema("schema", path, "is not a schema (an object or a boolean)", "fix the schema")
        for keyword in schema:
            if keyword in REFUSED:
                raise UnsupportedSchema(
                    keyword, _pointer(path, keyword), "cannot be enforced by a grammar", REFUSED[keyword]
                )
            if keyword not in KNOWN:
                raise UnsupportedSchema(
                    keyword,
                    _pointer(path, keyword),
                    "is not a keyword a grammar can enforce (or a misspelt one)",
                    "remove or correct it",
                )
        if "format" in schema and schema["format"] not in FORMATS:
            raise UnsupportedSchema(
                "format", _pointer(path, "format"), f"is {schema['format']!r}", f"use {', '.join(FORMATS)} or a pattern"
            )
        if "$ref" in schema:
            return self._ref(schema, path, hint)
        if "allOf" in schema:
            parts = schema["allOf"]
            if not isinstance(parts, list) or not parts:
                raise UnsupportedSchema("allOf", _pointer(path, "allOf"), "is not a non-empty list", "fix the schema")
            return self._body(self._merged([self._siblings(schema, "allOf"), *parts], path), path, hint)
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                return self._alternatives(schema, keyword, path, hint)
        if "enum" in schema or "const" in schema:
            return self._constants(schema, path)
        return self._typed(schema, path, hint)

    def _siblings(self, schema: dict[str, Any], keyword: str) -> dict[str, Any]:
        """The keywords beside `keyword` that constrain a value."""
        return {other: schema[other] for other in self._validating(schema, keyword)}

    def _validating(self, schema: dict[str, Any], *but: str) -> list[str]:
        """The keywords of `schema` that constrain a value, less `but`."""
        return [keyword for keyword in schema if keyword not in ANNOTATIONS | DEFINITIONS and keyword not in but]

    def _alone(self, schema: dict[str, Any], path: str, keyword: str, *allowed: str) -> None:
        """Refuse a keyword next to `keyword` that is not `allowed` (a grammar cannot intersect the two)."""
        for other in self._validating(schema, keyword, *allowed):
            raise UnsupportedSchema(
                other,
                _pointer(path, other),
                f"cannot be enforced together with {keyword!r}",
                f"move it into the schemas of {keyword!r}, or remove it",
            )

    # --- $ref, allOf, anyOf, oneOf --------------------------------------------------------------------------------

    def _ref(self, schema: dict[str, Any], path: str, hint: str) -> str:
        """The rule of a `$ref`'s target (and of the keywords beside it, which apply too, as in JSON Schema 2019 on):
        one rule per target, named before it is written, so that the target may refer to itself."""
        where = _pointer(path, "$ref")
        target, pointer = self._resolve(schema["$ref"], where)
        siblings = self._siblings(schema, "$ref")
        key = (id(self._document), pointer, json.dumps(siblings, sort_keys=True, default=str))
        if key in self._open_refs:
            if self._open_refs[key] == self._depth:
                raise UnsupportedSchema(
                    "$ref", where, "refers back to itself without going into an object or array", "break the loop"
                )
            return self._refs[key]
        if key in self._refs:
            return self._refs[key]
        name = self.rules.reserve(pointer.rsplit("/", 1)[-1] if pointer != "#" else self._document_hint)
        self._refs[key] = name
        self._open_refs[key] = self._depth
        try:
            resolved = self._merged([siblings, target], pointer) if siblings else target
            self.rules.define(name, self._body(resolved, pointer, name))
        finally:
            del self._open_refs[key]
        return name

    def _resolve(self, reference: object, where: str) -> tuple[object, str]:
        """The schema `reference` (a local JSON pointer) points to in the document being visited, and the pointer."""
        if not isinstance(reference, str) or not reference.startswith("#"):
            raise UnsupportedSchema(
                "$ref", where, f"is {reference!r}, not a reference within the schema", "inline the schema it names"
            )
        target = self._document
        pointer = unquote(reference)
        for segment in pointer[1:].split("/")[1:] if pointer != "#" else []:
            step = segment.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and step in target:
                target = target[step]
            elif isinstance(target, list) and step.isdigit() and int(step) < len(target):
                target = target[int(step)]
            else:
                raise UnsupportedSchema("$ref", where, f"is {reference!r}, which names nothing", "fix the reference")
        return target, pointer

    def _merged(self, parts: list[object], path: str, depth: int = 0) -> dict[str, Any]:
        """Schemas that all apply (allOf's, or a $ref or anyOf and the keywords beside it) as one, where they merge
        simply: properties and required lists are joined, types intersected; any other keyword may appear in one of
        them only (or the same in each)."""
        where = _pointer(path, "allOf")
        merged: dict[str, Any] = {}
        with_properties = 0
        for part in parts:
            for keyword, value in self._flattened(part, path, depth).items():
                if keyword in ANNOTATIONS or keyword in DEFINITIONS:
                    continue
                if keyword == "properties" and isinstance(value, dict):
                    with_properties += 1
                    for name, subschema in value.items():
                        if name in merged.setdefault("properties", {}) and merged["properties"][name] != subschema:
                            raise UnsupportedSchema(
                                "properties", where, f"declares the property {name!r} twice", "declare it once"
                            )
                        merged["properties"][name] = subschema
                elif keyword == "required" and isinstance(value, list):
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                elif keyword == "type":
                    types = [value] if isinstance(value, str) else value if isinstance(value, list) else []
                    merged["type"] = [name for name in merged.get("type", TYPES) if name in types]
                elif keyword in merged and merged[keyword] != value:
                    raise UnsupportedSchema(
                        keyword, where, "appears in more than one of the schemas that all apply", "merge them by hand"
                    )
                else:
                    merged[keyword] = value
        if with_properties > 1 and "additionalProperties" in merged:
            raise UnsupportedSchema(
                "additionalProperties",
                where,
                "applies to one of the schemas that all apply",
                "merge them by hand",
            )
        return merged

    def _flattened(self, schema: object, path: str, depth: int) -> dict[str, Any]:
        """`schema` with its `$ref` followed and its own `allOf` merged in, for `_merged`."""
        if schema is True:
            return {}
        if not isinstance(schema, dict):
            raise UnsupportedSchema("allOf", path, "holds something other than an object schema", "fix the schema")
        if depth > 32:
            raise UnsupportedSchema("$ref", path, "refers back to itself where schemas are merged", "break the loop")
        if "$ref" in schema:
            target, pointer = self._resolve(schema["$ref"], _pointer(path, "$ref"))
            return self._merged([self._siblings(schema, "$ref"), target], pointer, depth + 1)
        if "allOf" in schema:
            return self._merged([self._siblings(schema, "allOf"), *schema["allOf"]], path, depth)
        return schema

    def _alternatives(self, schema: dict[str, Any], keyword: str, path: str, hint: str) -> str:
        options = schema[keyword]
        where = _pointer(path, keyword)
        if not isinstance(options, list) or not options:
            raise UnsupportedSchema(keyword, where, "is not a non-empty list of schemas", "fix the schema")
        siblings = self._siblings(schema, keyword)  # they apply to each alternative
        names = []
        for index, option in enumerate(options):
            option_path = _pointer(where, index)
            if siblings:
                option = self._merged([siblings, option], option_path)
            names.append(self._rule(self._body(option, option_path, f"{hint}-{index}"), f"{hint}-{index}"))
        return " | ".join(dict.fromkeys(names))

    # --- enum, const ----------------------------------------------------------------------------------------------

    def _constants(self, schema: dict[str, Any], path: str) -> str:
        self._alone(schema, path, "enum" if "enum" in schema else "const", "enum", "const", "type")
        values: list[object]
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                raise UnsupportedSchema("enum", _pointer(path, "enum"), "is not a non-empty list", "fix the schema")
            values = list(schema["enum"])
        else:
            values = [schema["const"]]
        texts = []
        for value in values:
            try:
                texts.append(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
            except ValueError:
                raise UnsupportedSchema("enum", path, f"holds {value!r}, not JSON", "fix the schema") from None
        if "const" in schema:
            const = json.dumps(schema["const"], ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            texts = [text for text in texts if text == const]
        types = self._types(schema, path)
        if "type" in schema:
            texts = [text for text in texts if _json_types(json.loads(text)) & types]
        if not texts:
            keyword = "const" if "const" in schema else "enum"
            raise UnsupportedSchema(keyword, _pointer(path, keyword), "admits no value of the schema", "fix the schema")
        return " | ".join(literal(text) for text in dict.fromkeys(texts))

    # --- by type --------------------------------------------------------------------------------------------------

    def _types(self, schema: dict[str, Any], path: str) -> set[str]:
        """The types `schema` admits: its `type`, else those its keywords are about (all when none)."""
        if "type" not in schema:
            implied = {name for name, keywords in TYPE_KEYWORDS.items() if any(k in schema for k in keywords)}
            return implied or set(TYPES)
        declared = schema["type"]
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list) or not names or not all(name in TYPES for name in names):
            raise UnsupportedSchema(
                "type", _pointer(path, "type"), f"is {declared!r}", f"use one of {', '.join(TYPES)} (or a list)"
            )
        return set(names)

    def _typed(self, schema: dict[str, Any], path: str, hint: str) -> str:
        types = self._types(schema, path)
        if "number" in types:
            types.discard("integer")  # a number's grammar admits the integers
        if len(types) == len(TYPES) - 1 and not self._validating(schema, "type"):
            return self.primitive("value")
        makers: dict[str, Callable[[], str]] = {
            "object": lambda: self._object(schema, path, hint),
            "array": lambda: self._array(schema, path, hint),
            "string": lambda: self._string(schema, path, hint),
            "number": lambda: self._number(schema, path, integer=False),
            "integer": lambda: self._number(schema, path, integer=True),
            "boolean": lambda: self.primitive("boolean"),
            "null": lambda: self.primitive("null"),
        }
        bodies = [(name, makers[name]()) for name in TYPES if name in types]
        if len(bodies) == 1:
            return bodies[0][1]
        return " | ".join(self._rule(body, f"{hint}-{name}") for name, body in bodies)

    def _object(self, schema: dict[str, Any], path: str, hint: str) -> str:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, dict):
            raise UnsupportedSchema("properties", _pointer(path, "properties"), "is not an object", "fix the schema")
        if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
            raise UnsupportedSchema("required", _pointer(path, "required"), "is not a list of names", "fix the schema")
        extra = schema.get("additionalProperties")  # absent: no extra properties (see the module's docstring)
        if "additionalProperties" not in schema and "properties" not in schema and not required:
            return self.primitive("object")  # `{"type": "object"}` alone: any object, as llama.cpp reads it
        extra_path = _pointer(path, "additionalProperties")
        declared = dict(properties)
        for name in required:
            if name not in declared:  # required but not declared: an extra property that must be there
                declared[name] = True if extra is None else extra
        ws = self.primitive("ws")
        self._depth += 1
        try:
            members = []  # (the rule of the member, whether it is required)
            for name, subschema in declared.items():
                if subschema is False:
                    if name in required:
                        raise UnsupportedSchema(
                            "required", _pointer(path, "required"), f"names {name!r}, which may not appear", "fix it"
                        )
                    continue
                member_path = _pointer(path, "properties", name) if name in properties else extra_path
                value = self._rule(self._body(subschema, member_path, f"{hint}-{name}"), f"{hint}-{name}")
                key = literal(json.dumps(name, ensure_ascii=False))
                members.append((self.rules.add(f"{hint}-{name}-kv", f'{key} {ws} ":" {ws} {value}'), name in required))
            extra_member = None
            if extra is not None and extra is not False:
                value = self._rule(self._body(extra, extra_path, f"{hint}-extra"), f"{hint}-extra")
                key = self._key_not_in(list(declared), hint) if declared else self.primitive("string")
                extra_member = self.rules.add(f"{hint}-extra-kv", f'{key} {ws} ":" {ws} {value}')
        finally:
            self._depth -= 1
        return self._members(members, extra_member, hint)

    def _members(self, members: list[tuple[str, bool]], extra: str | None, hint: str) -> str:
        """An object of `members` in order (each (rule, required)), then any number of `extra` members: rules linear
        in their number, whichever optional ones are left out."""
        ws = self.primitive("ws")
        separator = SEPARATOR.format(ws=ws)
        extras = f"( {separator} {extra} )*" if extra else ""
        first_required = next((index for index, (_, required) in enumerate(members) if required), None)
        last_first = len(members) - 1 if first_required is None else first_required  # the last that may come first
        after = {len(members): extras}  # after[k]: the members from k on, each after a separator
        for index in range(len(members) - 1, 0, -1):
            member, required = members[index]
            step = f"{separator} {member}" if required else f"( {separator} {member} )?"
            body = f"{step} {after[index + 1]}".strip()
            twice = 2 <= index <= last_first + 1  # after the opening member index - 1, and in after[index - 1]
            after[index] = self.rules.add(f"{hint}-after-{index}", body) if twice else body
        openings = [f"{members[index][0]} {after[index + 1]}".strip() for index in range(last_first + 1)]
        if first_required is None and extra:
            openings.append(f"{extra} {extras}")
        if not openings:
            return f'"{{" {ws} "}}"'
        inside = openings[0] if len(openings) == 1 else "( " + " | ".join(openings) + " )"
        if first_required is None:
            return f'"{{" {ws} ( {inside} {ws} )? "}}"'
        return f'"{{" {ws} {inside} {ws} "}}"'

    def _key_not_in(self, names: list[str], hint: str) -> str:
        """The rule of an object key, written without escapes, that is none of `names`."""
        trie: dict[str, Any] = {}
        for name in names:
            if not re.search(r'["\\\x00-\x1f]', name):  # a name with those is never written without escapes
                node = trie
                for char in name:
                    node = node.setdefault(char, {})
                node[""] = {}  # a name ends here

        def rest(node: dict[str, Any]) -> str:
            chars = [char for char in node if char]
            options = [f"{literal(char)} {rest(node[char])}" for char in chars]
            others = "".join(class_char(char) for char in chars)
            options.append(f'[^"\\\\\\x00-\\x1F{others}] {KEY_CHAR}*')
            alternatives = "( " + " | ".join(options) + " )"
            return alternatives if "" in node else alternatives + "?"

        return self.rules.add(f"{hint}-extra-key", f'"\\"" {rest(trie)} "\\""')

    def _array(self, schema: dict[str, Any], path: str, hint: str) -> str:
        items = schema.get("items", True)
        prefix = schema.get("prefixItems", [])
        prefix_path, rest_path = _pointer(path, "prefixItems"), _pointer(path, "items")
        if isinstance(items, list):  # the older form of prefixItems
            prefix, items = items, schema.get("additionalItems", True)
            prefix_path, rest_path = rest_path, _pointer(path, "additionalItems")
        elif "additionalItems" in schema:
            raise UnsupportedSchema(
                "additionalItems", _pointer(path, "additionalItems"), "needs 'items' to be a list", "use 'items'"
            )
        if not isinstance(prefix, list):
            raise UnsupportedSchema("prefixItems", prefix_path, "is not a list", "fix the schema")
        low = self._count(schema, "minItems", path) or 0
        high = self._count(schema, "maxItems", path)
        if items is False:
            high = len(prefix) if high is None else min(high, len(prefix))
        if high is not None and low > high:
            raise UnsupportedSchema("minItems", _pointer(path, "minItems"), "exceeds what the array may hold", "fix it")
        shown = prefix if high is None else prefix[:high]
        self._depth += 1
        try:
            elements = [
                self._rule(self._body(item, _pointer(prefix_path, index), f"{hint}-{index}"), f"{hint}-{index}")
                for index, item in enumerate(shown)
            ]
            more = high is None or high > len(prefix)
            rest = self._rule(self._body(items, rest_path, f"{hint}-item"), f"{hint}-item") if more else None
        finally:
            self._depth -= 1
        ws = self.primitive("ws")
        separator = SEPARATOR.format(ws=ws)
        # built from the last element back: element i is required when i < low, the rest's count after them
        sequence, optional = "", False
        if rest is not None:
            rest_low = max(low - len(prefix), 0)
            rest_high = None if high is None else high - len(prefix)
            if elements:
                sequence = self.rules.add(f"{hint}-next", f"{separator} {rest}") + quantifier(rest_low, rest_high)
            else:
                later = self.rules.add(f"{hint}-next", f"{separator} {rest}")
                more_high = None if rest_high is None else rest_high - 1
                sequence = rest if more_high == 0 else f"{rest} {later}{quantifier(max(rest_low - 1, 0), more_high)}"
                optional = rest_low == 0
        for index in range(len(elements) - 1, -1, -1):
            step = elements[index] if index == 0 else f"{separator} {elements[index]}"
            sequence = f"{step} {sequence}".strip()
            if index > 0 and index >= low:
                sequence = f"( {sequence} )?"
            optional = index >= low  # the first element's: the whole list's, written with the closing ws
        if not sequence:
            return f'"[" {ws} "]"'
        if optional:
            return f'"[" {ws} ( {sequence} {ws} )? "]"'
        return f'"[" {ws} {sequence} {ws} "]"'

    def _count(self, schema: dict[str, Any], keyword: str, path: str) -> int | None:
        """A count keyword's value (None when absent), refused when it is not a count a grammar can hold."""
        if keyword not in schema:
            return None
        value = schema[keyword]
        where = _pointer(path, keyword)
        if not _is_number(value) or value < 0 or value != int(value):
            raise UnsupportedSchema(keyword, where, f"is {value!r}", "make it a whole number, 0 or more")
        if value > MAX_REPEAT:
            raise UnsupportedSchema(
                keyword, where, f"is {value}, more than a llama.cpp grammar can count", f"keep it to {MAX_REPEAT}"
            )
        return int(value)

    def _string(self, schema: dict[str, Any], path: str, hint: str) -> str:
        present = [keyword for keyword in TYPE_KEYWORDS["string"] if keyword in schema]
        if len(present) > 1 and present[-1] in ("pattern", "format"):
            other = present[0] if present[0] != present[-1] else present[1]
            raise UnsupportedSchema(
                other, _pointer(path, other), f"cannot be enforced together with {present[-1]!r}", "keep one of them"
            )
        if "format" in schema:
            return self._format(schema["format"], _pointer(path, "format"))
        if "pattern" in schema:
            pattern = schema["pattern"]
            where = _pointer(path, "pattern")
            if not isinstance(pattern, str):
                raise UnsupportedSchema("pattern", where, "is not a string", "fix the schema")
            try:
                return f'"\\"" {pattern_gbnf(pattern, self.rules, f"{hint}-pattern")} "\\""'
            except UnsupportedRegex as error:
                raise UnsupportedSchema("pattern", where, f"uses {error.feature}", "simplify the pattern") from None
        low = self._count(schema, "minLength", path) or 0
        high = self._count(schema, "maxLength", path)
        if high is not None and low > high:
            raise UnsupportedSchema("minLength", _pointer(path, "minLength"), "exceeds maxLength", "fix it")
        if (low, high) == (0, None):
            return self.primitive("string")
        return f'"\\"" {self.primitive("char")}{quantifier(low, high)} "\\""'

    def _format(self, name: object, where: str) -> str:
        """A string of the format `name`: date (YYYY-MM-DD, a real day of the years 0001 to 9999, as Python's and most
        validators' dates: February 29 in leap years only), time
        (HH:MM:SS, a fraction, an offset Z or +HH:MM if any), date-time (a date, T, a time with its offset) or uuid."""
        add = self.rules.add
        if name == "uuid":
            rule = add("uuid", ' "-" '.join(f"[0-9a-fA-F]{{{count}}}" for count in (8, 4, 4, 4, 12)))
            return f'"\\"" {rule} "\\""'
        hours, minutes = add("hours", '[01] [0-9] | "2" [0-3]'), add("minutes", "[0-5] [0-9]")
        clock = f'{hours} ":" {minutes} ":" {minutes} ( "." [0-9]{{1,9}} )?'
        offset = add("offset", f'"Z" | [+-] {hours} ":" {minutes}')
        if name == "time":
            return f'"\\"" {add("time", f"{clock} {offset}?")} "\\""'
        days = {"31": '"0" [1-9] | [12] [0-9] | "3" [01]', "30": '"0" [1-9] | [12] [0-9] | "30"'}
        month_day = (
            f'( "0" [13578] | "1" [02] ) "-" ( {days["31"]} ) | ( "0" [469] | "11" ) "-" ( {days["30"]} )'
            ' | "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] )'
        )
        leap_year = add(
            "leap-year",
            '[0-9]{2} ( [02468] [48] | [13579] [26] | [2468] "0" ) | ( "0" [48] | [2468] [048] | [13579] [26] ) "00"',
        )
        year = add("year", '"000" [1-9] | "00" [1-9] [0-9] | "0" [1-9] [0-9]{2} | [1-9] [0-9]{3}')  # 0001 to 9999
        date = add("date", f'{year} "-" ( {month_day} ) | {leap_year} "-02-29"')
        rule = date if name == "date" else add("date-time", f'{date} "T" {clock} {offset}')
        return f'"\\"" {rule} "\\""'

    def _number(self, schema: dict[str, Any], path: str, integer: bool) -> str:
        low, high = self._bound(schema, path, "minimum", integer), self._bound(schema, path, "maximum", integer)
        if low is None and high is None:
            return self.primitive("integer" if integer else "number")
        if integer:
            found = integer_range(
                None if low is None else low[0] + (not low[1]), None if high is None else high[0] - (not high[1])
            )
        else:
            found = decimal_range(low, high)
        if found is None:
            keyword = "minimum" if "minimum" in schema else "exclusiveMinimum"
            raise UnsupportedSchema(
                keyword, _pointer(path, keyword), "is above the maximum: no number is in range", "fix the bounds"
            )
        return found

    def _bound(self, schema: dict[str, Any], path: str, side: str, integer: bool) -> Bound | None:
        """The tighter of `side` (minimum or maximum) and its exclusive form, as (whole number, inclusive); for an
        integer a fractional bound is rounded inwards, for a number it is refused."""
        exclusive_keyword = "exclusive" + side.capitalize()
        lower = side == "minimum"
        found: list[Bound] = []
        draft4_exclusive = schema.get(exclusive_keyword) is True  # draft 4: a flag on minimum/maximum
        for keyword in (side, exclusive_keyword):
            value = schema.get(keyword)
            if value is None or (keyword == exclusive_keyword and isinstance(value, bool)):
                continue
            where = _pointer(path, keyword)
            if not _is_number(value) or abs(value) >= 1e300:
                raise UnsupportedSchema(keyword, where, f"is {value!r}", "make it a number")
            inclusive = keyword == side and not draft4_exclusive
            if value != int(value):
                if not integer:
                    raise UnsupportedSchema(
                        keyword, where, f"is {value!r}, a fraction", "use a whole number (a fraction cannot be bounded)"
                    )
                value, inclusive = (math.ceil(value) if lower else math.floor(value)), True
            found.append((int(value), inclusive))
        if not found:
            return None
        tightest = max if lower else min
        return tightest(found, key=lambda bound: (bound[0], not bound[1]) if lower else (bound[0], bound[1]))


Bound = tuple[int, bool]  # a whole number and whether it is itself in range
# at most 16 digits before and after the point (as llama.cpp's converter: a small model left free to write digits
# writes them until max_tokens), so a number the schema does not bound has at most 16 + 16 digits
MAX_DIGITS = 16
FRACTION = f'( "." [0-9]{{1,{MAX_DIGITS}}} )?'
ZERO_FRACTION = f'( "." "0"{{1,{MAX_DIGITS}}} )?'
NONZERO_FRACTION = f'"." "0"{{0,{MAX_DIGITS - 1}}} [1-9] [0-9]{{0,{MAX_DIGITS - 1}}}'
KEY_CHAR = '[^"\\\\\\x00-\\x1F]'


def _digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _group(expression: str) -> str:
    return f"( {expression} )" if "|" in expression else expression


def _same_length(low: str, high: str) -> str:
    """The digit strings from `low` to `high` (both of one length, low <= high)."""
    if low == high:
        return f'"{low}"'
    if low[0] == high[0]:
        return _after_digit(low[0], _same_length(low[1:], high[1:]))
    width = len(low) - 1
    zeros, nines = "0" * width, "9" * width
    options = []
    first, last = int(low[0]), int(high[0])
    if low[1:] != zeros:
        options.append(_after_digit(low[0], _same_length(low[1:], nines)))
        first += 1
    if high[1:] != nines:
        last -= 1
    if first <= last:
        digit = f'"{first}"' if first == last else f"[{first}-{last}]"
        options.append(f"{digit} {_digits(width)}".strip())
    if high[1:] != nines:
        options.append(_after_digit(high[0], _same_length(zeros, high[1:])))
    return " | ".join(options)


def _after_digit(digit: str, rest: str) -> str:
    """`digit` followed by `rest`, merged into one literal when `rest` is one."""
    if re.fullmatch(r'"[0-9]+"', rest):
        return f'"{digit}{rest[1:]}'
    return f'"{digit}" {_group(rest)}'


def _naturals(low: int, high: int | None) -> list[str]:
    """Alternatives for the whole numbers from `low` (0 or more) to `high` (None: no limit), no leading zeros."""
    options = []
    length = len(str(low))
    while high is None or 10 ** (length - 1) <= high or length == 1:
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        if high is None and start == max(10 ** (length - 1), 1):  # every longer number too
            longest = max(MAX_DIGITS, length) - 1
            options.append(f"[1-9] [0-9]{{{length - 1},{longest}}}")
            break
        end = 10**length - 1 if high is None else min(high, 10**length - 1)
        if start <= end:
            options.append(_same_length(str(start), str(end)))
        length += 1
        if high is not None and end == high:
            break
    return options


def integer_range(low: int | None, high: int | None) -> str | None:
    """A GBNF expression for the integers from `low` to `high` (None: no bound), as JSON writes them (no leading
    zero, no `-0`); None when there is none."""
    if low is not None and high is not None and low > high:
        return None
    options = []
    if high is None or high >= 0:
        options += _naturals(0 if low is None or low < 0 else low, high)
    if low is None or low < 0:
        magnitudes = _naturals(1 if high is None or high >= 0 else -high, None if low is None else -low)
        options.append(f'"-" {_group(" | ".join(magnitudes))}')
    return " | ".join(options)


def _magnitudes(low: Bound, high: Bound | None) -> list[str]:
    """Alternatives for the unsigned decimals (no exponent) from `low` (0 or more) to `high` (None: no limit)."""
    (start, start_in), (end, end_in) = low, high if high is not None else (None, False)
    if end is not None and (end < start or (end == start and not (start_in and end_in))):
        return []
    if end == start:
        return [f'"{start}" {ZERO_FRACTION}']
    options = [] if start_in else [f'"{start}" {NONZERO_FRACTION}']
    whole_low, whole_high = start + (not start_in), None if end is None else end - 1
    if whole_high is None or whole_low <= whole_high:
        options.append(f"{_group(' | '.join(_naturals(whole_low, whole_high)))} {FRACTION}")
    if end is not None and end_in:
        options.append(f'"{end}" {ZERO_FRACTION}')
    return options


def decimal_range(low: Bound | None, high: Bound | None) -> str | None:
    """A GBNF expression for the numbers (no exponent, never `-0`) from `low` to `high`, whole bounds, each
    (value, inclusive) or None for no bound; None when there is none."""
    options = []
    if high is None or high[0] > 0 or (high[0] == 0 and high[1]):
        options += _magnitudes(low if low is not None and low[0] >= 0 else (0, True), high)
    if low is None or low[0] < 0:
        smallest = (0, False) if high is None or high[0] >= 0 else (-high[0], high[1])
        negatives = _magnitudes(smallest, None if low is None else (-low[0], low[1]))
        if negatives:
            options.append(f'"-" {_group(" | ".join(negatives))}')
    return " | ".join(options) or None


def _any_object_grammar() -> str:
    rules = Rules()
    converter = SchemaConverter(rules)
    ws = converter.primitive("ws")
    return rules.text(f"{ws} {converter.primitive('object')}")


JSON_OBJECT_GRAMMAR = _any_object_grammar()  # any JSON object (an OpenAI response_format of json_object)
