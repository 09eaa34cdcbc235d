"""Quant names parsed from GGUF file names, and the one rank table."""

from __future__ import annotations

import pytest

from edgellm.quants import FILE_TYPES, QUANT_ORDER, parse_quant, rank


@pytest.mark.parametrize("name, quant", [
    ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
    ("gemma-3-4b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
    ("Llama-3.2-3B-Instruct-Q6_K_L.gguf", "Q6_K_L"),
    ("Phi-4-mini-instruct-IQ4_XS.gguf", "IQ4_XS"),
    ("model-iq3_xxs.gguf", "IQ3_XXS"),
    ("model-fp16.gguf", "F16"),
    ("model-BF16.gguf", "BF16"),
    ("Qwen3-32B-Q8_0-00001-of-00003.gguf", "Q8_0"),
    ("Q5_K_S/Mistral-Q5_K_S.gguf", "Q5_K_S"),
    ("SmolLM2-1.7B-Instruct.Q2_K.gguf", "Q2_K"),
    ("tinyllama-q4_0.gguf", "Q4_0"),
    ("no-quant-here.gguf", None),
])
def test_parse_quant(name: str, quant: str | None) -> None:
    assert parse_quant(name) == quant


def test_rank_follows_quality() -> None:
    order = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "IQ4_XS", "Q4_0", "Q3_K_L", "Q3_K_M",
             "Q3_K_S", "Q2_K", "IQ2_XXS", "IQ1_S"]
    assert sorted(order, key=rank, reverse=True) == order


def test_variants_rank_just_above_their_base() -> None:
    assert rank("Q6_K") < rank("Q6_K_L") < rank("Q8_0")
    assert rank("Q4_K_M") < rank("Q4_K_XL") < rank("Q4_K_L") + 1 < rank("Q5_K_S") + 1
    assert rank("Q4_K_XL") < rank("Q5_K_S")
    assert rank("UD-Q4_K_XL") == rank("Q4_K_XL")
    assert rank("nonsense") == 0.0


def test_every_file_type_is_ranked() -> None:
    assert set(FILE_TYPES.values()) <= set(QUANT_ORDER)
