"""Flash attention chosen by this device's measurements: the pairs `bench -fa on,off` leaves, and which one decides
for a model (edgellm/plan/flash_attn.py, edgellm/bench/results.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.bench import results
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.flash_attn import FlashAttnMeasured, FlashAttnPair, measured_for
from tests.support.specs import GIB, LLAMA_1B_Q4, LLAMA_8B_Q4


def test_a_models_own_measurement_decides_else_the_nearest_in_size_within_four_times() -> None:
    pairs = [
        FlashAttnPair("a:1", "a.gguf", 4 * GIB, 50.0, 58.0),
        FlashAttnPair("b:1", "b.gguf", 3 * GIB, 67.0, 58.0),
        FlashAttnPair("c:1", "c.gguf", GIB // 2, 70.0, 60.0),
        FlashAttnPair("a:1", "a.gguf", 4 * GIB, 51.0, 58.0),  # a's later benchmark
    ]
    own = measured_for(pairs, "a:1", 4 * GIB)
    assert own == FlashAttnMeasured(51.0, 58.0, "a.gguf") and not own.faster
    nearest = measured_for(pairs, "other:1", int(3.2 * GIB))  # nearer b than a
    assert nearest == FlashAttnMeasured(67.0, 58.0, "b.gguf") and nearest.faster
    assert measured_for(pairs, "other:1", 16 * GIB) == FlashAttnMeasured(51.0, 58.0, "a.gguf")  # 4 × a: still near
    assert measured_for(pairs, "other:1", 40 * GIB) is None  # ten times the largest: a guess, not a measurement
    assert measured_for(pairs, "other:1", 0) is None  # a size not known
    assert measured_for([FlashAttnPair("a:1", "a.gguf", GIB, 0.0, 58.0)], "a:1", GIB) is None  # a failed run


def fa_result(model: str, weights: int, runs: list[tuple[bool, str, list[tuple[int, float]]]]) -> dict:
    """A result of `model` with one run per (flash attention, placement, [(depth, decode tokens/s)])."""
    return {
        "schema": results.SCHEMA,
        "when": "2026-12-07T10:00:00Z",
        "device": {"key": "x"},
        "model": {"key": results.model_key(model, 100), "name": model, "file_bytes": 100, "weights_bytes": weights},
        "runs": [
            {
                "flash_attn": fa,
                "placement": where,
                "pp": {"mean": 500.0, "stddev": 1.0},
                "tg": [{"depth": depth, "mean": speed, "stddev": 0.5} for depth, speed in tg],
                "planned": True,
                "fits": True,
                "estimate": {"tokens_per_s": 40.0},
            }
            for fa, where, tg in runs
        ],
    }


def test_only_results_that_measured_both_settings_here_give_a_pair(edgellm_home: Path) -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    weights = LLAMA_1B_Q4.weight_bytes
    results.save_result(pi, fa_result("on.gguf", weights, [(True, "cpu", [(0, 60.0)])]))  # -fa on only
    results.save_result(pi, fa_result("split.gguf", weights, [(True, "rpc", [(0, 9.0)]), (False, "rpc", [(0, 8.0)])]))
    assert results.flash_attn_pairs(results.load_results(pi)) == []
    assert results.device_measurements(pi, LLAMA_1B_Q4) == (None, None)
    both = [(True, "cpu", [(1024, 40.0), (0, 51.0)]), (False, "cpu", [(0, 58.0), (1024, 45.0)])]
    results.save_result(pi, fa_result("both.gguf", weights, both))
    (pair,) = results.flash_attn_pairs(results.load_results(pi))
    assert pair == FlashAttnPair(results.model_key("both.gguf", 100), "both.gguf", weights, 51.0, 58.0)  # depth 0
    _, measured = results.device_measurements(pi, LLAMA_1B_Q4)  # another file of that size: the nearest measured
    assert measured == FlashAttnMeasured(51.0, 58.0, "both.gguf")
    assert results.device_measurements(pi, LLAMA_8B_Q4) == (None, None)  # far larger: nothing near
    assert results.device_measurements(resolve_profile("cpu-laptop-8gb"), LLAMA_1B_Q4) == (None, None)  # elsewhere


def test_a_models_own_pair_wins_over_a_nearer_sized_one(edgellm_home: Path) -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    name = Path(LLAMA_1B_Q4.path).name
    own = fa_result(name, LLAMA_1B_Q4.weight_bytes, [(True, "cpu", [(0, 67.0)]), (False, "cpu", [(0, 58.0)])])
    own["model"]["key"] = results.model_key(name, LLAMA_1B_Q4.file_bytes)
    results.save_result(pi, own)
    twin = [(True, "cpu", [(0, 50.0)]), (False, "cpu", [(0, 58.0)])]
    results.save_result(pi, fa_result("twin.gguf", LLAMA_1B_Q4.weight_bytes, twin))
    _, measured = results.device_measurements(pi, LLAMA_1B_Q4)
    assert measured == FlashAttnMeasured(67.0, 58.0, name) and measured.faster
    assert measured.on_tokens_per_s / measured.off_tokens_per_s == pytest.approx(67 / 58)
