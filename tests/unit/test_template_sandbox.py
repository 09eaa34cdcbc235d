"""The chat template's bounded sandbox: a template that would hang, fill the memory or reach Python's insides is
stopped, quickly and without allocating what it asked for, and a long real conversation is left alone. That real
templates render exactly as llama-cpp-python renders them: tests/integration/test_template_sandbox.py."""

from __future__ import annotations

import tracemalloc

import pytest

from edgellm.templates import chat as templates
from edgellm.templates import sandbox
from edgellm.templates.sandbox import BoundedTemplate, TemplateLimit
from tests.support.chat_templates import MESSAGES, TOOLS_STYLE


def test_raise_exception_still_refuses() -> None:
    with pytest.raises(ValueError, match="unknown role tool"):
        BoundedTemplate(TOOLS_STYLE, "", "").render(MESSAGES + [{"role": "tool", "content": "42"}])


HOSTILE = {
    "repeat": ("{{ 'x' * 10000000000 }}", "10,000,000,000 characters"),
    "power": ("{{ 10 ** 100000000 }}", "bits"),
    "tower": ("{{ (((10 ** 64) ** 64) ** 64) ** 64 }}", "bits"),
    "product": ("{% set n = 10 ** 4000 %}{{ n * n * n * n * n * n }}", "bits"),
    "doubling": (
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "items, more than",
    ),
    "adding": (
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "items, more than",
    ),
    "width": ("{{ 'a' | center(10000000000) }}", "10,000,000,000"),
    "method width": ("{{ 'a'.ljust(10000000000) }}", "10,000,000,000"),
    "format width": ("{{ '%10000000000d' % 1 }}", "10,000,000,0"),
    "format spec": ("{{ '{:10000000000}'.format(1) }}", "10,000,000,0"),
    "star width": ("{{ '%*s' % (10000000000, 'x') }}", "items, more than"),
    "nested width": ("{{ '{:{w}}'.format('x', w=10000000000) }}", "items, more than"),
    "repeated field": ("{% set s = 'x' * 10000000 %}{{ ('{0}' * 100).format(s) }}", "items, more than"),
    "nested list": ("{% set s = 'x' * 10000000 %}{{ [s] * 100 }}", "items, more than"),
    "join a generator": (
        "{% set s = 'x' * 10000000 %}{{ ([s] * 5) | map('string') | join(s * 2) }}",
        "items, more than",
    ),
    "set block": ("{% set s = 'x' * 40000000 %}{% set b %}{{ s }}{{ s }}{% endset %}", "items, more than"),
    "macro": ("{% set s = 'x' * 40000000 %}{% macro m() %}{{ s }}{{ s }}{% endmacro %}{{ m() }}", "items, more than"),
    "many under the bound": (
        "{% set s = 'ab ' * 10000000 %}{% for i in range(20) %}{% set p = s.upper() %}{% endfor %}",
        "in all",
    ),
    "folded at compile time": ("{% set a = ' ' | center(10000000) | list %}", "items, more than"),
    "replace": ("{{ ('a' * 1000000).replace('', 'x' * 100) }}", "items, more than"),
    "indent": ("{{ ('a\n' * 1000000) | indent(1000) }}", "items, more than"),
    "join": ("{{ ('y' * 10000000).join(['a', 'b', 'c', 'd', 'e', 'f', 'g']) }}", "items, more than"),
    "expandtabs": ("{{ ('\t' * 1000000).expandtabs(100000) }}", "items, more than"),
    "output": (
        "{% set s = 'x' * 1000 %}{% for i in range(100000) %}{% for j in range(100) %}{{ s }}{% endfor %}{% endfor %}",
        "items, more than",
    ),
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
        BoundedTemplate(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "", ""
        ).render(MESSAGES)


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
