"""The one-file binary's launcher (packaging/binary/onefile.sh, written by onefile.py) on a small stand-in folder
whose program is a shell script reporting how it was started: unpacked once into the cache, then started from it;
concurrent first runs; a cache that cannot be written; a pack cut short. And the program's side
(edgellm_unpacked.py): old versions no running program holds are removed. The real binary: test_binary.py."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO

sys.path.insert(0, str(REPO / "packaging" / "binary"))
import edgellm_unpacked
import onefile

PROGRAM = '#!/bin/sh\necho "$0|${EDGELLM_UNPACKED:-}|$*"\n'


@pytest.fixture
def single(tmp_path: Path) -> tuple[Path, str]:
    """A one-file binary of a stand-in folder (a program and a 300 kB library), and its cache key."""
    folder = tmp_path / "folder"
    (folder / "_internal").mkdir(parents=True)
    (folder / "edgellm").write_text(PROGRAM)
    (folder / "edgellm").chmod(0o755)
    (folder / "_internal" / "libstandin.so").write_bytes(os.urandom(300_000))
    out = tmp_path / "dist" / "edgellm"
    return out, onefile.build(folder, out, "0.1.0")


def start(binary: Path, cache: Path, tmp: Path, *args: str) -> tuple[Path, str, str]:
    """Run the binary; the program's path, how it was started (EDGELLM_UNPACKED) and its arguments."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cache.parent), "EDGELLM_UNPACK_DIR": str(cache), "TMPDIR": str(tmp)}
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    program, how, argv = done.stdout.strip().split("|")
    return Path(program), how, argv


def test_the_first_run_unpacks_into_the_cache_and_later_runs_start_there(single, tmp_path: Path) -> None:
    binary, key = single
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    program, how, argv = start(binary, cache, tmp, "a", "b c")
    assert (program, how, argv) == (cache / key / "edgellm", "new", "a b c")
    assert (cache / key / onefile.MARKER).read_text() == key
    (cache / os.readlink(cache / key) / onefile.MARKER).unlink()
    subprocess.run(["rm", "-rf", str(cache / os.readlink(cache / key))], check=True)  # removed by hand
    program, how, _ = start(binary, cache, tmp)
    assert (program, how) == (cache / key / "edgellm", "new")  # unpacked again
    binary.write_bytes(binary.read_bytes()[:2000])  # the pack is gone: a later run must not need it
    program, how, _ = start(binary, cache, tmp)
    assert (program, how) == (cache / key / "edgellm", "")
    assert sorted(p.name for p in cache.iterdir()) == sorted([key, os.readlink(cache / key)])
    assert not list(tmp.iterdir())


def test_concurrent_first_runs_publish_one_whole_folder(single, tmp_path: Path) -> None:
    binary, key = single
    cache = tmp_path / "cache"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EDGELLM_UNPACK_DIR": str(cache)}
    runs = [subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True, env=env) for _ in range(6)]
    answers = [run.communicate(timeout=60)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert {answer.split("|")[0] for answer in answers} == {str(cache / key / "edgellm")}
    assert sorted(p.name for p in cache.iterdir()) == sorted([key, os.readlink(cache / key)])  # the losers' went


def test_a_cache_that_cannot_be_written_falls_back_to_a_temporary_folder(single, tmp_path: Path) -> None:
    binary, _ = single
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a cache under a file can never be made, whoever runs the test (root included)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    program, how, argv = start(binary, blocker / "cache", tmp, "x")
    assert how == "temporary" and argv == "x"
    assert program.parent.parent == tmp and (program.parent / onefile.MARKER).is_file()


def test_no_home_means_a_temporary_folder(single, tmp_path: Path) -> None:
    binary, _ = single
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(
        [str(binary)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)}
    )
    assert done.returncode == 0, done.stderr
    program, how, _ = done.stdout.strip().split("|")
    assert how == "temporary" and Path(program).parent.parent == tmp


def test_a_pack_cut_short_is_never_published(single, tmp_path: Path) -> None:
    binary, _ = single
    binary.write_bytes(binary.read_bytes()[:-1000])
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EDGELLM_UNPACK_DIR": str(cache), "TMPDIR": str(tmp)}
    done = subprocess.run([str(binary)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "cannot unpack the single binary" in done.stderr.splitlines()[-1]
    assert not list(cache.iterdir()) and not list(tmp.iterdir())  # nothing half-made left behind


def test_a_new_version_removes_the_old_ones_no_program_holds(tmp_path: Path) -> None:
    base = tmp_path / "binary"
    folders = {}
    for key in ("0.0.8-held", "0.0.9-free", "0.1.0-ours"):
        folder = base / f".{key}.abcdef"
        folder.mkdir(parents=True)
        (folder / onefile.MARKER).write_text(key)
        (base / key).symlink_to(folder.name)
        folders[key] = folder
    stale, fresh = base / ".0.0.7-x.dead01", base / ".0.1.1-y.busy02"  # partial unpacks with no link to them
    orphan = base / ".0.0.6-z.runs03"  # whole, its link gone, a program still running from it
    for folder in (stale, fresh, orphan):
        folder.mkdir()
    (orphan / onefile.MARKER).write_text("0.0.6-z")
    for old in (stale, orphan):
        os.utime(old, (time.time() - 2 * edgellm_unpacked.ABANDONED_S,) * 2)
    with open(folders["0.0.8-held"] / onefile.MARKER, "rb") as held, open(orphan / onefile.MARKER, "rb") as runs:
        fcntl.flock(held, fcntl.LOCK_SH)  # a program of that version still runs
        fcntl.flock(runs, fcntl.LOCK_SH)
        removed = edgellm_unpacked.remove_unused(base, keep=folders["0.1.0-ours"].resolve())
    assert sorted(p.name for p in removed) == sorted([folders["0.0.9-free"].name, stale.name])
    assert sorted(p.name for p in base.iterdir()) == sorted(
        ["0.0.8-held", folders["0.0.8-held"].name, "0.1.0-ours", folders["0.1.0-ours"].name, fresh.name, orphan.name]
    )
    assert edgellm_unpacked.remove_unused(base, keep=folders["0.1.0-ours"].resolve()) == [
        folders["0.0.8-held"].resolve(),
        orphan,
    ]  # once no program holds them
