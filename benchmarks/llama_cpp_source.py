"""llama.cpp's source as llama-cpp-python's sdist ships it, fetched once and cached (benchmarks and the RPC work).

`llama_cpp_source()` returns the unpacked `vendor/llama.cpp` folder of the sdist for the version the install builds
(edgellm.hw.buildconfig.LLAMA_CPP_PYTHON_VERSION), under ~/.cache/edgellm/llama-cpp-src/VERSION/. The download goes
through pip (`pip download --no-deps --no-binary :all:`); the archive is unpacked under a temporary name and renamed
when complete, so an interrupted fetch is never taken for a finished one.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from _common import REPO

sys.path.insert(0, str(REPO))

from edgellm.hw.buildconfig import LLAMA_CPP_PYTHON_VERSION, cache_root, llama_cpp_sdist

CACHE = cache_root() / "llama-cpp-src"


def llama_cpp_source(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """The `vendor/llama.cpp` folder of llama-cpp-python==`version`'s sdist, downloaded and unpacked on first use."""
    root = CACHE / version
    unpacked = root / "src"
    if not unpacked.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = llama_cpp_sdist(version)
        partial = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(partial, filter="data")
                else:
                    tar.extractall(partial)
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
        raise SystemExit(f"{folder} has no convert_hf_to_gguf.py: remove {root} and fetch again")
    return folder


if __name__ == "__main__":
    print(llama_cpp_source())
