"""The draft models tests/support/drafts.py makes from the test model, with the real llama.cpp: the first layers'
copy loads and generates, and the vocabulary check agrees with llama.cpp's on both copies. The check's rules on
hand-made vocabularies: tests/unit/test_draft_vocab.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.gguf.header import read_header
from edgellm.gguf.vocab import draft_incompatibility, read_vocab

# slow: making each copy takes about 20 s here (gguf's GGUFReader parses the 262k-token vocabulary in Python)
pytestmark = pytest.mark.slow


def test_first_layers_draft_keeps_4_layers(test_model: Path, draft_model: Path) -> None:
    header, source = read_header(draft_model), read_header(test_model)
    assert header.arch_value("block_count") == 4
    kept = {t.name for t in source.tensors if not t.name.startswith("blk.") or int(t.name.split(".")[1]) < 4}
    assert {t.name for t in header.tensors} == kept
    assert {"token_embd.weight", "output_norm.weight", "blk.3.ffn_down.weight"} <= kept
    assert {k: v for k, v in header.metadata.items() if k != "gemma3.block_count"} == {
        k: v for k, v in source.metadata.items() if k != "gemma3.block_count"
    }


def test_first_layers_draft_loads_and_generates(draft_model: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(str(draft_model), n_ctx=256, verbose=False)
    try:
        assert llm.n_vocab() == 262144
        out = llm("The capital of France is", max_tokens=4, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
    finally:
        llm.close()


def test_draft_has_the_models_vocabulary(test_model: Path, draft_model: Path) -> None:
    target = read_vocab(test_model)
    assert read_vocab(draft_model) == target
    assert (target.model, target.n_tokens, target.bos, target.eos, target.add_bos, target.add_eos) == (
        "llama",
        262144,
        2,
        1,
        True,
        False,
    )
    assert draft_incompatibility(target, read_vocab(draft_model)) is None


def test_other_vocab_copy_is_refused_at_the_swapped_token(test_model: Path, other_vocab_model: Path) -> None:
    words = draft_incompatibility(read_vocab(test_model), read_vocab(other_vocab_model))
    assert words is not None and words.startswith("its vocabulary differs from the model's at token 1000 ")


def test_other_vocab_copy_still_loads(other_vocab_model: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(str(other_vocab_model), n_ctx=256, verbose=False)
    try:
        assert llm.n_vocab() == 262144
        assert llm.tokenize(b"put", add_bos=False) == [1001]  # the swap, as llama.cpp reads it
        assert llm.detokenize([1000]) == "▁di".replace("▁", " ").encode()
    finally:
        llm.close()
