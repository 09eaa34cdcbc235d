"""The unit tier runs without llama.cpp: importing `llama_cpp` (or any `llama_cpp.*`) raises ImportError here, so a
unit test that needs it fails loudly instead of quietly testing llama.cpp. The finder that refuses it goes first on
sys.meta_path when this conftest is imported, before any unit test module is; it refuses while a unit module is
collected and while a unit test runs (setup and teardown included; llama_cpp modules another tier had already imported
are hidden from sys.modules meanwhile), and lets the integration tier import llama.cpp when both run in one session.
A unit module that imports llama.cpp at its top fails to collect, with the same message."""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _is_llama_cpp(name: str) -> bool:
    return name == "llama_cpp" or name.startswith("llama_cpp.")


class NoLlamaCpp(importlib.abc.MetaPathFinder):
    """A finder, first on sys.meta_path, that refuses llama_cpp while `active`."""

    def __init__(self) -> None:
        self.active = False
        self._hidden: dict[str, object] = {}

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if self.active and _is_llama_cpp(name):
            raise ImportError(
                f"the unit tier runs without llama.cpp: {name} was imported; a test that needs "
                f"llama.cpp belongs in tests/integration",
                name=name,
            )
        return None

    def block(self) -> None:
        if not self.active:
            self.active = True
            self._hidden = {name: module for name, module in sys.modules.items() if _is_llama_cpp(name)}
            for name in self._hidden:
                del sys.modules[name]

    def lift(self) -> None:
        if self.active:
            self.active = False
            sys.modules.update(self._hidden)  # type: ignore[arg-type]
            self._hidden = {}


BLOCK = NoLlamaCpp()
sys.meta_path.insert(0, BLOCK)


def _here(path: Path) -> bool:
    return Path(path).resolve().is_relative_to(HERE)


def pytest_collectstart(collector: pytest.Collector) -> None:
    if _here(collector.path):
        BLOCK.block()


def pytest_collectreport(report: pytest.CollectReport) -> None:
    BLOCK.lift()  # until the next unit collector or test: nothing else is collected or run blocked


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    if not _here(item.path):
        return (yield)
    BLOCK.block()
    try:
        return (yield)
    finally:
        BLOCK.lift()
