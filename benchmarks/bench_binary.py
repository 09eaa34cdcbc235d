"""The single binary against the installed package, measured in the same run (issue 12's figures).

    .venv/bin/python benchmarks/bench_binary.py [--dist dist] [--runs 5]

Build the binaries first (`python3 packaging/build_binary.py`; this script builds nothing). Prints: the size of
the one-file binary and of the one-folder build; `--version` wall time of each (goals: ≤ 1 s one-file, ≤ 0.3 s
one-folder) beside the package's; `run`'s time to first token and decode tokens/s of each binary as a ratio to
the package's, runs interleaved so that the machine's noise falls on both (goal ≥ 0.97); and the portable
llama.cpp's compile time when `packaging/build_binary.py --portable` has recorded one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, TEST_MODEL, median, spread

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file() and not f.is_symlink()]
    return sum(f.stat().st_size for f in files) / 2**20


def wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, env=env)
    return time.perf_counter() - started


def timings(command: list[str], env: dict[str, str], tokens: int) -> dict:
    done = subprocess.run([*command, "run", "-m", str(TEST_MODEL), "-p", PROMPT, "-n", str(tokens), "--temp", "0",
                           "--ignore-eos", "--json"], capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    options = parser.parse_args()
    binaries = {"one file": options.dist / "edgellm", "one folder": options.dist / "edgellm-dir" / "edgellm"}
    missing = [str(path) for path in binaries.values() if not path.exists()]
    if missing:
        print(f"bench_binary: no binary at {', '.join(missing)}: build them first with "
              f"python3 packaging/build_binary.py", file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="bench-binary-home-")
    bare = {"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    package_env = {**os.environ, "HOME": home}
    package = [sys.executable, "-m", "edgellm"]
    commands = {name: ([str(path)], bare) for name, path in binaries.items()}
    commands["package"] = (package, package_env)

    print(f"sizes: one file {size_mib(binaries['one file']):.1f} MiB (goal <= 80), one folder "
          f"{size_mib(binaries['one folder'].parent):.1f} MiB")
    for command, env in commands.values():
        wall([*command, "--version"], env)  # warm the page cache; a one-file binary unpacks each start anyway
    startup = {name: [wall([*command, "--version"], env) for _ in range(options.runs * 2)]
               for name, (command, env) in commands.items()}
    for name, values in startup.items():
        goal = {"one file": " (goal <= 1 s)", "one folder": " (goal <= 0.3 s)"}.get(name, "")
        print(f"--version wall s, {name}: {spread(values)}{goal}")

    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(options.runs):  # interleaved: each round runs all three
        for name, (command, env) in commands.items():
            runs[name].append(timings(command, env, options.tokens))
    anchor_ttft = median([r["ttft_ms"] for r in runs["package"]])
    anchor_decode = median([r["tokens_per_s"] for r in runs["package"]])
    print(f"package: TTFT median {anchor_ttft:.1f} ms, decode median {anchor_decode:.2f} tokens/s (the anchor)")
    for name in binaries:
        ttft = median([r["ttft_ms"] for r in runs[name]])
        decode = median([r["tokens_per_s"] for r in runs[name]])
        print(f"{name}: TTFT {ttft:.1f} ms ({ttft / anchor_ttft:.2f}x the package's), decode {decode:.2f} tokens/s "
              f"({decode / anchor_decode:.3f}x, goal >= 0.97)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgellm" / "wheels"
    for record in sorted(cache.glob("portable-*/build-minutes.txt")):
        print(f"portable llama.cpp (13 CPU variants) compiled in {record.read_text().strip()} min on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
