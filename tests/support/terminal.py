"""A real terminal for the tests: one tmux session on a private server, its screen read and keys sent."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
HAS_TMUX = Path(TMUX).exists()


class Terminal:
    """One tmux session on a private server, 120×40, running one command; its exit status goes to a file (tmux's
    own pane_dead_status is sometimes never filled in: the pane's process left a zombie, unreaped)."""

    def __init__(self, socket: str, status: Path) -> None:
        self.socket, self.name, self.status = socket, "edgellm", status

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # An explicit environment, never a COLUMNS/LINES left in the process's C environ (they were 80/24 under
        # pytest here), which would make the app ignore the real size of the pane.
        clean = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "TMUX")}
        return subprocess.run(
            [TMUX, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
            env=clean,
        )

    def start(self, command: list[str], env: dict[str, str]) -> None:
        script = f'"$@"; echo $? > {shlex.quote(str(self.status))}'
        line = shlex.join(
            ["env", *(f"{key}={value}" for key, value in env.items()), "sh", "-c", script, "sh", *command]
        )
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
