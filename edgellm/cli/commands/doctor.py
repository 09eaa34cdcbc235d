"""`edgellm doctor`: check the installed llama.cpp on this machine and say how to fix what is wrong."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgellm import __version__
from edgellm.cli.arguments import add_rpc_flag
from edgellm.engine.child import module_command
from edgellm.formatting import gib
from edgellm.hw import buildconfig

if TYPE_CHECKING:
    from edgellm.engine.endpoint import Endpoint
    from edgellm.hw.profile import DeviceProfile

NAME = "doctor"
HELP = "check the llama.cpp build (one-token self-test in a child process) and the GPU setup"
SELFTEST_TIMEOUT_S = 300
PIP_REBUILD = (
    'CMAKE_ARGS="{args}" pip install --force-reinstall --no-cache-dir '
    f"llama-cpp-python=={buildconfig.LLAMA_CPP_PYTHON_VERSION}"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", help="GGUF file for the self-test (default: a tiny generated model)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    add_rpc_flag(parser, "also check these RPC workers (`edgellm worker`): reachable, protocol version, memory")


def check_workers(endpoints: list[Endpoint]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each worker as doctor reports it, and the problems found (a worker that cannot be used, with the way out)."""
    from edgellm.engine.rpc import check_worker
    from edgellm.engine.side_channel import fetch_profile
    from edgellm.errors import WorkerUnreachable

    found: list[dict[str, Any]] = []
    problems: list[str] = []
    for endpoint in endpoints:
        try:
            status = check_worker(endpoint)
        except WorkerUnreachable as error:
            found.append({"endpoint": str(endpoint), "reachable": False})
            problems.append(str(error))
            continue
        document = fetch_profile(endpoint) or {}
        profile = document.get("profile") or {}
        found.append(
            {
                "endpoint": str(endpoint),
                "reachable": True,
                "protocol": ".".join(map(str, status.version)),
                "devices": [{"free_bytes": free, "total_bytes": total} for free, total in status.devices],
                "promised_bytes": document.get("memory_cap_bytes"),
                "served": document.get("devices"),
                "host": profile.get("name"),
                "cpu": (profile.get("cpu") or {}).get("model"),
                "edgellm": document.get("edgellm"),
            }
        )
    return found, problems


@dataclass
class SelfTest:
    """What the child process reported before it exited (or died)."""

    returncode: int
    records: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    def record(self, step: str) -> dict[str, Any] | None:
        return next((record for record in self.records if record.get("step") == step), None)

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.record("token") is not None

    @property
    def build_features(self) -> list[str]:
        """CPU features the build uses, from llama.cpp's system info ('AVX2 = 1 | AMX_INT8 = 1 | ...')."""
        info = (self.record("system_info") or {}).get("system_info", "")
        return [name.lower() for name, on in re.findall(r"([A-Z0-9_]+) = (\d)", info) if on == "1"]


def run_selftest(model: Path, timeout: float = SELFTEST_TIMEOUT_S) -> SelfTest:
    argv = module_command("edgellm.engine.selftest", str(model))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return SelfTest(-1000, parse_records(out), "timed out")
    return SelfTest(done.returncode, parse_records(done.stdout), done.stderr)


def parse_records(stdout: str) -> list[dict[str, Any]]:
    records = []
    for line in stdout.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def diagnose(test: SelfTest, cpu_flags: set[str], cmake_args: list[str]) -> list[str]:
    """Human findings for a failed self-test: what happened and the command that fixes it."""
    if test.passed:
        return []
    fixed_args = " ".join(cmake_args)
    rebuild = f"{buildconfig.INSTALL_COMMAND} --rebuild   (or: {PIP_REBUILD.format(args=fixed_args)})"
    if test.returncode == -1000:
        return [f"the self-test did not finish in {SELFTEST_TIMEOUT_S} s; the llama.cpp build may be broken: {rebuild}"]
    if test.returncode < 0:
        signame = (
            signal.Signals(-test.returncode).name
            if -test.returncode in signal.Signals._value2member_map_
            else f"signal {-test.returncode}"
        )
        stage = "while loading the model" if test.record("loaded") is None else "on the first token"
        lines = [f"llama.cpp crashed ({signame}) {stage}"]
        if "amx_int8" in test.build_features or {"amx_int8", "amx_tile"} & cpu_flags:
            lines.append(
                "this CPU has AMX and ggml's AMX matrix multiply crashes on it (llama.cpp #20824): "
                "rebuild without AMX (GGML_NATIVE=OFF, AVX2/AVX-512 on, AMX off): " + rebuild
            )
        else:
            lines.append("rebuild llama.cpp for this CPU: " + rebuild)
        return lines
    reason = test.stderr.strip().splitlines()[-1] if test.stderr.strip() else f"exit code {test.returncode}"
    return [f"the self-test failed: {reason}", f"if llama_cpp is missing or broken: {rebuild}"]


def gpu_findings(profile: DeviceProfile, build_backend: str | None, gpu_offload: bool | None) -> list[str]:
    """A GPU this build cannot use, and the command that rebuilds for it."""
    findings = []
    for gpu in profile.gpus:
        usable = gpu_offload if gpu_offload is not None else build_backend == gpu.backend
        if not usable:
            findings.append(
                f"{gpu.name} is present but this llama.cpp build is CPU-only; rebuild with "
                f"{gpu.backend.upper()}: {buildconfig.rebuild_command(gpu.backend)}"
            )
    return findings


def main(args: argparse.Namespace) -> int:
    from edgellm.hw.detect import detect_this_machine

    profile = detect_this_machine()
    build = buildconfig.read_build_info()
    cpu_flags = buildconfig.cpu_flags_of_this_machine()
    backend = build["backend"] if build else buildconfig.detect_backend()
    safe_args = buildconfig.cmake_args(backend, profile.cpu.arch, os.uname().sysname, cpu_flags)
    with tempfile.TemporaryDirectory(prefix="edgellm-doctor-") as tmp:
        model = Path(args.model) if args.model else tiny_model(Path(tmp))
        test = run_selftest(model)
    info = test.record("system_info") or {}
    problems = diagnose(test, cpu_flags, safe_args) + gpu_findings(
        profile, build.get("backend") if build else None, info.get("gpu_offload")
    )
    workers, worker_problems = check_workers(args.rpc) if args.rpc else ([], [])
    problems += worker_problems
    report = {
        "edgellm": __version__,
        "python": sys.version.split()[0],
        "llama_cpp_python": (build or {}).get("llama_cpp_python"),
        "build": build,
        "build_cpu_features": test.build_features,
        "gpu_offload": info.get("gpu_offload"),
        "cpu_library": info.get("cpu_library"),
        "devices": info.get("devices", []),
        "selftest": {"passed": test.passed, "returncode": test.returncode, "model": str(model), "steps": test.records},
        "workers": workers,
        "problems": problems,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0 if not problems else 1


def tiny_model(folder: Path) -> Path:
    from edgellm.convert.tinymodel import write_tiny_llama

    return write_tiny_llama(folder / "tiny-selftest.gguf")


def render(report: dict[str, Any]) -> str:
    build = report["build"]
    token = next((step for step in report["selftest"]["steps"] if step.get("step") == "token"), None)
    if report["selftest"]["passed"]:
        assert token is not None  # a self-test passes by writing its token step
        selftest = f"passed (one token in {token['ms']} ms)"
    else:
        selftest = "FAILED"
    lines = [
        f"edgellm {report['edgellm']} on Python {report['python']}",
        "llama.cpp build: "
        + (
            f"llama-cpp-python {build['llama_cpp_python']}, backend {build['backend']}"
            if build
            else "not recorded (installed without scripts/install.py)"
        ),
        "build CPU features: " + (" ".join(report["build_cpu_features"]) or "unknown"),
        "CPU library: " + (report["cpu_library"] or "unknown"),
        "devices: " + (", ".join(report["devices"]) or "unknown"),
        f"GPU offload: {'yes' if report['gpu_offload'] else 'no'}",
        "self-test: " + selftest,
    ]
    for worker in report.get("workers", []):
        if worker["reachable"]:
            memory = ", ".join(
                f"{gib(device['free_bytes'], 1, unit=False)} of {gib(device['total_bytes'], 1)} free"
                for device in worker["devices"]
            )
            promised = worker["promised_bytes"]
            lines.append(
                f"worker {worker['endpoint']}: protocol {worker['protocol']}, {memory}"
                + (
                    f", {gib(promised, 1)} promised"
                    if promised is not None
                    else ", no edgellm profile (a plain llama.cpp rpc-server?)"
                )
                + (f" ({worker['host']}: {worker['cpu']})" if worker.get("host") else "")
            )
        else:
            lines.append(f"worker {worker['endpoint']}: cannot be used")
    lines += [f"problem: {problem}" for problem in report["problems"]]
    if not report["problems"]:
        lines.append("no problems found")
    return "\n".join(lines)
