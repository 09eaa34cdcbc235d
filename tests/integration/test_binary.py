"""The single binary, run as someone who downloaded one file would: no virtual environment on PATH, PYTHONPATH and
PYTHONHOME unset, HOME an empty folder. Built once per run from this checkout with `packaging/build_binary.py`
(one file and one folder, bundling the installed llama.cpp), or given by EDGELLM_BINARY (the portable build's
check: `packaging/check_portable.sh`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from edgellm.convert.tinyprojector import ProjectorShape, write_projector
from edgellm.hw import buildconfig
from edgellm.hw.profile import from_dict
from tests.support import REPO, edgellm
from tests.support.images import PHOTO
from tests.support.server import ServerProcess
from tests.support.terminal import Terminal

pytestmark = [pytest.mark.binary, pytest.mark.slow]  # slow: the first test builds both forms (~80 s)

PROMPT = "The capital of France is"


@pytest.fixture(scope="session")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"onefile": ..., "onedir": ...}: built now from .venv, or the one binary EDGELLM_BINARY names."""
    given = os.environ.get("EDGELLM_BINARY")
    if given:
        return {"given": Path(given).resolve()}
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "build_binary.py"), "--dist", str(dist)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {"onefile": dist / "edgellm", "onedir": dist / "edgellm-dir" / "edgellm"}


@pytest.fixture(scope="session", params=["onefile", "onedir"])
def binary(request: pytest.FixtureRequest, binaries: dict[str, Path]) -> Path:
    """Each form of the binary in turn, or the one given."""
    if "given" in binaries:
        if request.param == "onedir":
            pytest.skip("EDGELLM_BINARY names one binary")
        return binaries["given"]
    return binaries[request.param]


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment with nothing of Python's in it, and an empty HOME."""
    home = tmp_path / "empty-home"
    home.mkdir()
    return {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "TERM": "xterm-256color", "LANG": "C.UTF-8"}


def run_binary(
    binary: Path, *args: str, env: dict[str, str], input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    assert not any(key in env for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"))
    return subprocess.run(
        [str(binary), *args], input=input, capture_output=True, text=True, env=env, timeout=timeout, cwd=env["HOME"]
    )


def bundled_build(binary: Path, env: dict[str, str]) -> dict:
    """The binary's recorded build, from `hw --json`."""
    return json.loads(run_binary(binary, "hw", "--json", env=env).stdout)["llama_build"]


def test_version_and_how_it_was_built(binary: Path, bare_env: dict[str, str]) -> None:
    short = run_binary(binary, "--version", env=bare_env)
    assert short.returncode == 0 and re.fullmatch(r"edgellm \d+\.\d+\.\d+\n", short.stdout), short
    verbose = run_binary(binary, "--version", "--verbose", env=bare_env).stdout
    assert "(single binary, Python 3." in verbose
    assert re.search(r"llama\.cpp commit: [0-9a-f]{40}\n", verbose), verbose
    assert re.search(r"CMake flags: .*-DGGML_RPC=ON", verbose), verbose
    assert "built with PyInstaller 6." in verbose


def test_the_one_file_unpacks_once_and_tidies_up(binary: Path, bare_env: dict[str, str], tmp_path: Path) -> None:
    """The one file unpacks into HOME's cache on its first run only, removes an old version's folder that no program
    holds, and, where the cache cannot be written, runs from a temporary folder it removes at exit."""
    with binary.open("rb") as head:
        if head.read(2) != b"#!":
            pytest.skip("the one folder unpacks nothing")
    cache = Path(bare_env["HOME"]) / ".cache" / "edgellm" / "binary"
    old = cache / ".0.0.1-0123456789abcdef.oldver"
    old.mkdir(parents=True)
    (old / ".edgellm-unpacked").write_text("0.0.1-0123456789abcdef")
    (cache / "0.0.1-0123456789abcdef").symlink_to(old.name)
    assert run_binary(binary, "--version", env=bare_env).returncode == 0
    (key,) = [entry.name for entry in cache.iterdir() if entry.is_symlink()]  # the old version's went
    unpacked = (cache / key).resolve()
    assert sorted(entry.name for entry in cache.iterdir()) == sorted([key, unpacked.name])
    assert (unpacked / ".edgellm-unpacked").read_text() == key and key.startswith("0.")
    made = unpacked.stat().st_mtime_ns
    again = run_binary(binary, "hw", "--json", env=bare_env)
    assert again.returncode == 0 and json.loads(again.stdout)["llama_build"]
    assert unpacked.stat().st_mtime_ns == made and len(list(cache.iterdir())) == 2  # started from the cache
    blocker, tmp = tmp_path / "a-file", tmp_path / "tmp"
    blocker.write_text("")
    tmp.mkdir()
    env = {**bare_env, "EDGELLM_UNPACK_DIR": str(blocker / "cache"), "TMPDIR": str(tmp)}
    fallback = run_binary(binary, "doctor", "--json", env=env)  # a child process (the self-test) included
    assert fallback.returncode == 0 and json.loads(fallback.stdout)["selftest"]["passed"], fallback.stderr
    assert not list(tmp.iterdir())  # removed at exit


def test_help_of_every_command(binary: Path, bare_env: dict[str, str]) -> None:
    listed = run_binary(binary, "--help", env=bare_env).stdout
    commands = re.findall(r"^    ([a-z]+)\b", listed, flags=re.M)
    assert {"run", "chat", "serve", "pull", "convert", "plan", "hw", "doctor"} <= set(commands)
    for command in commands:
        done = run_binary(binary, command, "--help", env=bare_env)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: edgellm {command}"), (command, done.stderr)


def test_hw_json_is_a_device_profile(binary: Path, bare_env: dict[str, str]) -> None:
    done = run_binary(binary, "hw", "--json", env=bare_env)
    profile = from_dict(json.loads(done.stdout))
    assert profile.cpu.logical_cores >= 1 and profile.llama_build is not None
    assert profile.disk_path and profile.disk_path.startswith(bare_env["HOME"])  # the empty HOME, not ours


def test_the_shipped_data_is_inside(binary: Path, bare_env: dict[str, str], test_model: Path) -> None:
    """The built-in profiles and the catalog (edgellm/data, read with importlib.resources) come with the binary."""
    planned = run_binary(binary, "plan", "-m", str(test_model), "--profile", "raspberry-pi-5-8gb", env=bare_env)
    assert planned.returncode == 0 and "raspberry-pi-5-8gb" in planned.stdout, planned.stderr
    ranked = run_binary(binary, "recommend", "--offline", "--json", "--profile", "raspberry-pi-5-8gb", env=bare_env)
    assert ranked.returncode == 0 and json.loads(ranked.stdout), ranked.stderr


def test_run_gives_the_installed_packages_greedy_text(binary: Path, bare_env: dict[str, str], test_model: Path) -> None:
    installed = buildconfig.read_build_info() or {}
    build = bundled_build(binary, bare_env)
    if build["cpu_features"] != installed.get("cpu_features"):
        pytest.skip(
            f"the binary's kernels ({build['cpu_features']}) differ from the installed build's "
            f"({installed.get('cpu_features')}): their greedy text may differ in the last bits"
        )
    args = ("run", "-m", str(test_model), "-p", PROMPT, "-n", "24", "--temp", "0")
    ours = run_binary(binary, *args, env=bare_env)
    package = edgellm(*args)
    assert ours.returncode == 0 and package.returncode == 0, ours.stderr
    assert ours.stdout == package.stdout and len(ours.stdout.split()) > 5


def test_run_with_an_image_gives_the_installed_packages_text(
    binary: Path, bare_env: dict[str, str], test_model: Path, tmp_path: Path
) -> None:
    """The binary loads a vision projector through its own libmtmd and answers about a photo with the installed
    package's greedy text, the image taking the projector's tokens."""
    installed = buildconfig.read_build_info() or {}
    build = bundled_build(binary, bare_env)
    if build["cpu_features"] != installed.get("cpu_features"):
        pytest.skip(f"the binary's kernels ({build['cpu_features']}) differ from the installed build's")
    shape = ProjectorShape()
    projector = write_projector(tmp_path / "mmproj-tiny-f16.gguf", shape)
    args = ("run", "-m", str(test_model), "--mmproj", str(projector), "--image", str(PHOTO), "-p", "Describe it.")
    args += ("-n", "12", "--temp", "0", "--json")
    ours = run_binary(binary, *args, env=bare_env)
    package = edgellm(*args)
    assert ours.returncode == 0 and package.returncode == 0, ours.stderr[-3000:] + package.stderr[-3000:]
    text, _, report = ours.stdout.rstrip("\n").rpartition("\n")
    assert text and text == package.stdout.rstrip("\n").rpartition("\n")[0]
    stats = json.loads(report)
    assert stats.get("stats", stats)["image_tokens"] == shape.image_tokens, stats


def test_doctor_passes_and_names_the_cpu_library(binary: Path, bare_env: dict[str, str]) -> None:
    done = run_binary(binary, "doctor", "--json", env=bare_env)
    report = json.loads(done.stdout)
    assert report["selftest"]["passed"], report
    assert report["gpu_offload"] is False or report["devices"] != ["CPU (cpu)"]  # the RPC backend is not a GPU


def test_the_cpu_variant_loaded_is_the_one_this_cpu_should_get(binary: Path, bare_env: dict[str, str]) -> None:
    build = bundled_build(binary, bare_env)
    library = json.loads(run_binary(binary, "doctor", "--json", env=bare_env).stdout)["cpu_library"]
    expected = buildconfig.cpu_variant(buildconfig.cpu_flags_of_this_machine())
    if build.get("cpu_variant"):  # a portable binary: ggml chose among the variant libraries
        assert build["cpu_variant"] == expected
        assert cpu_variant_of(library) == expected, library
        assert "sapphirerapids" not in library
    else:  # one CPU library, built for this machine
        assert library.startswith("libggml-cpu.so"), library


def test_the_vision_library_and_its_bindings_are_inside(binary: Path, bare_env: dict[str, str]) -> None:
    """libmtmd (a vision projector's library) is bundled beside libllama, finds every library it links inside the
    bundle or the system's C and C++ runtime, and its bindings (`llama_cpp.mtmd_cpp`) are in the program's archive."""
    folder = bundle_folder(binary, bare_env)
    library = folder / "_internal" / "llama_cpp" / "lib" / "libmtmd.so"
    assert library.is_file(), sorted(path.name for path in library.parent.iterdir())
    linked = subprocess.run(["ldd", str(library)], capture_output=True, text=True, env={"PATH": bare_env["PATH"]})
    assert linked.returncode == 0 and "not found" not in linked.stdout, linked.stdout
    for name in ("libllama.so", "libggml.so", "libggml-base.so"):  # the bundle's own, not a system copy
        assert re.search(rf"^\s*{re.escape(name)}\S* => {re.escape(str(library.parent))}/", linked.stdout, re.M), name
    readers = pytest.importorskip("PyInstaller.archive.readers", reason="PyInstaller reads the program's archive")
    archive = readers.CArchiveReader(str(folder / "edgellm")).open_embedded_archive("PYZ.pyz")
    assert "llama_cpp.mtmd_cpp" in archive.toc and "llama_cpp.llama_cpp" in archive.toc


def test_chat_headless_with_piped_input(binary: Path, bare_env: dict[str, str], test_model: Path) -> None:
    done = run_binary(
        binary,
        "chat",
        "--headless",
        "-m",
        str(test_model),
        "-n",
        "8",
        "--temp",
        "0",
        input="Hello\nHow are you?\n",
        env=bare_env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and "Traceback" not in done.stderr
    history = Path(bare_env["HOME"]) / ".local" / "share" / "edgellm" / "history.db"
    assert history.is_file()  # saved under the empty HOME


def test_serve_answers(binary: Path, bare_env: dict[str, str], test_model: Path) -> None:
    server = ServerProcess("-m", str(test_model), env=bare_env, binary=binary)
    try:
        server.wait_ready()
        answer = httpx.post(
            f"{server.url}/v1/completions", json={"prompt": PROMPT, "max_tokens": 8, "temperature": 0}, timeout=120
        ).json()
        assert answer["usage"]["completion_tokens"] >= 1 and answer["choices"][0]["text"]
    finally:
        server.stop()


def test_pull_from_the_hub_then_run(binary: Path, bare_env: dict[str, str], tiny_model: Path) -> None:
    from tests.support.fakehub import FakeHub, FakeRepo

    hub = FakeHub()
    try:
        hub.add("tests/tiny-GGUF", FakeRepo({"tiny-Q8_0.gguf": tiny_model}))
        env = {**bare_env, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(Path(bare_env["HOME"]) / "hf")}
        done = run_binary(binary, "pull", "tests/tiny-GGUF", env=env)
        assert done.returncode == 0, done.stderr
        ran = run_binary(binary, "run", "-m", "tests/tiny-GGUF", "-p", "hello", "-n", "4", env=env)
        assert ran.returncode == 0, ran.stderr
    finally:
        hub.close()


def test_convert_a_checkpoint(binary: Path, bare_env: dict[str, str], checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.gguf"
    done = run_binary(binary, "convert", str(checkpoint), "--quant", "Q4_K_M", "-o", str(out), env=bare_env)
    assert done.returncode == 0, done.stderr
    ran = run_binary(binary, "run", "-m", str(out), "-p", "hello", "-n", "4", "--temp", "0", env=bare_env)
    assert ran.returncode == 0, ran.stderr


@pytest.mark.tmux
def test_the_tui_shows_the_home_screen(binary: Path, bare_env: dict[str, str], terminal: Terminal) -> None:
    terminal.start([str(binary)], bare_env)
    shown = terminal.wait(lambda shown: "This machine" in shown and "RAM" in shown, 90, "the home screen")
    assert "CPU" in shown
    terminal.keys("C-q")
    assert terminal.wait_exit() == 0


def cpu_variant_of(library: str | None) -> str | None:
    """`zen4` for `libggml-cpu-zen4.so`; None for a build with one CPU library (`libggml-cpu.so`)."""
    if not library or not library.startswith("libggml-cpu-"):
        return None
    return library[len("libggml-cpu-") :].split(".so")[0]


def bundle_folder(binary: Path, env: dict[str, str]) -> Path:
    """The one folder the binary runs from: beside the program, or, for the one file, where its first run unpacked it
    (into `env`'s HOME)."""
    with binary.open("rb") as head:
        if head.read(2) != b"#!":
            return binary.parent
    assert run_binary(binary, "--version", env=env).returncode == 0
    cache = Path(env["HOME"]) / ".cache" / "edgellm" / "binary"
    (key,) = [entry for entry in cache.iterdir() if entry.is_symlink()]
    return key.resolve()
