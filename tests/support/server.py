"""`edgellm serve` run as a real process on a free loopback port, its log read as it is written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

LISTENING = re.compile(r"listening on http://([^/]+)/v1")


class LoggedProcess:
    """A process whose stderr is read (and kept) by a thread as it is written, so its pipe never fills."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str] | None = None, inherit_env: bool = True
    ) -> None:
        self.name = name
        self.url = ""  # where it serves, once known
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**(os.environ if inherit_env else {}), **(env or {})},
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def failed(self, why: str) -> AssertionError:
        return AssertionError(f"{self.name}: {why}; its log ends:\n" + "\n".join(self.lines[-30:]))

    def wait_for_line(self, pattern: re.Pattern[str] | str, timeout: float = 120) -> re.Match[str]:
        """The first log line matching `pattern`, waited for; fails if the process ends first."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    found = pattern.search(line)
                    if found:
                        return found
                if self.process.poll() is not None and self.process.stderr.closed:  # type: ignore[union-attr]
                    raise self.failed(f"exited ({self.process.returncode}) before {pattern.pattern!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.failed(f"no {pattern.pattern!r} in its log after {timeout} s")
                self._changed.wait(min(left, 1.0))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        """Signal it and wait for it; killed if it outlives `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise self.failed(f"still running {timeout} s after signal {sig}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


class ServerProcess(LoggedProcess):
    """`edgellm serve ARGS --port 0`; `url` once it listens, `wait_ready()` once its model is loaded."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, binary: Path | None = None) -> None:
        """`binary`: a single binary, run with `env` alone (nothing of this Python's environment)."""
        command = [str(binary)] if binary else [sys.executable, "-m", "edgellm"]
        super().__init__("edgellm serve", [*command, "serve", "--port", "0", *args], env, inherit_env=binary is None)
        try:
            self.url = f"http://{self.wait_for_line(LISTENING).group(1)}"
        except BaseException:
            self.kill()
            raise

    def wait_ready(self) -> ServerProcess:
        self.wait_for_line(r"\bready\b")
        return self

    def metrics(self, key: str | None = None) -> dict[str, float]:
        """The /metrics samples, by name with labels (`edgellm_requests_total{endpoint=...}`)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        text = httpx.get(f"{self.url}/metrics", headers=headers, timeout=30).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


def until(condition, timeout: float = 60, interval: float = 0.05, what: str = "the condition"):  # type: ignore[no-untyped-def]
    """Poll `condition` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(interval)


def status_value(pid: int, key: str = "RssAnon") -> int:
    """A number from /proc/PID/status: RssAnon (its heap in KiB: what a leak grows), RssFile (the mapped model's
    pages, which grow as new tokens touch new rows of the embedding table), VmRSS (both), Threads..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for process {pid}")
