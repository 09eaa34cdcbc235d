"""A small GBNF recognizer for tests: `matches(grammar_text, string)` says whether rule `root` of a grammar (llama.cpp's
format: literals, classes, `.`, groups, rule names, `* + ? {m} {m,} {m,n}`, `#` comments) matches the whole string.

It reads the grammar as llama.cpp's parser does (a rule ends at a newline outside parentheses) and matches by sets of
end positions, memoized per rule and position: every parse is tried, so ambiguity costs time, not correctness."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Chars:
    ranges: tuple[tuple[int, int], ...]
    negated: bool

    def has(self, char: str) -> bool:
        inside = any(low <= ord(char) <= high for low, high in self.ranges)
        return inside != self.negated


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple[object, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Seq, ...]


@dataclass(frozen=True)
class Rep:
    item: object
    low: int
    high: int | None


ANY = Chars((), negated=True)
ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}


class GrammarSyntaxError(ValueError):
    pass


def _is_name_char(char: str) -> bool:
    return (char.isascii() and char.isalnum()) or char == "-"


class _Reader:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def space(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "#":
                while self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
                    self.pos += 1
            elif char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            else:
                break

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        if self.pos == start:
            raise GrammarSyntaxError(f"expecting a name at {self.text[start : start + 30]!r}")
        return self.text[start : self.pos]

    def char(self) -> str:
        if self.pos >= len(self.text):
            raise GrammarSyntaxError("unexpected end")
        char = self.text[self.pos]
        if char != "\\":
            self.pos += 1
            return char
        kind = self.text[self.pos + 1]
        if kind in ESCAPES:
            self.pos += 2
            return ESCAPES[kind]
        size = {"x": 2, "u": 4, "U": 8}.get(kind)
        if size is None:
            raise GrammarSyntaxError(f"unknown escape at {self.text[self.pos : self.pos + 10]!r}")
        digits = self.text[self.pos + 2 : self.pos + 2 + size]
        self.pos += 2 + size
        return chr(int(digits, 16))

    def rules(self) -> dict[str, Alt]:
        rules: dict[str, Alt] = {}
        self.space(newlines=True)
        while self.pos < len(self.text):
            name = self.name()
            self.space(newlines=False)
            if not self.text.startswith("::=", self.pos):
                raise GrammarSyntaxError(f"expecting ::= after {name}")
            self.pos += 3
            self.space(newlines=True)
            if name in rules:
                raise GrammarSyntaxError(f"rule {name} defined twice")
            rules[name] = self.alternatives(nested=False)
            if self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
                raise GrammarSyntaxError(f"expecting the end of rule {name} at {self.text[self.pos : self.pos + 30]!r}")
            self.space(newlines=True)
        return rules

    def alternatives(self, nested: bool) -> Alt:
        options = [self.sequence(nested)]
        while self.pos < len(self.text) and self.text[self.pos] == "|":
            self.pos += 1
            self.space(newlines=True)
            options.append(self.sequence(nested))
        return Alt(tuple(options))

    def sequence(self, nested: bool) -> Seq:
        items: list[object] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                text = ""
                while self.text[self.pos] != '"':
                    text += self.char()
                self.pos += 1
                items.append(Text(text))
            elif char == "[":
                self.pos += 1
                negated = self.text[self.pos] == "^"
                self.pos += int(negated)
                ranges = []
                while self.text[self.pos] != "]":
                    low = self.char()
                    high = low
                    if self.text[self.pos] == "-" and self.text[self.pos + 1] != "]":
                        self.pos += 1
                        high = self.char()
                    ranges.append((ord(low), ord(high)))
                self.pos += 1
                items.append(Chars(tuple(ranges), negated))
            elif char == "(":
                self.pos += 1
                self.space(newlines=True)
                items.append(self.alternatives(nested=True))
                if self.text[self.pos] != ")":
                    raise GrammarSyntaxError("expecting )")
                self.pos += 1
            elif char == ".":
                self.pos += 1
                items.append(ANY)
            elif char in "*+?{":
                if not items:
                    raise GrammarSyntaxError("a quantifier with nothing before it")
                items[-1] = self.quantified(items[-1])
            elif _is_name_char(char):
                items.append(Ref(self.name()))
            else:
                break
            self.space(newlines=nested)
        return Seq(tuple(items))

    def quantified(self, item: object) -> Rep:
        char = self.text[self.pos]
        self.pos += 1
        if char != "{":
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
            return Rep(item, low, high)
        end = self.text.index("}", self.pos)
        inside = self.text[self.pos : end].replace(" ", "")
        self.pos = end + 1
        if "," not in inside:
            return Rep(item, int(inside), int(inside))
        low_text, high_text = inside.split(",")
        return Rep(item, int(low_text), int(high_text) if high_text else None)


def parse(grammar: str) -> dict[str, Alt]:
    """The grammar's rules by name; GrammarSyntaxError for text llama.cpp would not read, or an undefined rule."""
    rules = _Reader(grammar).rules()
    for name in _references(rules):
        if name not in rules:
            raise GrammarSyntaxError(f"undefined rule {name}")
    return rules


def _references(node: object) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_references(alt) for alt in node.values()))
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, Alt):
        return set().union(*(_references(option) for option in node.options))
    if isinstance(node, Seq):
        return set().union(set(), *(_references(item) for item in node.items))
    if isinstance(node, Rep):
        return _references(node.item)
    return set()


class _Matcher:
    def __init__(self, rules: dict[str, Alt], text: str) -> None:
        self.rules, self.text = rules, text
        self.memo: dict[tuple[str, int], frozenset[int]] = {}
        self.open: set[tuple[str, int]] = set()

    def ends(self, node: object, pos: int) -> frozenset[int]:
        """Every position where a match of `node` starting at `pos` can end."""
        text = self.text
        if isinstance(node, Text):
            return frozenset({pos + len(node.text)}) if text.startswith(node.text, pos) else frozenset()
        if isinstance(node, Chars):
            return frozenset({pos + 1}) if pos < len(text) and node.has(text[pos]) else frozenset()
        if isinstance(node, Ref):
            key = (node.name, pos)
            if key not in self.memo:
                if key in self.open:
                    raise GrammarSyntaxError(f"left recursion through {node.name}")
                self.open.add(key)
                self.memo[key] = self.ends(self.rules[node.name], pos)
                self.open.discard(key)
            return self.memo[key]
        if isinstance(node, Alt):
            return frozenset().union(*(self.ends(option, pos) for option in node.options))
        if isinstance(node, Seq):
            current = frozenset({pos})
            for item in node.items:
                current = frozenset().union(*(self.ends(item, at) for at in current))
                if not current:
                    break
            return current
        assert isinstance(node, Rep)
        found = frozenset({pos}) if node.low == 0 else frozenset()
        current, seen, count = frozenset({pos}), set(), 0
        while current and (node.high is None or count < node.high):
            current = frozenset().union(*(self.ends(node.item, at) for at in current))
            count += 1
            if count >= node.low:
                if node.high is None:
                    current = current - seen
                    seen |= current
                found |= current
        return found


@lru_cache(maxsize=64)
def _parsed(grammar: str) -> dict[str, Alt]:
    return parse(grammar)


def matches(grammar: str, string: str, rule: str = "root") -> bool:
    """Whether rule `rule` of `grammar` matches all of `string`."""
    return len(string) in _Matcher(_parsed(grammar), string).ends(Ref(rule), 0)
