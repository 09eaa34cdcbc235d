"""Importance matrices without llama.cpp: the accumulation the eval callback does, the GGUF file llama.cpp reads (and
its legacy format), the mean the quantizer is given, and what is refused before any work."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgellm.cli.words import explain
from edgellm.convert.imatrix import (
    CHUNK_TOKENS,
    Collector,
    Entry,
    Imatrix,
    add_dense,
    add_experts,
    batch_tokens,
    check_matches,
    imatrix_kind,
    importance,
    read_imatrix,
    weight_name,
    write_imatrix,
)
from edgellm.convert.quantize import quantize
from edgellm.convert.quantize_file import check_quant, target_name
from edgellm.errors import EdgellmError, ModelFileError
from edgellm.gguf.header import GGUFHeader, TensorInfo
from edgellm.gguf.quants import FILE_TYPES, NEEDS_IMATRIX, needs_imatrix

MUL_MAT, MUL_MAT_ID, F32, F16 = 29, 30, 0, 1


def sample() -> Imatrix:
    """A dense matrix, an expert matrix with an expert that saw no token, and one more dense one."""
    rng = np.random.default_rng(0)
    return Imatrix(
        {
            "blk.1.ffn_down.weight": Entry(rng.random((1, 8)) * 100, np.array([512])),
            "blk.0.attn_q.weight": Entry(rng.random((1, 4)) * 10, np.array([1024])),
            "blk.0.ffn_up_exps.weight": Entry(
                np.vstack([rng.random(4), np.zeros(4), rng.random(4)]) * 50, np.array([300, 0, 212])
            ),
        },
        ("calibration.txt",),
        2,
        CHUNK_TOKENS,
    )


def test_the_file_round_trips_in_llama_cpps_gguf_layout(tmp_path: Path) -> None:
    data = sample()
    path = write_imatrix(data, tmp_path / "m.imatrix")
    assert [p.name for p in tmp_path.iterdir()] == ["m.imatrix"]  # no partial file left

    back = read_imatrix(path)
    assert (back.datasets, back.chunk_count, back.chunk_size) == (("calibration.txt",), 2, 512)
    assert set(back.entries) == set(data.entries)
    for name, entry in data.entries.items():
        np.testing.assert_allclose(back.entries[name].sums, entry.sums, rtol=1e-6)  # stored as F32
        assert back.entries[name].counts.tolist() == entry.counts.tolist()

    # what common/imatrix-loader.cpp expects: the KVs, F32 <name>.in_sum2 of ne [columns, matrices] and F32
    # <name>.counts of ne [1, matrices], in sorted order, no architecture (the file is no model)
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert "general.architecture" not in reader.fields
    assert reader.fields["imatrix.datasets"].contents() == ["calibration.txt"]
    assert reader.fields["imatrix.chunk_count"].types == [gguf.GGUFValueType.UINT32]
    assert reader.fields["imatrix.chunk_size"].contents() == 512
    tensors = {t.name: t for t in reader.tensors}
    order = [t.name for t in reader.tensors]  # by matrix name, in_sum2 then counts, as llama-imatrix writes them
    assert order == [f"{name}.{part}" for name in sorted(data.entries) for part in ("in_sum2", "counts")]
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in reader.tensors)
    assert tensors["blk.1.ffn_down.weight.in_sum2"].shape.tolist() == [8, 1]
    assert tensors["blk.1.ffn_down.weight.counts"].shape.tolist() == [1, 1]
    assert tensors["blk.0.ffn_up_exps.weight.in_sum2"].shape.tolist() == [4, 3]
    assert tensors["blk.0.ffn_up_exps.weight.counts"].shape.tolist() == [1, 3]
    assert tensors["blk.0.ffn_up_exps.weight.counts"].data.reshape(-1).tolist() == [300, 0, 212]


def test_the_quantizer_gets_the_mean_square_and_one_where_nothing_was_seen() -> None:
    data = sample()
    weights = importance(data)
    dense = data.entries["blk.1.ffn_down.weight"]
    np.testing.assert_allclose(weights["blk.1.ffn_down.weight"], dense.sums[0] / 512, rtol=1e-6)
    experts = data.entries["blk.0.ffn_up_exps.weight"]
    mean = weights["blk.0.ffn_up_exps.weight"]
    assert mean.dtype == np.float32 and mean.shape == (12,)  # the experts one after another
    np.testing.assert_allclose(mean[:4], experts.sums[0] / 300, rtol=1e-6)
    assert mean[4:8].tolist() == [1.0] * 4
    np.testing.assert_allclose(mean[8:], experts.sums[2] / 212, rtol=1e-6)


def test_the_legacy_format_reads_to_the_same_mean(tmp_path: Path) -> None:
    """llama-imatrix's `.dat`: values stored as sums/tokens×calls, with the call count; the mean is values/calls."""
    sums, tokens, calls = np.array([4.0, 8.0, 12.0], dtype=np.float32), 4, 10
    name = b"blk.0.attn_k.weight"
    raw = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name + struct.pack("<ii", calls, 3)
    raw += (sums / tokens * calls).astype("<f4").tobytes() + struct.pack("<ii", 7, 4) + b"wiki"
    path = tmp_path / "old.imatrix"
    path.write_bytes(raw)
    data = read_imatrix(path)
    assert (data.datasets, data.chunk_count) == (("wiki",), 7)
    np.testing.assert_allclose(importance(data)["blk.0.attn_k.weight"], sums / tokens, rtol=1e-6)


def test_a_file_that_is_no_matrix_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        read_imatrix(tmp_path / "missing.imatrix")
    junk = tmp_path / "junk.imatrix"
    junk.write_bytes(b"\xff\xff\xff\x7f not an imatrix")
    with pytest.raises(EdgellmError, match="not an importance matrix"):
        read_imatrix(junk)
    model = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(model, arch="llama")
    writer.add_type("model")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((2, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(EdgellmError, match="general.type is 'model'"):
        read_imatrix(model)


def test_accumulation_sums_squares_per_column_and_counts_tokens() -> None:
    rng = np.random.default_rng(1)
    entries: dict[str, Entry] = {}
    first, second = (
        rng.standard_normal((1, 1, 16, 6), dtype=np.float32),
        rng.standard_normal((1, 1, 32, 6), dtype=np.float32),
    )
    add_dense(entries, "blk.0.attn_q.weight", first)
    add_dense(entries, "blk.0.attn_q.weight", second)
    entry = entries["blk.0.attn_q.weight"]
    np.testing.assert_allclose(
        entry.sums[0], (first**2).sum(axis=(0, 1, 2)) + (second**2).sum(axis=(0, 1, 2)), rtol=1e-5
    )
    assert entry.counts.tolist() == [48]
    with pytest.raises(Exception, match="columns"):
        add_dense(entries, "blk.0.attn_q.weight", np.zeros((1, 1, 16, 5), dtype=np.float32))

    # experts: 5 tokens, each sent to 2 of 3 experts with its own input per expert used
    x = rng.standard_normal((5, 2, 4)).astype(np.float32)
    ids = np.array([[0, 2], [2, 0], [0, 1], [2, 1], [0, 2]], dtype=np.int32)
    add_experts(entries, "blk.0.ffn_up_exps.weight", x, ids, 3)
    experts = entries["blk.0.ffn_up_exps.weight"]
    expected = np.zeros((3, 4))
    for token in range(5):
        for used in range(2):
            expected[ids[token, used]] += x[token, used].astype(np.float64) ** 2
    np.testing.assert_allclose(experts.sums, expected, rtol=1e-6)
    assert experts.counts.tolist() == [4, 2, 4]


class FakeNode:
    """A graph node as compat.Node shows it, with sources and data given."""

    def __init__(self, op: int = -1, name: str = "", ne=(1, 1, 1, 1), type: int = F32, src=(), data=None) -> None:
        self.op, self.name, self.ne, self.type, self.sources, self.data = op, name, ne, type, src, data

    def src(self, index: int):  # type: ignore[no-untyped-def]
        return self.sources[index] if index < len(self.sources) else None

    def array(self, dtype):  # type: ignore[no-untyped-def]
        return self.data


def test_the_callback_claims_what_llama_imatrix_claims() -> None:
    collector = Collector(MUL_MAT, MUL_MAT_ID, F32)

    def product(weight: str, rows: int, kind: int = F32, op: int = MUL_MAT) -> FakeNode:
        x = np.ones((1, 1, rows, 8), dtype=np.float32)
        return FakeNode(
            op, src=(FakeNode(name=weight, ne=(8, 4, 1, 1)), FakeNode(ne=(8, rows, 1, 1), type=kind, data=x))
        )

    assert collector(product("blk.3.ffn_down.weight", 16), True)
    assert not collector(product("blk.3.ffn_down.weight", 15), True)  # batches under 16 tokens are ignored
    assert not collector(product("blk.3.ffn_down.weight", 64, F16), True)
    assert not collector(product("output.weight", 64), True)
    assert not collector(product("token_embd.weight", 64), True)
    assert not collector(FakeNode(op=7, src=(FakeNode(name="blk.0.x"), FakeNode(ne=(8, 64, 1, 1)))), True)
    assert collector(product("blk.0.ffn_up_exps.weight", 1, op=MUL_MAT_ID), True)  # every expert product
    assert collector(product("CUDA0#blk.3.attn_q.weight#0", 32), True)

    assert collector(product("CUDA0#blk.3.attn_q.weight#0", 32), False)
    assert collector.entries["blk.3.attn_q.weight"].counts.tolist() == [32]
    broken = FakeNode(MUL_MAT, src=(FakeNode(name="blk.4.x", ne=(8, 4, 1, 1)), FakeNode(data=None)))
    assert collector(broken, False)  # an error never reaches llama.cpp: kept for the caller
    assert collector.error is not None
    assert weight_name("blk.0.attn_k.weight") == "blk.0.attn_k.weight"


def test_a_batch_holds_what_keeps_the_logits_small() -> None:
    assert batch_tokens(262_144) == 64  # Gemma 3: 64 MiB of logits
    assert batch_tokens(32_000) == 512
    assert batch_tokens(10_000_000) == 16  # never below the 16 rows llama-imatrix needs


def test_a_matrix_for_another_model_is_refused(tmp_path: Path) -> None:
    header = GGUFHeader(
        tmp_path / "m.gguf",
        3,
        {},
        (
            TensorInfo("blk.0.attn_q.weight", (4, 16), 0, 0, 0),
            TensorInfo("blk.1.ffn_down.weight", (8, 4), 0, 0, 0),
            TensorInfo("blk.0.ffn_up_exps.weight", (4, 8, 3), 0, 0, 0),
        ),
        0,
        0,
    )
    data = sample()
    check_matches(data, header.path, header)
    data.entries["blk.0.attn_q.weight"] = Entry(np.ones((1, 5)), np.array([1]))
    with pytest.raises(EdgellmError, match="blk.0.attn_q.weight: 5 values where it has 4"):
        check_matches(data, header.path, header)
    data.entries = {"blk.9.attn_q.weight": Entry(np.ones((1, 4)), np.array([1]))}
    with pytest.raises(EdgellmError, match="no such weight"):
        check_matches(data, header.path, header)


def test_the_quants_that_need_a_matrix_are_refused_without_one(tmp_path: Path) -> None:
    assert set(NEEDS_IMATRIX) <= set(FILE_TYPES.values())
    for quant in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S", "iq2_xxs"):
        assert needs_imatrix(quant), quant
    for quant in ("Q2_K", "Q3_K_S", "IQ3_XS", "IQ3_S", "IQ4_XS", "Q4_K_M", "F16"):
        assert not needs_imatrix(quant), quant

    with pytest.raises(EdgellmError) as refused:
        check_quant("iq2_xxs", None)
    assert refused.value.reason is not None and refused.value.reason.code == "quant_needs_imatrix"
    said = explain(refused.value)
    assert "IQ2_XXS" in said and "pass --imatrix" in said and "\n" not in said
    assert check_quant("iq2_xxs", "") == "IQ2_XXS"  # --imatrix alone: the calibration text
    assert check_quant("q2_k", None) == "Q2_K"
    with pytest.raises(EdgellmError, match="cannot quantize to Q9_K"):
        check_quant("Q9_K", None)
    # the quantizer itself refuses before it looks at the file
    with pytest.raises(EdgellmError, match="IQ1_M needs an importance matrix"):
        quantize(tmp_path / "none.gguf", tmp_path / "out.gguf", "IQ1_M")


def test_what_imatrix_names(tmp_path: Path) -> None:
    assert imatrix_kind("") == ("text", None)
    text = tmp_path / "notes.txt"
    text.write_text("some text")
    assert imatrix_kind(str(text)) == ("text", text)
    matrix = write_imatrix(sample(), tmp_path / "a.gguf")
    assert imatrix_kind(str(matrix)) == ("matrix", matrix)
    legacy = tmp_path / "b.imatrix"
    legacy.write_bytes(b"\x01\x00\x00\x00")
    assert imatrix_kind(str(legacy)) == ("matrix", legacy)
    with pytest.raises(EdgellmError, match="no such file"):
        imatrix_kind(str(tmp_path / "missing.txt"))


def test_a_quantization_is_named_after_its_source() -> None:
    assert target_name(Path("gemma-3-270m-Q4_K_M.gguf")) == "gemma-3-270m"
    assert target_name(Path("/x/Qwen2.5-1.5B-Instruct.F16.gguf")) == "Qwen2.5-1.5B-Instruct"
    assert target_name(Path("my model.gguf")) == "my-model"
