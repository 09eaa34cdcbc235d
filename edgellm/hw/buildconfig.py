"""How llama.cpp is built for this machine: backend and CMake flags from the CPU's features.

Standard library only: `scripts/install.py` imports this before anything is installed, and `doctor`
uses it to print the command that rebuilds llama.cpp for a GPU the current build cannot use.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
BACKENDS = ("cpu", "cuda", "metal", "vulkan")
BACKEND_ENV = "EDGELLM_BACKEND"
BUILD_INFO_NAME = "llama-build.json"
INSTALL_COMMAND = "python3 scripts/install.py"

# x86 CPU feature (as /proc/cpuinfo spells it) -> the ggml CMake option it turns on.
X86_FEATURE_OPTIONS = (
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("bmi2", "GGML_BMI2"),
    ("avx_vnni", "GGML_AVX_VNNI"),
    ("avx512f", "GGML_AVX512"),
    ("avx512vbmi", "GGML_AVX512_VBMI"),
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
)
REPORTED_NAMES = {"avx512vbmi": "avx512_vbmi"}  # as `edgellm hw` names features
# AMX stays off whatever the CPU says: ggml's AMX matmul segfaults on the first decode (llama.cpp #20824).
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


# llama.cpp's x86 CPU backend variants (GGML_CPU_ALL_VARIANTS), each with the CPU features it is compiled for, as
# /proc/cpuinfo names them. A portable build ships one library per variant and ggml loads the best this CPU runs.
# `sapphirerapids` (AMX) is left out: the AMX segfault; a Sapphire Rapids Xeon gets `zen4`.
_HASWELL = ("sse4_2", "avx", "f16c", "fma", "avx2", "bmi2")
_AVX512 = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")  # what ggml checks for its AVX512 option
X86_CPU_VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x64", ()),
    ("sse42", ("sse4_2",)),
    ("sandybridge", ("sse4_2", "avx")),
    ("ivybridge", ("sse4_2", "avx", "f16c")),
    ("piledriver", ("sse4_2", "avx", "f16c", "fma")),
    ("haswell", _HASWELL),
    ("skylakex", _HASWELL + _AVX512),
    ("cannonlake", _HASWELL + _AVX512 + ("avx512vbmi",)),
    ("cascadelake", _HASWELL + _AVX512 + ("avx512_vnni",)),
    ("icelake", _HASWELL + _AVX512 + ("avx512vbmi", "avx512_vnni")),
    ("cooperlake", _HASWELL + _AVX512 + ("avx512_vnni", "avx512_bf16")),
    ("zen4", _HASWELL + _AVX512 + ("avx512vbmi", "avx512_vnni", "avx512_bf16")),
    ("alderlake", _HASWELL + ("avx_vnni",)),
)
LEFT_OUT_VARIANTS = ("sapphirerapids",)
# ggml's score for each feature a variant is built with (ggml-cpu/arch/x86/cpu-feats.cpp); the highest wins.
_FEATURE_SCORES = {
    "fma": 1,
    "f16c": 2,
    "sse4_2": 4,
    "bmi2": 8,
    "avx": 16,
    "avx2": 32,
    "avx_vnni": 64,
    "avx512f": 128,
    "avx512vbmi": 256,
    "avx512_bf16": 512,
    "avx512_vnni": 1024,
}


def cpu_variant(cpu_flags: set[str]) -> str | None:
    """The CPU variant ggml loads on an x86 CPU with `cpu_flags`, scored as ggml scores them; None for no x86."""
    if not cpu_flags or "sse2" not in cpu_flags:
        return None
    runnable = [
        (1 + sum(_FEATURE_SCORES.get(flag, 0) for flag in needs), name)
        for name, needs in X86_CPU_VARIANTS
        if set(needs) <= cpu_flags
    ]
    return max(runnable)[1]


def variant_features(variant: str) -> list[str]:
    """The CPU features a variant's kernels use, named as `edgellm hw` names them."""
    needs = dict(X86_CPU_VARIANTS)[variant]
    return [REPORTED_NAMES.get(flag, flag) for flag, _ in X86_FEATURE_OPTIONS if flag in needs]


def portable_cmake_args(machine: str) -> list[str]:
    """The CMake arguments of the portable single binary: every x86 CPU variant, loaded at run time (x86-64 only;
    an ARM board's binary is built on the board with `cmake_args`)."""
    if machine.lower() not in ("x86_64", "amd64"):
        raise ValueError(f"the portable build is for x86-64; on {machine} build on the device with its own flags")
    return [
        "-DGGML_NATIVE=OFF",
        "-DGGML_BACKEND_DL=ON",
        "-DGGML_CPU_ALL_VARIANTS=ON",
        "-DGGML_RPC=ON",  # libmtmd (images) is built as in the development wheel: the binary reads images too
    ]


def cmake_args(backend: str, machine: str, system: str, cpu_flags: set[str]) -> list[str]:
    """The CMake arguments for llama.cpp on a CPU with `cpu_flags` (lower-case /proc/cpuinfo names)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    args: list[str] = []
    arch = machine.lower()
    if arch in ("x86_64", "amd64", "i686", "i386"):
        args.append("-DGGML_NATIVE=OFF")
        args += [f"-D{option}={'ON' if flag in cpu_flags else 'OFF'}" for flag, option in X86_FEATURE_OPTIONS]
        args += [f"-D{option}=OFF" for option in AMX_OPTIONS]
    elif arch in ("aarch64", "arm64") and system == "Darwin":
        args.append("-DGGML_NATIVE=ON")
    elif arch in ("aarch64", "arm64"):
        args += ["-DGGML_NATIVE=OFF", f"-DGGML_CPU_ARM_ARCH={arm_march(cpu_flags)}"]
    else:
        args.append("-DGGML_NATIVE=ON")
    args += {
        "cpu": ["-DGGML_METAL=OFF"] if system == "Darwin" else [],
        "cuda": ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native"],
        "metal": ["-DGGML_METAL=ON"],
        "vulkan": ["-DGGML_VULKAN=ON"],
    }[backend]
    return args + ["-DGGML_RPC=ON"]  # llama.cpp's RPC backend: a model split across boards


def enabled_cpu_features(args: list[str]) -> list[str]:
    """The CPU features a build made with `args` uses, named as /proc/cpuinfo names them ("native" if chosen by the
    compiler)."""
    if "-DGGML_NATIVE=ON" in args:
        return ["native"]
    features = [REPORTED_NAMES.get(flag, flag) for flag, option in X86_FEATURE_OPTIONS if f"-D{option}=ON" in args]
    for arg in args:
        if arg.startswith("-DGGML_CPU_ARM_ARCH="):
            features += ["neon"] + arg.split("=", 1)[1].split("+")[1:]
    return features


def arm_march(cpu_flags: set[str]) -> str:
    """The -march value for a Linux aarch64 CPU from its /proc/cpuinfo Features (asimddp, i8mm, sve...)."""
    has_v82 = "asimddp" in cpu_flags or "fphp" in cpu_flags or "asimdhp" in cpu_flags
    march = "armv8.2-a" if has_v82 else "armv8-a"
    for flag, extension in (("fphp", "fp16"), ("asimddp", "dotprod"), ("i8mm", "i8mm"), ("sve", "sve")):
        if flag in cpu_flags and has_v82:
            march += f"+{extension}"
    return march


def cpu_flags_of_this_machine() -> set[str]:
    """Lower-case CPU feature names as /proc/cpuinfo spells them: its flags (x86) or Features (ARM)."""
    if platform.system() == "Darwin":
        return mac_x86_flags()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.lower().split())
    return set()


def mac_x86_flags() -> set[str]:
    """An Intel Mac's features from sysctl, renamed as Linux names them (AVX1.0 -> avx); empty on Apple Silicon."""
    try:
        done = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()
    renames = {"avx1.0": "avx", "avx512vbmi": "avx512vbmi", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}
    return {renames.get(flag, flag) for flag in done.stdout.lower().split()}


def nvidia_driver_present() -> bool:
    """True where an NVIDIA driver answers (nvidia-smi) or libcuda loads; `nvcc` alone is not a GPU."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            if subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def detect_backend(environ: Mapping[str, str] | None = None) -> str:
    """The GPU backend to build: EDGELLM_BACKEND if set, Metal on Apple Silicon, CUDA with a driver, else CPU."""
    forced = (os.environ if environ is None else environ).get(BACKEND_ENV, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV}={forced!r} is not a backend: use one of {', '.join(BACKENDS)}")
        return forced
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "metal"
    if platform.system() == "Linux" and nvidia_driver_present():
        return "cuda"
    return "cpu"


def build_key(version: str, args: list[str]) -> str:
    """Names one build: the wheel cache is keyed by it, so a wheel built with other flags is never reused."""
    ident = json.dumps([version, sys.implementation.cache_tag, platform.machine(), sorted(args)])
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def cache_root() -> Path:
    """~/.cache/edgellm (XDG_CACHE_HOME honoured): built llama.cpp wheels and llama-cpp-python's sdist."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgellm"


def wheel_cache_root() -> Path:
    """Where built llama-cpp-python wheels are kept, one folder per build key (EDGELLM_WHEELHOUSE moves it)."""
    return Path(os.environ["EDGELLM_WHEELHOUSE"]) if os.environ.get("EDGELLM_WHEELHOUSE") else cache_root() / "wheels"


def keep_wheel(built: Path, folder: Path) -> Path:
    """Copy a freshly built wheel into its cache folder: complete wheels only, a killed copy leaves no usable file."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (built.name + ".partial")
    shutil.copyfile(built, partial)
    partial.rename(folder / built.name)
    return folder / built.name


def llama_cpp_sdist(version: str = LLAMA_CPP_PYTHON_VERSION, python: str = sys.executable) -> Path:
    """llama-cpp-python's sdist archive, downloaded once (through `python`'s pip) into
    ~/.cache/edgellm/llama-cpp-src/VERSION."""
    root = cache_root() / "llama-cpp-src" / version
    found = sorted(root.glob(f"llama_cpp_python-{version}.tar.gz")) + sorted(
        root.glob(f"llama-cpp-python-{version}.tar.gz")
    )
    if found:
        return found[0]
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={version}",
            "-d",
            str(root),
        ],
        check=True,
    )
    found = sorted(root.glob("*.tar.gz"))
    if not found:
        raise SystemExit(f"pip download left no sdist in {root}")
    return found[0]


def llama_cpp_source(version: str = LLAMA_CPP_PYTHON_VERSION, python: str = sys.executable) -> Path:
    """The `vendor/llama.cpp` folder of llama-cpp-python==`version`'s sdist (the source the install compiles),
    unpacked once under ~/.cache/edgellm/llama-cpp-src/VERSION/src. The development install keeps it: llama.cpp's
    converter and templates for the tests, llama-bench's source for the benchmarks. The archive is unpacked under a
    temporary name and renamed when complete, so an interrupted unpack is never taken for a finished one."""
    import tarfile
    import tempfile

    root = cache_root() / "llama-cpp-src" / version
    unpacked = root / "src"
    if not unpacked.is_dir():
        archive = llama_cpp_sdist(version, python)
        partial = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(partial, filter="data")
                else:
                    tar.extractall(partial)  # Python < 3.10.12 has no filter; the archive is pip's own download
            (top,) = [entry for entry in partial.iterdir() if entry.is_dir()]
            try:
                top.rename(unpacked)
            except OSError:  # another process finished first
                if not unpacked.is_dir():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    folder = unpacked / "vendor" / "llama.cpp"
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise SystemExit(f"{folder} has no convert_hf_to_gguf.py: remove {root} and run the install again")
    return folder


def rebuild_command(backend: str) -> str:
    """The one command that rebuilds llama.cpp with `backend` (printed by doctor)."""
    return f"{BACKEND_ENV}={backend} {INSTALL_COMMAND} --rebuild"


def build_info_path(prefix: str | None = None) -> Path:
    """Where the install records the llama.cpp build of the environment at `prefix` (default: this one)."""
    return Path(prefix or sys.prefix) / "share" / "edgellm" / BUILD_INFO_NAME


def read_build_info(path: Path | None = None) -> dict[str, Any] | None:
    """The recorded build (backend, cmake args, features), or None when this install did not record one."""
    try:
        found = json.loads((path or build_info_path()).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
