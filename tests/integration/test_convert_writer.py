"""convert_checkpoint against real transformers models and real llama.cpp: tiny random models of each architecture
are saved with save_pretrained, converted, loaded by llama.cpp, and their logits compared with transformers' on
the same tokens. Malformed checkpoints must fail before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader
from safetensors.numpy import load_file, save_file

from edgellm.convert.writer import convert_checkpoint
from edgellm.errors import EdgellmError, ModelFileError
from edgellm.events import Progress
from tests.support.checkpoints import (
    PRE_TOKENIZERS,
    SHAPE,
    llama_cpp_logits,
    nmse,
    random_checkpoint,
    train_bpe,
    train_spm,
)

N_TOKENS = 32


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bpe(tmp_path_factory.mktemp("tok"), PRE_TOKENIZERS["qwen2"])


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_spm(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path):
    return random_checkpoint("llama", tmp_path_factory.mktemp("llama"), tokenizer_dir)


def _token_ids() -> list[int]:
    return [int(i) for i in np.random.default_rng(1).integers(3, 800, N_TOKENS)]


def _compare(model, gguf_path: Path) -> tuple[float, int, int]:
    """(NMSE of llama.cpp's logits against transformers', top-1 disagreements where the margin is clear, the
    number of positions with a clear margin)."""
    ids = _token_ids()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy().astype(np.float64)
    got = llama_cpp_logits(gguf_path, ids)
    error = nmse(got, ref)
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.01
    wrong = int(np.sum((got.argmax(1) != ref.argmax(1)) & clear))
    return error, wrong, int(clear.sum())


@pytest.mark.parametrize(
    "arch",
    [
        "llama",
        "qwen2",
        "qwen3",
        "gemma3",
        "phi3",
        "llama3-rope",
        "phi3-longrope",
        "llama-bias",
        "mistral",
        "llama-spm",
        "gemma3-spm",
    ],
)
def test_f32_logits_match_transformers(arch: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue("spm_dir" if arch.endswith("-spm") else "tokenizer_dir")
    folder, model = random_checkpoint(arch, tmp_path / arch, tokenizer)
    out = convert_checkpoint(folder, tmp_path / f"{arch}.gguf", "f32")
    if arch == "gemma3-spm":  # convert_hf_to_gguf.py turns the dummy prefix off for Gemma 3's SentencePiece
        field = GGUFReader(out).fields["tokenizer.ggml.add_space_prefix"]
        assert field.contents() is False
    nmse, wrong, clear = _compare(model, out)
    print(f"{arch} f32 NMSE {nmse:.2e}")
    assert clear >= N_TOKENS // 2
    assert nmse < 1e-4, nmse
    assert wrong == 0


@pytest.mark.parametrize("outtype, limit", [("f16", 1e-3), ("bf16", 1e-2), ("q8_0", 1e-2)])
def test_smaller_types_stay_close(llama_dir, tmp_path: Path, outtype: str, limit: float) -> None:
    folder, model = llama_dir
    out = convert_checkpoint(folder, tmp_path / "m.gguf", outtype)
    nmse, wrong, _ = _compare(model, out)
    print(f"llama {outtype} NMSE {nmse:.2e}")
    assert nmse < limit, nmse
    assert wrong <= 1


def test_progress_ends_finished_and_partial_is_gone(llama_dir, tmp_path: Path) -> None:
    events: list[Progress] = []
    out = convert_checkpoint(llama_dir[0], tmp_path / "m.gguf", "f16", report=events.append)
    assert out.is_file() and not (tmp_path / "m.gguf.partial").exists()
    assert events and all(e.task == "convert" for e in events)
    assert events[-1].finished and events[-1].done == out.stat().st_size == events[-1].total
    assert not any(e.finished for e in events[:-1])
    assert [e.done for e in events] == sorted(e.done for e in events)


def test_interrupt_removes_partial(llama_dir, tmp_path: Path) -> None:
    def interrupt(event) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(llama_dir[0], tmp_path / "m.gguf", "f16", report=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_unknown_outtype(llama_dir, tmp_path: Path) -> None:
    with pytest.raises(EdgellmError, match="q4_k"):
        convert_checkpoint(llama_dir[0], tmp_path / "m.gguf", "q4_k")
    assert list(tmp_path.iterdir()) == []


def _broken(llama_dir, tmp_path: Path, change) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(llama_dir[0], folder)
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _assert_refused(folder: Path, out_dir: Path, *words: str) -> None:
    out_dir.mkdir()
    with pytest.raises(ModelFileError) as caught:
        convert_checkpoint(folder, out_dir / "m.gguf", "f32")
    message = str(caught.value)
    assert "\n" not in message and caught.value.problem == "corrupt"
    for word in words:
        assert word in message, message
    assert list(out_dir.iterdir()) == []


def test_wrong_shape_is_refused(llama_dir, tmp_path: Path) -> None:
    name = "model.layers.1.self_attn.k_proj.weight"

    def change(t):
        t[name] = np.zeros((96, 256), np.float32)

    _assert_refused(_broken(llama_dir, tmp_path, change), tmp_path / "out", name, "[96, 256]", "[128, 256]")


def test_missing_tensor_is_refused(llama_dir, tmp_path: Path) -> None:
    name = "model.layers.0.mlp.up_proj.weight"

    def change(t):
        del t[name]

    _assert_refused(_broken(llama_dir, tmp_path, change), tmp_path / "out", name)


def test_unknown_tensor_is_refused(llama_dir, tmp_path: Path) -> None:
    def change(t):
        t["model.layers.0.mlp.extra_proj.weight"] = np.zeros((4, 4), np.float32)

    _assert_refused(_broken(llama_dir, tmp_path, change), tmp_path / "out", "extra_proj")


def test_config_json_is_checked_against_the_weights(llama_dir, tmp_path: Path) -> None:
    folder = tmp_path / "wider"
    shutil.copytree(llama_dir[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 640
    (folder / "config.json").write_text(json.dumps(config))
    _assert_refused(folder, tmp_path / "out", "gate_proj", "[640, 256]")


@pytest.mark.parametrize("prefix", ["model.language_model.", "language_model.model."])
def test_gemma3_multimodal_layout_converts_its_text_model(tmp_path: Path, tokenizer_dir: Path, prefix: str) -> None:
    """Gemma3ForConditionalGeneration checkpoints hold the text model under a prefix (transformers 5's or 4's)
    beside a vision tower, which is left out."""
    folder, model = random_checkpoint("gemma3", tmp_path / "gemma3", tokenizer_dir)
    tensors = load_file(folder / "model.safetensors")
    moved = {
        (prefix + name[len("model.") :] if name.startswith("model.") else name): value
        for name, value in tensors.items()
    }
    moved["model.vision_tower.vision_model.embeddings.patch_embedding.weight"] = np.zeros((8, 3), np.float32)
    save_file(moved, folder / "model.safetensors", metadata={"format": "pt"})
    text = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Gemma3ForConditionalGeneration"],
                "model_type": "gemma3",
                "text_config": text,
                "vision_config": {"hidden_size": 8},
                "bos_token_id": 0,
                "eos_token_id": 1,
            }
        )
    )
    nmse, wrong, _ = _compare(model, convert_checkpoint(folder, tmp_path / "g.gguf", "f32"))
    assert nmse < 1e-4, nmse
    assert wrong == 0


def test_bf16_checkpoint_converts_exactly(tmp_path: Path, tokenizer_dir: Path) -> None:
    """Most checkpoints are stored in bfloat16: bf16 -> bf16 keeps every weight's bits, so llama.cpp's logits stay
    as close to the bfloat16 model (run in float32) as the f32 conversion does."""
    folder, model = random_checkpoint("qwen2", tmp_path / "qwen2", tokenizer_dir)
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    assert json.loads((folder / "config.json").read_text()).get("dtype", "bfloat16") == "bfloat16"
    model = model.float()
    out = convert_checkpoint(folder, tmp_path / "q.gguf", "bf16")
    types = {t.name: t.tensor_type for t in GGUFReader(out).tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.BF16
    assert types["blk.0.attn_q.bias"] == types["output_norm.weight"] == GGMLQuantizationType.F32
    assert "output.weight" not in types  # tied embeddings
    nmse, _wrong, _ = _compare(model, out)
    print(f"qwen2 bf16 checkpoint -> bf16 NMSE {nmse:.2e}")
    assert nmse < 1e-3, nmse


def test_too_little_disk_is_refused_before_writing(llama_dir, tmp_path: Path, monkeypatch) -> None:
    from edgellm.convert import writer
    from edgellm.errors import DiskError

    real = shutil.disk_usage
    monkeypatch.setattr(writer.shutil, "disk_usage", lambda path: real(path)._replace(free=1_000_000))
    with pytest.raises(DiskError, match="GB free"):
        convert_checkpoint(llama_dir[0], tmp_path / "m.gguf", "f32")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("outtype", ["f16", "q8_0", "f32"])
def test_slab_size_does_not_change_the_file(llama_dir, tmp_path: Path, monkeypatch, outtype: str) -> None:
    """Matrices are converted in slabs of rows (whole q/k heads): one head or row at a time writes the same bytes
    as slabs larger than any tensor."""
    from edgellm.convert import writer

    monkeypatch.setattr(writer, "SLAB_BYTES", 1 << 30)
    whole = convert_checkpoint(llama_dir[0], tmp_path / "whole.gguf", outtype).read_bytes()
    monkeypatch.setattr(writer, "SLAB_BYTES", 1)
    monkeypatch.setattr(writer, "READ_CHUNK", 100)
    assert convert_checkpoint(llama_dir[0], tmp_path / "slabs.gguf", outtype).read_bytes() == whole


def test_bf16_checkpoint_to_f16_in_slabs_matches_a_whole_tensor_conversion(
    tmp_path: Path, tokenizer_dir: Path, monkeypatch
) -> None:
    """bf16 -> f16 reads the rows straight as float16 and permutes q/k slab by slab: the same values as converting
    each whole tensor through float32."""
    from edgellm.convert import writer

    folder, model = random_checkpoint("llama", tmp_path / "llama", tokenizer_dir)
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    monkeypatch.setattr(writer, "SLAB_BYTES", 4096)
    out = convert_checkpoint(folder, tmp_path / "m.gguf", "f16")
    tensors = {t.name: t for t in GGUFReader(out).tensors}
    q = np.asarray(tensors["blk.0.attn_q.weight"].data)
    assert q.dtype == np.float16
    import safetensors.torch  # safetensors.numpy cannot hold bf16

    hf = safetensors.torch.load_file(folder / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert hf.dtype == torch.bfloat16
    w = hf.float().numpy()
    n_head = SHAPE["num_attention_heads"]
    want = w.reshape(n_head, 2, w.shape[0] // n_head // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)
    np.testing.assert_array_equal(q.reshape(want.shape), want.astype(np.float16))
