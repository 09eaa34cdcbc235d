"""config.json files for the conversion tests, and GGUFs written at the same shapes: what edgellm.convert.hf_config
estimates from a config is checked against the spec of a real GGUF of that shape."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from edgellm.convert.hf_config import HFConfig, read_config
from edgellm.convert.tinymodel import Shape, add_shape, write_model


def write_config(folder: Path, config: dict) -> Path:
    """`folder` made, holding `config` as its config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def config_of(tmp_path: Path, config: dict) -> HFConfig:
    """The HFConfig edgellm reads from `config` saved in a checkpoint folder under `tmp_path`."""
    return read_config(write_config(tmp_path / "checkpoint", config))


HF_NAMES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gemma3": "Gemma3ForCausalLM"}


def hf_config_for(shape: Shape) -> dict:
    """The config.json of a checkpoint with tinymodel's `shape`."""
    config = {
        "architectures": [HF_NAMES[shape.architecture]],
        "hidden_size": shape.n_embd,
        "num_hidden_layers": shape.n_layers,
        "intermediate_size": shape.n_ff,
        "vocab_size": shape.n_vocab,
        "num_attention_heads": shape.n_head,
        "num_key_value_heads": shape.n_head_kv,
        "tie_word_embeddings": shape.tied,
        "max_position_embeddings": shape.context_length,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
    }
    if shape.head_dim:
        config["head_dim"] = shape.head_dim
    if shape.sliding_window:
        config["sliding_window"] = shape.sliding_window
    return config


def differences(real, estimated) -> dict:
    """Where two ModelSpecs differ, by field (the path and the file's size apart): {field: (real, estimated)}."""
    real, estimated = asdict(real), asdict(estimated)
    return {
        key: (real[key], estimated[key])
        for key in real
        if key not in ("path", "file_bytes") and real[key] != estimated[key]
    }


def write_phi3(path: Path, n_embd: int, n_layers: int, n_ff: int, n_head: int, n_vocab: int) -> Path:
    """An F16 phi3 GGUF with Phi-3's fused attn_qkv and gate/up tensors (tinymodel writes no phi3)."""
    writer = GGUFWriter(str(path), "phi3")
    add_shape(writer, Shape("phi3", n_embd, n_layers, n_ff, n_vocab, n_head, n_head), "synthetic phi3", 1)
    writer.add_vocab_size(n_vocab)

    def weight(name: str, rows: int, cols: int) -> None:
        writer.add_tensor(name, np.full((rows, cols), 0.01, dtype=np.float16))

    def vector(name: str, size: int) -> None:
        writer.add_tensor(name, np.ones(size, dtype=np.float32))

    weight("token_embd.weight", n_vocab, n_embd)
    vector("output_norm.weight", n_embd)
    weight("output.weight", n_vocab, n_embd)
    for layer in range(n_layers):
        vector(f"blk.{layer}.attn_norm.weight", n_embd)
        weight(f"blk.{layer}.attn_qkv.weight", 3 * n_embd, n_embd)
        weight(f"blk.{layer}.attn_output.weight", n_embd, n_embd)
        vector(f"blk.{layer}.ffn_norm.weight", n_embd)
        weight(f"blk.{layer}.ffn_up.weight", 2 * n_ff, n_embd)
        weight(f"blk.{layer}.ffn_down.weight", n_embd, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


QUANTIZED_SHAPES = {
    "llama-320-untied": Shape("llama", 320, 8, 768, 512, 4, 2),  # rows of 320: every K-quant falls back
    "llama-256-tied": Shape("llama", 256, 16, 256, 512, 8, 2, tied=True),  # K-quants as they are
    "qwen2": Shape("qwen2", 256, 12, 512, 512, 8, 1, 32),  # n_gqa 8: Q2_K's attn_v goes to Q4_K
    "gemma3": Shape("gemma3", 384, 18, 512, 512, 2, 1, 128, tied=True, sliding_window=512),  # 18 layers, as 270M
    # llama.cpp's 70B rule (80 layers, grouped-query attention: attn_v a step up); rows of 128 keep it quick and
    # still tell the types apart (Q4_K falls back to Q5_0, Q5_K to Q5_1)
    "llama-80-layers": Shape("llama", 128, 80, 128, 512, 4, 1),
}


def write_f16_models(folder: Path) -> dict[str, tuple[Path, HFConfig]]:
    """Each of QUANTIZED_SHAPES and a phi3 as an F16 GGUF in `folder` (what the converter writes before llama.cpp
    quantizes), with its HFConfig."""
    models = {}
    for name, shape in QUANTIZED_SHAPES.items():
        models[name] = (
            write_model(folder / f"{name}.gguf", shape, quant="f16"),
            read_config(write_config(folder / name, hf_config_for(shape))),
        )
    phi3 = {
        "architectures": ["Phi3ForCausalLM"],
        "hidden_size": 256,
        "num_hidden_layers": 8,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "vocab_size": 512,
        "max_position_embeddings": 2048,
    }
    models["phi3"] = (
        write_phi3(folder / "phi3.gguf", n_embd=256, n_layers=8, n_ff=256, n_head=4, n_vocab=512),
        read_config(write_config(folder / "phi3", phi3)),
    )
    return models
