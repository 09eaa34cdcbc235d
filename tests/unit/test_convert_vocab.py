"""edgellm.convert.vocab without llama.cpp: the llama.cpp name picked for each pre-tokenizer split, tokenizers
trained here read back (padded to the embedding rows), and every malformed or unsupported tokenizer refused with
one line. That llama.cpp tokenizes the vocabularies written as HF does is tests/integration/test_convert_vocab.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
import sentencepiece as spm  # dev dependencies (pip install -e .[dev]), as is tokenizers

from edgellm.convert import vocab as vocab_mod
from edgellm.convert.vocab import pre_tokenizer_name, read_vocab
from edgellm.errors import ModelFileError
from tests.support.checkpoints import CORPUS, PRE_TOKENIZERS, byte_level, split_rule, train_bpe


def test_llama3_regex_without_ignore_merges_is_dbrx() -> None:
    """Llama 3's split with plain BPE merging: llama.cpp's 'llama-bpe' would ignore merges, 'dbrx' does not."""
    data = {"pre_tokenizer": PRE_TOKENIZERS["llama-bpe"], "model": {"type": "BPE", "ignore_merges": False}}
    assert pre_tokenizer_name(data) == "dbrx"
    data["model"]["ignore_merges"] = True
    assert pre_tokenizer_name(data) == "llama-bpe"
    # llama.cpp's own adaptation of the pattern (no (?i:...)) names the same split
    adapted = vocab_mod.LLAMA3.replace(vocab_mod._CONTRACTIONS, vocab_mod._CONTRACTIONS_LLAMA_CPP)
    assert adapted != vocab_mod.LLAMA3
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split_rule(adapted), byte_level(False)]}
    assert pre_tokenizer_name(data) == "llama-bpe"


def test_unknown_split_regex_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = train_bpe(tmp_path / "ckpt", PRE_TOKENIZERS["llama-bpe"], vocab_size=300)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\p{N}{1,4}|\s+"
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError) as e:
        read_vocab(folder)
    assert e.value.problem == "unsupported" and e.value.path == folder / "tokenizer.json"
    assert r"\\p{L}+|\\p{N}{1,4}|\\s+" in str(e.value) and "\n" not in str(e.value)


def test_non_byte_level_pre_tokenizer_is_an_error() -> None:
    metaspace = {"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"}}
    with pytest.raises(ModelFileError, match="Metaspace") as e:
        pre_tokenizer_name(metaspace)
    assert e.value.problem == "unsupported"
    with pytest.raises(ModelFileError, match="not a byte-level BPE split") as e:
        pre_tokenizer_name({"pre_tokenizer": None})


def test_no_tokenizer_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelFileError, match="no tokenizer") as e:
        read_vocab(tmp_path)
    assert e.value.problem == "missing" and "\n" not in str(e.value)


def test_broken_tokenizer_json(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {', encoding="utf-8")
    with pytest.raises(ModelFileError, match="not readable JSON") as e:
        read_vocab(tmp_path)
    assert e.value.problem == "corrupt" and "\n" not in str(e.value)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE"}}', encoding="utf-8")
    with pytest.raises(ModelFileError, match="no model vocabulary"):
        read_vocab(tmp_path)


def test_tokenizer_smaller_than_n_vocab_only(tmp_path: Path) -> None:
    folder = train_bpe(tmp_path / "ckpt", PRE_TOKENIZERS["gpt-2"], vocab_size=300)
    n = len(read_vocab(folder))
    padded = read_vocab(folder, n_vocab=n + 3)
    assert padded.tokens[n:] == (f"[PAD{n}]", f"[PAD{n + 1}]", f"[PAD{n + 2}]")
    assert set(padded.token_types[n:]) == {gguf.TokenType.UNUSED}
    with pytest.raises(ModelFileError, match="embedding rows"):
        read_vocab(folder, n_vocab=n - 1)


def test_tiktoken_model_file_beside_tokenizer_json_is_ignored(tmp_path: Path) -> None:
    folder = train_bpe(tmp_path / "ckpt", PRE_TOKENIZERS["llama-bpe"], ignore_merges=True, vocab_size=300)
    (folder / "tokenizer.model").write_text("IQ== 0\nIg== 1\nIw== 2\n", encoding="ascii")  # tiktoken's format
    vocab = read_vocab(folder)
    assert vocab.model == "gpt2" and vocab.pre == "llama-bpe"
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="not SentencePiece") as e:
        read_vocab(folder)
    assert e.value.problem == "missing"


def test_unigram_sentencepiece_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=200,
        model_type="unigram",
        num_threads=1,
        minloglevel=2,
    )
    with pytest.raises(ModelFileError, match="unigram") as e:
        read_vocab(folder)
    assert e.value.problem == "unsupported"
