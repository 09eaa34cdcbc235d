"""What edgellm says, as data: a `Reason` is a code with its numbers (why the planner chose a setting, what it changed
to fit, why something does not fit and what would). `edgellm.words` says them, in a front end's terms. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Value = Any  # an int, float, str, bool, None, a Reason or a tuple of them: hashable, so reasons compare and dedupe


@dataclass(frozen=True)
class Reason:
    """One thing said, as data: `code` names what, `values` hold its numbers (sizes in bytes)."""

    code: str
    values: tuple[tuple[str, Value], ...] = ()

    def __getitem__(self, key: str) -> Value:
        for name, value in self.values:
            if name == key:
                return value
        raise KeyError(key)

    def get(self, key: str, default: Value = None) -> Value:
        try:
            return self[key]
        except KeyError:
            return default

    def as_dict(self) -> dict[str, Any]:
        """The reason for JSON: its code and values (nested reasons as their own dicts)."""

        def plain(value: Value) -> Any:
            if isinstance(value, Reason):
                return value.as_dict()
            if isinstance(value, tuple):
                return [plain(item) for item in value]
            return value

        return {"code": self.code, **{name: plain(value) for name, value in self.values}}


def reason(code: str, **values: Value) -> Reason:
    return Reason(code, tuple(values.items()))
