"""`edgellm convert` as a user runs it: a transformers checkpoint into the store, quantized, then run and removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import edgellm
from test_bad_input import assert_one_line_error
from test_convert_vocab import PRE_TOKENIZERS, _train_bpe
from test_convert_writer import _checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = _train_bpe(tmp_path_factory.mktemp("tok"), PRE_TOKENIZERS["qwen2"])
    folder, _ = _checkpoint("llama", tmp_path_factory.mktemp("ckpt") / "tiny-llama", tokenizer)
    return folder


def test_convert_quantize_into_the_store_then_run_and_remove(checkpoint: Path, edgellm_home: Path) -> None:
    done = edgellm("convert", str(checkpoint), "--quant", "Q4_K_M")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path == edgellm_home / "models" / "local" / "tiny-llama" / "tiny-llama-Q4_K_M.gguf" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # the f16 intermediate is gone
    listed = json.loads(edgellm("ls", "--json").stdout)
    assert [m["name"] for m in listed] == ["local/tiny-llama:Q4_K_M"]
    ran = edgellm("run", "-m", "local/tiny-llama:Q4_K_M", "-p", "hello", "-n", "4", "--temp", "0", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.strip().splitlines()[-1])["completion_tokens"] <= 4
    assert edgellm("rm", "local/tiny-llama:Q4_K_M").returncode == 0
    assert not path.exists()  # edgellm wrote it, so rm deletes it


def test_auto_quant_asks_the_planner_and_says_why(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto.gguf"
    done = edgellm("convert", str(checkpoint), "-o", str(out), "--profile", "raspberry-pi-4-4gb", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["quant"] == "Q8_0" and result["outtype"] == "q8_0"  # tiny: the CPU ceiling, written directly
    assert result["path"] == str(out) and result["name"] is None and out.stat().st_size == result["size"]
    assert "Q8_0 is the best quant of this model that fits raspberry-pi-4-4gb" in done.stderr


def test_bad_input_is_one_line_and_leaves_nothing(checkpoint: Path, tmp_path: Path) -> None:
    assert_one_line_error(edgellm("convert", str(tmp_path / "nowhere")), "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(edgellm("convert", str(empty)), "config.json")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    assert_one_line_error(edgellm("convert", str(odd)), "GPT2LMHeadModel", "LlamaForCausalLM")
    assert_one_line_error(edgellm("convert", str(checkpoint), "--quant", "Q9_X"), "Q9_X")
    assert_one_line_error(edgellm("convert", str(checkpoint), "-o", str(tmp_path / "out.bin")), ".gguf")
    assert_one_line_error(edgellm("convert", str(checkpoint), "--quant", "Q4_K_M", "--outtype", "q8_0"),
                          "drop --outtype")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "odd"]
