"""Shared fixtures: the real test model, a private EDGELLM_HOME, and the CLI run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_MODEL = Path(os.environ.get("EDGELLM_TEST_MODEL", REPO / ".venv" / "models" / "gemma-3-270m-Q4_K_M.gguf"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def test_model() -> Path:
    if not TEST_MODEL.is_file():
        pytest.fail(f"the test model is missing at {TEST_MODEL}: run `python3 scripts/install.py`")
    return TEST_MODEL


@pytest.fixture(autouse=True)
def edgellm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "edgellm-home"
    monkeypatch.setenv("EDGELLM_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgellm.convert.tinymodel import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


def edgellm(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m edgellm ARGS` as a user would, with this test's EDGELLM_HOME."""
    return subprocess.run([sys.executable, "-m", "edgellm", *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
