"""Importance matrices on the real llama.cpp and the real test model: collected through the eval callback (one entry
per matrix product, its columns, bounded memory), written in the format llama.cpp's own GGUF parser reads, and a Q2_K
quantized with one closer to its source than the plain Q2_K; refusals and bad input in one line."""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgellm.convert.imatrix import CHUNK_TOKENS, Entry, Imatrix, collect_imatrix, read_imatrix, write_imatrix
from edgellm.convert.quantize import quantize
from edgellm.convert.quantize_file import quantize_file
from edgellm.errors import EdgellmError
from edgellm.events import Progress
from edgellm.gguf.header import read_header
from tests.support import REPO, TEST_MODEL, assert_one_line_error, edgellm

CALIBRATION = REPO / "edgellm" / "data" / "eval" / "calibration.txt"
EVALUATION = REPO / "edgellm" / "data" / "eval" / "quality.txt"  # no sentence shared with the calibration text
KL_TOKENS = 256
MEMORY_BEYOND_WEIGHTS = 300 * 2**20
MATRIX = re.compile(r"blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight")

COLLECT = """
import json, resource, sys
from pathlib import Path
from edgellm.convert.imatrix import collect_imatrix
events = []
collect_imatrix(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), events.append, threads=2, chunks=1)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the collecting child's, in bytes (Linux: KiB)
print(json.dumps({"peak": peak, "events": [[e.done, e.total, e.finished, e.unit] for e in events]}))
"""


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The test model's matrix on one chunk of the calibration text, collected in a process of its own so that the
    collecting child's peak memory can be read."""
    target = tmp_path_factory.mktemp("imatrix") / "gemma.imatrix"
    done = subprocess.run(
        [sys.executable, "-c", COLLECT, str(TEST_MODEL), str(CALIBRATION), str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return target, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_matrix_has_an_entry_per_matrix_product_with_its_columns(collected: tuple[Path, dict]) -> None:
    path, run = collected
    weights = {t.name: t.shape for t in read_header(TEST_MODEL).tensors if MATRIX.fullmatch(t.name)}
    data = read_imatrix(path)
    assert set(data.entries) == set(weights)  # every product of the 18 blocks, nothing else (no output, no embd)
    for name, entry in data.entries.items():
        assert entry.sums.shape == (1, weights[name][0]), name  # ne0 of the weight: its input columns
        assert entry.counts.tolist() == [CHUNK_TOKENS], name  # every token of the chunk, the last layer's too
        assert np.isfinite(entry.sums).all() and (entry.sums >= 0).all() and entry.sums.max() > 0
    assert (data.datasets, data.chunk_count, data.chunk_size) == (("calibration.txt",), 1, CHUNK_TOKENS)
    assert run["events"][0] == [0, 1, False, "chunks"] and run["events"][-1] == [1, 1, True, "chunks"]
    assert run["peak"] - TEST_MODEL.stat().st_size < MEMORY_BEYOND_WEIGHTS, run["peak"] / 2**20


def test_llama_cpps_own_gguf_parser_reads_the_file(collected: tuple[Path, dict]) -> None:
    path, _ = collected
    reader = gguf.GGUFReader(path)
    entries = len(read_imatrix(path).entries)
    assert reader.fields["general.type"].contents() == "imatrix"
    assert {t.name.rpartition(".")[2] for t in reader.tensors} == {"in_sum2", "counts"}

    import llama_cpp

    class InitParams(ctypes.Structure):  # struct gguf_init_params (ggml/include/gguf.h)
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.gguf_init_from_file.argtypes, lib.gguf_init_from_file.restype = [ctypes.c_char_p, InitParams], ctypes.c_void_p
    lib.gguf_find_key.argtypes, lib.gguf_find_key.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int64
    lib.gguf_get_val_u32.argtypes, lib.gguf_get_val_u32.restype = [ctypes.c_void_p, ctypes.c_int64], ctypes.c_uint32
    lib.gguf_get_n_tensors.argtypes, lib.gguf_get_n_tensors.restype = [ctypes.c_void_p], ctypes.c_int64
    lib.gguf_get_tensor_type.argtypes, lib.gguf_get_tensor_type.restype = (
        [ctypes.c_void_p, ctypes.c_int64],
        ctypes.c_int,
    )
    lib.gguf_get_arr_n.argtypes, lib.gguf_get_arr_n.restype = [ctypes.c_void_p, ctypes.c_int64], ctypes.c_size_t
    lib.gguf_free.argtypes, lib.gguf_free.restype = [ctypes.c_void_p], None
    context = lib.gguf_init_from_file(str(path).encode(), InitParams(True, None))
    assert context, "llama.cpp's gguf parser refused the file"
    try:
        assert lib.gguf_get_n_tensors(context) == 2 * entries
        assert all(lib.gguf_get_tensor_type(context, i) == 0 for i in range(2 * entries))  # GGML_TYPE_F32
        assert lib.gguf_get_val_u32(context, lib.gguf_find_key(context, b"imatrix.chunk_size")) == CHUNK_TOKENS
        assert lib.gguf_get_val_u32(context, lib.gguf_find_key(context, b"imatrix.chunk_count")) == 1
        assert lib.gguf_get_arr_n(context, lib.gguf_find_key(context, b"imatrix.datasets")) == 1
    finally:
        lib.gguf_free(context)


def log_probs(model: Path, tokens: list[int]) -> np.ndarray:
    """Each position's log-probabilities of the next token under `model` (float32, positions × vocabulary)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model), n_ctx=512, n_batch=KL_TOKENS, logits_all=True, verbose=False)
    try:
        llm.eval(tokens)
        scores = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    finally:
        llm.close()
    scores -= scores.max(axis=1, keepdims=True)
    scores -= np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return scores.astype(np.float32)


def kl_divergence(reference: np.ndarray, other: np.ndarray) -> float:
    """The mean over positions of KL(reference ‖ other)."""
    p = np.exp(reference.astype(np.float64))
    return float((p * (reference.astype(np.float64) - other)).sum(axis=1).mean())


def test_an_imatrix_q2_k_diverges_less_than_the_plain_one(collected: tuple[Path, dict], tmp_path: Path) -> None:
    """Both made from the test model (Q4_K_M, requantized); the KL divergence from it over text the matrix was not
    collected on. On Gemma 3 270M most matrices of a Q2_K fall back to Q4_0 (n_embd 640 is no multiple of 256), and
    those take the matrix too."""
    matrix, _ = collected
    done = edgellm(
        "quantize", str(TEST_MODEL), "--quant", "Q2_K", "--imatrix", str(matrix), "--json", "-t", "2",
        env={"EDGELLM_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    weighted = Path(result["path"])
    assert result["name"] == "local/gemma-3-270m:Q2_K" and result["requantized"] and result["imatrix"]
    assert weighted == tmp_path / "home" / "models" / "local" / "gemma-3-270m" / "gemma-3-270m-Q2_K.gguf"
    warning = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "already quantized (Q4_K_M)" in warning[0] and "two roundings" in warning[0]
    keys = read_header(weighted).metadata
    assert keys["quantize.imatrix.file"] == matrix.name and keys["quantize.imatrix.dataset"] == "calibration.txt"
    assert keys["quantize.imatrix.entries_count"] == len(read_imatrix(matrix).entries)
    plain = quantize(TEST_MODEL, tmp_path / "plain-Q2_K.gguf", "Q2_K", threads=2, requantize=True)

    import llama_cpp

    vocab_model = llama_cpp.Llama(model_path=str(TEST_MODEL), vocab_only=True, verbose=False)
    tokens = vocab_model.tokenize(EVALUATION.read_text().encode())[:KL_TOKENS]
    vocab_model.close()
    reference = log_probs(TEST_MODEL, tokens)
    plain_kl = kl_divergence(reference, log_probs(plain, tokens))
    weighted_kl = kl_divergence(reference, log_probs(weighted, tokens))
    print(f"KL divergence from the Q4_K_M source over {len(tokens)} tokens: plain Q2_K {plain_kl:.4f}, "
          f"imatrix Q2_K {weighted_kl:.4f}")  # fmt: skip
    assert 0 < weighted_kl < 0.8 * plain_kl, (plain_kl, weighted_kl)


def test_a_stopped_collection_leaves_nothing(tmp_path: Path) -> None:
    def stop(event: Progress) -> None:
        raise KeyboardInterrupt  # Ctrl-C once the text is tokenized

    with pytest.raises(KeyboardInterrupt):
        collect_imatrix(TEST_MODEL, CALIBRATION, tmp_path / "m.imatrix", stop, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_iq2_xxs_without_a_matrix_is_refused_in_one_line(edgellm_home: Path) -> None:
    done = edgellm("quantize", str(TEST_MODEL), "--quant", "IQ2_XXS")
    assert_one_line_error(done, "IQ2_XXS needs an importance matrix", "pass --imatrix")
    assert not (edgellm_home / "models").exists()


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path, edgellm_home: Path) -> None:
    assert_one_line_error(edgellm("quantize", str(tmp_path / "none.gguf"), "--quant", "Q2_K"), "none.gguf")
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("plain text\n" * 100)
    assert_one_line_error(edgellm("quantize", str(not_gguf), "--quant", "Q2_K"), "not a GGUF")
    short = tmp_path / "short.txt"
    short.write_text("Too short to make a chunk of five hundred and twelve tokens.")
    assert_one_line_error(
        edgellm("quantize", str(TEST_MODEL), "--quant", "Q2_K", "--imatrix", str(short)), "short.txt is", "tokens"
    )
    other = write_imatrix(
        Imatrix({"blk.0.attn_q.weight": Entry(np.ones((1, 4096)), np.array([512]))}, ("x",), 1),
        tmp_path / "other.imatrix",
    )
    assert_one_line_error(
        edgellm("quantize", str(TEST_MODEL), "--quant", "Q2_K", "--imatrix", str(other)),
        "does not match",
        "blk.0.attn_q.weight",
    )
    for quant, imatrix, said in (  # the same checks, in process (each CLI start costs seconds)
        ("Q9_K", None, "cannot quantize to Q9_K"),
        ("Q2_K", str(tmp_path / "gone.txt"), "gone.txt: no such file"),
        ("Q2_K", str(TEST_MODEL), "not an importance matrix"),
    ):
        with pytest.raises(EdgellmError, match=said):
            quantize_file(TEST_MODEL, quant, imatrix=imatrix)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != edgellm_home.name)
    assert left == ["notes.gguf", "other.imatrix", "short.txt"]
    assert not (edgellm_home / "models").exists() or not any((edgellm_home / "models").rglob("*.gguf"))


def test_convert_collects_on_the_f16_model_before_it_quantizes(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-Q4_K_M.gguf"
    done = edgellm("convert", str(checkpoint), "--quant", "Q4_K_M", "--imatrix", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imatrix"] is True
    keys = read_header(out).metadata
    assert keys["quantize.imatrix.dataset"] == "calibration.txt" and keys["quantize.imatrix.entries_count"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no intermediate, no matrix left
    assert os.path.getsize(out) > 0
