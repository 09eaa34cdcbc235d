"""What the tests share: where the checkout, its fixtures and the test model are, and the CLI run as a real process.

The rest of tests/support by subject: fakehub (a local Hub), server (`edgellm serve` as a process), tui (the app
through Textual's Pilot), workers (`edgellm worker`), checkpoints (tiny Hugging Face checkpoints and tokenizers),
specs (model shapes for the planner), terminal (tmux), loops (the loop oracle), scripted (a model with no llama.cpp).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TEST_MODEL = Path(os.environ.get("EDGELLM_TEST_MODEL", REPO / ".venv" / "models" / "gemma-3-270m-Q4_K_M.gguf"))


def edgellm(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m edgellm ARGS` as a user would, with this test's EDGELLM_HOME."""
    return subprocess.run(
        [sys.executable, "-m", "edgellm", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(done, *needles: str) -> None:
    """A bad input's answer: exit code 2 and one line on stderr holding every needle, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
