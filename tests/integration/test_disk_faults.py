"""A full or read-only disk under EDGELLM_HOME: `run`, `chat`, the TUI and `serve` go on without the log, the spec
cache and the history, and say so once, naming the disk; a disk that fills while `convert` writes a GGUF leaves no
file and a one-line error. Each test mounts a small tmpfs, which needs root: elsewhere they are skipped with the
reason."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from edgellm.storage import disk as disk_words
from edgellm.tui.launch import open_app
from tests.support import assert_one_line_error, edgellm
from tests.support.checkpoints import PRE_TOKENIZERS, SHAPE, train_bpe
from tests.support.disks import ROOT_ONLY, fill, mount
from tests.support.server import ServerProcess
from tests.support.tui import loaded, messages, run, say, settings, until

pytestmark = pytest.mark.root


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A factory of small tmpfs mounts under tmp_path, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_ONLY)
    mounted: list[Path] = []

    def make(name: str, size_kib: int, read_only: bool = False) -> Path:
        where = tmp_path / name
        mount(where, size_kib, read_only)
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_run_on_a_full_disk_answers_and_says_what_is_not_kept(test_model: Path, small_disk) -> None:
    disk = small_disk("full", 64)
    fill(disk)
    done = edgellm(
        "run",
        "-m",
        str(test_model),
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--temp",
        "0",
        env={"EDGELLM_HOME": str(disk / "home")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "Traceback" not in done.stderr
    assert f"the disk holding {disk / 'home'}" in done.stderr and "is full" in done.stderr
    assert "the model spec cache is not being kept" in done.stderr
    assert "llama.cpp's log is not being kept" in done.stderr  # said while loading, when fd 2 is /dev/null: held
    assert not list(disk.rglob("*.tmp")), "a half-written cache entry was left behind"


def test_chat_on_a_full_disk_answers_without_history(test_model: Path, small_disk) -> None:
    """The history database is not blamed: the disk is."""
    disk = small_disk("almost-full", 48)
    (disk / "filler").write_bytes(b"\0" * 24 * 1024)
    done = edgellm("chat", "-m", str(test_model), "-n", "4", input="Hi\n", env={"EDGELLM_HOME": str(disk / "home")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "is full: this conversation is not being saved" in done.stderr
    assert "not a usable history database" not in done.stderr and "Traceback" not in done.stderr


def test_a_read_only_home(test_model: Path, small_disk) -> None:
    disk = small_disk("read-only", 64, read_only=True)
    home = {"EDGELLM_HOME": str(disk / "home")}
    ran = edgellm("run", "-m", str(test_model), "-p", "Hello", "-n", "4", env=home)
    chatted = edgellm("chat", "-m", str(test_model), "-n", "4", input="Hi\n", env=home)
    for done in (ran, chatted):
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() and "is read-only" in done.stderr and "Traceback" not in done.stderr
    assert "this conversation is not being saved" in chatted.stderr


def test_the_disk_fills_between_two_replies(test_model: Path, small_disk) -> None:
    """The first exchange is saved; the disk fills; the second reply is still shown, and the person is told it is
    not saved. Once space is freed the database is whole and holds the first exchange."""
    disk = small_disk("filling", 2048)
    home = disk / "home"
    chat = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "chat", "-m", str(test_model), "-n", "6"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EDGELLM_HOME": str(home)},
    )
    assert chat.stdin is not None
    chat.stdin.write("Hi\n")
    chat.stdin.flush()
    database = home / "history.db"

    def first_reply_saved() -> bool:
        if not database.exists():
            return False
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                return bool(
                    db.execute(
                        "SELECT count(*) FROM messages WHERE role = 'assistant' AND state = 'complete'"
                    ).fetchone()[0]
                )
        except sqlite3.Error:
            return False

    deadline = time.monotonic() + 120
    while not first_reply_saved():
        assert chat.poll() is None and time.monotonic() < deadline, "the first reply was never saved"
        time.sleep(0.05)
    fill(disk)
    _out, err = chat.communicate("Again\n", timeout=120)
    assert chat.returncode == 0, err
    assert "Traceback" not in err
    assert "is full: this conversation is not being saved from here on" in err
    (disk / "filler").unlink()
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        roles = [row[0] for row in db.execute("SELECT role FROM messages ORDER BY id")]
    assert roles[:2] == ["user", "assistant"]


def test_a_stored_model_runs_on_a_full_disk(test_model: Path, small_disk) -> None:
    """Its last-used time cannot be recorded: said once; the manifest stays whole, no partial one is left."""
    disk = small_disk("store", 256)
    home = {"EDGELLM_HOME": str(disk / "home")}
    imported = edgellm("import", str(test_model), env=home)
    assert imported.returncode == 0, imported.stderr
    manifest = disk / "home" / "models" / "manifest.json"
    before = manifest.read_text()
    fill(disk)
    done = edgellm("run", "-m", test_model.stem, "-p", "Hello", "-n", "4", env=home)
    assert done.returncode == 0, done.stderr
    assert "is full: the store's record of when each model was last used is not being kept" in done.stderr
    assert manifest.read_text() == before
    assert not list((disk / "home" / "models").glob(".manifest-*.tmp"))


def test_the_tui_on_a_full_disk_answers_and_says_nothing_is_saved(
    test_model: Path, small_disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full-screen chat answers and shows, in a toast, the words `chat` prints for an unsaved conversation."""
    disk = small_disk("full", 64)
    fill(disk)
    monkeypatch.setenv("EDGELLM_HOME", str(disk / "home"))
    monkeypatch.setattr(disk_words, "report", disk_words.report)  # open_app points it at the app: put back after
    app = open_app(settings("-n", "8", "--temp", "0"), model=str(test_model), start="chat")
    notice = f"the disk holding {disk / 'home'} is full: this conversation is not being saved"

    def toasts() -> list[str]:
        return [str(toast.render()) for toast in app.screen.query("Toast")]

    async def main() -> None:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: notice in toasts(), what=f"a toast saying {notice!r}")
            await loaded(pilot)
            await say(pilot, "The capital of France is")
            user, reply = messages(app)[-2:]
            assert user.content == "The capital of France is"
            assert reply.role == "assistant" and reply.content.strip()
            assert app.history is None and app.session.history is None
            assert not any("--no-history" in text for text in toasts()), "advice for a flag, shown in the app"

    run(main)


def test_serve_on_a_full_disk_answers(test_model: Path, small_disk) -> None:
    """The server starts and answers both endpoints; the full disk is one warning line per lost write, no traceback."""
    disk = small_disk("full", 64)
    fill(disk)
    server = ServerProcess("-m", str(test_model), "-c", "512", env={"EDGELLM_HOME": str(disk / "home")})
    try:
        server.wait_ready()
        chat = httpx.post(
            f"{server.url}/v1/chat/completions",
            timeout=120,
            json={"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8, "temperature": 0},
        )
        completion = httpx.post(
            f"{server.url}/v1/completions",
            timeout=120,
            json={"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
        )
    finally:
        stopped = server.stop()
    assert stopped == 0, server.log
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"].strip()
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["text"].strip()
    assert "Traceback" not in server.log
    full = [line for line in server.lines if f"the disk holding {disk / 'home'}" in line]
    assert full and all(line.startswith("edgellm: warning: ") and "is full: " in line for line in full), server.log
    assert any(line.endswith("is full: the model spec cache is not being kept") for line in full), server.log
    assert len(full) == len(set(full)), "the same loss said twice"


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Llama of 13M parameters (52 MB of f32): big enough that its GGUF is cut off mid-write."""
    import torch
    import transformers

    tokenizer = train_bpe(tmp_path_factory.mktemp("tok"), PRE_TOKENIZERS["qwen2"])
    folder = tmp_path_factory.mktemp("ckpt") / "big-llama"
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        **{**SHAPE, "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4, "num_attention_heads": 8},
        tie_word_embeddings=False,
    )
    transformers.LlamaForCausalLM(config).float().save_pretrained(folder, safe_serialization=True)
    for file in tokenizer.iterdir():
        shutil.copy(file, folder / file.name)
    return folder


def fill_when(appears: Path, disk: Path, writer: subprocess.Popen) -> tuple[threading.Thread, threading.Event]:
    """Another program takes the rest of `disk` once `appears` exists, i.e. after the pre-flight check passed."""
    filled = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not appears.exists():
            if writer.poll() is not None or time.monotonic() > deadline:
                return
            time.sleep(0.001)  # polling for a condition: the file appearing
        fill(disk)
        filled.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, filled


@pytest.mark.parametrize("quant", ["F32", "Q4_K_M"])
def test_the_disk_fills_during_a_conversion(big_checkpoint: Path, small_disk, quant: str) -> None:
    """A one-line error naming the full disk, no file left, and a GGUF that runs once space is freed."""
    weights = sum(file.stat().st_size for file in big_checkpoint.glob("*.safetensors"))
    # Room for the f32 GGUF and the writer's 1 MiB header allowance; for Q4_K_M, for the f16 intermediate plus the
    # quantizer's check (free >= the f16 file). The allowance makes "just enough free space" pass the check and the
    # write, so the disk is filled from outside while out.gguf.partial is written: by the converter for F32, by
    # llama.cpp's quantizer for Q4_K_M (the intermediate is out.f16.tmp.gguf).
    disk = small_disk("output", (weights + (2 << 20)) // 1024)
    out = disk / "out.gguf"
    command = [
        sys.executable,
        "-m",
        "edgellm",
        "convert",
        str(big_checkpoint),
        "--quant",
        quant,
        "-o",
        str(out),
        "--json",
    ]
    convert = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    filler, filled = fill_when(disk / "out.gguf.partial", disk, convert)
    stdout, stderr = convert.communicate(timeout=300)
    filler.join(30)
    assert filled.is_set(), f"the output was never started: {stderr}"
    done = subprocess.CompletedProcess(command, convert.returncode, stdout, stderr)
    assert_one_line_error(done, f"cannot write {out}: the disk holding {disk} is full", "free some space", "pass -o")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"], "a partial or intermediate file was left"
    (disk / "filler").unlink()
    again = edgellm(*command[3:])
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in disk.iterdir()) == ["out.gguf"]
    ran = edgellm("run", "-m", str(out), "-p", "hi", "-n", "2", "--temp", "0")
    assert ran.returncode == 0, ran.stderr
