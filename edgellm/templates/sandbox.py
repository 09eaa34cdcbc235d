"""A chat template's sandbox with bounds: a template inside a downloaded GGUF is someone else's code.

Jinja's immutable sandbox (llama-cpp-python's fix for CVE-2024-34359, and what transformers renders with) keeps
Python's insides out of reach, but bounds no work: two nested `range(100000)` loops hang the app, and
`'x' * 10**10` or `ns.s ~ ns.s` forty times fills the memory. Here each render also stops with `TemplateLimit`
when it runs past RENDER_SECONDS (checked at every loop step, call, operator and output piece), when any text or
list it builds, or its output, would pass MAX_TEXT items, when all it builds passes RENDER_BUDGET, or when a number
would pass MAX_INT_BITS. The environment matches llama-cpp-python's (trim and
lstrip blocks, loop controls, `{% generation %}` passed through, transformers' `tojson`), so a template renders
the same text as it does there.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.runtime
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

RENDER_SECONDS = 10.0  # a real template renders a long conversation in milliseconds
MAX_TEXT = 64 * 2**20  # characters (or list items): above the server's largest request body
RENDER_BUDGET = 4 * MAX_TEXT  # all that one render builds
MAX_INT_BITS = 2**16  # a number of 20,000 digits: far beyond any template's arithmetic
ITEM_COST = 8  # a list item counts as 8 characters: the pointer that holds it

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline", default=float("inf"))
_spent: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("template_spent", default=None)


class TemplateLimit(Exception):
    """A render that ran too long or built too much; the message says which bound it passed."""


def _check_time() -> None:
    if time.monotonic() > _deadline.get():
        raise TemplateLimit(f"it ran for more than {RENDER_SECONDS:g} s")


def _size(value: Any, limit: int = MAX_TEXT) -> int:
    """Characters in `value`, and ITEM_COST for each item of its lists and dicts (nested too), until past `limit`."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple, dict)):
        return 0
    total = ITEM_COST * len(value)
    for item in value.items() if isinstance(value, dict) else value:
        if total > limit:
            break
        total += _size(item, limit - total)
    return total


def _check_size(size: int) -> None:
    if size > MAX_TEXT:
        raise TemplateLimit(f"it would build {size:,} characters or items, more than {MAX_TEXT:,}")


def _spend(size: int) -> None:
    """Count what a render has built so far: many texts each under the bound must not add up to gigabytes."""
    spent = _spent.get()
    if spent is None:  # not inside a render
        return
    spent[0] += size
    if spent[0] > RENDER_BUDGET:
        raise TemplateLimit(f"it built more than {RENDER_BUDGET:,} characters or items in all")


def _expected_size(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """An upper bound on the size of what a growing call (`replace`, `indent`, `join`, `center`...) returns,
    checked before the call allocates it. `value` is the text or list worked on (a filter's first argument, a
    method's object); Jinja's own keywords (`_loop_vars`, `_block_vars`) are not arguments."""
    arguments = [a for a in args if a is not value] + [v for k, v in kwargs.items() if not k.startswith("_")]
    ints = [a for a in arguments if isinstance(a, int) and not isinstance(a, bool)]
    texts = [a for a in arguments if isinstance(a, str)]
    size = _size(value)
    if name == "join":
        items = next((a for a in arguments if isinstance(a, (list, tuple))), value)
        separator = value if isinstance(value, str) else (texts or [""])[0]
        if not isinstance(items, (list, tuple, str, dict)):
            return 0
        return sum(_size(item) + 1 for item in items) + len(separator) * len(items)
    if name in ("format", "format_map"):  # every field may take the largest argument, at any width written
        strings = [text for text in (value, *arguments) if isinstance(text, str)]
        fields = max(1, sum(text.count("{") + text.count("%") for text in strings))
        widths = [int(digits) for text in strings for digits in WIDTH.findall(text)] + ints  # also '%*s', '{:{w}}'
        return size + fields * max([0] + [_size(a) for a in arguments]) + sum(widths)
    if name == "list":  # a text becomes a list of its characters
        return ITEM_COST * (len(value) if isinstance(value, str) else size)
    if name == "replace":
        old, new = (texts + ["", ""])[:2]
        return size + max(len(new) - len(old), 0) * (size // len(old) if old else size + 1)
    if name in ("center", "ljust", "rjust", "zfill"):
        return max([size] + ints)
    if name in ("indent", "expandtabs"):
        where = (value.count("\n") + 1) if name == "indent" else value.count("\t")
        step = max(ints + [len(t) for t in texts] + [8])
        return size + (where * step if isinstance(value, str) else 0)
    if name in ("slice", "batch"):
        return ITEM_COST * (size + max(ints + [0]))
    return 2 * size + max(ints + [0])  # wordwrap: a line break at most every other character


WIDTH = re.compile(r"(?<![0-9])[0-9]{1,15}(?![0-9])")
GROWING = {
    "list",
    "replace",
    "indent",
    "join",
    "center",
    "ljust",
    "rjust",
    "zfill",
    "expandtabs",
    "wordwrap",
    "format",
    "format_map",
    "slice",
    "batch",
}


def _bounded(name: str, function: Callable[..., Any], value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call `function`, refusing first what would grow past MAX_TEXT, and checking what it returns."""
    _check_time()
    if name == "join":  # a generator's items are counted before they are joined
        args = tuple(list(a) if isinstance(a, Iterator) else a for a in args)
        value = next((a for a in args if isinstance(a, list)), value) if not isinstance(value, str) else value
    if name in GROWING:
        _check_size(_expected_size(name, value, args, kwargs))
    result = function(*args, **kwargs)
    size = _size(result)
    _check_size(size)
    _spend(size)
    return result


class _Bounds(NodeTransformer):
    """Puts every loop's iterable and every `~` concatenation through the environment's bounded versions."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("bounded_iterable"), [node.iter], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.EnvironmentAttribute("bounded_concat"),
            [nodes.Tuple(node.nodes, "load")],
            [],
            None,
            None,
            lineno=node.lineno,
        )


class _Steps:
    """An iterable that checks the deadline at every step; its length is the wrapped one's (for `loop.length`)."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        for item in self._iterable:
            _check_time()
            yield item


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}` tag, rendered as its content."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """transformers' `tojson`: not HTML-escaped, unicode kept."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every loop, call, filter, growing operator and concatenation bounded."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        # optimized=False: Jinja's optimizer runs filters on constants at compile time, outside every bound
        super().__init__(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            optimized=False,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        self.concat = self.bounded_concat  # type: ignore[method-assign]  # jinja's concat, bounded
        self.globals.pop("lipsum", None)  # lipsum(n) builds n paragraphs at once; no chat template uses it
        self.filters["tojson"] = _tojson
        for name, function in list(self.filters.items()):
            self.filters[name] = self._bounded_filter(name, function)

    @staticmethod
    def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)  # keeps jinja's pass_context/pass_environment marks
        def bounded(*args: Any, **kwargs: Any) -> Any:
            value = next(
                (
                    a
                    for a in args
                    if not isinstance(a, (jinja2.runtime.Context, jinja2.Environment, jinja2.nodes.EvalContext))
                ),
                None,
            )
            return _bounded(name, function, value, args, kwargs)

        return bounded

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        bounded: nodes.Template = _Bounds().visit(super()._parse(source, name, filename))
        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "")
        receiver = getattr(__obj, "__self__", getattr(getattr(__obj, "__wrapped__", None), "__self__", None))
        return _bounded(
            name,
            lambda *a, **k: super(BoundedEnvironment, __self).call(__context, __obj, *a, **k),
            receiver,
            args,
            kwargs,
        )

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        _check_time()
        if operator_name == "+" and type(left) is str and type(right) is str:  # the common case, kept quick
            _check_size(len(left) + len(right))
            _spend(len(left) + len(right))
            return left + right
        if operator_name in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            bits = (
                abs(left).bit_length() * abs(right)
                if operator_name == "**"
                else abs(left).bit_length() + abs(right).bit_length()
            )
            if bits > MAX_INT_BITS:
                raise TemplateLimit(f"it would compute a number of {bits:,} bits")
        elif operator_name == "*" and isinstance(left, int) != isinstance(right, int):
            sequence, count = (right, left) if isinstance(left, int) else (left, right)
            _check_size(_size(sequence) * max(count, 0))
        elif operator_name == "+":
            _check_size(_size(left) + _size(right))
        elif operator_name == "%" and isinstance(left, str):
            _check_size(_expected_size("format", left, (right,) if not isinstance(right, tuple) else right, {}))
        result = super().call_binop(context, operator_name, left, right)
        size = _size(result)
        _check_size(size)
        _spend(size)
        return result

    def bounded_iterable(self, iterable: Iterable[Any]) -> _Steps:
        return _Steps(iterable)

    def bounded_concat(self, parts: Iterable[Any]) -> str:
        """`~`, and the text of `{% set %}` blocks, macros and filter blocks (Jinja's `concat`)."""
        pieces, size = [], 0
        for part in parts:
            piece = str(part)
            size += len(piece)
            _check_size(size)
            pieces.append(piece)
        _spend(size)
        return "".join(pieces)


_ENVIRONMENT = BoundedEnvironment()


def _raise_exception(message: str) -> None:
    raise ValueError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class BoundedTemplate:
    """A compiled chat template with its special tokens; calling it renders one conversation within the bounds."""

    def __init__(self, source: str, bos_token: str, eos_token: str, add_generation_prompt: bool = True) -> None:
        self._template = _ENVIRONMENT.from_string(source)
        self._variables = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "raise_exception": _raise_exception,
            "add_generation_prompt": add_generation_prompt,
            "strftime_now": _strftime_now,
            "tools": None,
            "tool_choice": None,
            "functions": None,
            "function_call": None,
        }

    def render(self, messages: list[dict[str, Any]], **variables: Any) -> str:
        token, spent = _deadline.set(time.monotonic() + RENDER_SECONDS), _spent.set([0])
        try:
            pieces, size = [], 0
            for piece in self._template.generate(messages=messages, **{**self._variables, **variables}):
                size += len(piece)
                _check_size(size)
                _check_time()
                pieces.append(piece)
            return "".join(pieces)
        finally:
            _deadline.reset(token)
            _spent.reset(spent)
