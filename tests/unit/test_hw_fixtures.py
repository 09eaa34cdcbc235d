"""Hardware detection replayed from recorded device fixtures, and the device-profile schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgellm.hw import profile as profiles
from edgellm.hw.detect import detect
from edgellm.hw.probes import RecordedProbe
from tests.support import FIXTURES

DEVICES = sorted((FIXTURES / "devices").glob("*.json"))


@pytest.mark.parametrize("fixture", DEVICES, ids=[path.stem for path in DEVICES])
def test_device_fixture(fixture: Path) -> None:
    recording = json.loads(fixture.read_text())
    expect = recording["expect"]
    found = detect(RecordedProbe(recording), "/home/user/.local/share/edgellm", recording["llama_build"])
    assert found.board is not None and found.board.kind == expect["board_kind"]
    assert found.board.model == expect["board_model"]
    if "board_release" in expect:
        assert found.board.release == expect["board_release"]
    if "board_module_contains" in expect:
        assert expect["board_module_contains"] in found.board.module
    assert found.cpu.model == expect["cpu_model"]
    assert found.cpu.arch == expect["arch"]
    assert found.cpu.physical_cores == expect["physical_cores"]
    assert found.cpu.performance_cores == expect["performance_cores"]
    assert found.cpu.efficiency_cores == expect["efficiency_cores"]
    assert set(expect["features_include"]) <= set(found.cpu.features)
    assert not set(expect["features_exclude"]) & set(found.cpu.features)
    assert found.memory.total_bytes == expect["memory_total_bytes"]
    assert found.unified_memory == expect["unified_memory"]
    assert len(found.gpus) == len(expect["gpus"])
    for gpu, wanted in zip(found.gpus, expect["gpus"]):
        for key, value in wanted.items():
            assert getattr(gpu, key) == value, key
    assert found.llama_build.backend == recording["llama_build"]["backend"]
    # the profile survives its own JSON
    assert profiles.from_dict(json.loads(found.to_json())) == found


def test_amd_gpu_through_sysfs() -> None:
    recording = json.loads((FIXTURES / "devices" / "laptop-rtx4060-8gb.json").read_text())
    recording["commands"] = {}
    recording["files"].update(
        {
            "/sys/class/drm/card1/device/vendor": "0x1002\n",
            "/sys/class/drm/card1/device/mem_info_vram_total": str(16 * 2**30) + "\n",
            "/sys/class/drm/card1/device/mem_info_vram_used": str(2**30) + "\n",
            "/sys/class/drm/card0/device/vendor": "0x8086\n",
        }
    )
    recording["dirs"] = {"/sys/class/drm": ["card0", "card1", "renderD128", "version"]}
    gpus = detect(RecordedProbe(recording), "/tmp", None).gpus
    assert [(g.vendor, g.backend, g.memory_total_bytes, g.memory_free_bytes) for g in gpus] == [
        ("amd", "rocm", 16 * 2**30, 15 * 2**30)
    ]


def test_nvml_wins_over_nvidia_smi() -> None:
    recording = json.loads((FIXTURES / "devices" / "laptop-rtx4060-8gb.json").read_text())
    recording["nvml"] = [
        {
            "name": "NVIDIA GeForce RTX 4060 Laptop GPU",
            "memory_total": 8585740288,
            "memory_free": 8001683456,
            "driver": "550.107.02",
        }
    ]
    (gpu,) = detect(RecordedProbe(recording), "/tmp", None).gpus
    assert (gpu.memory_total_bytes, gpu.memory_free_bytes, gpu.driver) == (8585740288, 8001683456, "550.107.02")


def valid_profile() -> dict:
    recording = json.loads((FIXTURES / "devices" / "raspberry-pi-5-8gb.json").read_text())
    return json.loads(detect(RecordedProbe(recording), "/tmp", None).to_json())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.pop("cpu"), "profile.cpu is missing"),
        (lambda p: p["memory"].update(total_bytes=-5), "not a plausible size"),
        (lambda p: p["memory"].update(total_bytes="8GB"), "memory.total_bytes should be int"),
        (lambda p: p["memory"].update(available_bytes=2**50), "available_bytes is larger than"),
        (lambda p: p["cpu"].update(physical_cores=0), "not a plausible core count"),
        (lambda p: p["cpu"].update(performance_cores=64), "performance_cores <= physical_cores"),
        (lambda p: p.update(schema_version=99), "schema_version 99"),
        (lambda p: p.update(schema="something-else"), "not a device profile"),
        (
            lambda p: p.update(
                gpus=[
                    {
                        "vendor": "nvidia",
                        "name": "x",
                        "memory_total_bytes": 1,
                        "memory_free_bytes": 2,
                        "unified_memory": False,
                        "backend": "cuda",
                    }
                ]
            ),
            "memory_free_bytes is larger",
        ),
    ],
)
def test_bad_profiles_are_named(change, message: str) -> None:
    data = valid_profile()
    change(data)
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.from_dict(data)


def test_profile_file_errors(tmp_path: Path) -> None:
    with pytest.raises(profiles.ProfileError, match="cannot read"):
        profiles.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(profiles.ProfileError, match="is not JSON"):
        profiles.load(bad)
