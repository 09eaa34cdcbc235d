"""The chat template's bounded sandbox: real templates render exactly as llama-cpp-python renders them; a template
that would hang, fill the memory or reach Python's insides is stopped, quickly and without allocating what it
asked for."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from conftest import edgellm
from edgellm.templates import chat as templates, sandbox
from edgellm.templates.sandbox import BoundedTemplate, TemplateLimit
from edgellm.convert.tinymodel import Shape, write_model

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


@pytest.mark.parametrize("source", [source for source, _ in templates.FALLBACKS.values()] + [TOOLS_STYLE],
                         ids=list(templates.FALLBACKS) + ["tools-style"])
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


def test_raise_exception_still_refuses() -> None:
    with pytest.raises(ValueError, match="unknown role tool"):
        BoundedTemplate(TOOLS_STYLE, "", "").render(MESSAGES + [{"role": "tool", "content": "42"}])


HOSTILE = {
    "repeat": ("{{ 'x' * 10000000000 }}", "10,000,000,000 characters"),
    "power": ("{{ 10 ** 100000000 }}", "bits"),
    "tower": ("{{ (((10 ** 64) ** 64) ** 64) ** 64 }}", "bits"),
    "product": ("{% set n = 10 ** 4000 %}{{ n * n * n * n * n * n }}", "bits"),
    "doubling": ("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 "items, more than"),
    "adding": ("{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
               "items, more than"),
    "width": ("{{ 'a' | center(10000000000) }}", "10,000,000,000"),
    "method width": ("{{ 'a'.ljust(10000000000) }}", "10,000,000,000"),
    "format width": ("{{ '%10000000000d' % 1 }}", "10,000,000,0"),
    "format spec": ("{{ '{:10000000000}'.format(1) }}", "10,000,000,0"),
    "star width": ("{{ '%*s' % (10000000000, 'x') }}", "items, more than"),
    "nested width": ("{{ '{:{w}}'.format('x', w=10000000000) }}", "items, more than"),
    "repeated field": ("{% set s = 'x' * 10000000 %}{{ ('{0}' * 100).format(s) }}", "items, more than"),
    "nested list": ("{% set s = 'x' * 10000000 %}{{ [s] * 100 }}", "items, more than"),
    "join a generator": ("{% set s = 'x' * 10000000 %}{{ ([s] * 5) | map('string') | join(s * 2) }}", "items, more than"),
    "set block": ("{% set s = 'x' * 40000000 %}{% set b %}{{ s }}{{ s }}{% endset %}", "items, more than"),
    "macro": ("{% set s = 'x' * 40000000 %}{% macro m() %}{{ s }}{{ s }}{% endmacro %}{{ m() }}", "items, more than"),
    "many under the bound": ("{% set s = 'ab ' * 10000000 %}{% for i in range(20) %}{% set p = s.upper() %}"
                             "{% endfor %}", "in all"),
    "folded at compile time": ("{% set a = ' ' | center(10000000) | list %}", "items, more than"),
    "replace": ("{{ ('a' * 1000000).replace('', 'x' * 100) }}", "items, more than"),
    "indent": ("{{ ('a\n' * 1000000) | indent(1000) }}", "items, more than"),
    "join": ("{{ ('y' * 10000000).join(['a', 'b', 'c', 'd', 'e', 'f', 'g']) }}", "items, more than"),
    "expandtabs": ("{{ ('\t' * 1000000).expandtabs(100000) }}", "items, more than"),
    "output": ("{% set s = 'x' * 1000 %}{% for i in range(100000) %}{% for j in range(100) %}{{ s }}{% endfor %}"
               "{% endfor %}", "items, more than"),
    "slices": ("{{ messages | slice(100000000) | list | length }}", "items, more than"),
    "list": ("{{ (messages * 100000000) | length }}", "items, more than"),
    "characters": ("{{ ('x' * 10000000) | list | length }}", "items, more than"),
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
    assert peak < 2 * sandbox.MAX_TEXT  # nothing near what was asked for: refused before it was built


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


LLAMA_CPP_TEMPLATES = (Path.home() / ".cache" / "edgellm" / "llama-cpp-src" / "0.3.36" / "src" / "vendor" / "llama.cpp"
                       / "models" / "templates")


@pytest.mark.skipif(not LLAMA_CPP_TEMPLATES.is_dir(), reason="llama.cpp's source is not cached here (the benchmarks "
                    "and packaging/build_binary.py --portable fetch it)")
def test_the_real_templates_llama_cpp_ships_render_as_llama_cpp_python_renders_them() -> None:
    """Every chat template of llama.cpp's models/templates, with tools and a 4 MiB message: the same text, or the
    same refusal, as llama-cpp-python's unbounded sandbox gives."""
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = MESSAGES[:-1] + [{"role": "user", "content": "word " * (2**22 // 5)}]
    checked = 0
    for path in sorted(LLAMA_CPP_TEMPLATES.glob("*.jinja")):
        source = path.read_text()
        try:
            theirs = Jinja2ChatFormatter(source, eos_token="</s>", bos_token="<s>")(messages=messages,
                                                                                    tools=tools).prompt
        except Exception as error:  # noqa: BLE001 - a template that refuses these messages
            with pytest.raises(type(error)):
                BoundedTemplate(source, "<s>", "</s>").render(messages, tools=tools)
            continue
        assert BoundedTemplate(source, "<s>", "</s>").render(messages, tools=tools) == theirs, path.name
        checked += 1
    assert checked > 20
