"""The fast GGUF header reader on the real test model: the right answers, and a cut copy's one clear reason. On files
written here (tinymodel's, and bad ones): tests/unit/test_gguf_header.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.gguf.header import GGUFError, read_header


def test_reads_the_test_model(test_model: Path) -> None:
    header = read_header(test_model)
    assert header.version == 3
    assert header.architecture == "gemma3"
    assert header.arch_value("context_length") == 32768
    assert header.arch_value("block_count") == 18
    assert header.arch_value("attention.sliding_window") == 512
    assert header.metadata["tokenizer.ggml.tokens"].count == 262144
    assert "tokenizer.chat_template" not in header.metadata
    assert len(header.tensors) == 236
    end = max(t.offset + t.n_bytes for t in header.tensors) + header.data_offset
    assert header.file_size - 64 <= end <= header.file_size


def test_truncated_inside_metadata(tmp_path: Path, test_model: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with open(test_model, "rb") as handle:
        cut.write_bytes(handle.read(100_000))  # ends inside the vocabulary
    with pytest.raises(GGUFError, match="truncated: the file ends inside the array tokenizer.ggml.tokens"):
        read_header(cut)
