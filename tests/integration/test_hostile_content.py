"""Files and listings from someone who means harm: a Hub listing whose names climb out of the store, a link planted
in the store, a GGUF whose header claims huge sizes, a chat template that reaches for Python's insides. Each is
refused with one line (or rendered harmlessly in the sandbox), never followed. Which names leave the repo, pure:
tests/unit/test_hostile_content.py."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from edgellm.convert.tinymodel import Shape, write_model, write_tiny_llama
from tests.support import assert_one_line_error, edgellm
from tests.support.fakehub import FakeHub, FakeRepo, point_hub_at


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    server = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    yield server
    server.close()


def test_a_listing_that_climbs_out_of_the_store_is_refused(hub: FakeHub, tmp_path: Path, edgellm_home: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny-Q8_0.gguf")
    hub.add("evil/Escape-GGUF", FakeRepo({"../../escaped-Q8_0.gguf": model}))
    assert_one_line_error(edgellm("pull", "evil/Escape-GGUF"), "outside the repo's folder", "refused")
    assert not list(edgellm_home.parent.rglob("escaped-Q8_0.gguf"))


def test_a_link_planted_in_the_store_is_not_followed(hub: FakeHub, tmp_path: Path, edgellm_home: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny-Q8_0.gguf")
    hub.add("evil/Linked-GGUF", FakeRepo({"tiny-Q8_0.gguf": model}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (edgellm_home / "models" / "evil").mkdir(parents=True)
    (edgellm_home / "models" / "evil" / "Linked-GGUF").symlink_to(elsewhere)
    assert_one_line_error(edgellm("pull", "evil/Linked-GGUF"), "outside", "symbolic link")
    assert not list(elsewhere.iterdir())


def header(n_tensors: int, n_kv: int, metadata: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + metadata


def text(value: bytes) -> bytes:
    return struct.pack("<Q", len(value)) + value


@pytest.mark.parametrize(
    "data, words",
    [
        (header(2**62, 0), "claims 4611686018427387904 tensors"),
        (header(0, 2**62), "metadata entries"),
        (header(0, 1, struct.pack("<Q", 2**62)), "ends inside a metadata key"),
        (header(0, 1, text(b"general.name") + struct.pack("<IQ", 8, 2**61)), "ends inside the value of general.name"),
        (header(0, 1, text(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**60)), "ends inside the array"),
    ],
)
def test_a_header_claiming_huge_sizes_is_refused_before_any_allocation(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "huge.gguf"
    path.write_bytes(data + bytes(64))
    assert_one_line_error(edgellm("plan", "-m", str(path)), words)


def test_a_chat_template_reaching_for_python_is_refused_in_the_sandbox(tmp_path: Path) -> None:
    """llama-cpp-python's sandboxed Jinja (its fix for CVE-2024-34359) refuses the attribute; the chat says so in
    one line and goes on, and nothing of Python's insides is printed."""
    evil = (
        "{% for m in messages %}{{ m.content.__class__.__mro__[1].__subclasses__() }}"
        "{{ cycler.__init__.__globals__.os.popen('echo pwned').read() }}{% endfor %}"
    )
    model = write_model(tmp_path / "evil.gguf", Shape(chat_template=evil), quant="q8_0")
    done = edgellm("chat", "-m", str(model), "-n", "2", input="Hi\n")
    assert "pwned" not in done.stdout + done.stderr and "<class" not in done.stdout
    assert "chat template refused this conversation" in done.stderr and "unsafe" in done.stderr
    assert "Traceback" not in done.stderr
