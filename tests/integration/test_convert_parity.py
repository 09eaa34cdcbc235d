"""edgellm's converter against llama.cpp's own (convert_hf_to_gguf.py from the llama.cpp source the install compiles)
and against transformers: tiny checkpoints saved by the current transformers, with a non-default value for every
field that matters (rope base, each rope scaling type, head_dim apart from hidden_size / heads, partial rotary, tied
and untied embeddings, biases, sliding-window layers, q/k norms, SentencePiece and BPE vocabularies with added
tokens), converted by both at f32:

- the metadata equal, key by key (`architectures.KEYS_ONLY_EDGELLM_WRITES` lists what edgellm adds, and why);
- the tensors equal, byte for byte;
- llama.cpp's logits on edgellm's file within NMSE 1e-6 of transformers' at 64 positions.

llama.cpp's converter refuses a freshly trained BPE (it knows pre-tokenizers by the hash of known vocabularies), so
for the BPE cases the comparison with transformers alone decides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
import torch
from gguf import GGUFReader

from edgellm.convert.architectures import KEYS_ONLY_EDGELLM_WRITES
from edgellm.convert.writer import convert_checkpoint, loadable_name
from edgellm.hw.buildconfig import llama_cpp_source
from tests.support.checkpoints import (
    PRE_TOKENIZERS,
    SHAPE,
    configs,
    llama_cpp_logits,
    nmse,
    random_model,
    train_bpe,
    train_spm,
)

pytestmark = pytest.mark.slow  # about two minutes: each case runs llama.cpp's converter (torch imports) once

# Where llama.cpp itself computes otherwise than transformers, on its own converter's file as on edgellm's (the
# files are the same): its YaRN reads attention_factor, beta_fast and beta_slow from the file but does not apply them
# as transformers does (NMSE 0.01-0.1 for both files, measured with llama-cpp-python 0.3.36).
LLAMA_CPP_COMPUTES_OTHERWISE = {"llama-yarn-extras"}
N_POSITIONS = 64
NMSE_LIMIT = 1e-6
SPM_IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=None)  # the trained SentencePiece's own ids


def _cases() -> dict[str, tuple[str, Callable[[], Any], str]]:
    """name -> (transformers model class, its config, tokenizer: spm or bpe)."""
    import transformers as t

    spm = {**SHAPE, **SPM_IDS}
    six_layers = {**spm, "num_hidden_layers": 6}  # Gemma 3's pattern: five sliding-window layers, then a full one
    yarn = {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 512}

    def with_spm_ids(config: Any) -> Any:
        for key, value in SPM_IDS.items():
            setattr(config, key, value)
        return config

    return {
        "llama-rope-base": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(**spm, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
            "spm",
        ),
        "llama-linear-tied": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(
                **spm,
                tie_word_embeddings=True,
                rope_parameters={"rope_type": "linear", "rope_theta": 20000.0, "factor": 4.0},
            ),
            "spm",
        ),
        "llama-yarn": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(
                **{**spm, "max_position_embeddings": 2048},
                rope_parameters=yarn,
            ),
            "spm",
        ),
        "llama-yarn-extras": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(
                **{**spm, "max_position_embeddings": 2048},
                rope_parameters={**yarn, "attention_factor": 1.2, "beta_fast": 16.0, "beta_slow": 2.0},
            ),
            "spm",
        ),
        "llama-dynamic": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(
                **spm, rope_parameters={"rope_type": "dynamic", "rope_theta": 50000.0, "factor": 2.0}
            ),
            "spm",
        ),
        "llama3-rope": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(
                **spm,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
            ),
            "spm",
        ),
        "llama-biases-head-dim": (
            "LlamaForCausalLM",
            lambda: t.LlamaConfig(**spm, head_dim=32, attention_bias=True, mlp_bias=True),
            "spm",
        ),
        "qwen2-tied": (
            "Qwen2ForCausalLM",
            lambda: t.Qwen2Config(
                **spm, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}
            ),
            "spm",
        ),
        "qwen2-bpe-added-tokens": (
            "Qwen2ForCausalLM",
            lambda: t.Qwen2Config(**SHAPE, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
            "bpe",
        ),
        "qwen3-head-dim": (
            "Qwen3ForCausalLM",
            lambda: t.Qwen3Config(
                **spm,
                head_dim=32,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
            "spm",
        ),
        "qwen3-yarn-bpe": (
            "Qwen3ForCausalLM",
            lambda: t.Qwen3Config(
                **{**SHAPE, "max_position_embeddings": 2048},
                head_dim=64,
                rope_parameters={
                    "rope_type": "yarn",
                    "rope_theta": 1000000.0,
                    "factor": 4.0,
                    "original_max_position_embeddings": 512,
                },
            ),
            "bpe",
        ),
        "gemma3-sliding": (
            "Gemma3ForCausalLM",
            lambda: t.Gemma3TextConfig(
                **six_layers,
                head_dim=64,
                query_pre_attn_scalar=64,
                sliding_window=16,
                rope_parameters={
                    "full_attention": {"rope_type": "default", "rope_theta": 500000.0},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 20000.0},
                },
            ),
            "spm",
        ),
        "gemma3-linear-softcap": (
            "Gemma3ForCausalLM",
            lambda: t.Gemma3TextConfig(
                **six_layers,
                head_dim=32,
                query_pre_attn_scalar=32,
                sliding_window=512,
                final_logit_softcapping=3.0,  # small enough to cap these random logits
                rope_parameters={
                    "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                },
            ),
            "spm",
        ),
        "phi3-partial-rotary": (
            "Phi3ForCausalLM",
            lambda: t.Phi3Config(
                **spm,
                tie_word_embeddings=False,
                original_max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 20000.0, "partial_rotary_factor": 0.5},
            ),
            "spm",
        ),
        "phi3-longrope": ("Phi3ForCausalLM", lambda: with_spm_ids(configs()["phi3-longrope"]()), "spm"),
    }


CASE_NAMES = [  # _cases()'s keys, named here so that collecting the tests imports no transformers
    "llama-rope-base",
    "llama-linear-tied",
    "llama-yarn",
    "llama-yarn-extras",
    "llama-dynamic",
    "llama3-rope",
    "llama-biases-head-dim",
    "qwen2-tied",
    "qwen2-bpe-added-tokens",
    "qwen3-head-dim",
    "qwen3-yarn-bpe",
    "gemma3-sliding",
    "gemma3-linear-softcap",
    "phi3-partial-rotary",
    "phi3-longrope",
]


def test_every_case_is_run() -> None:
    assert CASE_NAMES == list(_cases())


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spm = train_spm(tmp_path_factory.mktemp("spm"))
    config = json.loads((spm / "tokenizer_config.json").read_text())
    # an added token past the SentencePiece model's pieces, as chat models add theirs
    config["added_tokens_decoder"] = {"600": {"content": "<|tool|>", "special": True}}
    (spm / "tokenizer_config.json").write_text(json.dumps(config))
    bpe = train_bpe(tmp_path_factory.mktemp("bpe"), PRE_TOKENIZERS["qwen2"])  # its added tokens: <think> and more
    return {"spm": spm, "bpe": bpe}


def _checkpoint(name: str, folder: Path, tokenizer: Path) -> torch.nn.Module:
    model_class, make_config, _ = _cases()[name]
    return random_model(model_class, make_config(), folder, tokenizer)


def _llama_cpp_convert(folder: Path, out: Path) -> None:
    """llama.cpp's convert_hf_to_gguf.py at f32, run from its source folder with this environment's torch and
    transformers and its own gguf-py."""
    source = llama_cpp_source()
    env = dict(os.environ, PYTHONPATH=str(source / "gguf-py"))
    argv = [sys.executable, "convert_hf_to_gguf.py", str(folder), "--outtype", "f32", "--outfile", str(out)]
    done = subprocess.run(argv, cwd=source, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _metadata(path: Path) -> dict[str, Any]:
    reader = GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


SAMPLE_TEXT = "  Hello  world\n\n  two spaces, a tab\there<|tool|>[PAD700] café 12345 "


def _tokens(path: Path) -> list[int]:
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        return llm.tokenize(SAMPLE_TEXT.encode(), add_bos=True, special=True)
    finally:
        llm.close()


def _token_ids() -> list[int]:
    return [int(i) for i in np.random.default_rng(1).integers(3, 590, N_POSITIONS)]


def _reference_logits(model: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([_token_ids()])).logits[0].numpy().astype(np.float64)


def _logits_nmse(model: torch.nn.Module, path: Path) -> float:
    return nmse(llama_cpp_logits(path, _token_ids(), f32_cache=True), _reference_logits(model))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_converts_as_llama_cpp_does_and_computes_as_transformers(
    name: str, tmp_path: Path, tokenizers: dict[str, Path]
) -> None:
    tokenizer = _cases()[name][2]
    folder = tmp_path / name
    model = _checkpoint(name, folder, tokenizers[tokenizer])
    ours = convert_checkpoint(folder, tmp_path / "edgellm.gguf", "f32")

    if "softcap" in name:  # the cap must change these logits, or the case would not show that it is written
        capped = _reference_logits(model)
        model.config.final_logit_softcapping = None
        uncapped = _reference_logits(model)
        model.config.final_logit_softcapping = _cases()[name][1]().final_logit_softcapping
        assert nmse(uncapped, capped) > 1e-3
    if name not in LLAMA_CPP_COMPUTES_OTHERWISE:
        error = _logits_nmse(model, ours)
        print(f"{name}: NMSE {error:.2e}")
        assert error <= NMSE_LIMIT, f"{name}: llama.cpp's logits on edgellm's file are off transformers' by {error:.2e}"

    if tokenizer == "bpe":
        return  # llama.cpp's converter refuses a BPE it has no hash for: transformers alone decides
    theirs = tmp_path / "llama-cpp.gguf"
    _llama_cpp_convert(folder, theirs)
    mine, reference = _metadata(ours), _metadata(theirs)
    arch = reference["general.architecture"]
    extra = {key.format(arch=arch) for key in KEYS_ONLY_EDGELLM_WRITES}
    tokens = tuple(mine["tokenizer.ggml.tokens"])
    left_out = set() if loadable_name(reference["general.name"], tokens) else {"general.name"}  # llama.cpp can't load
    assert set(reference) - set(mine) == left_out, f"{name}: keys llama.cpp writes and edgellm does not"
    assert set(mine) - set(reference) <= extra, f"{name}: keys edgellm writes and llama.cpp does not"
    different = {key: (mine[key], reference[key]) for key in set(reference) - left_out if mine[key] != reference[key]}
    assert not different, f"{name}: {different}"

    # the keys only edgellm writes change nothing: llama.cpp splits text the same with either file (where llama.cpp
    # can load its converter's file at all: not with a Phi-3 name over a vocabulary without Phi-3's tokens)
    if not left_out:
        assert _tokens(ours) == _tokens(theirs)

    ours_tensors = {tensor.name: tensor for tensor in GGUFReader(ours).tensors}
    their_tensors = {tensor.name: tensor for tensor in GGUFReader(theirs).tensors}
    assert sorted(ours_tensors) == sorted(their_tensors), "the same tensors (edgellm orders them as quantize counts)"
    for tensor_name, tensor in their_tensors.items():
        mine_tensor = ours_tensors[tensor_name]
        assert mine_tensor.tensor_type == tensor.tensor_type, tensor_name
        if tensor_name == "rope_freqs.weight":  # computed, not copied: float32 powers (numpy's and torch's) may
            # differ in the last bit with the CPU's vector kernels (seen on an AVX-512 Xeon)
            np.testing.assert_array_max_ulp(np.asarray(mine_tensor.data), np.asarray(tensor.data), maxulp=2)
            continue
        assert np.array_equal(np.asarray(mine_tensor.data), np.asarray(tensor.data)), tensor_name
