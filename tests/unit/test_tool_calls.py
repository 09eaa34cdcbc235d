"""Tool-call formats without a model: which format a template speaks, the grammar each tool_choice gets (matched with
the test GBNF recognizer), and the parser that turns a reply's text into content and calls, fed whole or one character
at a time (the streamed pieces add up to the whole reply's calls; text that could start a marker is held back)."""

from __future__ import annotations

import json

import pytest

from edgellm.templates.chat import ChatTemplate
from edgellm.templates.tools import (
    FORMATS,
    Tool,
    ToolChoice,
    ToolParser,
    detect_format,
    generic_messages,
    native_messages,
    tool_grammar,
)
from tests.support.gbnf_match import matches
from tests.support.tool_models import TEMPLATES

WEATHER = Tool(
    "get_weather",
    "The weather.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
ADD = Tool("add", "Add.", {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})


def render_with(source: str):  # type: ignore[no-untyped-def]
    template = ChatTemplate("model", source, ())
    return lambda messages, tools: template.render(messages, "<s>", "</s>", tools=tools)


@pytest.mark.parametrize("name", ["hermes", "qwen-xml", "llama3", "mistral"])
def test_a_template_is_probed_for_its_format(name: str) -> None:
    assert detect_format(TEMPLATES[name], render_with(TEMPLATES[name])).name == name


def test_a_template_without_tools_is_generic() -> None:
    plain = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    raises = "{% if tools %}{{ raise_exception('no tools') }}{% endif %}<tool_call>"
    assert detect_format(plain, render_with(plain)).name == "generic"
    assert detect_format(raises, render_with(raises)).name == "generic"
    assert detect_format(None, render_with(plain)).name == "generic"


def test_past_calls_render_back_with_object_arguments() -> None:
    history = [
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "abcdefghi",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "21 C"},
    ]
    for name in ("hermes", "mistral", "llama3"):
        text = render_with(TEMPLATES[name])(native_messages(history), [WEATHER.as_openai()])
        assert '{"city": "Paris"}' in text and "21 C" in text and '\\"city' not in text  # not encoded twice
    text = render_with(TEMPLATES["qwen-xml"])(native_messages(history), [WEATHER.as_openai()])
    assert "<parameter=city>\nParis\n</parameter>" in text and "21 C" in text


def test_generic_messages_describe_the_tools_and_turn_results_into_user_turns() -> None:
    history = [
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "x", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "x", "name": "get_weather", "content": "21 C"},
    ]
    found = generic_messages(history, [WEATHER], ToolChoice("auto"))
    assert found[0]["role"] == "system" and "get_weather" in found[0]["content"] and '"response"' in found[0]["content"]
    assert [m["role"] for m in found] == ["system", "user", "assistant", "user"]
    assert json.loads(found[2]["content"]) == {"tool_call": {"name": "get_weather", "arguments": {}}}
    assert "21 C" in found[3]["content"]
    assert generic_messages(history, [WEATHER], ToolChoice("none"))[0]["role"] == "user"  # no tools described


CALL = '{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}'


@pytest.mark.parametrize(
    ("name", "choice", "text", "valid"),
    [
        ("hermes", ToolChoice("function", "get_weather"), f"<tool_call>\n{CALL}\n</tool_call>", True),
        ("hermes", ToolChoice("required"), f"<tool_call>{CALL}</tool_call>\n<tool_call>{CALL}</tool_call>", True),
        (
            "hermes",
            ToolChoice("function", "get_weather"),
            f"<tool_call>{CALL}</tool_call><tool_call>{CALL}</tool_call>",
            False,
        ),
        (
            "hermes",
            ToolChoice("function", "get_weather"),
            '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>',
            False,
        ),
        ("hermes", ToolChoice("auto"), f"<tool_call>{CALL}</tool_call>", True),
        (
            "mistral",
            ToolChoice("required"),
            '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}, "id": "abcDEF123"}]',
            True,
        ),
        (
            "mistral",
            ToolChoice("required"),
            '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}, "id": "short"}]',
            False,
        ),
        ("llama3", ToolChoice("function", "add"), '{"name": "add", "parameters": {"a": -4}}', True),
        ("llama3", ToolChoice("function", "add"), '{"name": "add", "arguments": {"a": -4}}', False),
        ("generic", ToolChoice("auto"), '{"response": "It is sunny."}', True),
        ("generic", ToolChoice("required"), '{"response": "It is sunny."}', False),
        ("generic", ToolChoice("required"), '{"tool_call": {"name": "add", "arguments": {"a": 3}}}', True),
        (
            "qwen-xml",
            ToolChoice("function", "get_weather"),
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
            True,
        ),
    ],
)
def test_the_grammar_admits_well_formed_calls_only(name: str, choice: ToolChoice, text: str, valid: bool) -> None:
    grammar = tool_grammar(FORMATS[name], [WEATHER, ADD], choice, parallel=True)
    assert grammar is not None
    assert bool(grammar.trigger_patterns) == (choice.mode == "auto" and FORMATS[name].marker != "")
    assert matches(grammar.gbnf, text) == valid


def test_no_grammar_for_none_or_a_bare_format_under_auto() -> None:
    assert tool_grammar(FORMATS["hermes"], [WEATHER], ToolChoice("none"), True) is None
    assert tool_grammar(FORMATS["llama3"], [WEATHER], ToolChoice("auto"), True) is None


def parse(name: str, text: str, by_char: bool) -> tuple[str, list, list]:
    ids = iter(f"id{i:07d}" for i in range(10))
    parser = ToolParser(FORMATS[name], [WEATHER, ADD], ids=lambda: next(ids))
    deltas = []
    for piece in list(text) if by_char else [text]:
        deltas += parser.feed(piece)
    deltas += parser.finish()
    return parser.content, parser.calls, deltas


REPLIES = [
    (
        "hermes",
        f"Let me check.\n<tool_call>\n{CALL}\n</tool_call>",
        "Let me check.\n",
        [("get_weather", '{"city": "Paris", "days": 2}')],
    ),
    (
        "hermes",
        f"<tool_call>{CALL}</tool_call>\n<tool_call>" + '{"name": "add", "arguments": {"a": 1}}</tool_call>',
        "",
        [("get_weather", '{"city": "Paris", "days": 2}'), ("add", '{"a": 1}')],
    ),
    ("hermes", "No call here, just <tool text.", "No call here, just <tool text.", []),
    ("hermes", '<tool_call>{"name": "unknown", "arguments": {}}</tool_call>', "", []),
    ("mistral", '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}, "id": "abcDEF123"}]', "", [("add", '{"a": 1}')]),
    ("llama3", '{"name": "add", "parameters": {"a": 5}}', "", [("add", '{"a": 5}')]),
    ("llama3", '{"weather": "sunny"}', '{"weather": "sunny"}', []),
    ("llama3", "Plain words.", "Plain words.", []),
    ("generic", '{"tool_call": {"name": "add", "arguments": {"a": 2}}}', "", [("add", '{"a": 2}')]),
    ("generic", '{"response": "Sunny."}', "Sunny.", []),
    (
        "qwen-xml",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
        "",
        [("get_weather", '{"city": "Paris", "days": 3}')],
    ),
]


@pytest.mark.parametrize(("name", "text", "content", "calls"), REPLIES)
@pytest.mark.parametrize("by_char", [False, True], ids=["whole", "streamed"])
def test_a_reply_becomes_content_and_calls(name: str, text: str, content: str, calls: list, by_char: bool) -> None:
    found_content, found_calls, deltas = parse(name, text, by_char)
    assert found_content == content
    assert [(call.name, call.arguments) for call in found_calls] == calls
    # the deltas add up: content pieces to the content, each call's first piece names it, fragments to its arguments
    assert "".join(d.content for d in deltas if d.index < 0) == content
    for index, call in enumerate(found_calls):
        heads = [d for d in deltas if d.index == index and d.name is not None]
        assert len(heads) == 1 and heads[0].id == call.id and heads[0].name == call.name
        assert "".join(d.arguments for d in deltas if d.index == index) == call.arguments


def test_text_that_could_start_a_marker_is_held_back() -> None:
    parser = ToolParser(FORMATS["hermes"], [WEATHER])
    assert [d.content for d in parser.feed("Sure <tool")] == ["Sure "]
    assert parser.feed("_ca") == []
    assert [d.content for d in parser.feed("rrot")] == ["<tool_carrot"]


def test_mistral_ids_are_kept_and_new_ids_have_nine_characters() -> None:
    _, calls, _ = parse("mistral", '[TOOL_CALLS][{"name": "add", "arguments": {"a": 1}, "id": "abcDEF123"}]', False)
    assert calls[0].id == "abcDEF123"
    parser = ToolParser(FORMATS["hermes"], [ADD])
    parser.feed('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    parser.finish()
    assert len(parser.calls[0].id) == 9 and parser.calls[0].id.isalnum()


UNIT = Tool(
    "convert",
    "Convert.",
    {
        "type": "object",
        "properties": {"unit": {"enum": ["c", "f"]}, "text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["unit", "text"],
    },
)


def test_qwen_xml_strings_are_raw_and_may_hold_angle_brackets() -> None:
    reply = (
        "<tool_call>\n<function=convert>\n<parameter=unit>\nc\n</parameter>\n<parameter=text>\n<div>a < b</div>\n"
        "</parameter>\n<parameter=n>\n3\n</parameter>\n</function>\n</tool_call>"
    )
    grammar = tool_grammar(FORMATS["qwen-xml"], [UNIT], ToolChoice("required"), True)
    assert grammar is not None and matches(grammar.gbnf, reply)
    assert not matches(grammar.gbnf, reply.replace("\nc\n", '\n"c"\n'))
    parser = ToolParser(FORMATS["qwen-xml"], [UNIT])
    parser.feed(reply)
    parser.finish()
    assert json.loads(parser.calls[0].arguments) == {"unit": "c", "text": "<div>a < b</div>", "n": 3}


def test_qwen_xml_follows_refs_into_the_whole_parameters() -> None:
    tool = Tool(
        "move",
        "Move.",
        {
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
            "type": "object",
            "properties": {"to": {"$ref": "#/$defs/point"}},
            "required": ["to"],
        },
    )
    grammar = tool_grammar(FORMATS["qwen-xml"], [tool], ToolChoice("required"), True)
    reply = '<tool_call>\n<function=move>\n<parameter=to>\n{"x": 2}\n</parameter>\n</function>\n</tool_call>'
    assert grammar is not None and matches(grammar.gbnf, reply)


def test_the_trigger_wakes_on_what_the_grammar_admits_and_never_inside_reasoning() -> None:
    import re

    from edgellm.templates.tools import trigger_pattern

    assert re.search(trigger_pattern(FORMATS["qwen-xml"]), "text <tool_call>\n")
    assert not re.search(trigger_pattern(FORMATS["qwen-xml"]), "text <tool_call> ")  # its grammar wants a newline
    assert re.search(trigger_pattern(FORMATS["hermes"]), "text <tool_call> ")
    may, open_ = trigger_pattern(FORMATS["hermes"], "may"), trigger_pattern(FORMATS["hermes"], "open")
    assert not re.search(may, "<think>I could write <tool_call>")
    assert re.search(may, "<think>no</think>\n<tool_call>") and re.search(may, "Sure. <tool_call>")
    assert not re.search(open_, "thinking about <tool_call>") and re.search(open_, "done</think><tool_call>")
    grammar = tool_grammar(FORMATS["hermes"], [WEATHER], ToolChoice("auto"), True, reasoning="may")
    assert grammar is not None and grammar.trigger_words == ()  # a marker token would wake it inside reasoning


def test_a_call_of_no_tool_leaves_the_numbering_of_the_others() -> None:
    reply = (
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    )
    _, calls, deltas = parse("hermes", reply, by_char=True)
    assert [(call.name, call.arguments) for call in calls] == [("add", '{"a": 1}')]
    assert {delta.index for delta in deltas if delta.index >= 0} == {0}


def test_llama3_json_that_is_no_call_is_content() -> None:
    for text in ('{"name": "Alice", "age": 30}', '{"name": "add", "parameters": {"a": 1}} and more'):
        content, calls, _ = parse("llama3", text, by_char=True)
        assert content == text and calls == []


def test_a_qwen_xml_call_cut_by_the_limit_is_left_out_and_an_ended_one_is_read() -> None:
    whole = (
        "<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\n2\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    for cut_at in (
        "\n<tool_call>\n<function=add>\n",
        "\n<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\n2\n</param",
    ):
        parser = ToolParser(FORMATS["qwen-xml"], [ADD])
        deltas = parser.feed(whole + cut_at) + parser.finish(cut=True)
        assert [(call.name, json.loads(call.arguments)) for call in parser.calls] == [("add", {"a": 1, "b": 2})]
        assert {delta.index for delta in deltas if delta.index >= 0} == {0}
    # a reply that ends on its own (end of generation) before `</function>`: its written parameters are the call,
    # a closing tag begun is not part of the value
    parser = ToolParser(FORMATS["qwen-xml"], [ADD])
    parser.feed("<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\n2\n</param")
    parser.finish()
    assert json.loads(parser.calls[0].arguments) == {"a": 1, "b": 2}


def test_a_call_without_arguments_streams_its_empty_object() -> None:
    _, calls, deltas = parse("hermes", '<tool_call>{"name": "add"}</tool_call>', by_char=False)
    assert calls[0].arguments == "{}"
    assert "".join(d.arguments for d in deltas if d.index == 0) == "{}"


def test_a_chunk_holds_each_call_once_and_a_first_piece_alone() -> None:
    from edgellm.api.openai import delta_chunks
    from edgellm.templates.tools import Delta

    pieces = [Delta(index=0, id="a", name="f"), Delta(index=0, arguments='{"x"'), Delta(index=0, arguments=": 1}")]
    pieces += [Delta(index=1, id="b", name="g"), Delta(index=1, arguments="{}")]
    chunks = delta_chunks(pieces)
    assert [[(d.index, d.name, d.arguments) for d in chunk] for chunk in chunks] == [
        [(0, "f", "")],
        [(0, None, '{"x": 1}'), (1, "g", "")],
        [(1, None, "{}")],
    ]
