"""The model spec read from GGUF headers written here: shapes, per-layer bytes, the cache, files that are no model.
On the test model and on split files that llama.cpp then loads: tests/integration/test_spec.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgellm.convert.tinymodel import Shape, write_model
from edgellm.gguf.header import GGUFError
from edgellm.storage.specs import load_spec


def test_untied_model_counts_its_output(tmp_path: Path) -> None:
    shape = Shape("llama", n_embd=256, n_layers=3, n_ff=512, n_vocab=1000, tied=False)
    spec = load_spec(write_model(tmp_path / "m.gguf", shape))
    assert not spec.tied_embeddings
    assert spec.output_bytes == 1000 * 256 * 34 // 32 + 256 * 4  # q8_0 output.weight + f32 output_norm
    assert spec.token_embd_bytes == 1000 * 256 * 34 // 32
    assert len(set(spec.layer_bytes)) == 1 and spec.swa_layers == (False, False, False)
    assert spec.file_type == "Q8_0"


def test_cache_is_keyed_by_size_and_mtime(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.gguf", Shape(n_layers=2))
    cache = tmp_path / "cache"
    first = load_spec(model, cache)
    assert len(list(cache.iterdir())) == 1
    assert load_spec(model, cache) == first
    write_model(model, Shape(n_layers=3))
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_spec(model, cache).n_layers == 3


def test_not_a_model(tmp_path: Path) -> None:
    from gguf import GGUFWriter

    path = tmp_path / "vocab-only.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="block_count is missing"):
        load_spec(path)
