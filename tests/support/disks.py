"""Full and read-only disks for the tests that need one: small tmpfs mounts, which need root (elsewhere the test is
skipped, saying so)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT_ONLY = "mounting a small tmpfs needs root: run the suite as root to test a full disk"


def mount(where: Path, size_kib: int, read_only: bool = False) -> None:
    """A tmpfs of `size_kib` KiB at `where` (made if need be); skips the test, with the reason, where it cannot be."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_ONLY)
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'}): the disk-fault tests need root"
        )


def fill(disk: Path) -> None:
    """Take every free block of `disk`."""
    with open(disk / "filler", "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
