"""`edgellm hw` on this machine agrees with psutil; start-up stays free of llama_cpp and Textual."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from edgellm.hw import profile as profiles
from tests.support import edgellm


def test_hw_json_agrees_with_psutil(edgellm_home: Path) -> None:
    done = edgellm("hw", "--json")
    assert done.returncode == 0, done.stderr
    found = profiles.from_dict(json.loads(done.stdout))
    assert found.cpu.logical_cores == psutil.cpu_count(logical=True)
    assert found.cpu.physical_cores == psutil.cpu_count(logical=False)
    assert found.memory.total_bytes == psutil.virtual_memory().total
    assert abs(found.memory.available_bytes - psutil.virtual_memory().available) < 2**30
    assert found.memory.swap_total_bytes == psutil.swap_memory().total
    assert found.disk_path == str(edgellm_home)
    assert found.llama_build is not None and found.llama_build.llama_cpp_python == "0.3.36"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in flags:
        assert "avx2" in found.cpu.features


def test_hw_report_is_readable() -> None:
    done = edgellm("hw")
    assert done.returncode == 0
    for label in ("CPU", "SIMD", "Memory", "Disk", "GPU", "llama.cpp"):
        assert any(line.startswith(label) for line in done.stdout.splitlines()), label


def test_version() -> None:
    from edgellm import __version__

    assert edgellm("--version").stdout.strip() == f"edgellm {__version__}"
    assert (
        subprocess.run([sys.executable, "-m", "edgellm", "--version"], capture_output=True, text=True).returncode == 0
    )


def test_help_and_hw_do_not_import_the_engine_or_the_tui() -> None:
    probe = (
        "import sys, io, contextlib\n"
        "from edgellm.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['hw']); main(['hw', '--json'])\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = sorted(m for m in ('llama_cpp', 'textual', 'numpy', 'gguf', 'huggingface_hub', 'fastapi', 'uvicorn')\n"
        "               if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
