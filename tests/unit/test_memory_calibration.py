"""The memory calibration: what a bench run records of memory, and the measured ÷ estimated ratios the planner is
given (edgellm/plan/memory_calibration.py, edgellm/bench/results.py, the recording in edgellm/session/bench.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.bench import results
from edgellm.bench.measure import LoadLog, logged_buffers, on_host
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.estimate import EstimateInputs, estimate
from edgellm.plan.memory_calibration import MemoryCalibration, MemorySample, calibration_for, ratio
from tests.support.specs import GIB, LLAMA_1B_Q4, LLAMA_8B_Q8, MIB

# what llama.cpp logs loading a model with a partial CUDA offload (the names as it prints them)
LOAD_LOG = """\
load_tensors: offloading 10 repeating layers to GPU
load_tensors:   CPU_Mapped model buffer size =   300.50 MiB
load_tensors:        CUDA0 model buffer size =   700.00 MiB
llama_context:  CUDA_Host  output buffer size =     0.49 MiB
llama_kv_cache:        CPU KV buffer size =    64.00 MiB
llama_kv_cache:      CUDA0 KV buffer size =    32.00 MiB
sched_reserve:      CUDA0 compute buffer size =   250.00 MiB
sched_reserve:  CUDA_Host compute buffer size =    12.00 MiB
"""


def test_llamas_logged_buffers_are_read_by_type_and_kind_and_placed_on_the_host_or_the_gpu() -> None:
    found = logged_buffers(LOAD_LOG)
    assert found == {
        "CPU_Mapped model": round(300.5 * MIB),
        "CUDA0 model": 700 * MIB,
        "CUDA_Host output": round(0.49 * MIB),
        "CPU KV": 64 * MIB,
        "CUDA0 KV": 32 * MIB,
        "CUDA0 compute": 250 * MIB,
        "CUDA_Host compute": 12 * MIB,
    }
    assert (
        logged_buffers(LOAD_LOG + "llama_kv_cache:        CPU KV buffer size =    64.00 MiB\n")["CPU KV"] == 128 * MIB
    )
    host = sorted(name for name in found if on_host(name))
    assert host == ["CPU KV", "CPU_Mapped model", "CUDA_Host compute", "CUDA_Host output"]
    assert on_host("CPU_REPACK model") and on_host("AMX model") and not on_host("MTL0 compute")


def test_the_load_log_is_what_was_appended_since_it_was_marked(tmp_path: Path) -> None:
    path = tmp_path / "edgellm.log"
    path.write_text("an earlier load\nload_tensors:   CPU_Mapped model buffer size =   999.00 MiB\n")
    log = LoadLog(path)
    with path.open("a") as out:
        out.write(LOAD_LOG)
    assert logged_buffers(log.text()) == logged_buffers(LOAD_LOG)  # the earlier load's buffer is not counted
    path.write_text("x\n")  # moved aside and started afresh: read from the top
    assert log.text() == "x\n"
    assert LoadLog(tmp_path / "none.log").text() == ""


def test_the_record_puts_each_measurement_beside_its_devices_estimate() -> None:
    from edgellm.session.bench import memory_record

    estimated = estimate(LLAMA_8B_Q8, EstimateInputs(n_ctx=4096, n_gpu_layers=11, gpu_backend="cuda"), "RTX 4060")
    gpu, cpu = estimated.devices
    rows = memory_record(estimated, 900 * MIB, 1000 * MIB, logged_buffers(LOAD_LOG))
    assert [(row["device"], row["gpu"]) for row in rows] == [("RTX 4060", True), ("CPU", False)]
    assert (rows[0]["estimated_resident"], rows[0]["estimated_allocated"]) == (gpu.resident, gpu.total)
    assert (rows[1]["estimated_resident"], rows[1]["estimated_allocated"]) == (cpu.resident, cpu.total)
    assert rows[0]["resident"] == 1000 * MIB and rows[1]["resident"] == 900 * MIB  # VRAM taken; RSS growth
    assert rows[0]["allocated"] == (700 + 32 + 250) * MIB
    assert rows[1]["allocated"] == round(300.5 * MIB) + round(0.49 * MIB) + (64 + 12) * MIB
    assert sorted(rows[0]["buffers"]) == ["CUDA0 KV", "CUDA0 compute", "CUDA0 model"]
    unread = memory_record(estimated, 900 * MIB, None, {})  # no GPU reading, the log not readable
    assert [(row["resident"], row["allocated"]) for row in unread] == [(None, None), (900 * MIB, None)]


def test_a_runs_ratio_sums_the_devices_where_both_figures_are_known() -> None:
    assert ratio([(90, 100)]) == pytest.approx(0.9)
    assert ratio([(90, 100), (None, 400), (310, 300)]) == pytest.approx(1.0)
    assert ratio([(None, 100), (5, 0), (5, None)]) is None


def test_a_calibration_is_the_median_of_the_samples_alike_in_place_and_size() -> None:
    samples = [
        MemorySample("cpu", 4 * GIB, 0.8, 1.2),
        MemorySample("cpu", 2 * GIB, 0.9, None),  # its allocation unread: its resident ratio still counts
        MemorySample("cpu", 6 * GIB, 1.3, 1.0),
        MemorySample("cpu", 4 * GIB, 40.0, 0.01),  # a measurement gone wrong
        MemorySample("cpu", GIB // 8, 0.5, 0.5),  # a tiny model
        MemorySample("gpu", 4 * GIB, 1.1, 1.05),
    ]
    assert calibration_for(samples, "cpu", 4 * GIB) == MemoryCalibration("cpu", 0.9, pytest.approx(1.1), 3)
    assert calibration_for(samples, "gpu", 4 * GIB) == MemoryCalibration("gpu", 1.1, 1.05, 1)
    assert calibration_for(samples, "partial", 4 * GIB) is None
    assert calibration_for(samples, "cpu", 64 * GIB) is None  # nothing within four times its size
    assert calibration_for(samples, "cpu", GIB // 4) == MemoryCalibration("cpu", 0.5, 0.5, 1)


def bench_result(
    model: str,
    weights: int,
    runs: list[tuple[str, bool, float | None, float | None]],
    planned: bool = True,
) -> dict:
    """A result record of `model` with one run per (placement, flash attention, resident and allocated ratios): an
    estimate of 1 GiB on the CPU, measured at those ratios (None: no memory recorded, as before bench recorded it)."""

    def memory(resident: float | None, allocated: float | None) -> list[dict] | None:
        if resident is None and allocated is None:
            return None
        return [
            {
                "device": "CPU",
                "gpu": False,
                "estimated_resident": GIB,
                "estimated_allocated": GIB,
                "resident": int(resident * GIB) if resident is not None else None,
                "allocated": int(allocated * GIB) if allocated is not None else None,
                "buffers": {},
            }
        ]

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
                "tg": [{"depth": 0, "mean": 50.0, "stddev": 0.5}],
                "planned": planned,
                "fits": True,
                "estimate": {"tokens_per_s": 40.0, "memory_bytes": GIB},
                **({"memory": memory(resident, allocated)} if resident or allocated else {}),
            }
            for where, fa, resident, allocated in runs
        ],
    }


def test_the_results_give_one_sample_per_model_and_placement_and_old_results_none(edgellm_home: Path) -> None:
    pi = resolve_profile("raspberry-pi-5-8gb")
    weights = LLAMA_1B_Q4.weight_bytes
    results.save_result(pi, bench_result("old.gguf", weights, [("cpu", True, None, None)]))  # before memory
    assert results.memory_samples(results.load_results(pi)) == []
    assert results.device_measurements(pi, LLAMA_1B_Q4) == (None, None)
    assert results.measured_for(pi, "old.gguf", 100) is not None  # the old result still reads
    results.save_result(pi, bench_result("a.gguf", weights, [("cpu", True, 0.8, 1.1), ("cpu", False, 0.7, 1.3)]))
    results.save_result(pi, bench_result("b.gguf", weights, [("cpu", True, 0.9, None)]))
    results.save_result(pi, bench_result("c.gguf", weights, [("cpu", True, 0.1, 0.1)], planned=False))  # by hand
    results.save_result(pi, bench_result("d.gguf", weights, [("rpc", True, 0.1, 0.1)]))  # split across workers
    samples = results.memory_samples(results.load_results(pi))
    assert samples == [
        MemorySample("cpu", weights, pytest.approx(0.8), pytest.approx(1.1)),  # a's first run
        MemorySample("cpu", weights, pytest.approx(0.9), None),
    ]
    memory, _ = results.device_measurements(pi, LLAMA_1B_Q4)
    assert memory == MemoryCalibration("cpu", pytest.approx(0.85), pytest.approx(1.1), 2)
    results.save_result(pi, bench_result("a.gguf", weights, [("cpu", True, 1.0, 1.0)]))  # a later result of a
    memory, _ = results.device_measurements(pi, LLAMA_1B_Q4)
    assert memory is not None and memory.resident_factor == pytest.approx(0.95)


def test_a_device_with_a_gpu_is_calibrated_for_where_the_plan_puts_the_layers(edgellm_home: Path) -> None:
    laptop = resolve_profile("laptop-rtx4060-8gb")
    q8 = LLAMA_8B_Q8.weight_bytes
    assert results.planned_placement(laptop, LLAMA_8B_Q8, results.Wishes()) == "partial"
    assert results.planned_placement(resolve_profile("raspberry-pi-5-8gb"), LLAMA_8B_Q8, results.Wishes()) == "cpu"
    results.save_result(laptop, bench_result("gpu.gguf", q8, [("gpu", True, 0.9, 0.9)]))
    assert results.device_measurements(laptop, LLAMA_8B_Q8)[0] is None  # measured fully offloaded only
    results.save_result(laptop, bench_result("partial.gguf", q8, [("partial", True, 1.2, 1.0)]))
    assert results.device_measurements(laptop, LLAMA_8B_Q8)[0] == MemoryCalibration(
        "partial", pytest.approx(1.2), 1.0, 1
    )
    assert results.device_measurements(resolve_profile("raspberry-pi-5-8gb"), LLAMA_8B_Q8) == (None, None)
