"""A JSON Schema `pattern` (an ECMA-262 regular expression) as GBNF for the text of a JSON string: the subset a
grammar can express. Literals and escapes (`\\d \\w \\s \\D \\W \\S`, `\\n \\t \\r \\f \\v \\0`, `\\xNN`, `\\uNNNN`, an
escaped punctuation mark), `.` (any character but a line break), classes with ranges and negation, groups `( )` and
`(?: )`, alternation, the quantifiers `* + ? {m} {m,} {m,n}` (a lazy `?` after one is read as greedy), `^` at the
start and `$` at the end of a top-level alternative. A pattern is unanchored, as the specification says: an
alternative without `^` may be preceded, one without `$` followed, by any text.

The characters are those of the decoded string, written as JSON: `"` and `\\` as `\\"` and `\\\\`, a control
character the pattern names (`\\n`, or within a class) as its JSON escape; `.`, a negated class and `\\D \\W \\S`
leave control characters out. Anything else (lookaround, backreferences, named groups, `\\b`, an anchor inside the
pattern, a quantifier on a quantifier, a repetition of a group that can match nothing, a count over 2000) raises
UnsupportedRegex naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgellm.errors import EdgellmError
from edgellm.grammar.gbnf import STRING_CHAR, Rules, char_class, literal

MAX_CODE_POINT = 0x10FFFF
MAX_REPEAT = 2000  # llama.cpp's grammar parser refuses (or, as a maximum, ignores) larger counts
CONTROLS = ((0x00, 0x1F),)
SURROGATES = (0xD800, 0xDFFF)
LINE_BREAKS = ((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029))
DIGITS = ((0x30, 0x39),)
WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
SPACES = (  # ECMA-262's \s: white space and line terminators
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)
JSON_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}
CONTROL_ESCAPES = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B}
CLASS_ESCAPES = {"d": DIGITS, "w": WORD, "s": SPACES}
REFUSED_ESCAPES = {
    "b": "a word boundary (\\b)",
    "B": "a non-word boundary (\\B)",
    "k": "a named backreference (\\k)",
    "p": "a Unicode property (\\p)",
    "P": "a Unicode property (\\P)",
    "c": "a control-letter escape (\\c)",
}


class UnsupportedRegex(EdgellmError):
    """A regular expression using a feature a grammar cannot express (`feature`), in `pattern`."""

    def __init__(self, pattern: str, feature: str) -> None:
        super().__init__(f"the pattern {pattern!r} uses {feature}, which a grammar cannot enforce")
        self.pattern, self.feature = pattern, feature


Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Chars:
    """One character out of a set: inclusive code point ranges, sorted and disjoint."""

    ranges: Ranges


@dataclass(frozen=True)
class Sequence:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alternatives:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    low: int
    high: int | None  # None: unbounded


@dataclass(frozen=True)
class Anchor:
    mark: str  # "^" or "$"


Node = Chars | Sequence | Alternatives | Repeat | Anchor


def normalized(ranges: list[tuple[int, int]] | Ranges) -> Ranges:
    """`ranges` sorted, with overlapping and touching ones merged."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def complement(ranges: Ranges) -> Ranges:
    """Every code point not in `ranges`."""
    result, start = [], 0
    for low, high in ranges:
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= MAX_CODE_POINT:
        result.append((start, MAX_CODE_POINT))
    return tuple(result)


def without(ranges: Ranges, removed: Ranges) -> Ranges:
    """The code points of `ranges` not in `removed`."""
    return complement(normalized(complement(ranges) + removed))


def negated(ranges: Ranges) -> Ranges:
    """What a negated class matches: the complement, less control characters and surrogates (never in a string)."""
    return without(complement(normalized(ranges)), CONTROLS + (SURROGATES,))


class _Parser:
    """A recursive-descent reader of one pattern into Nodes."""

    def __init__(self, pattern: str) -> None:
        self.pattern, self.pos = pattern, 0

    def refuse(self, feature: str) -> UnsupportedRegex:
        return UnsupportedRegex(self.pattern, feature)

    def peek(self, text: str) -> bool:
        return self.pattern.startswith(text, self.pos)

    def parse(self) -> Node:
        node = self.alternatives()
        if self.pos < len(self.pattern):
            raise self.refuse("an unmatched ')'")
        return node

    def alternatives(self) -> Node:
        options = [self.sequence()]
        while self.peek("|"):
            self.pos += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Alternatives(tuple(options))

    def sequence(self) -> Node:
        items: list[Node] = []
        while self.pos < len(self.pattern) and self.pattern[self.pos] not in "|)":
            atom = self.atom()
            quantity = self.quantifier()
            if quantity is not None:
                if isinstance(atom, Anchor):
                    raise self.refuse("a quantifier on an anchor")
                if self.peek("?"):  # lazy: the same strings, matched greedily
                    self.pos += 1
                if (self.pos < len(self.pattern) and self.pattern[self.pos] in "*+?") or self.count() is not None:
                    raise self.refuse("a quantifier on a quantifier (a possessive quantifier)")
                atom = Repeat(atom, *quantity)
            items.append(atom)
        return items[0] if len(items) == 1 else Sequence(tuple(items))

    def count(self) -> tuple[int, int | None] | None:
        """A `{m}`, `{m,}` or `{m,n}` at the position (not consumed), else None."""
        found = re.compile(r"\{(\d+)(,(\d*))?\}").match(self.pattern, self.pos)
        if found is None:
            return None
        low = int(found.group(1))
        high = low if found.group(2) is None else int(found.group(3)) if found.group(3) else None
        return low, high

    def quantifier(self) -> tuple[int, int | None] | None:
        if self.pos >= len(self.pattern):
            return None
        char = self.pattern[self.pos]
        simple = {"*": (0, None), "+": (1, None), "?": (0, 1)}
        if char in simple:
            self.pos += 1
            return simple[char]
        counted = self.count()
        if counted is None:
            return None
        self.pos = self.pattern.index("}", self.pos) + 1
        low, high = counted
        if high is not None and high < low:
            raise self.refuse(f"the count {{{low},{high}}}, whose maximum is below its minimum")
        if max(low, high or 0) > MAX_REPEAT:
            raise self.refuse(f"a count over {MAX_REPEAT}")
        return counted

    def atom(self) -> Node:
        char = self.pattern[self.pos]
        self.pos += 1
        if char == "(":
            return self.group()
        if char == "[":
            return Chars(self.char_class())
        if char == ".":
            return Chars(without(complement(normalized(LINE_BREAKS)), CONTROLS + (SURROGATES,)))
        if char == "\\":
            return self.escape()
        if char in "^$":
            return Anchor(char)
        if char in "*+?" or (char == "{" and self.count_at(self.pos - 1)):
            raise self.refuse(f"a quantifier with nothing to repeat ({char!r})")
        return Chars(((ord(char), ord(char)),))

    def count_at(self, pos: int) -> bool:
        saved, self.pos = self.pos, pos
        try:
            return self.count() is not None
        finally:
            self.pos = saved

    def group(self) -> Node:
        if self.peek("?"):
            if not self.peek("?:"):
                kinds = {"?=": "a lookahead", "?!": "a lookahead", "?<=": "a lookbehind", "?<!": "a lookbehind"}
                kind = next((name for mark, name in kinds.items() if self.peek(mark)), None)
                raise self.refuse(kind or "a named group or inline flags ('(?')")
            self.pos += 2
        node = self.alternatives()
        if not self.peek(")"):
            raise self.refuse("an unclosed '('")
        self.pos += 1
        return node

    def char_class(self) -> Ranges:
        negate = self.peek("^")
        self.pos += int(negate)
        ranges: list[tuple[int, int]] = []
        while not self.peek("]"):
            if self.pos >= len(self.pattern):
                raise self.refuse("an unclosed '['")
            start = self.class_atom()
            if self.peek("-") and not self.pattern.startswith("-]", self.pos) and isinstance(start, int):
                self.pos += 1
                end = self.class_atom()
                if not isinstance(end, int):  # [a-\d]: the '-' is a character
                    ranges += [(start, start), (0x2D, 0x2D), *end]
                    continue
                if end < start:
                    raise self.refuse(f"the range {chr(start)!r}-{chr(end)!r}, out of order")
                ranges.append((start, end))
            elif isinstance(start, int):
                ranges.append((start, start))
            else:
                ranges += start
        self.pos += 1
        found = negated(tuple(ranges)) if negate else normalized(ranges)
        if not found:
            raise self.refuse("a character class that matches no character")
        return found

    def class_atom(self) -> int | Ranges:
        """One character of a class (its code point) or a class escape such as \\d (its ranges)."""
        char = self.pattern[self.pos]
        self.pos += 1
        if char != "\\":
            return ord(char)
        if self.peek("b"):  # inside a class, \b is the backspace
            self.pos += 1
            return 0x08
        escaped = self.escape()
        assert isinstance(escaped, Chars)
        ranges = escaped.ranges
        return ranges[0][0] if len(ranges) == 1 and ranges[0][0] == ranges[0][1] else ranges

    def escape(self) -> Chars:
        if self.pos >= len(self.pattern):
            raise self.refuse("a '\\' at the end")
        char = self.pattern[self.pos]
        self.pos += 1
        if char.lower() in CLASS_ESCAPES:
            ranges = normalized(CLASS_ESCAPES[char.lower()])
            return Chars(negated(ranges) if char.isupper() else ranges)
        if char in CONTROL_ESCAPES:
            return self.single(CONTROL_ESCAPES[char])
        if char == "0" and not (self.pos < len(self.pattern) and self.pattern[self.pos].isdigit()):
            return self.single(0)
        if char in "123456789":
            raise self.refuse("a backreference (\\" + char + ")")
        if char in REFUSED_ESCAPES:
            raise self.refuse(REFUSED_ESCAPES[char])
        if char == "x":
            return self.single(self.hex(2))
        if char == "u":
            code = self.hex(4)
            if 0xD800 <= code <= 0xDBFF and self.peek("\\u"):  # a surrogate pair: one character
                self.pos += 2
                low = self.hex(4)
                if 0xDC00 <= low <= 0xDFFF:
                    return self.single(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
                code = low
            if 0xD800 <= code <= 0xDFFF:
                raise self.refuse("a lone UTF-16 surrogate (\\u" + f"{code:04X})")
            return self.single(code)
        if char.isalnum():
            raise self.refuse(f"the unknown escape \\{char}")
        return self.single(ord(char))

    def single(self, code: int) -> Chars:
        return Chars(((code, code),))

    def hex(self, digits: int) -> int:
        text = self.pattern[self.pos : self.pos + digits]
        if len(text) != digits or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise self.refuse(f"a malformed hex escape (expected {digits} hex digits)")
        self.pos += digits
        return int(text, 16)


def parse(pattern: str) -> Node:
    """The pattern as Nodes (anchors included, where they stand); UnsupportedRegex for what a grammar cannot do."""
    return _Parser(pattern).parse()


def nullable(node: Node) -> bool:
    """Whether `node` can match the empty string."""
    if isinstance(node, Chars):
        return False
    if isinstance(node, Anchor):
        return True
    if isinstance(node, Sequence):
        return all(nullable(item) for item in node.items)
    if isinstance(node, Alternatives):
        return any(nullable(option) for option in node.options)
    return node.low == 0 or nullable(node.item)


class _Writer:
    """Nodes as GBNF over a JSON string's text, repeated groups as rules of `rules` (named after `name`)."""

    def __init__(self, pattern: str, rules: Rules, name: str) -> None:
        self.pattern, self.rules, self.name = pattern, rules, name

    def write(self, node: Node) -> str:
        if isinstance(node, Chars):
            return self.chars(node.ranges)
        if isinstance(node, Anchor):
            raise UnsupportedRegex(self.pattern, f"an anchor ({node.mark}) inside the pattern")
        if isinstance(node, Sequence):
            return _joined([self.write(item) for item in node.items])
        if isinstance(node, Alternatives):
            return "( " + " | ".join(self.write(option) for option in node.options) + " )"
        return self.repeat(node)

    def repeat(self, node: Repeat) -> str:
        if node.high is None and nullable(node.item):  # llama.cpp would see left recursion
            raise UnsupportedRegex(self.pattern, "an unbounded repetition of something that can match nothing")
        if node.high == 0:
            return '""'
        body = self.write(node.item)
        atom = body if _is_atom(body) else self.rules.add(f"{self.name}-part", body)
        return atom + quantifier(node.low, node.high)

    def chars(self, ranges: Ranges) -> str:
        """One character of `ranges` as JSON text writes it: raw where it may, escaped where it must."""
        raw = without(ranges, CONTROLS + ((0x22, 0x22), (0x5C, 0x5C), SURROGATES))
        escaped = [code for low, high in ranges for code in range(low, min(high, 0x7F) + 1) if _must_escape(code)]
        options = [literal(_json_escape(code)) for code in escaped]
        if raw:
            outside = without(complement(raw), (SURROGATES,))  # UTF-8 text holds no surrogate: no need to list them
            if raw == ((raw[0][0], raw[0][0]),):
                options.insert(0, literal(chr(raw[0][0])))
            elif len(outside) <= len(raw):
                options.insert(0, char_class(list(outside), negated=True))
            else:
                options.insert(0, char_class(list(raw)))
        return options[0] if len(options) == 1 else "( " + " | ".join(options) + " )"


def _joined(parts: list[str]) -> str:
    """GBNF expressions in sequence, adjacent string literals merged into one."""
    merged: list[str] = []
    for part in parts:
        if part == '""':
            continue
        if merged and _is_literal(merged[-1]) and _is_literal(part):
            merged[-1] = merged[-1][:-1] + part[1:]
        else:
            merged.append(part)
    return " ".join(merged) or '""'


def _is_literal(expression: str) -> bool:
    return bool(re.fullmatch(r'"([^"\\]|\\.)*"', expression))


def _must_escape(code: int) -> bool:
    return code < 0x20 or code in (0x22, 0x5C)


def _json_escape(code: int) -> str:
    return JSON_ESCAPES.get(code, f"\\u{code:04x}")


def _is_atom(expression: str) -> bool:
    """Whether a GBNF expression is one symbol a quantifier may follow: a literal, a class or a rule name."""
    return bool(re.fullmatch(r'"([^"\\]|\\.)*"|\[([^\]\\]|\\.)*\]|[a-zA-Z0-9-]+', expression))


def quantifier(low: int, high: int | None) -> str:
    """The GBNF quantifier for `low` to `high` (None: unbounded) repetitions."""
    if (low, high) == (0, None):
        return "*"
    if (low, high) == (1, None):
        return "+"
    if (low, high) == (0, 1):
        return "?"
    if high == low:
        return f"{{{low}}}"
    return f"{{{low},}}" if high is None else f"{{{low},{high}}}"


def pattern_gbnf(pattern: str, rules: Rules, name: str = "pattern") -> str:
    """A GBNF expression for the text (between the quotes) of a JSON string that `pattern` matches; rules it needs
    are added to `rules`, named after `name`. UnsupportedRegex for a feature a grammar cannot express."""
    tree = parse(pattern)
    branches = tree.options if isinstance(tree, Alternatives) else (tree,)
    any_text = rules.add("char", STRING_CHAR) + "*"
    writer = _Writer(pattern, rules, name)
    written = []
    for branch in branches:
        items = list(branch.items) if isinstance(branch, Sequence) else [branch]
        starts = bool(items) and items[0] == Anchor("^")
        ends = len(items) > int(starts) and items[-1] == Anchor("$")
        core = items[int(starts) : len(items) - int(ends)]
        body = writer.write(Sequence(tuple(core)))
        if body == '""' and not (starts and ends):
            parts = [any_text]
        else:
            parts = ([] if starts else [any_text]) + [body] + ([] if ends else [any_text])
        written.append(" ".join(part for part in parts if part != '""') or '""')
    return written[0] if len(written) == 1 else "( " + " | ".join(written) + " )"
