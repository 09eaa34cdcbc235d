"""The fixtures both tiers share: the real test model, a private EDGELLM_HOME for every test, a tiny GGUF, and those
more than one module of tests/integration uses (a tiny Hugging Face checkpoint, the local Hub serving a small GGUF, F16
GGUFs at the shapes the quant mixes are checked on, a tmux terminal). Helpers the tests import live in tests/support;
a module that needs another Hub or checkpoint defines its own fixture of that name, which takes precedence."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import TEST_MODEL
from tests.support.terminal import Terminal


@pytest.fixture(scope="session")
def test_model() -> Path:
    if not TEST_MODEL.is_file():
        pytest.fail(f"the test model is missing at {TEST_MODEL}: run `python3 scripts/install.py`")
    return TEST_MODEL


@pytest.fixture(autouse=True)
def edgellm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "edgellm-home"
    monkeypatch.setenv("EDGELLM_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgellm.convert.tinymodel import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama saved with save_pretrained, with a BPE tokenizer trained here (Qwen2's split)."""
    from tests.support.checkpoints import PRE_TOKENIZERS, random_checkpoint, train_bpe

    tokenizer = train_bpe(tmp_path_factory.mktemp("tok"), PRE_TOKENIZERS["qwen2"])
    folder, _ = random_checkpoint("llama", tmp_path_factory.mktemp("ckpt") / "tiny-llama", tokenizer)
    return folder


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Llama GGUF (Q8_0, about 40 MB) for the local Hub to serve."""
    from edgellm.convert.tinymodel import write_model
    from tests.support.specs import SMALL

    return write_model(tmp_path_factory.mktemp("cancel") / "tiny-Q8_0.gguf", SMALL, quant="q8_0")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gguf_file: Path):  # type: ignore[no-untyped-def]
    """The local Hub serving gguf_file as tests/tiny-GGUF, throttled to 4 MiB/s so that a download can be stopped."""
    from tests.support.fakehub import FakeHub, FakeRepo, Faults, point_hub_at

    server = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    server.add(
        "tests/tiny-GGUF",
        FakeRepo({"tiny-Q8_0.gguf": gguf_file}, faults={"tiny-Q8_0.gguf": Faults(bytes_per_s=4 * 2**20)}),
    )
    yield server
    server.close()


@pytest.fixture(scope="module")
def f16_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{name: (F16 GGUF, its HFConfig)} at each shape of tests/support/hf_configs.py's QUANTIZED_SHAPES, and a phi3."""
    from tests.support.hf_configs import write_f16_models

    return write_f16_models(tmp_path_factory.mktemp("f16"))


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A private tmux server, killed afterwards whatever happened."""
    term = Terminal(f"edgellm-test-{uuid.uuid4().hex[:8]}", tmp_path / "exit-status")
    try:
        yield term
    finally:
        term.tmux("kill-server", check=False)


@pytest.fixture(scope="session")
def draft_model(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model's first 4 layers: a draft with its very vocabulary (made once a session, about 20 s)."""
    from tests.support.drafts import first_layers_draft

    return first_layers_draft(test_model, tmp_path_factory.mktemp("drafts") / "gemma-3-270m-4-layers.gguf", 4)


@pytest.fixture(scope="session")
def other_vocab_model(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model with tokens 1000 and 1001 swapped: it runs, but llama.cpp refuses it as the test model's draft."""
    from tests.support.drafts import other_vocab_copy

    return other_vocab_copy(test_model, tmp_path_factory.mktemp("drafts") / "gemma-3-270m-other-vocab.gguf")


@pytest.fixture(scope="session")
def projector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vision projector for the test model (Gemma 3's layout, random weights: 16 tokens an image)."""
    from edgellm.convert.tinyprojector import write_projector

    return write_projector(tmp_path_factory.mktemp("projector") / "mmproj-tiny-gemma3-f16.gguf")


@pytest.fixture(scope="session")
def photo() -> Path:
    """A real photo (llama.cpp's own test image): 640×488 JPEG."""
    return Path(__file__).parent / "fixtures" / "images" / "test-1.jpeg"
