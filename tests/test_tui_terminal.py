"""The installed `edgellm` in a real terminal (tmux): the chat loads the test model, answers, quits on Ctrl+Q;
`edgellm` alone opens the home screen."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
pytestmark = pytest.mark.skipif(not Path(TMUX).exists(), reason="tmux is not installed")


def edgellm_command() -> list[str]:
    """The console script beside this Python, or `python -m edgellm`."""
    script = Path(sys.executable).with_name("edgellm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgellm"]


class Terminal:
    """One tmux session on a private server, 120×40, running one command; its exit status goes to a file (tmux's
    own pane_dead_status is sometimes never filled in: the pane's process left a zombie, unreaped)."""

    def __init__(self, socket: str, status: Path) -> None:
        self.socket, self.name, self.status = socket, "edgellm", status

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # An explicit environment, never a COLUMNS/LINES left in the process's C environ (they were 80/24 under
        # pytest here), which would make the app ignore the real size of the pane.
        clean = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "TMUX")}
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                              check=check, timeout=30, env=clean)

    def start(self, command: list[str], env: dict[str, str]) -> None:
        script = f'"$@"; echo $? > {shlex.quote(str(self.status))}'
        line = shlex.join(["env", *(f"{key}={value}" for key, value in env.items()), "sh", "-c", script, "sh",
                           *command])
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", self.name, line)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name).stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def wait(self, condition: Callable[[str], bool], seconds: float, what: str) -> str:
        """Poll the screen until `condition` holds on it; fail with the screen after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            shown = self.screen()
            if condition(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            time.sleep(0.1)

    def wait_exit(self, seconds: float = 20) -> int:
        """The command's exit status, once it has ended."""
        deadline = time.monotonic() + seconds
        while not (self.status.exists() and self.status.read_text().strip()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not exit; the screen:\n{self.screen()}")
            time.sleep(0.1)
        return int(self.status.read_text())


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A private tmux server, killed afterwards whatever happened."""
    term = Terminal(f"edgellm-test-{uuid.uuid4().hex[:8]}", tmp_path / "exit-status")
    try:
        yield term
    finally:
        term.tmux("kill-server", check=False)


@pytest.fixture
def env(tmp_path: Path, edgellm_home: Path) -> dict[str, str]:
    """This test's EDGELLM_HOME, and other tools' model folders empty."""
    user = tmp_path / "user-home"
    user.mkdir()
    return {"EDGELLM_HOME": str(edgellm_home), "HOME": str(user), "HF_HUB_CACHE": str(user / "hf"),
            "LLAMA_CACHE": str(user / "llama.cpp"), "TERM": "xterm-256color", "PATH": os.environ.get("PATH", "")}


def test_chat_answers_in_a_real_terminal_and_quits(terminal: Terminal, env: dict[str, str], test_model: Path) -> None:
    """`edgellm chat -m MODEL` loads the model, streams a reply under the message, and Ctrl+Q ends it with 0."""
    terminal.start([*edgellm_command(), "chat", "-m", str(test_model), "-n", "16"], env)
    shown = terminal.wait(lambda shown: test_model.name in shown and "ctx" in shown, 120, "the model to load")
    assert max(len(line) for line in shown.splitlines()) > 80  # drawn for the pane's 120 columns
    terminal.keys("Hello there", "Enter")
    shown = terminal.wait(lambda shown: "TTFT" in shown, 120, "the reply")
    after = shown[shown.index("Hello there"):]
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
