"""config.json -> HFConfig -> the ModelSpec of the GGUF a conversion would write, checked against GGUFs written here
(tinymodel's F16/F32/Q8_0, as the converter writes them), on the planner, and on malformed configs. Against llama.cpp's
own quantize and the real test model: tests/integration/test_convert_hf_config.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.convert.hf_config import SUPPORTED_QUANTS, canonical_quant, gguf_tensors, read_config, spec_from_config
from edgellm.convert.tinymodel import Shape, write_model
from edgellm.errors import EdgellmError, ModelFileError
from edgellm.gguf.quants import rank
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import choose_quant, plan
from edgellm.storage.specs import load_spec
from tests.support.hf_configs import QUANTIZED_SHAPES, config_of, differences, hf_config_for

# config.json as the Hub serves them (fields that do not matter here left out).
LLAMA_32_1B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}
MISTRAL_7B = {  # v0.1: the one with a sliding window, which llama.cpp's llama architecture does not use
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}
SMOLLM2_360M = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_size": 960,
    "intermediate_size": 2560,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 15,
    "num_hidden_layers": 32,
    "num_key_value_heads": 5,
    "rms_norm_eps": 1e-05,
    "rope_theta": 100000,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vocab_size": 49152,
}
TINYLLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "max_position_embeddings": 2048,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 22,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "vocab_size": 151936,
}
QWEN3_06B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "head_dim": 128,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "vocab_size": 151936,
}
GEMMA3_1B = {
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 2,
    "eos_token_id": [1, 106],
    "head_dim": 256,
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "torch_dtype": "bfloat16",
    "vocab_size": 262144,
}
GEMMA3_4B = {  # the multimodal wrapper: text_config holds only what differs from Gemma3TextConfig's defaults
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "eos_token_id": [1, 106],
    "image_token_index": 262144,
    "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "vision_config": {
        "hidden_size": 1152,
        "image_size": 896,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": 27,
    },
}
PHI3_MINI_4K = {
    "architectures": ["Phi3ForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "max_position_embeddings": 4096,
    "model_type": "phi3",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "original_max_position_embeddings": 4096,
    "pad_token_id": 32000,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 32064,
}
PHI3_MINI_128K = {
    **PHI3_MINI_4K,
    "max_position_embeddings": 131072,
    "sliding_window": 262144,
    "rope_scaling": {"type": "longrope", "long_factor": [1.1] * 48, "short_factor": [1.0] * 48},
}


# --- normalized fields -------------------------------------------------------------------------------------------

FIELDS = (
    "hf_architecture",
    "architecture",
    "n_layers",
    "n_embd",
    "n_ff",
    "n_head",
    "n_head_kv",
    "head_dim",
    "n_vocab",
    "context_length",
    "tied_embeddings",
    "qk_norm",
    "qkv_bias",
    "bos_token_id",
    "eos_token_ids",
)


@pytest.mark.parametrize(
    "config, expected",
    [
        (
            LLAMA_32_1B,
            (
                "LlamaForCausalLM",
                "llama",
                16,
                2048,
                8192,
                32,
                8,
                64,
                128256,
                131072,
                True,
                False,
                False,
                128000,
                (128001, 128008, 128009),
            ),
        ),
        (
            MISTRAL_7B,
            ("MistralForCausalLM", "llama", 32, 4096, 14336, 32, 8, 128, 32000, 32768, False, False, False, 1, (2,)),
        ),
        (
            SMOLLM2_360M,
            ("LlamaForCausalLM", "llama", 32, 960, 2560, 15, 5, 64, 49152, 8192, True, False, False, 1, (2,)),
        ),
        (
            TINYLLAMA,
            ("LlamaForCausalLM", "llama", 22, 2048, 5632, 32, 4, 64, 32000, 2048, False, False, False, 1, (2,)),
        ),
        (
            QWEN25_05B,
            (
                "Qwen2ForCausalLM",
                "qwen2",
                24,
                896,
                4864,
                14,
                2,
                64,
                151936,
                32768,
                True,
                False,
                True,
                151643,
                (151645,),
            ),
        ),
        (
            QWEN3_06B,
            (
                "Qwen3ForCausalLM",
                "qwen3",
                28,
                1024,
                3072,
                16,
                8,
                128,
                151936,
                40960,
                True,
                True,
                False,
                151643,
                (151645,),
            ),
        ),
        (
            GEMMA3_1B,
            ("Gemma3ForCausalLM", "gemma3", 26, 1152, 6912, 4, 1, 256, 262144, 32768, True, True, False, 2, (1, 106)),
        ),
        (
            GEMMA3_4B,
            (
                "Gemma3ForConditionalGeneration",
                "gemma3",
                34,
                2560,
                10240,
                8,
                4,
                256,
                262208,
                131072,
                True,
                True,
                False,
                2,
                (1, 106),
            ),
        ),
        (
            PHI3_MINI_4K,
            ("Phi3ForCausalLM", "phi3", 32, 3072, 8192, 32, 32, 96, 32064, 4096, False, False, False, 1, (32000,)),
        ),
    ],
    ids=[
        "llama-3.2-1b",
        "mistral-7b",
        "smollm2-360m",
        "tinyllama",
        "qwen2.5-0.5b",
        "qwen3-0.6b",
        "gemma3-1b",
        "gemma3-4b-wrapper",
        "phi3-mini",
    ],
)
def test_normalized_fields(tmp_path: Path, config: dict, expected: tuple) -> None:
    found = config_of(tmp_path, config)
    assert tuple(getattr(found, field) for field in FIELDS) == expected
    assert found.dtype == "bfloat16"


def test_llama3_rope_scaling_and_its_rope_freqs_tensor(tmp_path: Path) -> None:
    config = config_of(tmp_path, LLAMA_32_1B)
    scaling = config.rope_scaling
    assert scaling is not None and scaling.kind == "llama3"
    assert (scaling.factor, scaling.low_freq_factor, scaling.high_freq_factor, scaling.original_context) == (
        32.0,
        1.0,
        4.0,
        8192,
    )
    assert (config.rope_theta, config.rms_eps, config.rope_dim) == (500000.0, 1e-05, 64)
    freqs = [t for t in gguf_tensors(config) if t.name == "rope_freqs.weight"]
    assert [t.shape for t in freqs] == [(32,)]  # one factor per rotated pair
    without = config_of(tmp_path / "plain", {**LLAMA_32_1B, "rope_scaling": None})
    difference = (
        spec_from_config(config, "F16", "a").token_embd_bytes - spec_from_config(without, "F16", "b").token_embd_bytes
    )
    assert difference == 32 * 4  # F32, counted with the input tensors as spec.py counts non-layer tensors


def test_phi3_longrope_factors_and_its_disabled_sliding_window(tmp_path: Path) -> None:
    config = config_of(tmp_path, PHI3_MINI_128K)
    assert config.rope_scaling is not None and config.rope_scaling.kind == "longrope"
    assert (len(config.rope_scaling.long_factors), len(config.rope_scaling.short_factors)) == (48, 48)
    names = {t.name: t.shape for t in gguf_tensors(config)}
    assert names["rope_factors_long.weight"] == names["rope_factors_short.weight"] == (48,)
    assert names["blk.0.attn_qkv.weight"] == (3072, 3 * 3072)  # fused q/k/v
    assert names["blk.0.ffn_up.weight"] == (3072, 2 * 8192)  # fused gate/up
    assert "rope_factors_long.weight" not in {t.name for t in gguf_tensors(config_of(tmp_path / "4k", PHI3_MINI_4K))}
    # The GGUF records the window, but llama.cpp turns Phi-3's sliding window off: every layer keeps the full cache.
    assert config.sliding_window == 262144 and not any(config.swa_layers)
    spec = spec_from_config(config, "Q4_K_M", "phi3.gguf")
    assert spec.sliding_window == 0 and not any(spec.swa_layers)


def test_sliding_windows_llama_cpp_does_not_use_are_left_out(tmp_path: Path) -> None:
    for config in (MISTRAL_7B, QWEN25_05B):
        found = config_of(tmp_path / config["model_type"], config)
        assert found.sliding_window == 0 and found.swa_layers == (False,) * found.n_layers


def test_gemma3_sliding_window_layers(tmp_path: Path) -> None:
    config = config_of(tmp_path, GEMMA3_1B)
    assert config.sliding_window == 512 and config.rope_theta_swa == 10000.0 and config.rope_theta == 1e6
    assert [layer for layer, swa in enumerate(config.swa_layers) if not swa] == [5, 11, 17, 23]
    kinds = ["full_attention" if layer % 4 == 3 else "sliding_attention" for layer in range(26)]
    newer = config_of(tmp_path / "newer", {**GEMMA3_1B, "sliding_window_pattern": None, "layer_types": kinds})
    assert [layer for layer, swa in enumerate(newer.swa_layers) if not swa] == [3, 7, 11, 15, 19, 23]
    wrapper = config_of(tmp_path / "4b", GEMMA3_4B)
    assert wrapper.sliding_window == 1024 and sum(not swa for swa in wrapper.swa_layers) == 5
    assert wrapper.rope_scaling is not None and (wrapper.rope_scaling.kind, wrapper.rope_scaling.factor) == (
        "linear",
        8.0,
    )
    spec = spec_from_config(wrapper, "Q4_K_M", "gemma-3-4b.gguf")
    assert spec.swa_layers == wrapper.swa_layers and spec.sliding_window == 1024


def test_gemma3_rope_per_layer_type_as_transformers_5_saves_it(tmp_path: Path) -> None:
    text = {
        k: v
        for k, v in GEMMA3_4B.get("text_config", GEMMA3_4B).items()
        if k not in ("rope_scaling", "rope_theta", "rope_local_base_freq")
    }
    resaved = {
        **GEMMA3_4B,
        "text_config": {
            **text,
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            },
        },
    }
    config = config_of(tmp_path, resaved)
    assert config.rope_scaling is not None and (config.rope_scaling.kind, config.rope_scaling.factor) == ("linear", 8.0)
    assert (config.rope_theta, config.rope_theta_swa) == (1_000_000.0, 10_000.0)


LLAMA_SHAPE = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 1000,
}


@pytest.mark.parametrize(
    "rope, expected",
    [
        ({}, (10000.0, None)),  # nothing said: the architecture's default
        ({"rope_theta": 500000.0}, (500000.0, None)),  # transformers 4 keeps it at the top level
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}, (500000.0, None)),  # transformers 5
        (  # both: rope_parameters wins, as in transformers 5 and llama.cpp's converter
            {"rope_theta": 20000.0, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
            (500000.0, None),
        ),
        (
            {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "beta_fast": 16.0}},
            (1e6, ("yarn", 4.0)),
        ),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}, "rope_theta": 1e6}, (1e6, ("linear", 2.0))),
        (  # a stale rope_scaling beside transformers 5's rope_parameters: rope_parameters says what runs
            {"rope_scaling": {"type": "linear", "factor": 2.0}, "rope_parameters": {"rope_type": "default"}},
            (10000.0, None),
        ),
        ({"rope_parameters": {"rope_type": "dynamic", "rope_theta": 5e4, "factor": 2.0}}, (5e4, ("dynamic", 2.0))),
    ],
)
def test_the_checkpoints_rope_wins_over_the_defaults_wherever_it_is(
    tmp_path: Path, rope: dict, expected: tuple
) -> None:
    config = config_of(tmp_path, {**LLAMA_SHAPE, **rope})
    scaling = config.rope_scaling
    assert (config.rope_theta, (scaling.kind, scaling.factor) if scaling else None) == expected


def test_transformers_5_partial_rotary_and_gemma3_bases_over_the_defaults(tmp_path: Path) -> None:
    phi3 = config_of(
        tmp_path / "phi3",
        {
            **LLAMA_SHAPE,
            "architectures": ["Phi3ForCausalLM"],
            "rope_parameters": {"rope_type": "default", "rope_theta": 20000.0, "partial_rotary_factor": 0.5},
        },
    )
    assert (phi3.rope_theta, phi3.rope_dim, phi3.head_dim) == (20000.0, 32, 64)
    gemma3 = config_of(
        tmp_path / "gemma3",
        {
            **LLAMA_SHAPE,
            "architectures": ["Gemma3ForCausalLM"],
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": 500000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0},
            },
        },
    )
    assert (gemma3.rope_theta, gemma3.rope_theta_swa, gemma3.rope_scaling) == (500000.0, 20000.0, None)


def test_phi3_original_context_at_the_top_level(tmp_path: Path) -> None:
    factors = [1.0] * 48
    config = config_of(
        tmp_path,
        {
            "architectures": ["Phi3ForCausalLM"],
            "model_type": "phi3",
            "hidden_size": 3072,
            "intermediate_size": 8192,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 32064,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "longrope", "long_factor": factors, "short_factor": factors},
        },
    )
    assert config.rope_scaling is not None and config.rope_scaling.original_context == 4096


def test_quant_spellings() -> None:
    assert [canonical_quant(q) for q in ("q4_k", "q4_k_m", "fp16", "bf16", "Q8_0")] == [
        "Q4_K_M",
        "Q4_K_M",
        "F16",
        "BF16",
        "Q8_0",
    ]
    with pytest.raises(EdgellmError, match="Q4_K_M") as raised:
        canonical_quant("IQ4_XS")
    assert "IQ4_XS" in str(raised.value)


# --- against GGUFs written at the same shape ---------------------------------------------------------------------

TINY_SHAPES = [
    Shape("llama", 320, 4, 768, 1000, 4, 2),  # untied; rows of 320 are no multiple of 256
    Shape("qwen2", 896, 3, 4864, 4000, 14, 2, 64, tied=True),  # Qwen2.5 0.5B's layer, with q/k/v biases
    Shape("gemma3", 640, 6, 2048, 4096, 4, 1, 256, tied=True, sliding_window=512, context_length=32768),
]


@pytest.mark.parametrize("shape", TINY_SHAPES, ids=lambda shape: shape.architecture)
@pytest.mark.parametrize("quant", ["f16", "f32", "q8_0"])
def test_spec_matches_gguf_written_at_the_same_shape(tmp_path: Path, shape: Shape, quant: str) -> None:
    real = load_spec(write_model(tmp_path / "model.gguf", shape, quant=quant))
    estimated = spec_from_config(config_of(tmp_path, hf_config_for(shape)), quant, str(tmp_path / "model.gguf"))
    assert differences(real, estimated) == {}  # every byte of every layer, the embedding, the output
    assert abs(estimated.file_bytes / real.file_bytes - 1) < 0.02  # the header is estimated


@pytest.mark.parametrize("name", [*QUANTIZED_SHAPES, "phi3"])
def test_f16_spec_matches_before_quantizing(f16_models: dict, name: str) -> None:
    source, config = f16_models[name]
    assert differences(load_spec(source), spec_from_config(config, "F16", str(source))) == {}


# --- the planner on a spec from config.json ----------------------------------------------------------------------


def test_plan_runs_on_a_spec_from_config(tmp_path: Path) -> None:
    profile = resolve_profile("raspberry-pi-5-8gb")
    spec = spec_from_config(config_of(tmp_path, LLAMA_32_1B), "Q4_K_M", "Llama-3.2-1B-Q4_K_M.gguf")
    found = plan(profile, spec)
    assert found.fits and found.n_ctx == 4096 and found.n_gpu_layers == 0
    assert found.estimate.total > spec.weight_bytes > 700 * 2**20  # a Llama 3.2 1B Q4_K_M is about 808 MB


def test_choose_quant_on_specs_from_config(tmp_path: Path) -> None:
    config = config_of(tmp_path, MISTRAL_7B)
    candidates = [(quant, spec_from_config(config, quant, f"mistral-7b-{quant}.gguf")) for quant in SUPPORTED_QUANTS]
    sizes = {quant: spec.weight_bytes for quant, spec in candidates}
    assert (
        sizes["F32"]
        > sizes["F16"]
        == sizes["BF16"]
        > sizes["Q8_0"]
        > sizes["Q6_K"]
        > sizes["Q4_K_M"]
        > sizes["Q3_K_M"]
        > sizes["Q2_K"]
    )
    choice = choose_quant(resolve_profile("raspberry-pi-5-8gb"), candidates)
    assert rank(choice.quant) < rank("Q8_0")  # 7.2 GiB of Q8_0 weights leave no room on an 8 GB Pi
    assert any(line.code == "quant_does_not_fit" and line["quant"] == "Q8_0" for line in choice.considered)
    assert choice.plan.fits and choice.spec.file_type == choice.quant


# --- errors ------------------------------------------------------------------------------------------------------


def test_no_config_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="has no config.json") as raised:
        read_config(tmp_path / "empty")
    assert raised.value.problem == "missing" and raised.value.path == tmp_path / "empty" / "config.json"
    with pytest.raises(ModelFileError, match="does not exist") as raised:
        read_config(tmp_path / "nowhere")
    assert raised.value.problem == "missing"


def test_broken_json(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], ')
    with pytest.raises(ModelFileError, match="not valid JSON") as raised:
        read_config(folder)
    assert raised.value.problem == "corrupt" and "\n" not in str(raised.value)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="JSON object"):
        read_config(folder)


def test_incomplete_config(tmp_path: Path) -> None:
    config = {key: value for key, value in TINYLLAMA.items() if key != "intermediate_size"}
    with pytest.raises(ModelFileError, match="has no intermediate_size") as raised:
        config_of(tmp_path, config)
    assert raised.value.problem == "corrupt"


def test_unsupported_architecture_lists_the_supported_ones(tmp_path: Path) -> None:
    mixtral = {**MISTRAL_7B, "architectures": ["MixtralForCausalLM"], "model_type": "mixtral"}
    with pytest.raises(ModelFileError) as raised:
        config_of(tmp_path, mixtral)
    message = str(raised.value)
    assert raised.value.problem == "unsupported" and "MixtralForCausalLM" in message
    for name in (
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Gemma3ForCausalLM",
        "Gemma3ForConditionalGeneration",
        "Phi3ForCausalLM",
    ):
        assert name in message
    with pytest.raises(ModelFileError, match="model_type 'bert'"):
        config_of(tmp_path / "bert", {"model_type": "bert", "hidden_size": 768})
