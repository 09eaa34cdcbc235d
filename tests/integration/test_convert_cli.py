"""`edgellm convert` as a user runs it: a transformers checkpoint into the store, quantized, then run and removed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import assert_one_line_error, edgellm


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


def test_an_outtype_alone_is_the_type_written_and_with_a_quant_the_intermediate(
    checkpoint: Path, tmp_path: Path
) -> None:
    from gguf import GGUFReader, LlamaFileType

    alone = edgellm("convert", str(checkpoint), "-o", str(tmp_path / "f32.gguf"), "--outtype", "f32", "--json")
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["quant"] == "F32" and json.loads(alone.stdout)["outtype"] == "f32"
    assert f"wrote {tmp_path / 'f32.gguf'} as F32" in alone.stderr
    file_type = GGUFReader(tmp_path / "f32.gguf").fields["general.file_type"].contents()
    assert file_type == LlamaFileType.ALL_F32  # not the Q8_0 that --quant auto would have chosen
    both = edgellm("convert", str(checkpoint), "-o", str(tmp_path / "q.gguf"), "--outtype", "f32", "--quant", "Q4_K_M")
    assert both.returncode == 0, both.stderr
    assert both.stdout.strip().splitlines()[-1] == str(tmp_path / "q.gguf")
    assert both.stderr.strip().splitlines()[-1].endswith(f"wrote {tmp_path / 'q.gguf'} as Q4_K_M")
    assert "quantize" in both.stderr  # from the f32 intermediate, which is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f32.gguf", "q.gguf"]


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
    assert_one_line_error(
        edgellm("convert", str(checkpoint), "--quant", "Q4_K_M", "--outtype", "q8_0"), "drop --outtype"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "odd"]


def test_convert_from_the_hub_fetches_only_what_it_needs(checkpoint: Path, edgellm_home: Path, tmp_path: Path) -> None:
    from tests.support.fakehub import FakeHub, FakeRepo

    hub = FakeHub()
    extra = tmp_path / "README.md"
    extra.write_text("# tiny\n")
    files = {p.name: p for p in checkpoint.iterdir() if p.is_file()} | {"README.md": extra, "onnx/model.onnx": extra}
    hub.add("tests/tiny-llama", FakeRepo(files))
    hub.add("tests/tiny-GGUF", FakeRepo({"tiny-Q8_0.gguf": extra}))
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home")}
    done = edgellm("convert", "-hf", "tests/tiny-llama", "--quant", "Q8_0", env=env)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path == edgellm_home / "models" / "local" / "tiny-llama" / "tiny-llama-Q8_0.gguf" and path.is_file()
    assert "fetching tests/tiny-llama" in done.stderr and "removed the downloaded checkpoint" in done.stderr
    assert not (edgellm_home / "checkpoints" / "tests" / "tiny-llama").exists()
    fetched = {path for method, path, _ in hub.log if method in ("GET", "HEAD") and "/resolve/" in path}
    assert any(path.endswith("/config.json") for path in fetched)  # the log does show what was fetched
    assert not any(name in path for path in fetched for name in ("README.md", "model.onnx"))
    assert_one_line_error(edgellm("convert", "-hf", "tests/tiny-GGUF", env=env), "edgellm pull tests/tiny-GGUF")
    assert_one_line_error(edgellm("convert", "-hf", "tests/tiny-llama", "--quant", "Q9_X", env=env), "Q9_X")
    assert_one_line_error(edgellm("convert"), "a folder (SRC) or a Hub repo")


def test_an_unwritable_output_is_one_line_and_leaves_no_folders(checkpoint: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_one_line_error(
        edgellm("convert", str(checkpoint), "--quant", "Q8_0", "-o", str(blocker / "a" / "m.gguf")),
        "cannot write",
        "pass -o",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_only_the_weights_the_reader_opens_are_fetched() -> None:
    from edgellm.hub.checkpoint import conversion_files
    from edgellm.hub.files import RemoteFile

    listing = [
        RemoteFile(name, 1)
        for name in (
            "config.json",
            "tokenizer.json",
            "README.md",
            "consolidated.safetensors",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "original/params.json",
        )
    ]
    assert sorted(f.path for f in conversion_files(listing)) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
