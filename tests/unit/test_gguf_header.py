"""The fast GGUF header reader on files written here: tinymodel's agree with the gguf package, each bad file has one
clear reason. On the real test model: tests/integration/test_gguf_header.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.gguf.header import ARRAY, GGML_TYPES, SMALL_ARRAY, STRING, UINT32, GGUFError, parse, read_header


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


def gguf_with_strings(strings: list[bytes], cut: int = 0) -> bytes:
    """A GGUF holding one metadata string array `tokens` and a uint32 `after` behind it, no tensors; less its
    last `cut` bytes."""

    def text(raw: bytes) -> bytes:
        return len(raw).to_bytes(8, "little") + raw

    array = ARRAY.to_bytes(4, "little") + STRING.to_bytes(4, "little") + len(strings).to_bytes(8, "little")
    data = (
        b"GGUF"
        + (3).to_bytes(4, "little")
        + (0).to_bytes(8, "little")
        + (2).to_bytes(8, "little")
        + text(b"tokens")
        + array
        + b"".join(text(s) for s in strings)
        + text(b"after")
        + UINT32.to_bytes(4, "little")
        + (7).to_bytes(4, "little")
    )
    return data[: len(data) - cut]


# Long enough to be walked rather than read, with every length modulo 8 and multi-byte UTF-8.
WORDS = [("é" * (n % 13)).encode() + b"x" * (n % 5) for n in range(SMALL_ARRAY * 5)]


@pytest.mark.parametrize("full", [False, True])
def test_a_long_string_array_is_walked_to_what_follows(full: bool) -> None:
    data = gguf_with_strings(WORDS)
    header = parse(data, Path("x.gguf"), len(data), full_arrays=["tokens"] if full else ())
    assert header.metadata["tokens"].count == len(WORDS)
    assert header.metadata["after"] == 7  # the walk ended exactly where the array does
    assert ("tokens" in header.small_arrays) is full
    if full:
        assert header.small_arrays["tokens"] == [w.decode() for w in WORDS]


@pytest.mark.parametrize("cut", [1, 8, 9, 200])
def test_a_string_array_cut_short_is_truncated(cut: int) -> None:
    behind = 8 + len(b"after") + 4 + 4  # the `after` entry, behind the strings
    data = gguf_with_strings(WORDS, cut=behind + cut)
    with pytest.raises(GGUFError, match="truncated: the file ends inside the array tokens"):
        parse(data, Path("x.gguf"), len(data))


def test_a_string_length_past_the_end_is_truncated() -> None:
    huge = gguf_with_strings([*WORDS[:-1], b"last"])
    at = huge.rindex(b"last") - 8
    data = huge[:at] + (2**63).to_bytes(8, "little") + huge[at + 8 :]
    with pytest.raises(GGUFError, match="truncated: the file ends inside the array tokens"):
        parse(data, Path("x.gguf"), len(data))
