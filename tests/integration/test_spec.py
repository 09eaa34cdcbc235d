"""The model spec read from GGUF headers: the test model's shape and sliding windows, and split files that add up
and that llama.cpp loads. On headers written here alone (no model file): tests/unit/test_spec.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.convert.tinymodel import Shape, write_model
from edgellm.gguf.header import GGUFError, read_header
from edgellm.plan.spec import model_spec
from edgellm.storage.specs import load_spec
from tests.support import edgellm


def test_test_model_spec(test_model: Path) -> None:
    spec = model_spec([read_header(test_model)])
    assert (spec.architecture, spec.n_layers, spec.n_embd, spec.n_head) == ("gemma3", 18, 640, 4)
    assert spec.n_head_kv == (1,) * 18
    assert (spec.key_length, spec.value_length) == (256, 256)
    assert spec.sliding_window == 512
    assert [layer for layer, swa in enumerate(spec.swa_layers) if not swa] == [5, 11, 17]
    assert spec.tied_embeddings and spec.output_bytes == 640 * 4  # output_norm only
    assert spec.n_vocab == 262144 and spec.trained_ctx == 32768
    assert spec.file_type == "Q4_K_M" and not spec.has_chat_template
    header = read_header(test_model)
    assert spec.weight_bytes == sum(t.n_bytes for t in header.tensors)


def test_split_model_adds_up_every_shard(tmp_path: Path) -> None:
    shape = Shape("llama", n_embd=256, n_layers=4, n_ff=512, n_vocab=1000)
    whole = load_spec(write_model(tmp_path / "whole.gguf", shape))
    first = write_model(tmp_path / "split.gguf", shape, split_max_tensors=12)
    shards = sorted(tmp_path.glob("split-*-of-*.gguf"))
    assert len(shards) >= 3 and first == shards[0]
    split = load_spec(first)
    assert split.layer_bytes == whole.layer_bytes and split.weight_bytes == whole.weight_bytes
    done = edgellm("run", "-m", str(first), "-p", "a b", "-n", "2", "--json")
    assert done.returncode == 0, done.stderr  # llama.cpp loads the shards the spec added up
    with pytest.raises(GGUFError, match="pass the first part"):
        load_spec(shards[1])
    shards[-1].unlink()
    with pytest.raises(GGUFError, match="is missing beside it"):
        load_spec(first)
