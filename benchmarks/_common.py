"""Helpers for the benchmarks: the test model's path and robust summaries of repeated measurements."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Subjects of short prompts ("The sky is"), one per request, so no server answers one request from another's cache
SUBJECTS = (
    "The sky",
    "A cat",
    "Paris",
    "The ocean",
    "Music",
    "A river",
    "Winter",
    "The moon",
    "Coffee",
    "A forest",
    "The sun",
    "Bread",
    "A mountain",
    "Rain",
    "The city",
    "A book",
    "The desert",
    "A violin",
    "Spring",
    "A glacier",
)
TEST_MODEL = Path(os.environ.get("EDGELLM_TEST_MODEL", REPO / ".venv" / "models" / "gemma-3-270m-Q4_K_M.gguf"))


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f} / median {statistics.median(values):.2f} / max {max(values):.2f}"


class Findings:
    """What one benchmark found, for `benchmarks/run`: its figures and its goals (each with whether it holds).

    A script prints as it always has, records each figure and goal here as well, and calls `save(options.json)` at
    the end: with `--json PATH` the findings are written there (add the flag with `add_json_flag`), else nothing."""

    def __init__(self, name: str, title: str) -> None:
        self.data: dict = {"name": name, "title": title, "figures": [], "goals": [], "notes": []}

    def figure(self, label: str, value: float | None, unit: str, anchor: str | None = None) -> None:
        """A measured figure: `unit` is what it counts ("tokens/s", "ms", "MiB", "ratio"...); `anchor` names what a
        ratio is taken against, measured in the same run."""
        self.data["figures"].append({"label": label, "value": value, "unit": unit, "anchor": anchor})

    def goal(self, text: str, value: float | None, op: str, target: float) -> bool:
        """A goal an issue set (`text`, e.g. "edgellm run / raw decode ≥ 0.98"): `value` `op` (">=" or "<=")
        `target`."""
        holds = value is not None and (value >= target if op == ">=" else value <= target)
        self.data["goals"].append({"goal": text, "value": value, "op": op, "target": target, "holds": holds})
        return holds

    def note(self, text: str) -> None:
        """Something the reader of the report should know (a part skipped, and why)."""
        self.data["notes"].append(text)

    def save(self, path: str | None) -> None:
        if path:
            import json

            Path(path).write_text(json.dumps(self.data, indent=2))


def add_json_flag(parser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the figures and goals to PATH (benchmarks/run)")


def plan_json(home: str, *args: str) -> dict:
    """`edgellm plan -m TEST_MODEL ARGS --json` with its own EDGELLM_HOME: the settings edgellm chooses here."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "edgellm", "plan", "-m", str(TEST_MODEL), *args, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGELLM_HOME": home},
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"edgellm plan failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def sse_chunks(lines):  # type: ignore[no-untyped-def]
    """The JSON chunks of a server-sent-events stream's `data:` lines (an error chunk included), up to [DONE]."""
    import json

    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        yield json.loads(payload)
