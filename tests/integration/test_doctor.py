"""`edgellm doctor`: the self-test in a child process, and the diagnoses it gives."""

from __future__ import annotations

import json
import signal

from edgellm.cli.commands.doctor import SelfTest, diagnose, gpu_findings
from edgellm.hw import buildconfig
from edgellm.hw.detect import detect
from edgellm.hw.probes import RecordedProbe
from tests.support import FIXTURES, edgellm

AMX_INFO = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"


def test_doctor_passes_on_this_machine(test_model) -> None:
    done = edgellm("doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["selftest"]["passed"]
    assert "amx_int8" not in report["build_cpu_features"], "the install never builds the AMX kernels"
    assert report["build"]["backend"] == "cpu"
    token = next(step for step in report["selftest"]["steps"] if step["step"] == "token")
    assert isinstance(token["token"], int)


def test_doctor_with_the_test_model_prints_a_report(test_model) -> None:
    done = edgellm("doctor", "-m", str(test_model))
    assert done.returncode == 0, done.stdout
    assert "self-test: passed" in done.stdout and "no problems found" in done.stdout


def test_segfault_on_first_token_is_diagnosed_as_amx() -> None:
    crashed = SelfTest(
        -signal.SIGSEGV,
        [{"step": "system_info", "system_info": AMX_INFO, "gpu_offload": False}, {"step": "loaded", "load_ms": 300.0}],
    )
    safe = buildconfig.cmake_args("cpu", "x86_64", "Linux", {"avx2", "avx512f", "amx_int8", "amx_tile"})
    findings = diagnose(crashed, {"avx2", "amx_int8"}, safe)
    assert findings[0] == "llama.cpp crashed (SIGSEGV) on the first token"
    assert "AMX" in findings[1] and "scripts/install.py --rebuild" in findings[1]
    assert "-DGGML_AMX_INT8=OFF" in findings[1]


def test_crash_while_loading_without_amx() -> None:
    crashed = SelfTest(-signal.SIGABRT, [{"step": "system_info", "system_info": "CPU : AVX2 = 1 |"}])
    findings = diagnose(crashed, {"avx2"}, ["-DGGML_NATIVE=OFF"])
    assert findings[0] == "llama.cpp crashed (SIGABRT) while loading the model"
    assert "rebuild llama.cpp for this CPU" in findings[1]


def test_gpu_the_build_cannot_use() -> None:
    recording = json.loads((FIXTURES / "devices" / "laptop-rtx4060-8gb.json").read_text())
    laptop = detect(RecordedProbe(recording), "/tmp", None)
    (finding,) = gpu_findings(laptop, "cpu", gpu_offload=False)
    assert "NVIDIA GeForce RTX 4060 Laptop GPU" in finding
    assert "EDGELLM_BACKEND=cuda python3 scripts/install.py --rebuild" in finding
    assert gpu_findings(laptop, "cuda", gpu_offload=True) == []
