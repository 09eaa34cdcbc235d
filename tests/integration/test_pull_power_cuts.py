"""Power cuts during `pull`, 24 times: the pull is killed with SIGKILL at seeded random points of a download (once its
partial file holds a random number of bytes), and after each cut the store's manifest parses and lists only whole
models, no file has the final name unless it is whole and verified, and the partial file is a prefix of the real
one. Then one uncut pull fetches only the rest and verifies it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgellm.convert.tinymodel import write_model
from tests.support.fakehub import FakeHub, FakeRepo, Faults, point_hub_at
from tests.support.specs import SMALL

CUTS = 24
SEED = 20261128
REPO, FILE = "tests/tiny-GGUF", "tiny-Q8_0.gguf"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A Hub serving one 46 MiB GGUF at 16 MiB/s: a pull lasts long enough to be cut anywhere in it."""
    server = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    model = write_model(tmp_path / FILE, SMALL, quant="q8_0")
    server.add(REPO, FakeRepo({FILE: model}, faults={FILE: Faults(bytes_per_s=16 * 2**20)}))
    yield server
    server.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def whole_models(store: Path) -> set[str]:
    """The names the manifest lists, each checked whole (size; sha256 for pulled ones): a cut never lists a part."""
    manifest = store / "manifest.json"
    if not manifest.exists():
        return set()
    models = json.loads(manifest.read_text())["models"]
    for name, model in models.items():
        paths = [store / file for file in model["files"]]
        assert sum(path.stat().st_size for path in paths) == model["size"], name
        if model["source"] == "pull":
            assert [sha256(path) for path in paths] == model["sha256"], name
    return set(models)


def cut_at(env: dict[str, str], part: Path, n_bytes: int) -> None:
    """Start `edgellm pull` and kill -9 it once `part` holds at least `n_bytes`."""
    pull = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "pull", f"{REPO}:Q8_0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size >= n_bytes):
        assert pull.poll() is None, f"the pull ended before the cut: {pull.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"the partial file never reached {n_bytes} bytes"
        time.sleep(0.002)  # polling for a condition: the partial file's size
    os.kill(pull.pid, signal.SIGKILL)
    pull.communicate(timeout=30)


def test_power_cuts_during_a_pull_leave_a_store_that_resumes(
    hub: FakeHub, edgellm_home: Path, test_model: Path
) -> None:
    env = {**os.environ, "EDGELLM_HOME": str(edgellm_home)}
    imported = subprocess.run(
        [sys.executable, "-m", "edgellm", "import", str(test_model)], capture_output=True, text=True, env=env
    )
    assert imported.returncode == 0, imported.stderr  # a manifest with a model in it before the cuts
    store = edgellm_home / "models"
    before = whole_models(store)
    real = hub.repos[REPO].files[FILE].read_bytes()
    final = store / REPO / FILE
    part = final.with_name(FILE + ".part")
    starts = []  # the partial file's size as each pull began
    for cut, n_bytes in enumerate(sorted(random.Random(SEED).sample(range(1, len(real)), CUTS))):
        starts.append(part.stat().st_size if part.exists() else 0)
        cut_at(env, part, max(n_bytes, starts[-1] + 1))  # always mid-download, never as Python starts
        assert whole_models(store) in (before, before | {f"{REPO}:Q8_0"}), f"cut {cut}"
        assert not final.exists() or sha256(final) == hub.repos[REPO].digest(FILE), f"cut {cut}"
        kept = part.read_bytes()
        prefix = real.startswith(kept)  # (not asserted on the bytes themselves: megabytes in a failure message)
        assert starts[-1] < len(kept) <= len(real) and prefix, f"cut {cut} at {n_bytes}: {len(kept)} bytes kept"
    kept = len(part.read_bytes())
    already = len(hub.log)
    done = subprocess.run(
        [sys.executable, "-m", "edgellm", "pull", f"{REPO}:Q8_0"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip().splitlines()[-1]) == final and sha256(final) == hub.repos[REPO].digest(FILE)
    assert not part.exists() and whole_models(store) == before | {f"{REPO}:Q8_0"}
    ranges = [wanted for method, path, wanted in hub.log if method == "GET" and f"path={FILE}" in path]
    assert [wanted for method, path, wanted in hub.log[already:] if method == "GET" and f"path={FILE}" in path] == [
        f"bytes={kept}-"
    ], "only the rest was fetched"
    # every cut pull resumed where the one before it stopped: none started the file over
    assert set(ranges) <= {f"bytes={start}-" if start else None for start in starts + [kept]}


def test_a_power_cut_as_the_file_is_renamed(hub: FakeHub, edgellm_home: Path) -> None:
    """Cut as the verified file takes its final name (as a rule before the manifest lists it): both stay whole,
    and the next pull completes."""
    hub.repos[REPO].faults.clear()
    env = {**os.environ, "EDGELLM_HOME": str(edgellm_home)}
    store = edgellm_home / "models"
    final = store / REPO / FILE
    pull = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "pull", f"{REPO}:Q8_0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not final.exists():
        assert pull.poll() is None and time.monotonic() < deadline, "the pull ended without its file"
        time.sleep(0.001)  # polling for a condition: the final name appearing
    os.kill(pull.pid, signal.SIGKILL)
    pull.wait(30)
    assert sha256(final) == hub.repos[REPO].digest(FILE)
    assert whole_models(store) <= {f"{REPO}:Q8_0"}
    done = subprocess.run(
        [sys.executable, "-m", "edgellm", "pull", f"{REPO}:Q8_0"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert sha256(final) == hub.repos[REPO].digest(FILE) and whole_models(store) == {f"{REPO}:Q8_0"}
