"""The chat template's bounded sandbox against llama-cpp-python's: real templates (edgellm's fallbacks and those
llama.cpp ships) render exactly as llama-cpp-python renders them, llama-cpp-python compiles none itself while a model
loads, and a hostile template in a real chat is one line. The bounds alone: tests/unit/test_template_sandbox.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from edgellm.convert.tinymodel import Shape, write_model
from edgellm.hw.buildconfig import llama_cpp_source
from edgellm.templates import chat as templates
from edgellm.templates.sandbox import BoundedTemplate
from tests.support import edgellm
from tests.support.chat_templates import MESSAGES, TOOLS_STYLE


@pytest.mark.parametrize(
    "source",
    [source for source, _ in templates.FALLBACKS.values()] + [TOOLS_STYLE],
    ids=list(templates.FALLBACKS) + ["tools-style"],
)
def test_renders_as_llama_cpp_python_does(source: str) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"city": "string"}}}]
    ours = BoundedTemplate(source, "<s>", "</s>").render(MESSAGES, tools=tools)
    theirs = Jinja2ChatFormatter(source, eos_token="</s>", bos_token="<s>")(messages=MESSAGES, tools=tools).prompt
    assert ours == theirs and ours


def test_llama_cpp_python_compiles_no_template_while_a_model_loads_and_its_own_class_is_back_after() -> None:
    import llama_cpp

    from edgellm.engine.compat import templates_left_to_edgellm

    original = llama_cpp.llama_chat_format.Jinja2ChatFormatter
    with templates_left_to_edgellm():
        stand_in = llama_cpp.llama_chat_format.Jinja2ChatFormatter("{{ 'x' * 10**10 }}", eos_token="", bos_token="")
        assert stand_in.template == "{{ 'x' * 10**10 }}"  # kept as text, never compiled
    assert llama_cpp.llama_chat_format.Jinja2ChatFormatter is original


def test_chat_with_a_hostile_template_says_so_in_one_line(tmp_path: Path) -> None:
    model = write_model(tmp_path / "hostile.gguf", Shape(chat_template="{{ 'x' * 10000000000 }}"), quant="q8_0")
    done = edgellm("chat", "-m", str(model), "-n", "2", input="Hi\nHello again\n")
    assert "chat template was stopped" in done.stderr and "broken or hostile" in done.stderr
    assert done.stderr.count("chat template was stopped") == 2  # each message told, the chat went on
    assert "Traceback" not in done.stderr


def test_the_real_templates_llama_cpp_ships_render_as_llama_cpp_python_renders_them() -> None:
    """Every chat template of llama.cpp's models/templates (its source, which the install keeps), with tools and a
    4 MiB message: the same text, or the same refusal, as llama-cpp-python's unbounded sandbox gives."""
    templates_folder = llama_cpp_source() / "models" / "templates"
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages = MESSAGES[:-1] + [{"role": "user", "content": "word " * (2**22 // 5)}]
    checked = 0
    for path in sorted(templates_folder.glob("*.jinja")):
        source = path.read_text()
        try:
            theirs = Jinja2ChatFormatter(source, eos_token="</s>", bos_token="<s>")(
                messages=messages, tools=tools
            ).prompt
        except Exception as error:
            with pytest.raises(type(error)):
                BoundedTemplate(source, "<s>", "</s>").render(messages, tools=tools)
            continue
        assert BoundedTemplate(source, "<s>", "</s>").render(messages, tools=tools) == theirs, path.name
        checked += 1
    assert checked > 20
