"""The long fuzzing run: the property tests of tests/unit/test_fuzz.py with many more examples and a fresh random seed.

A finding prints the failing input and the seed that reproduces it (`--hypothesis-seed`); add it to
tests/unit/test_fuzz.py as an `@example(...)` (or a test of its own), so the suite checks it from then on.
Usage: .venv/bin/python scripts/fuzz.py [--examples 20000] [-k NAME] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=20000, help="examples per parser (default 20000)")
    parser.add_argument("-k", help="only the parsers whose test name matches (pytest -k)")
    parser.add_argument("--seed", help="replay a seed a previous run printed")
    options = parser.parse_args()
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "tests" / "unit" / "test_fuzz.py"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--hypothesis-show-statistics",
    ]
    if options.k:
        command += ["-k", options.k]
    if options.seed:
        command += ["--hypothesis-seed", options.seed]
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "EDGELLM_FUZZ_EXAMPLES": str(options.examples)})
    print(
        f"fuzz: {options.examples} examples per parser, {time.perf_counter() - started:.0f} s, "
        f"{'no findings' if done.returncode == 0 else 'FINDINGS above'}"
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
