"""The decode-speed estimate and its calibration by measurements: pure, no llama.cpp."""

from __future__ import annotations

import math

import pytest

from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import plan
from edgellm.plan.speed import (Calibration, calibrations_from, decode_tokens_per_s, estimate_speed, placement)

from test_planner import LLAMA_1B_Q4, LLAMA_8B_Q4, LLAMA_8B_Q8


def test_calibration_scales_the_estimate_and_nothing_else() -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    chosen = plan(pi, LLAMA_1B_Q4)
    raw = decode_tokens_per_s(LLAMA_1B_Q4, chosen, pi)
    assert decode_tokens_per_s(LLAMA_1B_Q4, chosen, pi, 0.5) == pytest.approx(raw / 2)
    assert decode_tokens_per_s(LLAMA_1B_Q4, chosen, pi, 1.0) == raw
    uncalibrated = estimate_speed(LLAMA_1B_Q4, chosen, pi)
    assert uncalibrated.tokens_per_s == raw and uncalibrated.calibration is None
    assert "`edgellm bench` calibrates it" in uncalibrated.describe()
    calibrated = estimate_speed(LLAMA_1B_Q4, chosen, pi, {"cpu": Calibration("cpu", 0.8, 2)})
    assert calibrated.tokens_per_s == pytest.approx(raw * 0.8)
    assert "estimate × 0.80, calibrated by 2 benchmarks on this device" in calibrated.describe()


def test_a_calibration_applies_only_to_plans_that_place_layers_the_same_way() -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    whole, partial = plan(laptop, LLAMA_8B_Q4), plan(laptop, LLAMA_8B_Q8)
    cpu_only = plan(resolve_profile("raspberry-pi-5-8gb"), LLAMA_1B_Q4)
    assert (placement(whole), placement(partial), placement(cpu_only)) == ("gpu", "split", "cpu")
    measured_on_gpu = {"gpu": Calibration("gpu", 0.5, 1)}
    assert estimate_speed(LLAMA_8B_Q4, whole, laptop, measured_on_gpu).calibration is not None
    split = estimate_speed(LLAMA_8B_Q8, partial, laptop, measured_on_gpu)
    assert split.calibration is None and split.tokens_per_s == decode_tokens_per_s(LLAMA_8B_Q8, partial, laptop)


def test_calibrations_are_the_geometric_mean_per_placement_leaving_out_absurd_ratios() -> None:
    found = calibrations_from([("cpu", 2.0), ("cpu", 0.5), ("gpu", 0.7), ("gpu", 1000.0), ("split", 0.0001),
                               ("elsewhere", 1.0)])
    assert set(found) == {"cpu", "gpu"}
    assert found["cpu"].factor == pytest.approx(1.0) and found["cpu"].models == 2
    assert found["gpu"].factor == pytest.approx(0.7) and found["gpu"].models == 1
    three = calibrations_from([("cpu", 0.3), ("cpu", 0.4), ("cpu", 0.5)])["cpu"]
    assert three.factor == pytest.approx(math.exp((math.log(0.3) + math.log(0.4) + math.log(0.5)) / 3))
    assert calibrations_from([]) == {}
