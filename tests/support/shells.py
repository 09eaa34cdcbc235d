"""Shell completion driven for real: what a completion script offers in bash for a line of words."""

from __future__ import annotations

import subprocess
from pathlib import Path


def complete_in_bash(script: Path, words: list[str], path: str = "", env: dict[str, str] | None = None) -> list[str]:
    """What the script's `_edgellm` function offers for these words, the last one being the word completed."""
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); _edgellm; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", program],
        capture_output=True,
        text=True,
        env={"PATH": path or "/usr/bin:/bin", **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]
