"""The pieces of GBNF text (llama.cpp's grammar format) the converters write with: string literals, character
classes, and `Rules`, the named rules of one grammar in the order they were added."""

from __future__ import annotations

import re

# escapes llama.cpp's grammar parser reads inside "..." and [...]: \t \r \n \\ \" \[ \] \- and \xNN \uNNNN \UNNNNNNNN
_SHORT_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\"}


def _escape(char: str, specials: str) -> str:
    """One character as GBNF writes it: `specials` backslash-escaped, control and unprintable characters as hex."""
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if char in specials:
        return "\\" + char
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02X}"
    if char.isprintable() or char == " ":
        return char
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def literal(text: str) -> str:
    """`text` as a GBNF string literal: `"..."`, with `"` and `\\` escaped, control characters as \\xNN."""
    return '"' + "".join(_escape(char, '"') for char in text) + '"'


def class_char(char: str) -> str:
    """One character as it is written inside a GBNF character class `[...]`."""
    return "\\x5E" if char == "^" else _escape(char, '"[]-')  # llama.cpp reads no \^


def char_class(ranges: list[tuple[int, int]], negated: bool = False) -> str:
    """A GBNF character class of the inclusive code point `ranges` (`[^...]` when `negated`)."""
    parts = []
    for low, high in ranges:
        parts.append(class_char(chr(low)))
        if high > low + 1:
            parts.append("-")
        if high > low:
            parts.append(class_char(chr(high)))
    return "[" + ("^" if negated else "") + "".join(parts) + "]"


def rule_name(text: str) -> str:
    """`text` as a rule name: letters, digits and `-` only (anything else becomes `-`); never empty."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-zA-Z0-9-]", "-", text)).strip("-")
    return name or "r"


class Rules:
    """The named rules of one grammar, in the order they were first named. A body added twice under two names keeps
    the first name; a name taken by another body gets a numeric suffix (`item`, `item-2`, ...)."""

    def __init__(self) -> None:
        self._bodies: dict[str, str | None] = {}  # None: reserved, its body still to come
        self._names_by_body: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        """The name of a rule `body` (an existing rule's when one has that body): `name`, sanitized, made unique."""
        if body in self._names_by_body:
            return self._names_by_body[body]
        unique = self.reserve(name)
        self.define(unique, body)
        return unique

    def reserve(self, name: str) -> str:
        """A fresh name like `name` for a rule whose body comes later (`define`): how a rule refers to itself."""
        base = rule_name(name)
        unique, number = base, 1
        while unique in self._bodies or unique == "root":
            number += 1
            unique = f"{base}-{number}"
        self._bodies[unique] = None
        return unique

    def define(self, name: str, body: str) -> None:
        """Give the reserved rule `name` its `body`."""
        if self._bodies.get(name, "") is not None:
            raise ValueError(f"rule {name} was not reserved or is already defined")
        self._bodies[name] = body
        self._names_by_body.setdefault(body, name)

    def text(self, root_body: str) -> str:
        """The whole grammar: `root ::= root_body` first, then every rule, one a line."""
        missing = [name for name, body in self._bodies.items() if body is None]
        if missing:
            raise ValueError(f"rules reserved but never defined: {', '.join(missing)}")
        lines = [f"root ::= {root_body}"] + [f"{name} ::= {body}" for name, body in self._bodies.items()]
        return "\n".join(lines) + "\n"


# one character of a JSON string's text: any but `"`, `\` and the control characters, or an escape (a \u escape of
# a UTF-16 surrogate is left out: it would count as two characters where the decoded string has one)
STRING_CHAR = (
    '[^"\\\\\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" '
    "( [0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} ) )"
)


def text_without(stop: str) -> str:
    """A GBNF expression for any text in which `stop` does not begin (before a `stop` that ends it): each character,
    or a partial `stop` followed by a character that leaves it. For a reasoning block (`</think>`) or a raw XML
    value (`\n</parameter>`)."""
    alternatives = []
    for length in range(len(stop)):
        prefix = literal(stop[:length]) + " " if length else ""
        alternatives.append(f"{prefix}{char_class([(ord(stop[length]), ord(stop[length]))], negated=True)}")
    return "( " + " | ".join(alternatives) + " )*"


THINK_BODY = text_without("</think>")


def after_reasoning(gbnf: str, starts_in_reasoning: bool) -> str:
    """`gbnf` (its `root` first) with room for a reasoning block before it: the model thinks free and the grammar
    holds from its answer on; `starts_in_reasoning`: the prompt opened the block, the reply only closes it."""
    body, _, rest = gbnf.partition("\n")
    answer = body.split("::=", 1)[1].strip()
    think = f'{THINK_BODY} "</think>"' if starts_in_reasoning else f'( "<think>" {THINK_BODY} "</think>" )?'
    return f"root ::= {think} [ \t\n]* ( {answer} )\n{rest}"
