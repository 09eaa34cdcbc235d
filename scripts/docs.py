#!/usr/bin/env python3
"""Write the parts of docs/ that come from the code, so that they cannot drift from it:

- docs/reference/cli.md, from edgellm's argument parsers (every command, flag, default and help);
- docs/images/*.svg, the TUI's pictures, from the snapshot tests' SVGs;
- the outputs of edgellm commands shown in docs/planner.md (`plan` on the test model for built-in profiles,
  `recommend --offline`), each under a `<!-- edgellm ARGS -->` marker, {model} standing for the test model.

    .venv/bin/python scripts/docs.py           # write them
    .venv/bin/python scripts/docs.py --check   # exit 1, naming each stale file (tests/checks/test_docs.py runs it)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DOCS = REPO / "docs"
SNAPSHOTS = REPO / "tests" / "integration" / "__snapshots__" / "test_tui_snapshots"
PICTURES = {
    "home.svg": "test_home[120x40].svg",
    "chat.svg": "test_chat[120x40].svg",
    "models.svg": "test_models[120x40].svg",
}
TEST_MODEL = Path(os.environ.get("EDGELLM_TEST_MODEL", REPO / ".venv" / "models" / "gemma-3-270m-Q4_K_M.gguf"))
OUTPUT_BLOCK = re.compile(r"(<!-- edgellm (?P<args>[^>]*?) -->\n```text\n)(?P<body>.*?)(```)", re.S)
PAGES_WITH_OUTPUTS = ("planner.md",)


def cli_reference() -> str:
    from edgellm.cli.main import build_parser
    from edgellm.cli.reference import render

    return render(build_parser())


def command_output(args: str) -> str:
    """`edgellm ARGS` in an empty EDGELLM_HOME (no config.toml, no benchmarks of this machine), offline."""
    argv = [str(TEST_MODEL) if word == "{model}" else word for word in args.split()]
    with tempfile.TemporaryDirectory(prefix="edgellm-docs-") as home:
        env = dict(os.environ, EDGELLM_HOME=home, COLUMNS="120", HF_HUB_OFFLINE="1")
        done = subprocess.run(
            [sys.executable, "-m", "edgellm", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
    if done.returncode != 0:
        raise SystemExit(f"docs: edgellm {args} failed: {done.stderr.strip()}")
    return done.stdout.replace(str(TEST_MODEL.resolve()), TEST_MODEL.name).replace(str(TEST_MODEL), TEST_MODEL.name)


def with_outputs(text: str) -> str:
    def fill(match: re.Match[str]) -> str:
        return match.group(1) + command_output(match.group("args")) + match.group(4)

    return OUTPUT_BLOCK.sub(fill, text)


def wanted() -> dict[Path, bytes]:
    """Each generated file and the bytes it should hold."""
    files = {DOCS / "reference" / "cli.md": cli_reference().encode()}
    for picture, snapshot in PICTURES.items():
        files[DOCS / "images" / picture] = (SNAPSHOTS / snapshot).read_bytes()
    for page in PAGES_WITH_OUTPUTS:
        files[DOCS / page] = with_outputs((DOCS / page).read_text(encoding="utf-8")).encode()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    options = parser.parse_args()
    if not TEST_MODEL.is_file():
        print(f"docs: the test model is missing ({TEST_MODEL}): run python3 scripts/install.py", file=sys.stderr)
        return 2
    stale = []
    for path, content in wanted().items():
        if path.is_file() and path.read_bytes() == content:
            continue
        stale.append(path.relative_to(REPO))
        if not options.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(content)
            partial.replace(path)
    if options.check and stale:
        names = ", ".join(str(path) for path in stale)
        print(f"docs: stale: {names}: run .venv/bin/python scripts/docs.py", file=sys.stderr)
        return 1
    print(f"docs: {'wrote ' + ', '.join(map(str, stale)) if stale else 'all generated pages are current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
