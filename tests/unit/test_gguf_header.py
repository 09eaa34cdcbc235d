"""The fast GGUF header reader on files written here: tinymodel's agree with the gguf package, each bad file has one
clear reason. On the real test model: tests/integration/test_gguf_header.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.gguf.header import GGML_TYPES, GGUFError, read_header


def test_agrees_with_gguf_reader_on_tensors(tiny_model: Path) -> None:
    from gguf import GGUFReader

    ours = read_header(tiny_model)
    theirs = GGUFReader(str(tiny_model))
    assert [(t.name, t.offset + ours.data_offset, t.n_bytes) for t in ours.tensors] == [
        (t.name, int(t.data_offset), int(t.n_bytes)) for t in theirs.tensors
    ]


def test_type_table_matches_gguf_package() -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    for type_id, (name, block, size) in GGML_TYPES.items():
        assert GGMLQuantizationType(type_id).name == name
        assert GGML_QUANT_SIZES[GGMLQuantizationType(type_id)] == (block, size)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        (b"this is a text file, not a model\n", "not a GGUF file"),
        (b"GGUF" + (1).to_bytes(4, "little") + bytes(16), "version 1 is not supported"),
        (b"GGUF" + (3).to_bytes(4, "little") + (2**40).to_bytes(8, "little") + bytes(8), "corrupt"),
        (b"GGUF" + (3).to_bytes(4, "little"), "truncated"),
    ],
)
def test_bad_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=reason):
        read_header(path)


def test_truncated_tensor_data(tmp_path: Path, tiny_model: Path) -> None:
    data = tiny_model.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GGUFError, match="truncated: tensor .* runs 1000 bytes past the end"):
        read_header(cut)


def test_directory_and_missing(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="is a directory"):
        read_header(tmp_path)
    with pytest.raises(GGUFError, match="no such file"):
        read_header(tmp_path / "missing.gguf")
