"""A draft model's vocabulary against the target's, as llama.cpp's common_speculative_are_compatible checks it, on
hand-made VocabFacts; read_vocab, and tests/support/drafts.py's copies, on tiny GGUFs written here. On the real test
model: tests/integration/test_draft_models.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edgellm.gguf.header import GGUFError
from edgellm.gguf.vocab import VocabFacts, draft_incompatibility, read_vocab


def facts(n_tokens: int = 1000, **changes: Any) -> VocabFacts:
    tokens = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>") + tuple(f"t{i}" for i in range(5, n_tokens))
    return replace(VocabFacts("llama", "default", 2, 1, True, False, tokens), **changes)


def with_token(vocab: VocabFacts, token_id: int, text: str) -> VocabFacts:
    tokens = list(vocab.tokens)
    tokens[token_id] = text
    return replace(vocab, tokens=tuple(tokens))


def test_identical_vocabularies_pass() -> None:
    assert draft_incompatibility(facts(), facts()) is None


@pytest.mark.parametrize(
    "draft, words",
    [
        (facts(model="gpt2"), "its tokenizer type is BPE (gpt2), the model's is SPM (llama)"),
        (facts(add_bos=False), "it does not add the BOS token, the model does"),
        (facts(bos=7), "its BOS token is 7, the model's is 2"),
        (facts(add_eos=True), "it adds the EOS token, the model does not"),
    ],
)
def test_each_rule_refuses(draft: VocabFacts, words: str) -> None:
    assert draft_incompatibility(facts(), draft) == words


def test_special_ids_count_only_when_added() -> None:
    assert draft_incompatibility(facts(add_bos=False), facts(add_bos=False, bos=7)) is None
    assert draft_incompatibility(facts(), facts(eos=9)) is None  # neither adds EOS
    words = draft_incompatibility(facts(add_eos=True), facts(add_eos=True, eos=9))
    assert words == "its EOS token is 9, the model's is 1"


def test_the_same_type_from_another_tokenizer_name_passes() -> None:
    assert draft_incompatibility(facts(model="gpt2", pre="qwen2"), facts(model="whitespace", pre="qwen2")) is None


def test_sizes_may_differ_by_128_not_129() -> None:
    assert draft_incompatibility(facts(1000), facts(1128)) is None
    assert draft_incompatibility(facts(1128), facts(1000)) is None
    assert draft_incompatibility(facts(1000), facts(1129)) == (
        "its vocabulary has 1129 tokens, the model's 1000 (more than 128 apart)"
    )


def test_ids_below_5_are_not_compared() -> None:
    draft = facts()
    for token_id in range(5):
        draft = with_token(draft, token_id, f"<special{token_id}>")
    assert draft_incompatibility(facts(), draft) is None


def test_the_first_differing_token_is_named() -> None:
    draft = with_token(with_token(facts(), 900, "other"), 139, "<x>")
    words = draft_incompatibility(facts(), draft)
    assert words == "its vocabulary differs from the model's at token 139 ('<x>' vs 't139')"
    assert draft_incompatibility(facts(), with_token(facts(), 5, "x")) is not None  # id 5 is compared
    last = facts().n_tokens - 1
    assert f"at token {last} " in (draft_incompatibility(facts(), with_token(facts(), last, "x")) or "")


def test_tokens_past_the_shorter_vocabulary_are_not_compared() -> None:
    assert draft_incompatibility(facts(1000), facts(1100)) is None


def test_long_token_text_is_shortened() -> None:
    words = draft_incompatibility(facts(), with_token(facts(), 10, "a" * 200 + "\n"))
    assert words is not None and "'" + "a" * 23 + "…'" in words and len(words) < 120


def write_vocab_gguf(
    path: Path, tokens: list[Any], model: str = "llama", pre: str | None = None, **keys: int | bool
) -> Path:
    """A GGUF with no tensors, only tokenizer keys: `keys` as tokenizer.ggml.KEY."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    for key, value in keys.items():
        if isinstance(value, bool):
            writer.add_bool(f"tokenizer.ggml.{key}", value)
        else:
            writer.add_uint32(f"tokenizer.ggml.{key}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁the", "\n", "é", *[f"t{i}" for i in range(8, 300)]]


def test_read_vocab_of_a_file(tmp_path: Path) -> None:
    path = write_vocab_gguf(
        tmp_path / "v.gguf", TOKENS, bos_token_id=2, eos_token_id=1, add_bos_token=True, add_eos_token=False
    )
    vocab = read_vocab(path)
    assert (vocab.model, vocab.pre, vocab.n_tokens, vocab.bos, vocab.eos) == ("llama", "", 300, 2, 1)
    assert (vocab.add_bos, vocab.add_eos) == (True, False)
    assert vocab.tokens == tuple(TOKENS)
    assert read_vocab(path) == vocab
    assert draft_incompatibility(vocab, read_vocab(path)) is None


@pytest.mark.parametrize(
    "model, pre, keys, expected",
    [
        ("llama", None, {}, (1, 2, True, False)),  # SentencePiece: BOS 1, EOS 2, adds BOS
        ("llama", None, {"add_bos_token": False}, (1, 2, False, False)),
        ("gpt2", "qwen2", {}, (11, 11, False, False)),  # BPE adds nothing ...
        ("gpt2", "llama-bpe", {}, (11, 11, True, False)),  # ... except after some pre-tokenizers
        ("t5", None, {}, (-1, 1, False, True)),
        ("llama", None, {"bos_token_id": 5000, "eos_token_id": 7}, (1, 7, True, False)),  # out of range: the default
    ],
)
def test_read_vocab_defaults_as_llama_cpp(
    tmp_path: Path, model: str, pre: str | None, keys: dict[str, int | bool], expected: tuple[int, int, bool, bool]
) -> None:
    vocab = read_vocab(write_vocab_gguf(tmp_path / "v.gguf", TOKENS, model, pre, **keys))
    assert (vocab.bos, vocab.eos, vocab.add_bos, vocab.add_eos) == expected


def test_read_vocab_keeps_tokens_that_are_not_utf8_apart(tmp_path: Path) -> None:
    raw = read_vocab(write_vocab_gguf(tmp_path / "raw.gguf", [*TOKENS[:10], b"\xff", *TOKENS[11:]]))
    replaced = read_vocab(write_vocab_gguf(tmp_path / "replaced.gguf", [*TOKENS[:10], "\ufffd", *TOKENS[11:]]))
    assert raw.n_tokens == 300
    assert "at token 10 " in (draft_incompatibility(replaced, raw) or "")


def test_read_vocab_of_bad_files(tmp_path: Path) -> None:
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("not a model\n")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_vocab(not_gguf)
    whole = write_vocab_gguf(tmp_path / "whole.gguf", TOKENS).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: len(whole) - 500])
    with pytest.raises(GGUFError, match="truncated"):
        read_vocab(cut)
    from gguf import GGUFWriter

    writer = GGUFWriter(str(tmp_path / "none.gguf"), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="no vocabulary"):
        read_vocab(tmp_path / "none.gguf")


def test_first_layers_draft_cuts_blocks_and_per_layer_arrays(tmp_path: Path) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    from edgellm.gguf.header import read_header
    from tests.support.drafts import first_layers_draft, other_vocab_copy

    writer = GGUFWriter(str(tmp_path / "model.gguf"), "llama")
    writer.add_block_count(3)
    writer.add_head_count_kv([1, 2, 4])  # given per layer
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS * 4)  # 1200 tokens: ids 1000 and 1001 exist
    writer.add_token_scores([float(i) for i in range(1200)])
    q8_0 = GGMLQuantizationType.Q8_0
    writer.add_tensor("token_embd.weight", quantize(np.ones((8, 64), np.float32), q8_0), raw_dtype=q8_0)
    writer.add_tensor("output_norm.weight", np.ones(64, np.float32))
    for layer in range(3):
        writer.add_tensor(f"blk.{layer}.attn_norm.weight", np.full(64, layer, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    draft = first_layers_draft(tmp_path / "model.gguf", tmp_path / "draft.gguf", 2)
    header = read_header(draft, full_arrays=("tokenizer.ggml.scores",))
    assert header.arch_value("block_count") == 2
    assert header.small_arrays["llama.attention.head_count_kv"] == [1, 2]
    assert [t.name for t in header.tensors] == [
        "token_embd.weight",
        "output_norm.weight",
        "blk.0.attn_norm.weight",
        "blk.1.attn_norm.weight",
    ]
    assert header.tensors[0].ggml_type == q8_0 and header.tensors[0].shape == (64, 8)
    assert read_vocab(draft) == read_vocab(tmp_path / "model.gguf")
    assert not list(tmp_path.glob("*.partial"))

    other = other_vocab_copy(tmp_path / "model.gguf", tmp_path / "other.gguf")
    scores = read_header(other, full_arrays=("tokenizer.ggml.scores",)).small_arrays["tokenizer.ggml.scores"]
    assert scores[999:1002] == [999.0, 1001.0, 1000.0]
    words = draft_incompatibility(read_vocab(tmp_path / "model.gguf"), read_vocab(other))
    assert words == "its vocabulary differs from the model's at token 1000 ('t101' vs 't100')"
