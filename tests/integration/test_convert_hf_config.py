"""config.json -> the ModelSpec of the GGUF a conversion would write, checked against llama.cpp itself: its own
quantize of tinymodel's F16 GGUFs (every K-quant mix, tensor by tensor) and the real Gemma 3 270M Q4_K_M test model.
Against GGUFs written here, on the parsing and the planner: tests/unit/test_convert_hf_config.py."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from edgellm.convert.hf_config import SUPPORTED_QUANTS, spec_from_config, tensor_types
from edgellm.gguf.header import GGML_TYPES, read_header
from edgellm.gguf.quants import FILE_TYPES
from edgellm.storage.specs import load_spec
from tests.support.hf_configs import config_of, differences

LLAMA_QUANTS = [q for q in SUPPORTED_QUANTS if q not in ("F32", "BF16", "F16", "Q8_0")]
# Every quant on the two llama shapes; on the others, the quants whose mix has a rule of their own to check
# (the shapes: tests/support/hf_configs.py's QUANTIZED_SHAPES).
QUANTIZE_CASES = [(name, quant) for name in ("llama-320-untied", "llama-256-tied") for quant in LLAMA_QUANTS] + [
    ("qwen2", "Q2_K"),
    ("qwen2", "Q4_K_M"),
    ("gemma3", "Q4_K_M"),
    ("gemma3", "Q4_K_S"),
    ("phi3", "Q4_K_M"),
    ("phi3", "Q5_K_M"),
    ("phi3", "Q3_K_M"),
    ("phi3", "Q2_K"),
    ("llama-80-layers", "Q4_K_M"),
    ("llama-80-layers", "Q3_K_S"),
]
FTYPES = {name: number for number, name in FILE_TYPES.items()}


@pytest.mark.parametrize("name, quant", QUANTIZE_CASES)
def test_quant_mix_matches_llama_cpp_quantize(tmp_path: Path, f16_models: dict, name: str, quant: str) -> None:
    """Every tensor's type, as llama.cpp's own quantize picks it from the F16 file, and so every byte."""
    import llama_cpp

    source, config = f16_models[name]
    target = tmp_path / f"{quant}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) == 0
    real = {t.name: GGML_TYPES[t.ggml_type][0] for t in read_header(target).tensors}
    assert tensor_types(config, quant) == real
    assert differences(load_spec(target), spec_from_config(config, quant, str(target))) == {}


def test_gemma3_270m_q4_k_m_against_the_real_file(tmp_path: Path, test_model: Path) -> None:
    config = config_of(
        tmp_path,
        {
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "hidden_size": 640,
            "num_hidden_layers": 18,
            "intermediate_size": 2048,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "vocab_size": 262144,
            "sliding_window": 512,
            "sliding_window_pattern": 6,
            "max_position_embeddings": 32768,
            "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0,
            "rms_norm_eps": 1e-06,
            "bos_token_id": 2,
            "eos_token_id": 1,
            "torch_dtype": "bfloat16",
        },
    )
    estimated = spec_from_config(config, "Q4_K_M", "gemma-3-270m-Q4_K_M.gguf")
    real = load_spec(test_model)
    tensor_bytes = sum(t.n_bytes for t in read_header(test_model).tensors)
    # Measured: the tensors agree to the byte (246,587,904: every fallback to Q5_0/Q8_0 of the 640-wide rows and
    # every Q6_K layer of attn_v/ffn_down as llama.cpp chose them); the file is estimated 0.8% large
    # (255,056,032 against 253,113,024: the 262k-token vocabulary's header is guessed at 32 bytes a token).
    assert abs(estimated.weight_bytes / tensor_bytes - 1) < 0.05
    assert abs(estimated.file_bytes / tensor_bytes - 1) < 0.05
    assert estimated.weight_bytes == tensor_bytes
    assert differences(real, estimated) == {}
