"""edgellm's own modules run as child processes (the self-test, the quantizer), from a checkout and from the single
binary alike: a PyInstaller binary has no `-m`, so it takes `--edgellm-child MODULE ARGS...` instead."""

from __future__ import annotations

import contextlib
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

CHILD_FLAG = "--edgellm-child"
CHILD_MODULES = (
    "edgellm.engine.selftest",
    "edgellm.convert.quantize",
    "edgellm.convert.imatrix",
    "edgellm.engine.split_child",
)


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs `module` as `__main__` with `args`, in a new process of this edgellm."""
    if module not in CHILD_MODULES:
        raise ValueError(f"{module} is not one of edgellm's child modules")
    if getattr(sys, "frozen", False):
        return [sys.executable, CHILD_FLAG, module, *args]
    return [sys.executable, "-m", module, *args]


def run_if_child(argv: list[str]) -> None:
    """In the binary: when started by `module_command`, run that module and exit; otherwise return."""
    if len(argv) > 2 and argv[1] == CHILD_FLAG and argv[2] in CHILD_MODULES:
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        sys.exit(0)


def kill_on_cancel(child: subprocess.Popen[bytes], cancel: threading.Event | None) -> None:
    """Kill `child` as soon as `cancel` is set (it may print nothing for a while), from a thread of its own."""
    if cancel is None:
        return

    def watch() -> None:
        while child.poll() is None:
            if cancel.wait(0.1):
                child.kill()
                return

    threading.Thread(target=watch, daemon=True).start()


@contextlib.contextmanager
def child_writing(
    command: list[str], partial: Path, target: Path, cancel: threading.Event | None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (its stdout and stderr together on a pipe) that writes `partial`: renamed to `target` when the
    block ends without error; on any exception (a failure, Ctrl-C, `cancel` set) the child is killed and `partial`
    removed, so nothing half-written looks finished."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    kill_on_cancel(child, cancel)
    try:
        yield child
        partial.replace(target)
    except BaseException:
        child.kill()
        child.wait()
        partial.unlink(missing_ok=True)
        raise
