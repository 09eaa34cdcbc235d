"""`edgellm plan` over real files, built-in profiles and profile files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgellm.hw.builtin import builtin_names, profile_from_recording, profiles_dir
from tests.support import FIXTURES, assert_one_line_error, edgellm


def plan_json(*args: str) -> dict:
    done = edgellm("plan", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_plan_for_this_machine(test_model: Path) -> None:
    data = plan_json("-m", str(test_model))
    assert data["fits"] and data["model"]["quant"] == "Q4_K_M" and data["model"]["architecture"] == "gemma3"
    settings = data["settings"]
    assert (settings["n_gpu_layers"], settings["n_ctx"], settings["kv"], settings["flash_attn"]) == (
        0,
        4096,
        "f16",
        True,
    )
    (cpu,) = data["estimate"]["devices"]
    assert cpu["total_bytes"] == sum(
        cpu[key] for key in ("weights_bytes", "kv_cache_bytes", "compute_bytes", "overhead_bytes")
    )
    assert cpu["compute_bytes"] >= 262144 * 512 * 4  # the logits of one batch dominate on this vocabulary
    assert set(data["reasons"]) >= {"n_gpu_layers", "n_ctx", "threads", "flash_attn", "kv", "mmap", "mlock"}


def test_plan_text_shows_the_budget_table(test_model: Path) -> None:
    done = edgellm("plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb")
    assert done.returncode == 0, done.stderr
    for row in (
        "Memory budget: CPU RAM",
        "Weights",
        "KV cache",
        "Activations",
        "Overhead",
        "Total",
        "n_gpu_layers",
        "threads      4",
    ):
        assert row in done.stdout, row


@pytest.mark.parametrize(
    "name",
    [
        "raspberry-pi-4-4gb",
        "raspberry-pi-5-8gb",
        "jetson-orin-nano-8gb",
        "macbook-air-m2-16gb",
        "laptop-rtx4060-8gb",
        "cpu-laptop-8gb",
    ],
)
def test_every_builtin_profile_plans_the_test_model(test_model: Path, name: str) -> None:
    data = plan_json("-m", str(test_model), "--profile", name)
    assert data["profile"] == name and data["fits"]
    gpu_expected = name in ("jetson-orin-nano-8gb", "macbook-air-m2-16gb", "laptop-rtx4060-8gb")
    assert (data["settings"]["n_gpu_layers"] == 19) == gpu_expected  # 18 layers + output
    assert data["unified_memory"] == (name in ("jetson-orin-nano-8gb", "macbook-air-m2-16gb"))


def test_builtin_profiles_are_made_from_the_fixtures() -> None:
    assert builtin_names() == sorted(path.stem for path in (FIXTURES / "devices").glob("*.json"))
    for fixture in sorted((FIXTURES / "devices").glob("*.json")):
        made = profile_from_recording(json.loads(fixture.read_text()), fixture.stem)
        assert (profiles_dir() / fixture.name).read_text() == made.to_json() + "\n", (
            f"run scripts/make_profiles.py: {fixture.name} changed"
        )


def test_profile_file_from_hw_json(test_model: Path, tmp_path: Path) -> None:
    saved = tmp_path / "this.json"
    saved.write_text(edgellm("hw", "--json").stdout)
    assert (
        plan_json("-m", str(test_model), "--profile", str(saved))["settings"]
        == plan_json("-m", str(test_model))["settings"]
    )


def test_bad_profiles(test_model: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        edgellm("plan", "-m", str(test_model), "--profile", "toaster"),
        "no device profile 'toaster'",
        "raspberry-pi-5-8gb",
    )
    broken = json.loads((profiles_dir() / "raspberry-pi-5-8gb.json").read_text())
    del broken["cpu"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    assert_one_line_error(edgellm("plan", "-m", str(test_model), "--profile", str(path)), "profile.cpu is missing")
    broken = json.loads((profiles_dir() / "raspberry-pi-5-8gb.json").read_text())
    broken["memory"]["total_bytes"] = -1
    path.write_text(json.dumps(broken))
    assert_one_line_error(edgellm("plan", "-m", str(test_model), "--profile", str(path)), "not a plausible size")


def test_model_larger_than_every_budget(test_model: Path, tmp_path: Path) -> None:
    tiny = json.loads((profiles_dir() / "raspberry-pi-4-4gb.json").read_text())
    # 100 MiB usable: less than the test model keeps resident beside its weights (its KV cache, activations and
    # vocabulary), so no quant of it fits
    tiny["memory"].update(total_bytes=1 * 2**30, available_bytes=612 * 2**20)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny))
    assert_one_line_error(
        edgellm("plan", "-m", str(test_model), "--profile", str(path)),
        "the model needs",
        "has 100.0 MiB usable",
        "use a smaller model",
    )


def test_micro_batch_shrinks_before_giving_up(test_model: Path, tmp_path: Path) -> None:
    small = json.loads((profiles_dir() / "raspberry-pi-4-4gb.json").read_text())
    # 325 MiB usable: the 329 MiB the test model keeps resident with a 512-token micro-batch do not fit (RAM is
    # fitted by what is resident: the activations written, one row of logits), 256 tokens' do
    small["memory"].update(total_bytes=1 * 2**30, available_bytes=(512 + 325) * 2**20)
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small))
    data = plan_json("-m", str(test_model), "--profile", str(path))
    assert data["fits"] and data["settings"]["n_batch"] < 512 and data["settings"]["n_ctx"] == 4096
    assert "micro-batch reduced" in data["notices"][0]


def test_plan_errors(test_model: Path) -> None:
    assert_one_line_error(edgellm("plan", "-m", str(test_model), "-c", "40000"), "above the model's trained context")
    assert_one_line_error(edgellm("plan", "-m", str(test_model), "--kv", "q8_0", "-fa", "off"), "needs flash attention")


def test_folder_of_quants_picks_the_best_that_fits(tmp_path: Path) -> None:
    from edgellm.convert.tinymodel import Shape, write_model

    shape = Shape("llama", n_embd=256, n_layers=2, n_ff=512, n_vocab=1000)
    for quant in ("f16", "q8_0", "q4_0"):
        write_model(tmp_path / f"tiny-{quant.upper()}.gguf", shape, quant=quant)
    data = plan_json("-m", str(tmp_path))
    assert data["quant"] == "Q8_0"  # F16 is not run on a CPU-only machine unless asked
    assert data["considered"][0].startswith("F16: skipped on a CPU-only device")
    done = edgellm("run", "-m", str(tmp_path), "-p", "a", "-n", "2", "--json")
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["model"].endswith("tiny-Q8_0.gguf")


def test_run_uses_the_plan(test_model: Path) -> None:
    done = edgellm("run", "-m", str(test_model), "-p", "Hello", "-n", "2", "--json", "-c", "0")
    settings = json.loads(done.stdout.splitlines()[-1])["settings"]
    assert settings["n_ctx"] == 32768 and settings["n_gpu_layers"] == 0
