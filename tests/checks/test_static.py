"""The repository's static checks, run with the tests so that `.ci/run` runs them: ruff's lint and format check over
the whole repository and mypy over edgellm/ (strict on the pure core), all configured in pyproject.toml. They test no
behaviour, so they belong to neither tier; they need no llama.cpp build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def check(*argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{done.stdout}{done.stderr}", pytrace=False)


def test_ruff_lint_is_clean() -> None:
    check("ruff", "check", ".")


def test_ruff_format_is_clean() -> None:
    check("ruff", "format", "--check", ".")


def test_mypy_is_clean() -> None:
    check("mypy")
