"""The decode-speed estimate and its calibration by measurements: pure, no llama.cpp."""

from __future__ import annotations

import math

import pytest

from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import plan
from edgellm.plan.speed import Sample, calibration_for, decode_tokens_per_s, estimate_speed, placement
from tests.support.specs import LLAMA_1B_Q4, LLAMA_8B_Q4, LLAMA_8B_Q8


def test_calibration_scales_the_estimate_and_nothing_else() -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    chosen = plan(pi, LLAMA_1B_Q4)
    raw = decode_tokens_per_s(LLAMA_1B_Q4, chosen, pi)
    assert decode_tokens_per_s(LLAMA_1B_Q4, chosen, pi, 0.5) == pytest.approx(raw / 2)
    assert decode_tokens_per_s(LLAMA_1B_Q4, chosen, pi, 1.0) == raw
    uncalibrated = estimate_speed(LLAMA_1B_Q4, chosen, pi)
    assert uncalibrated.tokens_per_s == raw and uncalibrated.calibration is None
    assert "`edgellm bench` calibrates it" in uncalibrated.describe()
    weights = LLAMA_1B_Q4.weight_bytes
    samples = [Sample("cpu", weights, 0.8), Sample("cpu", weights * 2, 0.8)]
    calibrated = estimate_speed(LLAMA_1B_Q4, chosen, pi, samples)
    assert calibrated.tokens_per_s == pytest.approx(raw * 0.8)
    assert (
        "estimate × 0.80, calibrated by 2 benchmarks of a model of similar size on this device" in calibrated.describe()
    )


def test_a_calibration_applies_only_to_plans_that_place_layers_the_same_way() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    whole, partial = plan(laptop, LLAMA_8B_Q4), plan(laptop, LLAMA_8B_Q8)
    cpu_only = plan(resolve_profile("raspberry-pi-5-8gb"), LLAMA_1B_Q4)
    assert (placement(whole), placement(partial), placement(cpu_only)) == ("gpu", "partial", "cpu")
    measured_on_gpu = [Sample("gpu", LLAMA_8B_Q4.weight_bytes, 0.5)]
    assert estimate_speed(LLAMA_8B_Q4, whole, laptop, measured_on_gpu).calibration is not None
    split = estimate_speed(LLAMA_8B_Q8, partial, laptop, measured_on_gpu)
    assert split.calibration is None and split.tokens_per_s == decode_tokens_per_s(LLAMA_8B_Q8, partial, laptop)


def test_a_calibration_is_the_geometric_mean_of_samples_alike_in_place_and_size() -> None:
    gib = 2**30
    samples = [
        Sample("cpu", 4 * gib, 2.0),
        Sample("cpu", 2 * gib, 0.5),
        Sample("gpu", 4 * gib, 0.7),
        Sample("gpu", 4 * gib, 1000.0),
        Sample("cpu", 4 * gib, 0.0001),
        Sample("cpu", gib // 8, 0.1),
    ]
    cpu = calibration_for(samples, "cpu", 4 * gib)
    assert cpu.factor == pytest.approx(1.0) and cpu.models == 2  # 2.0 and 0.5; the absurd and the tiny left out
    gpu = calibration_for(samples, "gpu", 4 * gib)
    assert gpu.factor == pytest.approx(0.7) and gpu.models == 1
    assert calibration_for(samples, "partial", 4 * gib) is None
    assert calibration_for(samples, "cpu", 64 * gib) is None  # 16 times the largest sample: nothing alike
    tiny = calibration_for(samples, "cpu", gib // 4)  # within 4x of the 0.125 GiB sample and of none else
    assert tiny.factor == pytest.approx(0.1) and tiny.models == 1
    three = calibration_for([Sample("cpu", gib, r) for r in (0.3, 0.4, 0.5)], "cpu", gib)
    assert three.factor == pytest.approx(math.exp((math.log(0.3) + math.log(0.4) + math.log(0.5)) / 3))
    assert calibration_for([], "cpu", gib) is None
