"""Where benchmark results are kept and what the estimates take from them (edgellm/bench/results.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.bench import results
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.speed import calibration_for


def result(
    model: str,
    runs: list[tuple[str, float, float]],
    when: str = "2026-11-27T10:00:00Z",
    planned: bool = True,
    fits: bool = True,
) -> dict:
    """A result record of `model` with one run per (placement, measured tg, estimated tg)."""
    return {
        "schema": results.SCHEMA,
        "when": when,
        "device": {"key": "x"},
        "model": {"key": results.model_key(model, 100), "name": model, "file_bytes": 100, "weights_bytes": 90},
        "runs": [
            {
                "flash_attn": True,
                "placement": where,
                "pp": {"mean": 500.0, "stddev": 1.0},
                "tg": [{"depth": 0, "mean": measured, "stddev": 0.5}],
                "planned": planned,
                "fits": fits,
                "estimate": {"tokens_per_s": estimate},
            }
            for where, measured, estimate in runs
        ],
    }


def factor(profile, where: str) -> float | None:
    found = calibration_for(results.calibration_samples(profile), where, 90)
    return found.factor if found else None


def test_a_later_result_of_a_model_replaces_its_calibration_and_placements_stay_apart(edgellm_home: Path) -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    results.save_result(laptop, result("a.gguf", [("cpu", 20.0, 40.0)]))
    results.save_result(laptop, result("a.gguf", [("gpu", 90.0, 100.0)]))
    results.save_result(laptop, result("b.gguf", [("cpu", 30.0, 40.0), ("cpu", 10.0, 40.0)]))
    assert factor(laptop, "gpu") == pytest.approx(0.9)
    assert factor(laptop, "cpu") == pytest.approx((0.5 * 0.75) ** 0.5)  # a's cpu run and b's first run
    results.save_result(laptop, result("a.gguf", [("cpu", 40.0, 40.0)]))
    assert factor(laptop, "cpu") == pytest.approx(0.75**0.5)
    assert results.calibration_samples(resolve_profile("raspberry-pi-5-8gb")) == []  # another device's file


def test_runs_set_by_hand_or_forced_do_not_calibrate(edgellm_home: Path) -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    results.save_result(pi, result("a.gguf", [("cpu", 5.0, 10.0)], planned=False))
    results.save_result(pi, result("b.gguf", [("cpu", 5.0, 10.0)], fits=False))
    assert results.calibration_samples(pi) == []
    assert results.measured_for(pi, "a.gguf", 100).tokens_per_s == 5.0  # still shown as measured
    assert results.measured_for(pi, "a.gguf", 100, where="gpu") is None  # but not for a plan placed elsewhere


def test_only_the_latest_results_of_a_model_are_kept(edgellm_home: Path) -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    for n in range(results.KEPT_PER_MODEL + 3):
        results.save_result(pi, result("a.gguf", [("cpu", float(n + 1), 10.0)], when=f"2026-11-27T10:{n:02d}:00Z"))
    results.save_result(pi, result("b.gguf", [("cpu", 5.0, 10.0)]))
    kept = results.load_results(pi)
    assert len(kept) == results.KEPT_PER_MODEL + 1
    measured = results.measured_for(pi, "a.gguf", 100)
    assert measured.tokens_per_s == results.KEPT_PER_MODEL + 3 and measured.when.endswith("10:12:00Z")
    assert results.measured_for(pi, "a.gguf", 101) is None  # same name, another file


def test_a_damaged_results_file_is_read_as_none_and_replaced_whole(edgellm_home: Path) -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    path = results.results_path(pi)
    path.parent.mkdir(parents=True)
    path.write_text('{"results": [{"schema": "edgellm.bench/1", "model": 3}')
    assert results.load_results(pi) == [] and results.calibration_samples(pi) == []
    results.save_result(pi, result("a.gguf", [("cpu", 5.0, 10.0)]))
    assert [item["model"]["name"] for item in results.load_results(pi)] == ["a.gguf"]


def test_the_flags_that_take_a_choice_from_the_planner_are_named() -> None:
    import argparse

    from edgellm.session.bench import overrides
    from edgellm.session.flags import flags_from

    assert overrides(flags_from(argparse.Namespace(), {})) == []
    assert overrides(flags_from(argparse.Namespace(threads=1, gpu_layers=0, kv="q8_0", force=True), {})) == [
        "threads",
        "gpu_layers",
        "kv",
        "force",
    ]
    assert overrides(flags_from(argparse.Namespace(ctx_size=8192, flash_attn="off"), {})) == []  # still the plan's


def test_a_result_written_when_a_partial_offload_was_called_a_split_reads_as_partial() -> None:
    from edgellm.bench.results import placed

    assert [placed(run) for run in ({"placement": "split"}, {"placement": "partial"}, {"placement": "rpc"}, {})] == [
        "partial",
        "partial",
        "rpc",
        "cpu",
    ]
