"""The chat template's bounded sandbox: real templates render exactly as llama-cpp-python renders them; a template
that would hang, fill the memory or reach Python's insides is stopped, quickly and without allocating what it
asked for."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from conftest import edgellm
from edgellm.chat import sandbox, templates
from edgellm.chat.sandbox import BoundedTemplate, TemplateLimit
from edgellm.tinymodel import Shape, write_model

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "x" * 300}]

# A template in the style of today's instruct models: tools as JSON, a namespace, loop state, a refusal.
TOOLS_STYLE = (
    "{%- if tools %}{{ '<|sys|>' }}{% for tool in tools %}{{ tool | tojson }}{% if not loop.last %},{% endif %}"
    "{% endfor %}{{ '<|end|>' }}{% endif %}"
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}"
    "{%- for m in messages %}"
    "{%- if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' ~ m.role) }}{% endif %}"
    "{{ '<|' ~ m.role ~ '|>' }}{{ m.content | trim }}{% if loop.index0 == ns.last_user %}{{ ' (last)' }}{% endif %}"
    "{{ '<|end|>\n' }}{% generation %}{% endgeneration %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    "{{ '%s/%d' % (messages | length, loop_count | default(2)) }}{{ '{}-{}'.format(bos_token, eos_token) }}"
    "{{ messages | map(attribute='role') | join(',') }}{{ (messages[-1].content | truncate(20)) | center(30) }}"
)


@pytest.mark.parametrize("source", [source for source, _ in templates.FALLBACKS.values()] + [TOOLS_STYLE])
def test_renders_as_llama_cpp_python_does(source: str) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"city": "string"}}}]
    ours = BoundedTemplate(source, "<s>", "</s>").render(MESSAGES, tools=tools)
    theirs = Jinja2ChatFormatter(source, eos_token="</s>", bos_token="<s>")(messages=MESSAGES, tools=tools).prompt
    assert ours == theirs and ours


def test_raise_exception_still_refuses() -> None:
    with pytest.raises(ValueError, match="unknown role tool"):
        BoundedTemplate(TOOLS_STYLE, "", "").render(MESSAGES + [{"role": "tool", "content": "42"}])


HOSTILE = {
    "repeat": ("{{ 'x' * 10000000000 }}", "10,000,000,000 characters"),
    "power": ("{{ 10 ** 100000000 }}", "power 100000000"),
    "doubling": ("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 "more than"),
    "adding": ("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
               "more than"),
    "width": ("{{ 'a' | center(1000000000) }}", "2,000,000,000"),
    "method width": ("{{ 'a'.ljust(1000000000) }}", "2,000,000,000"),
    "format width": ("{{ '%1000000000d' % 1 }}", "1,000,000,0"),
    "format spec": ("{{ '{:1000000000}'.format(1) }}", "1,000,000,0"),
    "replace": ("{{ ('a' * 1000000).replace('', 'x' * 100) }}", "more than"),
    "indent": ("{{ ('a\n' * 1000000) | indent(1000) }}", "more than"),
    "join": ("{{ ('y' * 10000000).join(['a', 'b', 'c', 'd', 'e', 'f', 'g']) }}", "more than"),
    "expandtabs": ("{{ ('\t' * 1000000).expandtabs(100000) }}", "more than"),
    "output": ("{% for i in range(100000) %}{% for j in range(100) %}{{ 'x' * 100 }}{% endfor %}{% endfor %}",
               "more than"),
    "slices": ("{{ messages | slice(100000000) | list | length }}", "more than"),
    "list": ("{{ (messages * 100000000) | length }}", "more than"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_template_that_would_fill_the_memory_is_stopped_before_it_does(name: str) -> None:
    source, words = HOSTILE[name]
    tracemalloc.start()
    try:
        with pytest.raises(TemplateLimit, match=words):
            BoundedTemplate(source, "", "").render(MESSAGES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * sandbox.MAX_TEXT * 4  # at most a few texts at the bound (4 bytes a character at worst)


def test_a_template_that_would_run_for_ever_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "RENDER_SECONDS", 0.2)
    with pytest.raises(TemplateLimit, match="ran for more than 0.2 s"):
        BoundedTemplate("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                        "", "").render(MESSAGES)


def test_lipsum_and_pythons_insides_are_out_of_reach() -> None:
    with pytest.raises(Exception, match="lipsum"):
        BoundedTemplate("{{ lipsum(1000000) }}", "", "").render(MESSAGES)
    with pytest.raises(Exception, match="unsafe"):
        BoundedTemplate("{{ messages.__class__.__mro__ }}", "", "").render(MESSAGES)


def test_the_bounds_leave_a_long_real_conversation_alone() -> None:
    """A 4 MiB message (the server's largest request body) renders whole."""
    long = [{"role": "user", "content": "word " * (2**22 // 5)}]
    source = templates.FALLBACKS["chatml"][0]
    assert BoundedTemplate(source, "", "").render(long).count("word") == 2**22 // 5


def test_chat_with_a_hostile_template_says_so_in_one_line(tmp_path: Path) -> None:
    model = write_model(tmp_path / "hostile.gguf", Shape(chat_template="{{ 'x' * 10000000000 }}"), quant="q8_0")
    done = edgellm("chat", "-m", str(model), "-n", "2", input="Hi\nHello again\n")
    assert "chat template was stopped" in done.stderr and "broken or hostile" in done.stderr
    assert done.stderr.count("chat template was stopped") == 2  # each message told, the chat went on
    assert "Traceback" not in done.stderr
