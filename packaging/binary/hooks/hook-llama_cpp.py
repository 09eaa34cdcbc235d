"""PyInstaller hook for llama-cpp-python, which pyinstaller-hooks-contrib does not have.

llama.cpp's libraries are opened with ctypes, not imported, so PyInstaller does not see them: each is listed here,
into `llama_cpp/lib` where llama-cpp-python looks. A library is kept under the name it is opened by
(`libllama.so`, `libggml.so`) and under its SONAME (`libggml-base.so.0`), which the others link to; the fully
versioned copies pip writes (`.so.0.25.3`) are left out. A GGML_BACKEND_DL build's backends
(`libggml-cpu-<variant>.so`, `libggml-rpc.so`, `libggml-cuda.so`) are modules ggml opens at run time: all of them
go in. libmtmd (images) is left out: edgellm does not use it.
"""

import re
from pathlib import Path

from PyInstaller.utils.hooks import get_package_paths

_, package = get_package_paths("llama_cpp")
FULL_VERSION = re.compile(r"\.so\.\d+\.\d+\.\d+$")

binaries = [
    (str(path), "llama_cpp/lib")
    for path in sorted(Path(package, "lib").iterdir())
    if ".so" in path.name and not FULL_VERSION.search(path.name) and not path.name.startswith("libmtmd")
]
excludedimports = ["llama_cpp.mtmd_cpp", "llama_cpp.server", "llama_cpp.llava_cpp"]
