"""llama.cpp's own tools (`llama-bench`, `llama-batched-bench`, `llama-server`, `llama-perplexity`), built once from
the same source and CMake flags as the installed wheel, and cached.

The anchor the report compares `edgellm bench` and `edgellm run` with: the same llama.cpp commit (llama-cpp-python's
sdist, `llama_cpp_source()`), the same CMake flags (read from `.venv/share/edgellm/llama-build.json`, what
`scripts/install.py` built the wheel with). The build goes to ~/.cache/edgellm/llama-bench/KEY/ (KEY: the version and
the flags; one folder per tool), in a temporary folder renamed when complete. On 2 cores each takes several minutes,
once.

Usage: .venv/bin/python benchmarks/llama_bench.py [TOOL...]   (prints each binary's path, building it when missing)
       .venv/bin/python benchmarks/llama_bench.py --cached [TOOL...]   (never builds: exit 1 when one is missing)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO

sys.path.insert(0, str(REPO))

from edgellm.hw.buildconfig import LLAMA_CPP_PYTHON_VERSION, build_key, cache_root, llama_cpp_source, read_build_info

TARGET = "llama-bench"
TOOLS = ("llama-bench", "llama-batched-bench", "llama-server", "llama-perplexity", "llama-mtmd-cli")
FIXED_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_APP=OFF",
]


def installed_cmake_args() -> list[str]:
    """The CMake flags the installed wheel was built with."""
    info = read_build_info(REPO / ".venv" / "share" / "edgellm" / "llama-build.json")
    if not info:
        raise SystemExit("no .venv/share/edgellm/llama-build.json: run `python3 scripts/install.py` first")
    return list(info.get("cmake_args", []))


def llama_bench_path(build: bool = True) -> Path | None:
    """The cached llama-bench for the installed flags; built when missing and `build`, else None."""
    return llama_tool_path(TARGET, build)


def llama_tool_path(target: str, build: bool = True) -> Path | None:
    """The cached llama.cpp tool `target` for the installed flags; built when missing and `build`, else None."""
    args = installed_cmake_args()
    key = build_key(LLAMA_CPP_PYTHON_VERSION, args)
    folder = cache_root() / "llama-bench" / (key if target == TARGET else f"{key}-{target}")
    binary = folder / target
    if binary.is_file() or not build:
        return binary if binary.is_file() else None
    source = llama_cpp_source()
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(
            ["cmake", "-S", str(source), "-B", str(work / "build"), *generator, *FIXED_ARGS, *args],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            ["cmake", "--build", str(work / "build"), "--target", target, "-j"], check=True, stdout=subprocess.DEVNULL
        )
        built = next((work / "build").glob(f"**/bin/{target}"))
        (work / "out").mkdir()
        shutil.copy2(built, work / "out" / target)
        try:
            (work / "out").rename(folder)
        except OSError:  # another build finished first
            if not binary.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return binary


def cached_tool(name: str) -> tuple[Path | None, str]:
    """llama.cpp's cached tool `name` (never built here), or None and why."""
    try:
        found = llama_tool_path(name, build=False)
    except SystemExit as missing:  # no record of the installed build's flags
        return None, str(missing)
    if found is None:
        return None, f"{name} is not built: run .venv/bin/python benchmarks/llama_bench.py {name}"
    return found, ""


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--cached"]:  # print the cached tools, exit 1 if one is not built (never build)
        found = [llama_tool_path(name, build=False) for name in arguments[1:] or [TARGET]]
        print("\n".join(str(path) for path in found if path is not None))
        sys.exit(0 if all(found) else 1)
    for name in arguments or [TARGET]:
        print(llama_tool_path(name))
