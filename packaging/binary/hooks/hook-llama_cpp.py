"""PyInstaller hook for llama-cpp-python, which pyinstaller-hooks-contrib does not have.

llama.cpp's libraries are opened with ctypes, not imported, so PyInstaller does not see them: each is listed here,
into `llama_cpp/lib` where llama-cpp-python looks. A library is kept under the name it is opened by
(`libllama.so`, `libggml.so`, `libmtmd.so`) and under its SONAME (`libggml-base.so.0`), which the others link to;
the fully versioned copies pip writes (`.so.0.25.3`) are left out, and so is libmtmd's SONAME copy
(`libmtmd.so.0`): no library links to libmtmd, only `llama_cpp.mtmd_cpp` opens it, by name. A GGML_BACKEND_DL
build's backends (`libggml-cpu-<variant>.so`, `libggml-rpc.so`, `libggml-cuda.so`) are modules ggml opens at run
time: all of them go in. libmtmd (images: the vision projector) links only libllama, libggml and libggml-base,
which are here already, and the C++ runtime they link too. `llama_cpp.mtmd_cpp`, its bindings, is imported only
when a projector is loaded, so it is named here as well; llava_cpp (its library, libllava, is no longer built) and
llama-cpp-python's own server stay out.
"""

import re
from pathlib import Path

from PyInstaller.utils.hooks import get_package_paths

_, package = get_package_paths("llama_cpp")
FULL_VERSION = re.compile(r"\.so\.\d+\.\d+\.\d+$")
UNLINKED_SONAME = re.compile(r"^libmtmd\.so\.\d+$")  # a SONAME copy no bundled library links to

binaries = [
    (str(path), "llama_cpp/lib")
    for path in sorted(Path(package, "lib").iterdir())
    if ".so" in path.name and not FULL_VERSION.search(path.name) and not UNLINKED_SONAME.match(path.name)
]
hiddenimports = ["llama_cpp.mtmd_cpp"]
excludedimports = ["llama_cpp.server", "llama_cpp.llava_cpp"]
