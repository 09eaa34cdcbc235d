#!/usr/bin/env python3
"""Build edgellm as one folder (`dist/edgellm-dir/edgellm`, PyInstaller) and as one file (`dist/edgellm`).

    python3 packaging/build_binary.py                 # from .venv: this machine's llama.cpp build (what CI tests)
    python3 packaging/build_binary.py --portable      # every x86 CPU variant, loaded at run time (slow to build)
    python3 packaging/build_binary.py --only onedir   # one of the two

The default bundles the llama.cpp that `scripts/install.py` built for this CPU: fast to make, and right for this
machine and its kind. `--portable` compiles llama-cpp-python again with GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS
(its sdist patched so that every `libggml-cpu-<variant>.so` is installed, the AMX variant left out), installs it
with edgellm in `build/portable/venv`, and bundles that. PyInstaller is pinned; the llama.cpp commit, the CMake
flags and the CPU variants are recorded in the binary (`edgellm --version --verbose`). The one file is the one
folder packed behind a small launcher that unpacks it once into a cache and starts it from there
(packaging/binary/onefile.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "packaging" / "binary")]

import onefile  # noqa: E402  (packaging/binary/onefile.py)

from edgellm.hw import buildconfig  # noqa: E402  (standard library only)

PYINSTALLER = ("pyinstaller==6.22.3", "pyinstaller-hooks-contrib==2026.9")
SPEC = REPO / "packaging" / "binary" / "edgellm.spec"
BUILD = REPO / "build"
DIST = REPO / "dist"
BUNDLE_INFO = BUILD / "bundle" / buildconfig.BUILD_INFO_NAME  # in the binary at share/edgellm/, where
# buildconfig.read_build_info() finds it (sys.prefix is the bundle's folder)


def say(message: str) -> None:
    print(f"[binary] {message}", flush=True)


def run(argv: list[str], **kwargs: object) -> None:
    say(" ".join(map(str, argv)))
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def patch_for_variants(source: Path) -> None:
    """Make llama-cpp-python's CMake install every CPU variant library beside libggml (it installs only a target
    named `ggml-cpu`), and drop the AMX variant from ggml's list."""
    ggml_cmake = source / "vendor" / "llama.cpp" / "ggml" / "src" / "CMakeLists.txt"
    text = ggml_cmake.read_text()
    for name in buildconfig.LEFT_OUT_VARIANTS:
        text, count = re.subn(rf"^\s*ggml_add_cpu_backend_variant\({name}\b.*$", "", text, flags=re.M)
        if count != 1:
            raise SystemExit(f"{ggml_cmake}: no variant {name} to leave out; has llama.cpp changed?")
    ggml_cmake.write_text(text)
    top = source / "CMakeLists.txt"
    anchor = "    llama_cpp_python_install_target(ggml-vulkan)\n"
    variants = " ".join(name for name, _ in buildconfig.X86_CPU_VARIANTS)
    text = top.read_text()
    if anchor not in text:
        raise SystemExit(f"{top}: cannot find where to install the CPU variants; has llama-cpp-python changed?")
    top.write_text(
        text.replace(
            anchor,
            anchor + f"    foreach(variant IN ITEMS {variants})\n"
            "        llama_cpp_python_install_target(ggml-cpu-${variant})\n    endforeach()\n",
        )
    )


def portable_wheel() -> tuple[Path, list[str], float]:
    """The all-variants llama-cpp-python wheel (cached by its flags, like the install's), its flags, and the
    minutes it took to compile (0 when cached)."""
    args = buildconfig.portable_cmake_args(platform.machine())
    key = "portable-" + buildconfig.build_key(buildconfig.LLAMA_CPP_PYTHON_VERSION, args)
    cache = buildconfig.wheel_cache_root() / key
    found = sorted(cache.glob("llama_cpp_python-*.whl"))
    if found:
        say(f"reusing the portable llama.cpp wheel: {found[-1]}")
        return found[-1], args, 0.0
    with tempfile.TemporaryDirectory(prefix="edgellm-portable-") as tmp:
        with tarfile.open(buildconfig.llama_cpp_sdist()) as tar:
            tar.extractall(tmp, filter="data")
        (source,) = [entry for entry in Path(tmp).iterdir() if entry.is_dir()]
        patch_for_variants(source)
        env = dict(os.environ, CMAKE_ARGS=" ".join(args), FORCE_CMAKE="1")
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        started = time.monotonic()
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", tmp, str(source)], env=env)
        minutes = (time.monotonic() - started) / 60
        wheel = buildconfig.keep_wheel(next(Path(tmp).glob("llama_cpp_python-*.whl")), cache)
        (cache / "build-minutes.txt").write_text(f"{minutes:.1f}\n")
    say(f"compiled the portable llama.cpp in {minutes:.1f} min")
    return wheel, args, minutes


def portable_venv(wheel: Path) -> Path:
    """build/portable/venv: the portable llama.cpp, edgellm (not editable) and its runtime dependencies only."""
    venv = BUILD / "portable" / "venv"
    if not python_of(venv).exists():
        run([sys.executable, "-m", "venv", str(venv)])
    run([str(python_of(venv)), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)])
    run([str(python_of(venv)), "-m", "pip", "install", "--quiet", str(wheel), str(REPO)])
    run([str(python_of(venv)), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(REPO)])
    return venv


def llama_cpp_commit() -> str:
    """The llama.cpp commit vendored in the pinned sdist (its submodule's HEAD, which the sdist ships)."""
    with tarfile.open(buildconfig.llama_cpp_sdist()) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".git/modules/vendor/llama.cpp/HEAD"):
                handle = tar.extractfile(member)
                text = handle.read().decode(errors="replace").strip() if handle else ""
                if re.fullmatch(r"[0-9a-f]{40}", text):
                    return text
    return "unknown (the sdist records none)"


def bundle_info(python: Path, recorded: dict, cmake_args: list[str], portable: bool) -> dict:
    """The install's build record, with what makes the binary reproducible."""
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import edgellm, llama_cpp, PyInstaller, sys; "
            "print(edgellm.__version__, llama_cpp.__version__, PyInstaller.__version__, "
            "sys.version.split()[0])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    variants = [name for name, _ in buildconfig.X86_CPU_VARIANTS] if portable else []
    return {
        **recorded,
        "edgellm": probe[0],
        "llama_cpp_python": probe[1],
        "pyinstaller": probe[2],
        "python": probe[3],
        "backend": recorded.get("backend", "cpu"),
        "cpu_features": [] if portable else recorded.get("cpu_features", []),
        "llama_cpp_commit": llama_cpp_commit(),
        "cmake_args": cmake_args,
        "portable": portable,
        "cpu_variants": variants,
        "left_out_variants": list(buildconfig.LEFT_OUT_VARIANTS) if portable else [],
        "machine": platform.machine(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def pyinstaller(python: Path, dist: Path) -> Path:
    """The one folder, `dist/edgellm-dir/`; its program."""
    work = BUILD / "pyinstaller" / "onedir"
    env = dict(os.environ, EDGELLM_BUNDLE_INFO=str(BUNDLE_INFO))
    run(
        [
            str(python),
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(dist),
            "--workpath",
            str(work),
            str(SPEC),
        ],
        env=env,
        cwd=REPO,
    )
    return dist / "edgellm-dir" / "edgellm"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portable", action="store_true", help="every x86 CPU variant of llama.cpp (slow to build)")
    parser.add_argument("--only", choices=("onefile", "onedir"), help="build one of the two")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="the environment to bundle (default .venv)")
    parser.add_argument("--dist", type=Path, default=DIST, help="where the binaries go (default dist/)")
    options = parser.parse_args()
    started = time.monotonic()
    if options.portable:
        wheel, cmake_args, _ = portable_wheel()
        venv, recorded = portable_venv(wheel), {"backend": "cpu"}
    else:
        venv = options.venv
        recorded = buildconfig.read_build_info(buildconfig.build_info_path(str(venv)))
        if not python_of(venv).exists() or not recorded:
            print(
                f"build_binary: {venv} has no installed edgellm: run python3 scripts/install.py first", file=sys.stderr
            )
            return 2
        cmake_args = recorded["cmake_args"]
    python = python_of(venv)
    run([str(python), "-m", "pip", "install", "--quiet", *PYINSTALLER])
    BUNDLE_INFO.parent.mkdir(parents=True, exist_ok=True)
    info = bundle_info(python, recorded, cmake_args, options.portable)
    BUNDLE_INFO.write_text(json.dumps(info, indent=2) + "\n")
    folder_dist = BUILD / "onefile" if options.only == "onefile" else options.dist  # one file only: folder aside
    folder = pyinstaller(python, folder_dist)
    files = [f for f in folder.parent.rglob("*") if f.is_file() and not f.is_symlink()]
    say(f"onedir: {folder} ({sum(f.stat().st_size for f in files) / 2**20:.1f} MiB)")
    if options.only != "onedir":
        single = options.dist / "edgellm"
        key = onefile.build(folder.parent, single, info["edgellm"])
        say(f"onefile: {single} ({single.stat().st_size / 2**20:.1f} MiB; unpacks once into <cache>/{key})")
    say(f"done in {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"build_binary: step failed (exit {error.returncode}): {' '.join(map(str, error.cmd))}", file=sys.stderr)
        sys.exit(1)
