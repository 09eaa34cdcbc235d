"""Tool calls in the model's own format: which format a chat template speaks, how a conversation with tools goes into
it, the grammar that makes a call well-formed, and how a reply's text becomes calls, streamed or whole. Pure: no
llama.cpp, no HTTP.

Formats (what the model writes):
- `hermes` (Hermes 2/3, Qwen 2.5 and 3): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one per call;
- `qwen-xml` (Qwen 3.5, Qwen3-Coder): `<tool_call><function=F><parameter=KEY>VALUE</parameter></function></tool_call>`;
- `llama3` (Llama 3.x): a bare `{"name": ..., "parameters": {...}}`, one call;
- `mistral` (Mistral Nemo and kin): `[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]`, 9-character ids;
- `generic`, for a template with no tool support: the tools are described in a system message and the whole reply is
  JSON, `{"tool_call": {"name": ..., "arguments": {...}}}` or `{"response": "..."}`, enforced by a grammar.

A call's arguments are streamed as the model writes them (their raw JSON text, so the pieces always add up to the
whole call's `arguments`); text that could be the start of a marker is held back until it is decided.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgellm.grammar.gbnf import Rules, literal, text_without
from edgellm.grammar.json_schema import SchemaConverter

WS = '( " " | "\\n" [ \\t]{0,20} )?'  # the grammar's whitespace between JSON tokens (bounded: no loop on spaces)
WS_PATTERN = r"(?: |\n[ \t]{0,20})?"  # the same, as a trigger pattern's regular expression
ID_CHARS = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema of the arguments object, as the template shows it
    enforced: dict[str, Any] | None = None  # the part of it the grammar enforces (None: all of it)
    unenforced: tuple[str, ...] = ()  # where the keywords left to the tool are (`#/properties/url/format`)

    @property
    def grammar_schema(self) -> dict[str, Any]:
        return self.parameters if self.enforced is None else self.enforced

    def as_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolChoice:
    """`auto` (the model decides), `none`, `required` (at least one call) or `function` (that one: `name`)."""

    mode: str = "auto"
    name: str | None = None


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text of an object


@dataclass(frozen=True)
class ToolFormat:
    name: str  # hermes, qwen-xml, llama3, mistral, generic
    marker: str  # the text a call starts with; "" when a call is bare JSON
    parallel: bool  # the format writes several calls in one reply

    @property
    def native(self) -> bool:
        return self.name != "generic"


FORMATS = {
    "hermes": ToolFormat("hermes", "<tool_call>", True),
    "qwen-xml": ToolFormat("qwen-xml", "<tool_call>", True),
    "llama3": ToolFormat("llama3", "", False),
    "mistral": ToolFormat("mistral", "[TOOL_CALLS]", True),
    "generic": ToolFormat("generic", "", True),
}
PROBE_TOOL = Tool("probe_tool_name", "A probe.", {"type": "object", "properties": {"probe_arg": {"type": "string"}}})


def call_id() -> str:
    """A new call's id: 9 letters and digits (Mistral's templates refuse any other), stable once given."""
    pick = random.SystemRandom()
    return "".join(pick.choice(ID_CHARS) for _ in range(9))


def detect_format(
    source: str | None, render: Callable[[list[dict[str, Any]], list[dict[str, Any]]], str]
) -> ToolFormat:
    """The format `source` (a chat template) speaks, by the markers it writes; `generic` when it has no tool support:
    a probe question with a probe tool is rendered (`render(messages, tools)`), and a template that raises or never
    shows the tool takes no tools (Gemma's, Phi-4-mini's)."""
    if not source:
        return FORMATS["generic"]
    try:
        shown = render([{"role": "user", "content": "probe"}], [PROBE_TOOL.as_openai()])
    except Exception:
        return FORMATS["generic"]
    if PROBE_TOOL.name not in shown:
        return FORMATS["generic"]
    if "<function=" in source and "<parameter=" in source:
        return FORMATS["qwen-xml"]
    if "<tool_call>" in source:
        return FORMATS["hermes"]
    if "[TOOL_CALLS]" in source:
        return FORMATS["mistral"]
    if "<|start_header_id|>" in source:
        return FORMATS["llama3"]
    return FORMATS["generic"]


# --- the conversation -------------------------------------------------------------------------------------------


def native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a template that takes tools: each call's arguments given as an object (templates write them with
    `tojson`; a string would be encoded twice)."""
    found = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = {**message, "tool_calls": [_with_object_arguments(call) for call in calls]}
        found.append(message)
    return found


def _with_object_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function", {}))
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass
    return {**call, "function": function, "name": function.get("name"), "arguments": function.get("arguments")}


def generic_messages(messages: list[dict[str, Any]], tools: list[Tool], choice: ToolChoice) -> list[dict[str, Any]]:
    """Messages for a template with no tool support: the tools described in the system message, past calls written as
    the JSON the model answers with, tool results as user turns."""
    described = "\n".join(
        json.dumps({"name": tool.name, "description": tool.description, "parameters": tool.parameters})
        for tool in tools
    )
    if choice.mode == "auto":
        how = (
            'Answer with JSON only: {"tool_call": {"name": <tool name>, "arguments": <its arguments>}} to call a tool, '
            'or {"response": <your answer>} to answer directly.'
        )
    else:
        how = 'Answer with JSON only: {"tool_call": {"name": <tool name>, "arguments": <its arguments>}}.'
    instructions = f"You can call these tools:\n{described}\n{how}" if tools and choice.mode != "none" else ""
    found: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = [_with_object_arguments(call) for call in message["tool_calls"]]
            written = [{"name": call["name"], "arguments": call["arguments"]} for call in calls]
            text = json.dumps({"tool_call": written[0]} if len(written) == 1 else {"tool_calls": written})
            found.append({"role": "assistant", "content": text})
        elif role == "tool":
            name = message.get("name") or message.get("tool_call_id") or "tool"
            found.append({"role": "user", "content": f"Result of {name}: {content}"})
        elif role == "assistant" and instructions and content and not content.lstrip().startswith("{"):
            found.append({"role": "assistant", "content": json.dumps({"response": content})})  # as it answers now
        else:
            found.append({"role": role, "content": content})
    if instructions and found and found[0]["role"] == "system":
        found[0] = {"role": "system", "content": f"{found[0]['content']}\n\n{instructions}"}
    elif instructions:
        found.insert(0, {"role": "system", "content": instructions})
    return _merged_user_turns(found)


def _merged_user_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive user turns (tool results) merged into one: templates that require turns to alternate accept it."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and message["role"] == "user" and merged[-1]["role"] == "user":
            merged[-1] = {"role": "user", "content": f"{merged[-1]['content']}\n\n{message['content']}"}
        else:
            merged.append(message)
    return merged


# --- the grammar ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolGrammar:
    gbnf: str
    trigger_patterns: tuple[str, ...]  # empty: constrained from the first token
    trigger_words: tuple[str, ...]  # markers that are one special token: the session makes them trigger tokens


def tool_grammar(
    tool_format: ToolFormat, tools: list[Tool], choice: ToolChoice, parallel: bool, reasoning: str = "none"
) -> ToolGrammar | None:
    """The grammar a reply with calls must match: from the first token when a call is required (`required` or a
    named function), else from the format's marker on (None for bare-JSON formats under `auto`: nothing marks a
    call's start, so the reply stays free and is parsed). `reasoning`: `none`, `may` (the reply may open with a
    `<think>` block) or `open` (it starts inside one): a marker inside reasoning never triggers the grammar."""
    if choice.mode == "none":
        return None
    chosen = [tool for tool in tools if choice.name is None or tool.name == choice.name]
    rules = Rules()
    converter = SchemaConverter(rules)
    many = parallel and tool_format.parallel and choice.mode != "function"
    name = tool_format.name
    if name == "generic":
        call = rules.add("call", " | ".join(_json_call(converter, rules, tool, "arguments") for tool in chosen))
        tool_call = _json_member("tool_call", call)
        if choice.mode == "auto":
            answer = _json_member("response", converter.visit({"type": "string"}, "response"))
            return ToolGrammar(rules.text(f"{WS} ({tool_call} | {answer})"), (), ())
        return ToolGrammar(rules.text(f"{WS} {tool_call}"), (), ())
    if name == "qwen-xml":
        call = rules.add("call", " | ".join(_xml_call(converter, rules, tool) for tool in chosen))
        block = rules.add("block", f'"<tool_call>\\n" {call} "\\n</tool_call>"')
        body = f'{block} ("\\n" {block})*' if many else block
    elif name == "hermes":
        call = rules.add("call", " | ".join(_json_call(converter, rules, tool, "arguments") for tool in chosen))
        block = rules.add("block", f'"<tool_call>" {WS} {call} {WS} "</tool_call>"')
        body = f"{block} ({WS} {block})*" if many else block
    elif name == "mistral":
        call = rules.add(
            "call", " | ".join(_json_call(converter, rules, tool, "arguments", with_id=True) for tool in chosen)
        )
        more = f'({WS} "," {WS} {call})*' if many else ""
        body = f'"[TOOL_CALLS]" {WS} "[" {WS} {call} {more} {WS} "]"'
    else:  # llama3
        if choice.mode == "auto":
            return None
        body = rules.add("call", " | ".join(_json_call(converter, rules, tool, "parameters") for tool in chosen))
    if choice.mode == "auto":
        return ToolGrammar(
            rules.text(body),
            (trigger_pattern(tool_format, reasoning),),
            () if reasoning != "none" else (tool_format.marker,),
        )
    return ToolGrammar(rules.text(f"{WS} {body}" if name == "llama3" else body), (), ())


def trigger_pattern(tool_format: ToolFormat, reasoning: str = "none") -> str:
    """The regular expression (llama.cpp's lazy grammar's) that wakes the grammar: the reply so far ending with the
    format's marker and exactly what its grammar admits right after (anything else fed to the grammar at that moment
    would throw inside llama.cpp); after a finished reasoning block when the reply may reason."""
    after = r"\n?" if tool_format.name == "qwen-xml" else WS_PATTERN
    marker = f"({_regex_escape(tool_format.marker)}){after}$"
    if reasoning == "open":
        return f"^[\\s\\S]*?</think>(?:(?!<think>)[\\s\\S])*?{marker}"
    if reasoning == "may":
        return f"^\\s*(?:<think>[\\s\\S]*?</think>)?(?:(?!<think>)[\\s\\S])*?{marker}"
    return marker


def _json_member(key: str, value: str) -> str:
    """A JSON object of one member: `{"key": value}`."""
    return f'"{{" {WS} {literal(json.dumps(key))} {WS} ":" {WS} {value} {WS} "}}"'


def _json_call(converter: SchemaConverter, rules: Rules, tool: Tool, key: str, with_id: bool = False) -> str:
    arguments = converter.visit(tool.grammar_schema or {"type": "object"}, f"{tool.name}-arguments")
    parts = [
        '"{"',
        WS,
        literal('"name"'),
        WS,
        '":"',
        WS,
        literal(json.dumps(tool.name)),
        WS,
        '","',
        WS,
        literal(json.dumps(key)),
        WS,
        '":"',
        WS,
        arguments,
    ]
    if with_id:
        parts += [WS, '","', WS, literal('"id"'), WS, '":"', WS, '"\\"" [a-zA-Z0-9]{9} "\\""']
    parts += [WS, '"}"']
    return rules.add(f"{tool.name}-call", " ".join(parts))


def _xml_call(converter: SchemaConverter, rules: Rules, tool: Tool) -> str:
    """`<function=NAME>` and its parameters in order (required ones always): a string's value raw (`xml_value`),
    others as JSON."""
    document = tool.grammar_schema or {}
    properties = document.get("properties", {}) or {}
    required = set(document.get("required", []) or [])
    parts = [literal(f"<function={tool.name}>\n")]
    for key, schema in properties.items():
        raw = xml_value(schema)
        if isinstance(raw, list):
            value = "( " + " | ".join(literal(text) for text in raw) + " )"
        elif raw is not None:
            low, high = raw
            value = (
                f"[^<\\n]{{{low},{high}}}" if high is not None or low else rules.add("xml-text", text_without(CLOSE))
            )
        else:
            value = converter.visit(schema, f"{tool.name}-{key}", document)
        parameter = f"{literal(f'<parameter={key}>' + chr(10))} {value} {literal(CLOSE + chr(10))}"
        parts.append(parameter if key in required else f"({parameter})?")
    parts.append(literal("</function>"))
    return rules.add(f"{tool.name}-call", " ".join(parts))


CLOSE = "\n</parameter>"


def xml_value(schema: Any) -> list[str] | tuple[int, int | None] | None:
    """How a Qwen XML parameter of `schema` is written: raw, as one of the strings its enum or const allows (a
    list), or as any text of that many characters (min, max: a string without a pattern or format; bounded text
    holds no `<` or newline); None: as JSON."""
    if not isinstance(schema, dict):
        return None
    allowed = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if isinstance(allowed, list) and allowed and all(isinstance(value, str) for value in allowed):
        return list(allowed)
    if schema.get("type") != "string" or {"pattern", "format", "enum", "const"} & set(schema):
        return None
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    return (low if isinstance(low, int) else 0, high if isinstance(high, int) else None)


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if c in r"\^$.|?*+()[]{}" else c for c in text)


# --- the reply ---------------------------------------------------------------------------------------------------


@dataclass
class Delta:
    """A piece of a streamed reply: `content` text, or a call's first piece (`index`, `id` and `name`) or a later
    piece of its `arguments`."""

    content: str = ""
    index: int = -1
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class _Parsed:
    content: str
    calls: list[tuple[str, str, bool, str | None]] = field(default_factory=list)  # name, raw arguments, closed, id
    decided: int = 0  # how much of the content may be released


class ToolParser:
    """Turns a reply's answer text into content and calls as it grows: `feed` the text, take the deltas; `finish` at
    the end. The calls' arguments are the model's own JSON text (Qwen XML's: built from its parameters); a call of no
    tool is left out (a bare JSON object naming no tool is content)."""

    def __init__(self, tool_format: ToolFormat, tools: list[Tool], ids: Callable[[], str] | None = None) -> None:
        self.format, self.tools = tool_format, {tool.name: tool for tool in tools}
        self._ids = ids or call_id
        self.text = ""
        self.content = ""  # released
        self.calls: list[ToolCall] = []
        self._cut = False

    def feed(self, text: str) -> list[Delta]:
        self.text += text
        return self._deltas(self._parse(final=False), final=False)

    def finish(self, cut: bool = False) -> list[Delta]:
        """The last deltas. `cut`: the reply stopped at the token or context limit, so a call still open is cut short:
        a Qwen XML call without its `</function>` is left out (its parameters cannot be trusted); a JSON call's
        arguments stay as written, as the OpenAI API gives them with finish_reason "length"."""
        self._cut = cut
        return self._deltas(self._parse(final=True), final=True)

    def _deltas(self, parsed: _Parsed, final: bool) -> list[Delta]:
        deltas = []
        release = parsed.content if final else parsed.content[: parsed.decided]
        if len(release) > len(self.content) and release.startswith(self.content):
            deltas.append(Delta(content=release[len(self.content) :]))
            self.content = release
        known = [call for call in parsed.calls if call[0] in self.tools]  # a call of no tool is left out
        for index, (name, arguments, _, given_id) in enumerate(known):
            if index >= len(self.calls):
                if index > len(self.calls):
                    break
                self.calls.append(ToolCall(given_id or self._ids(), name, ""))
                deltas.append(Delta(index=index, id=self.calls[index].id, name=name))
            call = self.calls[index]
            if len(arguments) > len(call.arguments) and arguments.startswith(call.arguments):
                deltas.append(Delta(index=index, arguments=arguments[len(call.arguments) :]))
                call.arguments = arguments
        if final:
            for index, call in enumerate(self.calls):
                if not call.arguments.strip():  # a call written without arguments: none
                    deltas.append(Delta(index=index, arguments="{}"))
                    call.arguments += "{}"
        return deltas

    def _parse(self, final: bool) -> _Parsed:
        name = self.format.name
        if name in ("hermes", "qwen-xml"):
            return _parse_blocks(self.text, final, xml=name == "qwen-xml", tools=self.tools, cut=self._cut)
        if name == "mistral":
            return _parse_mistral(self.text, final)
        if name == "llama3":
            return _parse_bare(self.text, final, ("parameters", "arguments"), self.tools)
        return _parse_generic(self.text, final)


def _held_prefix(text: str, marker: str) -> int:
    """Where the part of `text` that could begin `marker` starts (len(text) if none)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return len(text) - size
    return len(text)


def _parse_blocks(text: str, final: bool, xml: bool, tools: dict[str, Tool], cut: bool = False) -> _Parsed:
    marker = "<tool_call>"
    start = text.find(marker)
    if start < 0:
        return _Parsed(text, decided=_held_prefix(text, marker))
    parsed = _Parsed(text[:start], decided=start)
    position = start
    while position >= 0 and position < len(text):
        position = text.find(marker, position)
        if position < 0:
            break
        body_start = position + len(marker)
        end = text.find("</tool_call>", body_start)
        body = text[body_start : end if end >= 0 else len(text)]
        if xml:
            call = _xml_call_parsed(body, end >= 0 or (final and not cut), tools)
        else:
            call = _json_call_parsed(body, ("arguments", "parameters"))
        if call is not None:
            parsed.calls.append((*call, None))
        if end < 0:
            break
        position = end + len("</tool_call>")
    return parsed


def _json_call_parsed(body: str, keys: tuple[str, ...]) -> tuple[str, str, bool] | None:
    """A call's name and its raw arguments so far from JSON that may be cut short."""
    found = _scan_object_fields(body, keys)
    if found is None:
        return None
    name, arguments, closed = found
    return name, arguments, closed


def _scan_object_fields(text: str, keys: tuple[str, ...]) -> tuple[str, str, bool] | None:
    """In a JSON object that may be cut short: its `name` (complete) and the raw text of the first of `keys` (as far
    as it goes), and whether that value is complete."""
    start = text.find("{")
    if start < 0:
        return None
    name: str | None = None
    arguments, closed = "", False
    position = start + 1
    while position < len(text):
        position = _skip_space(text, position)
        if position >= len(text) or text[position] == "}":
            break
        if text[position] == ",":
            position += 1
            continue
        key_end = _scan_value(text, position)
        if key_end is None or text[position] != '"':
            return (name, arguments, closed) if name else None
        key = json.loads(text[position:key_end])
        position = _skip_space(text, key_end)
        if position >= len(text) or text[position] != ":":
            break
        position = _skip_space(text, position + 1)
        value_end = _scan_value(text, position)
        if key == "name":
            if value_end is None:
                break
            value = json.loads(text[position:value_end])
            name = value if isinstance(value, str) else None
        elif key in keys:
            if value_end is None:
                arguments = text[position:]
                break
            arguments, closed = text[position:value_end], True
        if value_end is None:
            break
        position = value_end
    return (name, arguments, closed) if name else None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _scan_value(text: str, position: int) -> int | None:
    """Where the JSON value at `position` ends; None when the text ends first."""
    if position >= len(text):
        return None
    first = text[position]
    if first == '"':
        index = position + 1
        while index < len(text):
            if text[index] == "\\":
                index += 2
                continue
            if text[index] == '"':
                return index + 1
            index += 1
        return None
    if first in "{[":
        depth, index, in_string = 0, position, False
        while index < len(text):
            char = text[index]
            if in_string:
                if char == "\\":
                    index += 1
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return index + 1
            index += 1
        return None
    index = position
    while index < len(text) and text[index] not in ",}] \t\r\n":
        index += 1
    return index if index < len(text) else None


def _xml_call_parsed(body: str, complete: bool, tools: dict[str, Tool]) -> tuple[str, str, bool] | None:
    """A Qwen XML call, whole once `</function>` is written (its arguments built as a JSON object)."""
    head = body.find("<function=")
    if head < 0:
        return None
    name_end = body.find(">", head)
    close = body.find("</function>", head)
    if name_end < 0 or (close < 0 and not complete):
        return None
    name = body[head + len("<function=") : name_end].strip()
    inner = body[name_end + 1 : close if close >= 0 else len(body)]
    properties = tools[name].grammar_schema.get("properties", {}) if name in tools else {}
    arguments: dict[str, Any] = {}
    for piece in inner.split("<parameter=")[1:]:
        key, _, rest = piece.partition(">")
        value, closed, _ = rest.partition("</parameter>")
        if not closed:  # the reply ended inside the value: not its closing tag's first characters
            value = value[: _held_prefix(value, "</parameter>")]
        value = value[1:] if value.startswith("\n") else value
        value = value[:-1] if value.endswith("\n") else value
        if xml_value(properties.get(key)) is not None:
            arguments[key] = value
        else:
            try:
                arguments[key] = json.loads(value)
            except ValueError:
                arguments[key] = value
    return name, json.dumps(arguments, ensure_ascii=False), True


def _parse_mistral(text: str, final: bool) -> _Parsed:
    marker = "[TOOL_CALLS]"
    start = text.find(marker)
    if start < 0:
        return _Parsed(text, decided=_held_prefix(text, marker))
    parsed = _Parsed(text[:start], decided=start)
    position = text.find("[", start + len(marker))
    if position < 0:
        return parsed
    position += 1
    while position < len(text):
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position += 1
            continue
        if position >= len(text) or text[position] != "{":
            break
        end = _scan_value(text, position)
        found = _scan_object_fields(text[position : end if end is not None else len(text)], ("arguments",))
        if found is not None:
            given = None
            if end is not None:
                try:
                    value = json.loads(text[position:end]).get("id")
                    given = value if isinstance(value, str) and value else None
                except (ValueError, AttributeError):
                    pass
            parsed.calls.append((found[0], found[1], found[2], given))
        if end is None:
            break
        position = end
    return parsed


def _parse_bare(text: str, final: bool, keys: tuple[str, ...], tools: dict[str, Tool]) -> _Parsed:
    """Llama 3's bare JSON call: a reply that starts with `{` is held to the end, then it is a call (a tool's name,
    the object closed and nothing after it) or content, whole (the format has no marker to tell sooner)."""
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return _Parsed(text, decided=len(text) if stripped else 0)
    found = _scan_object_fields(stripped, keys)
    end = _scan_value(stripped, 0)
    if found is not None and found[0] not in tools:
        return _Parsed(text, decided=len(text))
    if (end is not None and stripped[end:].strip()) or (final and (found is None or end is None)):
        return _Parsed(text, decided=len(text))
    if not final or found is None:  # text may still follow the object: decided at the end
        return _Parsed(text, decided=0)
    return _Parsed("", [(found[0], found[1], found[2], None)], decided=0)


def _parse_generic(text: str, final: bool) -> _Parsed:
    """The generic format's JSON reply: a call, several, or a response (released whole at the end)."""
    if not final:
        stripped = text.lstrip()
        if '"tool_call"' in stripped[:40]:
            inner = stripped.find("{", stripped.find('"tool_call"'))
            found = _scan_object_fields(stripped[inner:], ("arguments",)) if inner >= 0 else None
            if found is not None:
                return _Parsed("", [(found[0], found[1], found[2], None)], decided=0)
        return _Parsed("", decided=0)
    try:
        value = json.loads(text)
    except ValueError:
        return _Parsed(text, decided=len(text))
    if isinstance(value, dict) and isinstance(value.get("response"), str):
        return _Parsed(value["response"], decided=len(value["response"]))
    calls = []
    if isinstance(value, dict) and isinstance(value.get("tool_call"), dict):
        calls = [value["tool_call"]]
    elif isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        calls = [call for call in value["tool_calls"] if isinstance(call, dict)]
    if not calls:
        return _Parsed(text, decided=len(text))
    stripped = text.lstrip()
    found = _scan_object_fields(stripped[stripped.find("{", stripped.find('"tool_call')) :], ("arguments",))
    parsed = _Parsed("")
    for number, call in enumerate(calls):
        raw = (
            found[1] if number == 0 and found is not None and len(calls) == 1 else json.dumps(call.get("arguments", {}))
        )
        parsed.calls.append((str(call.get("name")), raw, True, None))
    return parsed
