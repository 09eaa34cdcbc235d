"""The user install (`scripts/install.py --user`), for real: its own environment with the runtime only and the same
llama.cpp wheel (from the keyed cache the development install filled), a launcher that runs the test model and gives
the development install's greedy text, a second run that does nothing, --upgrade, and --uninstall leaving
EDGELLM_HOME alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow  # a fresh environment from pip's cache: about a minute

GREEDY = ["run", "-p", "The capital of France is", "-n", "8", "--temp", "0"]


def install(*flags: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    python = getattr(sys, "_base_executable", sys.executable)  # the machine's python3, as a user runs it
    return subprocess.run(
        [python, str(REPO / "scripts" / "install.py"), "--user", *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_install_run_upgrade_and_uninstall(tmp_path: Path, test_model: Path) -> None:
    app, bin_dir, home = tmp_path / "app", tmp_path / "bin", tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("threads = 2\n")  # a user's own state, which --uninstall must keep
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(EDGELLM_INSTALL_DIR=str(app), EDGELLM_BIN_DIR=str(bin_dir), EDGELLM_HOME=str(home))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)

    done = install(env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    launcher = bin_dir / "edgellm"
    assert launcher.is_symlink() and launcher.resolve() == (app / "bin" / "edgellm").resolve()
    assert f"{bin_dir} is not on your PATH" in done.stdout
    assert "reusing llama.cpp wheel built with the same flags" in done.stdout

    version = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.startswith("edgellm ")
    python = app / "bin" / "python"
    has = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print([u.find_spec(m) is not None for m in "
            "('llama_cpp', 'textual', 'fastapi', 'uvicorn', 'pytest', 'torch', 'mkdocs')])",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout, whose edgellm/ would be imported from the current folder
    )
    assert has.stdout.strip() == "[True, True, True, True, False, False, False]", has.stderr
    located = subprocess.run(
        [str(python), "-c", "import edgellm; print(edgellm.__file__)"], capture_output=True, text=True, cwd=tmp_path
    )
    assert located.stdout.startswith(str(app)), "the user install runs its own copy, not the checkout"

    mine = subprocess.run([str(launcher), *GREEDY, "-m", str(test_model)], capture_output=True, text=True, env=env)
    dev = subprocess.run(
        [str(REPO / ".venv" / "bin" / "edgellm"), *GREEDY, "-m", str(test_model)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert mine.returncode == 0 and mine.stdout == dev.stdout and mine.stdout.strip(), (mine.stderr, dev.stderr)
    profile = subprocess.run(
        [str(launcher), "plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert profile.returncode == 0 and "raspberry-pi-5-8gb" in profile.stdout, profile.stderr

    again = install(env=env)
    assert again.returncode == 0 and "edgellm already installed" in again.stdout, again.stderr[-2000:]
    upgraded = install("--upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert subprocess.run([str(launcher), "--version"], capture_output=True, env=env).returncode == 0

    removed = install("--uninstall", env=env)
    assert removed.returncode == 0, removed.stderr
    assert not launcher.exists() and not launcher.is_symlink() and not app.exists()
    assert (home / "config.toml").read_text() == "threads = 2\n"
    assert install("--uninstall", env=env).stdout.strip().endswith("nothing to remove")


def test_a_launcher_that_is_not_ours_is_left_alone(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "edgellm").write_text("#!/bin/sh\necho someone else's\n")
    env = dict(os.environ, EDGELLM_INSTALL_DIR=str(tmp_path / "app"), EDGELLM_BIN_DIR=str(bin_dir))
    done = install(env=env)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "is not this install's launcher: move it away, or set EDGELLM_BIN_DIR to another folder"
    )
    assert not (tmp_path / "app").exists() and "someone else's" in (bin_dir / "edgellm").read_text()
