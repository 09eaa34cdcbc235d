"""The documentation: the README stays a front page, the generated pages are current (the CLI reference, the TUI's
pictures, the command outputs in the planner page), and the site builds with `mkdocs build --strict` (a broken link,
a missing snippet or a page left out of the nav fails it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_readme_is_a_front_page() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines: move the detail into docs/"
    text = "\n".join(lines)
    setup = text.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert setup[0].startswith("python3 scripts/install.py && .venv/bin/edgellm chat -m ")
    assert setup[1].startswith("python3 scripts/install.py && .venv/bin/python -m pytest ")
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith(".venv/bin/python -m pytest")


def test_the_generated_pages_are_current() -> None:
    done = run([sys.executable, "scripts/docs.py", "--check"])
    if done.returncode != 0:
        pytest.fail(done.stderr.strip() or done.stdout)


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")])
    if done.returncode != 0:
        pytest.fail("mkdocs build --strict failed:\n" + done.stderr[-4000:])
    pages = sorted(p.relative_to(tmp_path / "site") for p in (tmp_path / "site").rglob("index.html"))
    assert len(pages) >= 20, pages  # every page of the nav was written
