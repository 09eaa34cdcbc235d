"""Shell completion driven for real: what a completion script offers in bash for a line of words."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path


def complete_in_bash(script: Path, words: list[str], path: str = "", env: dict[str, str] | None = None) -> list[str]:
    """What the script's `_edgellm` function offers for these words, the last one being the word completed, set up
    as bash sets it up: the line and the cursor, and the words split at spaces and at ':' (COMP_WORDBREAKS)."""
    line = " ".join(words)
    split = [part for word in line.split(" ") for part in re.split(r"(:)", word) if part] + ([""] * line.endswith(" "))
    quoted = " ".join(shlex.quote(word) for word in split or [""])
    program = (
        f"source {script}; COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}; COMP_WORDS=({quoted}); "
        f'COMP_CWORD={max(len(split) - 1, 0)}; COMPREPLY=(); _edgellm; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", program],
        capture_output=True,
        text=True,
        env={"PATH": path or "/usr/bin:/bin", **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]
