"""The installed `edgellm` in a real terminal (tmux): the chat loads the test model, answers, quits on Ctrl+Q;
`edgellm` alone opens the home screen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.terminal import HAS_TMUX, Terminal

pytestmark = [pytest.mark.tmux, pytest.mark.skipif(not HAS_TMUX, reason="tmux is not installed")]


def edgellm_command() -> list[str]:
    """The console script beside this Python, or `python -m edgellm`."""
    script = Path(sys.executable).with_name("edgellm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgellm"]


@pytest.fixture
def env(tmp_path: Path, edgellm_home: Path) -> dict[str, str]:
    """This test's EDGELLM_HOME, and other tools' model folders empty."""
    user = tmp_path / "user-home"
    user.mkdir()
    return {
        "EDGELLM_HOME": str(edgellm_home),
        "HOME": str(user),
        "HF_HUB_CACHE": str(user / "hf"),
        "LLAMA_CACHE": str(user / "llama.cpp"),
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
    }


def test_chat_answers_in_a_real_terminal_and_quits(terminal: Terminal, env: dict[str, str], test_model: Path) -> None:
    """`edgellm chat -m MODEL` loads the model, streams a reply under the message, and Ctrl+Q ends it with 0."""
    terminal.start([*edgellm_command(), "chat", "-m", str(test_model), "-n", "16"], env)
    shown = terminal.wait(lambda shown: test_model.name in shown and "ctx" in shown, 120, "the model to load")
    assert max(len(line) for line in shown.splitlines()) > 80  # drawn for the pane's 120 columns
    terminal.keys("Hello there", "Enter")
    shown = terminal.wait(lambda shown: "TTFT" in shown, 120, "the reply")
    after = shown[shown.index("Hello there") :]
    assert "Assistant" in after and "tokens/s" in after  # the reply with its timings, under the message
    terminal.keys("C-q")
    assert terminal.wait_exit() == 0


def test_edgellm_alone_opens_the_home_screen(terminal: Terminal, env: dict[str, str]) -> None:
    """`edgellm` with no arguments on a terminal shows the hardware panel; Ctrl+Q ends it with 0."""
    terminal.start(edgellm_command(), env)
    shown = terminal.wait(lambda shown: "This machine" in shown and "RAM" in shown, 60, "the hardware panel")
    assert "CPU" in shown
    terminal.keys("C-q")
    assert terminal.wait_exit() == 0
