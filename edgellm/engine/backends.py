"""llama.cpp's backends and devices, read from ggml's own registry through ctypes on libggml.

Two things llama-cpp-python does not do: a build made with GGML_BACKEND_DL (the portable binary: one CPU library per
CPU generation, loaded at run time) needs its backend libraries loaded from `llama_cpp/lib`, where llama.cpp does
not look ("no backends are loaded"); and `llama_supports_gpu_offload()` answers true on any build with the RPC
backend, GPU or not, so whether a GPU can take layers is read from the devices themselves.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

DEVICE_KINDS = ("cpu", "gpu", "igpu", "accel", "meta")  # enum ggml_backend_dev_type, in order
GPU_KINDS = ("gpu", "igpu")


@dataclass(frozen=True)
class BackendDevice:
    name: str  # "CPU", "CUDA0", "RPC[host:port]"...
    description: str
    kind: str  # one of DEVICE_KINDS


def lib_folder() -> Path:
    """Where llama-cpp-python keeps llama.cpp's libraries (inside the single binary too)."""
    import llama_cpp

    return Path(llama_cpp.__file__).resolve().parent / "lib"


@functools.lru_cache(maxsize=1)
def _ggml() -> ctypes.CDLL | None:
    """libggml as libllama links it (`libggml.so.0`): pip and PyInstaller write `libggml.so` as a separate copy,
    and a copy opened by its own path is a second library with a second, empty backend registry. None where no
    libggml is found beside llama-cpp-python (a LLAMA_CPP_LIB_PATH install): the registry is then not read."""
    import llama_cpp  # noqa: F401 - loads libllama, and with it the libggml it links

    names = ["libggml.0.dylib", "libggml.dylib"] if sys.platform == "darwin" else ["libggml.so.0", "libggml.so"]
    found = [lib_folder() / name for name in names if (lib_folder() / name).exists()]
    try:
        lib = ctypes.CDLL(str(found[0])) if found else None
    except OSError:
        lib = None
    if lib is None:
        return None
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load_all_from_path.restype = None
    lib.ggml_backend_dev_memory.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_dev_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_register.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_register.restype = None
    return lib


def registry() -> ctypes.CDLL | None:
    """libggml with its backends loaded, for the functions reached through the registry (the RPC backend's)."""
    load_backends()
    return _ggml()


def load_backends() -> None:
    """Load the backend libraries of a GGML_BACKEND_DL build (ggml picks the best CPU variant for this CPU);
    nothing to do for a build whose backends are linked in. Call before the first model is loaded."""
    lib = _ggml()
    if lib is not None and lib.ggml_backend_dev_count() == 0:
        lib.ggml_backend_load_all_from_path(str(lib_folder()).encode())


def devices() -> list[BackendDevice]:
    """The devices llama.cpp can place layers and work on, after `load_backends`."""
    load_backends()
    lib = _ggml()
    if lib is None:
        return []
    found = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        kind = lib.ggml_backend_dev_type(device)
        found.append(
            BackendDevice(
                (lib.ggml_backend_dev_name(device) or b"").decode(errors="replace"),
                (lib.ggml_backend_dev_description(device) or b"").decode(errors="replace"),
                DEVICE_KINDS[kind] if 0 <= kind < len(DEVICE_KINDS) else "other",
            )
        )
    return found


def gpu_memory_free() -> int | None:
    """Free memory summed over the GPUs (RPC devices left out), as the backends report it; None without a GPU."""
    lib = _ggml()
    if lib is None:
        return None
    load_backends()
    free_total, found = 0, False
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        kind = lib.ggml_backend_dev_type(device)
        name = (lib.ggml_backend_dev_name(device) or b"").decode(errors="replace")
        if 0 <= kind < len(DEVICE_KINDS) and DEVICE_KINDS[kind] in GPU_KINDS and not name.startswith("RPC"):
            free, total = ctypes.c_size_t(), ctypes.c_size_t()
            lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
            free_total, found = free_total + free.value, True
    return free_total if found else None


def gpu_offload_possible() -> bool:
    """True when a GPU device (not the RPC backend, not the CPU) can take layers; llama.cpp's own answer where
    the device list cannot be read."""
    if _ggml() is None:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    return any(device.kind in GPU_KINDS and not device.name.startswith("RPC") for device in devices())


def loaded_cpu_library(maps: str | None = None) -> str | None:
    """The file name of the CPU backend library this process runs (`libggml-cpu-zen4.so`), from /proc/self/maps;
    None where that cannot be read."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
    names = {Path(line.split()[-1]).name for line in maps.splitlines() if "libggml-cpu" in line}
    return sorted(names)[0] if names else None
