"""The safetensors reader: hand-written files read back exactly, chunked reads, every malformed input, memory."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgellm.convert import safetensors as st
from edgellm.convert.safetensors import Checkpoint
from edgellm.errors import ModelFileError
from tests.support.checkpoints import iter_tensors

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}


def to_bf16(x: np.ndarray) -> np.ndarray:
    """The bf16 bits of float32 values: the upper 16 bits, rounded to nearest even."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_st(path: Path, tensors: dict[str, tuple[str, np.ndarray]], patch: dict | None = None) -> Path:
    """Write a safetensors file by hand: name -> (dtype, array of the stored bytes); `patch` edits header entries."""
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, at = [], 0
    for name, (dtype, array) in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    for name, changes in (patch or {}).items():
        header[name].update(changes)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return path


def write_index(folder: Path, weight_map: dict[str, str]) -> None:
    (folder / st.INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))


rng = np.random.default_rng(7)
F32 = rng.standard_normal((5, 7)).astype(np.float32)
F16 = rng.standard_normal((3, 4)).astype(np.float16)
EXACT_BF16 = (rng.standard_normal((4, 6)).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
ROUGH = rng.standard_normal((2, 9)).astype(np.float32) * 10
I64 = np.arange(6, dtype=np.int64).reshape(2, 3) - 3


def simple_tensors() -> dict[str, tuple[str, np.ndarray]]:
    return {
        "model.embed.weight": ("F32", F32),
        "model.norm.weight": ("F16", F16),
        "model.layers.0.q.weight": ("BF16", to_bf16(EXACT_BF16)),
        "model.layers.0.k.weight": ("BF16", to_bf16(ROUGH)),
        "positions": ("I64", I64),
        "scale": ("F32", np.array(2.5, np.float32)),
    }


def one_line(error: ModelFileError) -> str:
    message = str(error)
    assert "\n" not in message and message
    return message


def test_single_file_reads_back_exactly(tmp_path: Path) -> None:
    write_st(tmp_path / "model.safetensors", simple_tensors())
    ck = Checkpoint.open(tmp_path)
    assert ck.names() == list(simple_tensors())  # file order, __metadata__ skipped
    assert [info.shape for info in ck.tensors] == [(5, 7), (3, 4), (4, 6), (2, 9), (2, 3), ()]
    assert ck.total_bytes == 5 * 7 * 4 + 3 * 4 * 2 + 4 * 6 * 2 + 2 * 9 * 2 + 6 * 8 + 4
    assert ck.files == (tmp_path / "model.safetensors",)

    assert ck.read("model.embed.weight").dtype == np.float32
    np.testing.assert_array_equal(ck.read("model.embed.weight"), F32)
    np.testing.assert_array_equal(ck.read("model.norm.weight"), F16)
    np.testing.assert_array_equal(ck.read("model.norm.weight", np.float32), F16.astype(np.float32))
    np.testing.assert_array_equal(ck.read("positions"), I64)
    assert ck.read("scale").shape == () and float(ck.read("scale")) == 2.5

    bf = ck.read("model.layers.0.q.weight")  # BF16 -> float32 is exact
    assert bf.dtype == np.float32 and bf.shape == (4, 6)
    np.testing.assert_array_equal(bf, EXACT_BF16)
    rough = ck.read("model.layers.0.k.weight")
    np.testing.assert_allclose(rough, ROUGH, rtol=2**-8)  # bf16 keeps 8 bits of mantissa
    assert not np.array_equal(rough, ROUGH)
    np.testing.assert_array_equal(ck.read("model.layers.0.k.weight", np.uint16), to_bf16(ROUGH))  # raw bits

    half = ck.read("model.layers.0.k.weight", np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), rough, rtol=2**-10)
    np.testing.assert_array_equal(ck.read("model.layers.0.q.weight", np.float16), EXACT_BF16.astype(np.float16))


def test_sharded_checkpoint_with_index(tmp_path: Path) -> None:
    first = {"a.weight": ("F32", F32), "b.weight": ("BF16", to_bf16(EXACT_BF16))}
    second = {"c.weight": ("F16", F16), "d.weight": ("I64", I64)}
    write_st(tmp_path / "model-00001-of-00002.safetensors", first)
    write_st(tmp_path / "model-00002-of-00002.safetensors", second)
    one, two = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    write_index(tmp_path, {"c.weight": two, "a.weight": one, "d.weight": two, "b.weight": one})
    (tmp_path / "config.json").write_text("{}")
    ck = Checkpoint.open(tmp_path)
    assert ck.names() == ["a.weight", "b.weight", "c.weight", "d.weight"]
    assert [info.file.name for info in ck.tensors] == ["model-00001-of-00002.safetensors"] * 2 + [
        "model-00002-of-00002.safetensors"
    ] * 2
    np.testing.assert_array_equal(ck.read("a.weight"), F32)
    np.testing.assert_array_equal(ck.read("b.weight"), EXACT_BF16)
    np.testing.assert_array_equal(ck.read("c.weight"), F16)
    np.testing.assert_array_equal(ck.read("d.weight"), I64)
    seen = [(info.name, array.copy()) for info, array in iter_tensors(ck)]
    assert [name for name, _ in seen] == ck.names()
    for name, array in seen:
        np.testing.assert_array_equal(array, ck.read(name))


def test_order_follows_the_data_not_the_header(tmp_path: Path) -> None:
    path = write_st(tmp_path / "model.safetensors", {"z": ("F32", F32), "a": ("F16", F16)})
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    reordered = json.dumps({"a": header["a"], "__metadata__": {}, "z": header["z"]}).encode()
    reordered += b" " * (length - len(reordered))  # the data must stay where it is
    path.write_bytes(raw[:8] + reordered + raw[8 + length :])
    ck = Checkpoint.open(tmp_path)
    assert ck.names() == ["z", "a"]
    np.testing.assert_array_equal(ck.read("a"), F16)


def test_lone_shard_set_without_index(tmp_path: Path) -> None:
    write_st(tmp_path / "m-00002-of-00002.safetensors", {"b": ("F16", F16)})
    write_st(tmp_path / "m-00001-of-00002.safetensors", {"a": ("F32", F32)})
    assert Checkpoint.open(tmp_path).names() == ["a", "b"]
    lone = tmp_path / "only"
    lone.mkdir()
    write_st(lone / "weights.safetensors", {"a": ("F32", F32)})
    assert Checkpoint.open(lone).names() == ["a"]
    assert Checkpoint.open(lone / "weights.safetensors").names() == ["a"]


@pytest.mark.parametrize(
    ("src", "out"),
    [
        ("BF16", np.float16),
        ("BF16", np.float32),
        ("BF16", None),
        ("F32", np.float16),
        ("F16", np.float32),
        ("F32", None),
    ],
)
def test_chunked_read_equals_whole_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, src: str, out) -> None:
    values = rng.standard_normal((301, 37)).astype(np.float32)
    stored = {"BF16": to_bf16(values), "F32": values, "F16": values.astype(np.float16)}[src]
    write_st(tmp_path / "model.safetensors", {"w": (src, stored)})
    ck = Checkpoint.open(tmp_path)
    whole = ck.read("w", out, chunk_bytes=1 << 30)
    chunked = ck.read("w", out, chunk_bytes=1000)  # 1000 bytes of scratch: many chunks, the last one partial
    np.testing.assert_array_equal(chunked, whole)
    monkeypatch.setattr(st, "CHUNK_BYTES", 4096)
    np.testing.assert_array_equal(ck.read("w", out), whole)
    buffer = np.empty(whole.nbytes + 16, np.uint8)
    np.testing.assert_array_equal(ck.read("w", out, buffer=buffer, chunk_bytes=777), whole)


def _corrupt(tmp_path: Path, case: str) -> Path:
    """Build the malformed checkpoint `case` in tmp_path; returns the folder to open."""
    tensors = simple_tensors()
    if case == "no safetensors":
        (tmp_path / "config.json").write_text("{}")
        (tmp_path / "pytorch_model.bin").write_bytes(b"\0" * 10)
    elif case == "no folder":
        return tmp_path / "nope"
    elif case in ("shard missing", "tensor in two shards", "index disagrees", "index extra", "shard extra"):
        write_st(tmp_path / "s-1.safetensors", {"a": ("F32", F32), "b": ("F16", F16)})
        second = {"c": ("I64", I64), "a": ("F32", F32)} if case == "tensor in two shards" else {"c": ("I64", I64)}
        if case == "shard extra":
            second["x"] = ("F16", F16)
        if case != "shard missing":
            write_st(tmp_path / "s-2.safetensors", second)
        weight_map = {"a": "s-1.safetensors", "b": "s-1.safetensors", "c": "s-2.safetensors"}
        if case == "index disagrees":
            weight_map["b"] = "s-2.safetensors"
        if case == "index extra":
            weight_map["y"] = "s-2.safetensors"
        write_index(tmp_path, weight_map)
    elif case == "truncated data":
        path = write_st(tmp_path / "model.safetensors", tensors)
        path.write_bytes(path.read_bytes()[:-3])
    elif case in ("header beyond file", "lfs pointer", "tiny file"):
        body = {
            "header beyond file": struct.pack("<Q", 5000) + b'{"a": 1}',
            "lfs pointer": b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 12\n",
            "tiny file": b"\x10\0\0",
        }[case]
        (tmp_path / "model.safetensors").write_bytes(body)
    elif case == "broken json":
        raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]'
        (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    elif case == "duplicate in one header":
        raw = (
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
        )
        (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    elif case == "offsets disagree":
        write_st(tmp_path / "model.safetensors", tensors, {"model.norm.weight": {"shape": [3, 5]}})
    elif case == "unknown dtype":
        write_st(tmp_path / "model.safetensors", {"fp8": ("F8_E4M3", np.zeros((2, 2), np.uint8))})
    elif case == "ambiguous":
        write_st(tmp_path / "adapter_model.safetensors", {"a": ("F32", F32)})
        write_st(tmp_path / "consolidated.safetensors", {"a": ("F32", F32)})
    return tmp_path


@pytest.mark.parametrize(
    ("case", "problem", "words"),
    [
        ("no folder", "missing", ["no such checkpoint folder"]),
        ("no safetensors", "missing", ["no model.safetensors", "PyTorch .bin", "safe_serialization"]),
        ("shard missing", "missing", ["s-2.safetensors", "missing", "download"]),
        ("truncated data", "truncated", ["model.safetensors", "tensor scale", "truncated", "download it again"]),
        ("header beyond file", "truncated", ["header needs 5008 bytes", "download it again"]),
        ("tiny file", "truncated", ["too short"]),
        ("lfs pointer", "missing", ["Git LFS pointer", "git lfs pull"]),
        ("broken json", "corrupt", ["damaged safetensors header"]),
        ("duplicate in one header", "corrupt", ["a is listed twice"]),
        ("offsets disagree", "corrupt", ["tensor model.norm.weight", "span 24 bytes", "[3, 5] of F16 needs 30"]),
        ("unknown dtype", "unsupported", ["tensor fp8", "F8_E4M3", "BF16 or F16 release"]),
        ("tensor in two shards", "corrupt", ["tensor a", "stored twice", "s-1.safetensors", "s-2.safetensors"]),
        ("index disagrees", "corrupt", ["tensor b", "puts it in s-2.safetensors"]),
        ("index extra", "corrupt", ["s-2.safetensors", "no tensor y"]),
        ("shard extra", "corrupt", ["tensor x", "not in model.safetensors.index.json"]),
        (
            "ambiguous",
            "ambiguous",
            ["adapter_model.safetensors", "consolidated.safetensors", "no model.safetensors.index"],
        ),
    ],
)
def test_malformed_checkpoint_is_one_clear_error(tmp_path: Path, case: str, problem: str, words: list[str]) -> None:
    folder = _corrupt(tmp_path, case)
    with pytest.raises(ModelFileError) as caught:
        Checkpoint.open(folder)
    message = one_line(caught.value)
    assert caught.value.problem == problem, message
    for word in words:
        assert word in message, message
    assert caught.value.path.is_relative_to(tmp_path)


def test_file_shrunk_after_open_is_caught_on_read(tmp_path: Path) -> None:
    path = write_st(tmp_path / "model.safetensors", simple_tensors())
    ck = Checkpoint.open(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ModelFileError, match="truncated while reading tensor scale") as caught:
        ck.read("scale")
    assert caught.value.problem == "truncated"
    with pytest.raises(KeyError, match="no tensor"):
        ck.read("nothing")


def test_iterating_a_200_mb_file_holds_one_tensor(tmp_path: Path) -> None:
    """Peak traced allocation while streaming 8 BF16 tensors to F16 is one tensor (+ a chunk), not the file."""
    shape, count = (3200, 4096), 8  # 26 MB each, 210 MB in all
    nbytes = shape[0] * shape[1] * 2
    header = {
        f"layers.{i}.weight": {"dtype": "BF16", "shape": list(shape), "data_offsets": [i * nbytes, (i + 1) * nbytes]}
        for i in range(count)
    }
    raw = json.dumps(header).encode()
    start = 8 + len(raw)
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:  # sparse: holes of zeros, one marked value per tensor
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(start + count * nbytes)
        for i in range(count):
            f.seek(start + i * nbytes + nbytes - 2)
            f.write(to_bf16(np.array([i + 1.5], np.float32)).tobytes())
    ck = Checkpoint.open(tmp_path)
    assert ck.total_bytes == count * nbytes
    chunk = 1 << 20
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        marks = []
        for _info, array in iter_tensors(ck, np.float16, chunk_bytes=chunk):
            assert array.shape == shape and array.dtype == np.float16
            marks.append(float(array[-1, -1]))
            assert not array[0].any()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert marks == [i + 1.5 for i in range(count)]
    one_tensor = shape[0] * shape[1] * 2  # float16 output
    assert one_tensor <= peak < one_tensor + chunk + (1 << 20), peak


@pytest.mark.parametrize(
    ("src", "out"),
    [("BF16", np.float16), ("BF16", np.float32), ("F32", np.float16), ("F16", np.float32), ("F32", None)],
)
def test_read_rows_equals_a_slice_of_the_whole_read(tmp_path: Path, src: str, out) -> None:
    values = rng.standard_normal((301, 37)).astype(np.float32)
    stored = {"BF16": to_bf16(values), "F32": values, "F16": values.astype(np.float16)}[src]
    write_st(
        tmp_path / "model.safetensors",
        {"w": (src, stored), "v": (src, stored[:, 0].copy()), "s": ("F32", np.array(1.0, np.float32))},
    )
    ck = Checkpoint.open(tmp_path)
    whole = ck.read("w", out)
    buffer = np.empty(whole.nbytes, np.uint8)
    for start, stop in [(0, 0), (0, 1), (5, 17), (300, 301), (0, 301), (128, 256)]:
        rows = ck.read_rows("w", start, stop, out, chunk_bytes=1000)
        assert rows.dtype == whole.dtype and rows.shape == (stop - start, 37)
        np.testing.assert_array_equal(rows, whole[start:stop])
        np.testing.assert_array_equal(ck.read_rows("w", start, stop, out, buffer=buffer), whole[start:stop])
    np.testing.assert_array_equal(ck.read_rows("v", 7, 70, out), ck.read("v", out)[7:70])
    with pytest.raises(ValueError, match="rows"):
        ck.read_rows("w", 10, 302, out)
    with pytest.raises(ValueError, match="scalar"):
        ck.read_rows("s", 0, 1)


def test_bf16_to_f16_is_numpys_cast_for_every_value(tmp_path: Path) -> None:
    """BF16 is read as F16 by bit arithmetic: every one of the 65536 bf16 values (normal, subnormal, zero, overflow,
    inf, NaN) must come out as numpy's float32 -> float16 cast gives it, in blocks of mostly odd values too."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    shuffled = np.random.default_rng(3).permutation(bits)
    write_st(
        tmp_path / "model.safetensors",
        {"all": ("BF16", bits.reshape(256, 256)), "mixed": ("BF16", shuffled.reshape(256, 256))},
    )
    ck = Checkpoint.open(tmp_path)
    for name, stored in (("all", bits), ("mixed", shuffled)):
        with np.errstate(over="ignore"):
            want = np.left_shift(stored, 16, dtype=np.uint32).view(np.float32).astype(np.float16)
        for chunk in (1000, 1 << 20):
            got = ck.read(name, np.float16, chunk_bytes=chunk).reshape(-1)
            nan = np.isnan(want)
            assert np.array_equal(np.isnan(got), nan)
            np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])
