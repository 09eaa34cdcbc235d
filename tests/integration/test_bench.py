"""`edgellm bench` on the real test model: the figures, where they are kept, what plan/recommend/the TUI make of
them, and bad input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support import assert_one_line_error, edgellm


@pytest.fixture(scope="module")
def benched(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One small benchmark of the test model, flash attention on and off, kept in its own EDGELLM_HOME."""
    home = tmp_path_factory.mktemp("bench-home")
    done = edgellm(
        "bench",
        "-m",
        str(test_model),
        "--pp",
        "48",
        "--tg",
        "12",
        "-r",
        "2",
        "--depth",
        "0,80",
        "-fa",
        "on,off",
        "--json",
        env={"EDGELLM_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    # the progress line (off a terminal: a line every 5 s, and the last)
    assert "bench: loading, flash attention on: 0 / 14 runs" in done.stderr and "bench: 14 / 14 runs" in done.stderr
    return json.loads(done.stdout), home


def test_the_result_has_every_figure_with_sane_values(benched: tuple[dict, Path], test_model: Path) -> None:
    result, _ = benched
    model = result["model"]
    assert model["name"] == test_model.name and model["file_bytes"] == test_model.stat().st_size
    assert model["architecture"] == "gemma3" and model["quant"] == "Q4_K_M"
    assert result["request"] == {"pp": 48, "tg": 12, "repetitions": 2, "depths": [0, 80], "flash_attn": ["on", "off"]}
    assert [run["flash_attn"] for run in result["runs"]] == [True, False]
    for run in result["runs"]:
        for series in (run["pp"], run["ttft_ms"], *run["tg"]):
            assert len(series["values"]) == 2 and all(value > 0 for value in series["values"])
            assert series["mean"] == pytest.approx(sum(series["values"]) / 2) and series["stddev"] >= 0
        assert [tg["depth"] for tg in run["tg"]] == [0, 80]
        assert run["pp"]["mean"] > run["tg"][0]["mean"]  # a batch of prompt tokens beats one token at a time
        assert run["load_ms"] > 0 and run["peak_rss_bytes"] > model["weights_bytes"]
        assert run["vram_used_bytes"] is None  # no GPU here
        assert run["placement"] == "cpu" and run["n_gpu_layers"] == 0 and run["fits"] and run["planned"]
        assert run["overrides"] == [] and run["peak_rss_since"] == "load"
        assert run["settings"]["n_ctx"] >= 81 + 12 and run["settings"]["flash_attn"] == run["flash_attn"]
        assert run["estimate"]["tokens_per_s"] > 0 and run["estimate"]["memory_bytes"] > model["weights_bytes"]


def test_the_result_is_kept_by_device_and_model(benched: tuple[dict, Path]) -> None:
    result, home = benched
    (kept,) = (home / "bench").glob("*.json")
    assert kept.stem == result["device"]["key"]
    stored = json.loads(kept.read_text())
    assert [item["model"]["key"] for item in stored["results"]] == [result["model"]["key"]]
    assert stored["results"][0]["runs"] == result["runs"]
    assert not [path for path in (home / "bench").iterdir() if path.name.startswith(".")]  # no temporary left


def test_plan_shows_the_measured_speed_and_calibrates_its_estimate(
    benched: tuple[dict, Path], test_model: Path
) -> None:
    result, home = benched
    env = {"EDGELLM_HOME": str(home)}
    done = edgellm("plan", "-m", str(test_model), "--json", env=env)
    assert done.returncode == 0, done.stderr
    planned = json.loads(done.stdout)
    speed = planned["speed"]
    # the plan's own setting (flash attention on, or the faster of the two measured when the plan takes that)
    run = next(run for run in result["runs"] if run["flash_attn"] == planned["settings"]["flash_attn"])
    measured = run["tg"][0]["mean"]
    assert speed["measured"]["tokens_per_s"] == pytest.approx(measured, abs=0.01)
    assert speed["measured"]["flash_attn"] is run["flash_attn"]
    first = result["runs"][0]  # of a result's runs, the first of each placement calibrates
    factor = first["tg"][0]["mean"] / first["estimate"]["tokens_per_s"]
    assert speed["calibration"] == {"placement": "cpu", "factor": pytest.approx(factor, rel=1e-3), "models": 1}
    assert speed["estimate_tokens_per_s"] == pytest.approx(run["estimate"]["tokens_per_s"] * factor, rel=1e-3)
    text = edgellm("plan", "-m", str(test_model), env=env).stdout
    assert "calibrated by 1 benchmark of a model of similar size on this device" in text
    assert f"measured {measured:.1f} ±" in text
    uncalibrated = edgellm("plan", "-m", str(test_model))  # another EDGELLM_HOME: nothing measured
    assert "`edgellm bench` calibrates it" in uncalibrated.stdout
    assert re.search(r"measured \d", uncalibrated.stdout) is None  # no measured speed


def test_the_result_records_memory_beside_the_estimate_and_gives_the_planner_both_measurements(
    benched: tuple[dict, Path], test_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgellm.bench import results
    from edgellm.hw.detect import detect_this_machine
    from edgellm.plan.flash_attn import FlashAttnMeasured
    from edgellm.plan.memory_calibration import RATIO_RANGE, MemoryCalibration
    from edgellm.storage.specs import load_spec

    result, home = benched
    for run in result["runs"]:
        (cpu,) = run["memory"]  # no GPU here: the CPU alone
        assert cpu["device"] == "CPU" and cpu["gpu"] is False
        assert cpu["estimated_allocated"] == run["estimate"]["memory_bytes"]
        assert 0 < cpu["estimated_resident"] <= cpu["estimated_allocated"]
        # llama.cpp's log of this load (not of the other run's): the weights, the KV cache, the compute buffer
        assert {"CPU_Mapped model", "CPU KV", "CPU compute"} <= set(cpu["buffers"])
        assert cpu["allocated"] == sum(cpu["buffers"].values())
        assert cpu["buffers"]["CPU_Mapped model"] < result["model"]["file_bytes"] < cpu["allocated"]
        for measured, estimated in (
            (cpu["resident"], cpu["estimated_resident"]),
            (cpu["allocated"], cpu["estimated_allocated"]),
        ):
            assert RATIO_RANGE[0] <= measured / estimated <= RATIO_RANGE[1], cpu
    monkeypatch.setenv("EDGELLM_HOME", str(home))
    memory, flash = results.device_measurements(detect_this_machine(), load_spec(test_model))
    first = result["runs"][0]["memory"][0]  # of a result's runs, the first of each placement is the sample
    assert memory == MemoryCalibration(
        "cpu",
        pytest.approx(first["resident"] / first["estimated_resident"]),
        pytest.approx(first["allocated"] / first["estimated_allocated"]),
        1,
    )
    on, off = (next(run["tg"][0]["mean"] for run in result["runs"] if run["flash_attn"] is fa) for fa in (True, False))
    assert flash == FlashAttnMeasured(on, off, test_model.name)


def test_another_device_is_not_calibrated_by_this_one(benched: tuple[dict, Path], test_model: Path) -> None:
    _, home = benched
    done = edgellm(
        "plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb", "--json", env={"EDGELLM_HOME": str(home)}
    )
    assert json.loads(done.stdout)["speed"] == {
        "estimate_tokens_per_s": pytest.approx(json.loads(done.stdout)["speed"]["estimate_tokens_per_s"]),
        "calibration": None,
        "measured": None,
    }


def test_recommend_and_the_tui_lists_use_the_measurements(
    benched: tuple[dict, Path], test_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, home = benched
    done = edgellm("recommend", "--offline", "--json", env={"EDGELLM_HOME": str(home)})
    (sample,) = json.loads(done.stdout)["calibration_samples"]
    assert sample == {
        "placement": "cpu",
        "weights_bytes": result["model"]["weights_bytes"],
        "ratio": pytest.approx(
            result["runs"][0]["tg"][0]["mean"] / result["runs"][0]["estimate"]["tokens_per_s"], abs=1e-4
        ),  # recommend rounds it to 4 decimals
    }
    monkeypatch.setenv("EDGELLM_HOME", str(home))
    from edgellm.catalog import inventory
    from edgellm.hw.detect import detect_this_machine

    (model,) = [m for m in inventory.local_models(detect_this_machine()) if m.path == test_model]
    on, off = (run["tg"][0]["mean"] for run in result["runs"])  # the list plans flash attention as measured faster
    assert model.measured_tokens_per_s == pytest.approx(max(on, off))


@pytest.mark.parametrize(
    "args,needles",
    [
        (["-r", "0"], ["-r/--repetitions", "must be 1 or more"]),
        (["--pp", "0"], ["--pp", "must be 1 or more"]),
        (["--depth", "0,x"], ["--depth", "not a number"]),
        (["-fa", "on,sometimes"], ["--flash-attn", "'sometimes' is not auto, on or off"]),
        (["-c", "256", "--depth", "512"], ["need a 641-token context, more than -c 256", "raise -c to 768"]),
        (["-c", "2048", "--depth", "40000"], ["more than the model's trained context of 32768", "lower --depth"]),
        (["--depth", "40000"], ["more than the model's trained context of 32768", "lower --depth"]),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    test_model: Path, edgellm_home: Path, args: list[str], needles: list[str]
) -> None:
    assert_one_line_error(edgellm("bench", "-m", str(test_model), *args), *needles)
    assert not (edgellm_home / "bench").exists()


def test_a_missing_model_is_one_line_and_exit_2(tmp_path: Path, edgellm_home: Path) -> None:
    assert_one_line_error(edgellm("bench", "-m", str(tmp_path / "nope.gguf")), "nope.gguf", "check the path")
    assert not (edgellm_home / "bench").exists()


def test_bench_is_listed_in_the_help() -> None:
    done = edgellm("bench", "--help")
    assert done.returncode == 0 and "--depth" in done.stdout and "--flash-attn" in done.stdout
    assert os.linesep.join(["usage: edgellm bench"]) in done.stdout


@pytest.mark.parametrize("when", ["loading", "measuring"])
def test_ctrl_c_stops_the_benchmark_and_keeps_nothing(test_model: Path, edgellm_home: Path, when: str) -> None:
    """Ctrl-C as the model loads (llama.cpp's log callback used to swallow it) or as it is measured: exit 130."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "edgellm", "bench", "-m", str(test_model), "--tg", "4000", "-c", "8192"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stderr.readline()  # the progress line's first report: the benchmark has started
        assert first.startswith("bench: loading"), first
        if when == "measuring":
            second = process.stderr.readline()  # the next (off a terminal, 5 s later): it is measuring
            while second.startswith("loading the model"):  # a slow load's bar (a busy machine) comes between
                second = process.stderr.readline()
            assert second.startswith("bench: "), second
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
        rest = process.stderr.read()
    finally:
        process.kill()
    assert code == 130 and "edgellm: interrupted" in rest and "Traceback" not in rest
    assert not (edgellm_home / "bench").exists()


def test_bench_parallel_measures_sequences_together_and_serve_auto_chooses_from_it(
    test_model: Path, tmp_path: Path
) -> None:
    """`bench --parallel 1,2`: llama-batched-bench's figures through the batched engine, kept with the device's
    results; then `plan --parallel auto` (what `serve` runs) says it chose from this device's measurements."""
    env = {"EDGELLM_HOME": str(tmp_path)}
    done = edgellm(
        "bench", "-m", str(test_model), "--parallel", "1,2", "--pp", "32", "--tg", "12", "-r", "1", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    rows = result["parallel"]
    assert [row["sequences"] for row in rows] == [1, 2]
    for row in rows:
        assert row["pp"] == 32 and row["tg"] == 12 and row["tg_aggregate"] > 0 and row["pp_tokens_per_s"] > 0
        assert abs(row["tg_per_stream"] * row["sequences"] - row["tg_aggregate"]) < 1e-6 and row["ttft_ms"] > 0
    assert result["settings"]["parallel"] == 2 and result["runs"] == []
    table = edgellm("bench", "-m", str(test_model), "--parallel", "1,2", "--pp", "16", "--tg", "6", "-r", "1", env=env)
    assert "S_TG t/s" in table.stdout and "serve --parallel auto" in table.stdout
    planned = edgellm("plan", "-m", str(test_model), "--parallel", "auto", env=env)
    assert planned.returncode == 0, planned.stderr
    assert "measured on this device (1, 2)" in planned.stdout
    assert "pooled" in planned.stdout and "per slot" in planned.stdout
