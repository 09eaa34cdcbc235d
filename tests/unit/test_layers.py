"""The house's floors, checked over the real import graph: every `import` in edgellm/, at the top of a module, inside
a function or under TYPE_CHECKING, goes down a floor or stays on its own; no cycle anywhere; the pure core imports no
heavy third-party package; one front end reaches another only through its entry module; llama-cpp-python's private
parts are touched in engine/compat.py alone."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

from tests.support import REPO

PACKAGE = REPO / "edgellm"

# the floors, bottom first; a module belongs to the first prefix that names it
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "edgellm",
            "edgellm.errors",
            "edgellm.events",
            "edgellm.reasons",
            "edgellm.words",
            "edgellm.formatting",
            "edgellm.paths",
        ),
    ),
    (
        "core",
        (
            "edgellm.gguf",
            "edgellm.plan",
            "edgellm.templates",
            "edgellm.api",
            "edgellm.hw",
            "edgellm.engine.contract",
            "edgellm.engine.endpoint",
            "edgellm.engine.loop_guard",
            "edgellm.grammar",
            "edgellm.media",
        ),
    ),
    (
        "services",
        ("edgellm.engine", "edgellm.storage", "edgellm.hub", "edgellm.convert", "edgellm.bench", "edgellm.catalog"),
    ),
    ("session", ("edgellm.session",)),
    ("front ends", ("edgellm.cli", "edgellm.tui", "edgellm.server")),
    ("entry", ("edgellm.__main__",)),
)
HEAVY = ("llama_cpp", "textual", "fastapi", "uvicorn", "starlette", "huggingface_hub", "rich", "torch", "transformers")
FRONT_ENDS = ("edgellm.cli", "edgellm.tui", "edgellm.server")
ENTRIES = {"edgellm.tui.launch", "edgellm.server.launch", "edgellm.server.config"}  # how the CLI starts the others
LLAMA_CPP_PRIVATE = {
    "_model",
    "_ctx",
    "_sampler",
    "_batch",
    "_stack",
    "_edgellm_params",
    "llama_chat_format",
    "Jinja2ChatFormatter",
    "llama_model_default_params",
    "_ggml",
    "libggml",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


@cache
def imports() -> dict[str, set[str]]:
    """Per module, every module it imports: edgellm's as modules, others by their top-level name."""
    known = modules()
    found: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        found[name] = {resolve(target, known) for target in targets} - {name}
    return found


def resolve(target: str, known: dict[str, Path]) -> str:
    if not target.startswith("edgellm"):
        return target.split(".")[0]
    while target not in known and "." in target:
        target = target.rpartition(".")[0]
    return target


def floor(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{name} is on no floor: add it to FLOORS"
    return best[0]


def test_every_import_goes_down_or_stays_on_its_floor() -> None:
    climbs = [
        f"{name} ({FLOORS[floor(name)][0]}) imports {target} ({FLOORS[floor(target)][0]})"
        for name, targets in imports().items()
        for target in targets
        if target.startswith("edgellm") and floor(target) > floor(name)
    ]
    assert not climbs, "\n".join(climbs)


def test_no_import_cycle_between_modules_or_packages() -> None:
    graph = {name: {t for t in targets if t.startswith("edgellm")} for name, targets in imports().items()}
    assert not cycles(graph), cycles(graph)

    def package(name: str) -> str:  # a package's modules on another floor (the engine's contract) stand apart
        return f"{'.'.join(name.split('.')[:2])} ({FLOORS[floor(name)][0]})"

    packages: dict[str, set[str]] = {}
    for name, targets in graph.items():
        packages.setdefault(package(name), set()).update(package(t) for t in targets)
    packages = {name: targets - {name} for name, targets in packages.items()}
    assert not cycles(packages), cycles(packages)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_pure_core_imports_no_heavy_package() -> None:
    heavy = [
        f"{name} imports {target}"
        for name, targets in imports().items()
        if floor(name) <= 1
        for target in targets
        if target in HEAVY
    ]
    assert not heavy, heavy


def test_front_ends_reach_each_other_only_through_their_entry_modules() -> None:
    def front(name: str) -> str | None:
        return next((f for f in FRONT_ENDS if name == f or name.startswith(f + ".")), None)

    crossings = [
        f"{name} imports {target}"
        for name, targets in imports().items()
        for target in targets
        if front(name)
        and front(target)
        and front(name) != front(target)
        and not (front(name) == "edgellm.cli" and target in ENTRIES)
    ]
    assert not crossings, crossings


def test_llama_cpp_pythons_private_parts_stay_in_the_compatibility_module() -> None:
    touched = []
    for name, path in modules().items():
        if name == "edgellm.engine.compat":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in LLAMA_CPP_PRIVATE:
                touched.append(f"{name}:{node.lineno} .{node.attr}")
    assert not touched, touched


def test_the_floors_name_every_package() -> None:
    """A new package is placed on a floor on purpose, not by the nearest prefix."""
    top = {".".join(name.split(".")[:2]) for name in modules()}
    named = {prefix for _, prefixes in FLOORS for prefix in prefixes}
    assert top <= named | {"edgellm.engine"}, top - named
