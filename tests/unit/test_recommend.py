"""The catalog and the decode-speed estimates `edgellm recommend` ranks by. The command itself, offline and against
the local Hub: tests/integration/test_recommend.py."""

from __future__ import annotations

import pytest

from edgellm.catalog.curated import load_catalog
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import plan
from edgellm.plan.speed import decode_tokens_per_s


def entry(name: str):
    return next(e for e in load_catalog() if e.name == name)


def test_catalog_is_complete() -> None:
    names = {e.name for e in load_catalog()}
    assert {
        "Qwen2.5 0.5B Instruct",
        "Qwen2.5 7B Instruct",
        "Llama 3.2 1B Instruct",
        "Llama 3.2 3B Instruct",
        "Gemma 3 1B it",
        "Gemma 3 4B it",
        "Phi-4-mini Instruct",
        "SmolLM2 1.7B Instruct",
    } <= names
    for model in load_catalog():
        assert model.repo.count("/") == 1 and model.licence and model.context >= 8192
        assert 0.7 < model.spec("Q4_K_M").file_bytes / (model.params * 1e9 * 4.89 / 8) < 1.6


@pytest.mark.parametrize(
    "profile, model, quant, reported",
    [
        ("jetson-orin-nano-8gb", "Qwen2.5 1.5B Instruct", "Q4_K_M", 32.0),  # CUDA, reported about 32 tokens/s
        ("raspberry-pi-5-8gb", "Llama 3.2 3B Instruct", "Q4_K_M", 4.75),  # reported 4.5-5 tokens/s
    ],
)
def test_speed_estimate_against_reported_figures(profile: str, model: str, quant: str, reported: float) -> None:
    device = resolve_profile(profile)
    spec = entry(model).spec(quant)
    estimate = decode_tokens_per_s(spec, plan(device, spec), device)
    assert 0.7 * reported <= estimate <= 1.3 * reported
