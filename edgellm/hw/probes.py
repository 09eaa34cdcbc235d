"""The one seam through which hardware facts enter edgellm.

`LiveProbe` asks this machine (files under /proc and /sys, psutil, NVML, a few commands);
`RecordedProbe` replays the same answers from a JSON fixture, so detection can be tested for
a Raspberry Pi, a Jetson or a Mac on any machine.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Protocol


class Probe(Protocol):
    def system(self) -> dict[str, str]:
        """{"os": platform.system(), "machine": platform.machine(), "release", "node"}."""

    def read_file(self, path: str) -> str | None:
        """The text of a file (/proc/cpuinfo, /sys/...), None if it does not exist or cannot be read."""

    def list_dir(self, path: str) -> list[str]:
        """Entry names of a directory, [] if it does not exist."""

    def command(self, argv: tuple[str, ...]) -> str | None:
        """The stdout of a command that exited 0, None if it is missing or failed."""

    def memory(self) -> dict[str, int]:
        """{"total", "available", "swap_total", "swap_free"} in bytes."""

    def cpu_counts(self) -> dict[str, int | None]:
        """{"logical", "physical"} as psutil counts them."""

    def disk_free(self, path: str) -> int | None:
        """Free bytes on the file system holding `path` (or its nearest existing parent)."""

    def nvml_gpus(self) -> list[dict[str, Any]] | None:
        """NVIDIA GPUs through NVML: [{"name", "memory_total", "memory_free", "driver"}], None without a driver."""


class LiveProbe:
    """Reads this machine."""

    def system(self) -> dict[str, str]:
        return {
            "os": platform.system(),
            "machine": platform.machine(),
            "release": platform.release(),
            "node": platform.node(),
        }

    def read_file(self, path: str) -> str | None:
        try:
            return Path(path).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def command(self, argv: tuple[str, ...]) -> str | None:
        if not shutil.which(argv[0]):
            return None
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    def memory(self) -> dict[str, int]:
        import psutil

        virtual, swap = psutil.virtual_memory(), psutil.swap_memory()
        return {
            "total": virtual.total,
            "available": virtual.available,
            "swap_total": swap.total,
            "swap_free": swap.free,
        }

    def cpu_counts(self) -> dict[str, int | None]:
        import psutil

        return {"logical": psutil.cpu_count(logical=True), "physical": psutil.cpu_count(logical=False)}

    def disk_free(self, path: str) -> int | None:
        candidate = Path(path)
        while not candidate.exists() and candidate != candidate.parent:
            candidate = candidate.parent
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            return None

    def nvml_gpus(self) -> list[dict[str, Any]] | None:
        return _nvml_gpus()


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def _nvml_gpus() -> list[dict[str, Any]] | None:
    """Ask NVML (libnvidia-ml, installed with the NVIDIA driver) directly through ctypes."""
    for name in ("libnvidia-ml.so.1", "libnvidia-ml.so", "nvml.dll"):
        try:
            nvml = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        driver = ctypes.create_string_buffer(96)
        nvml.nvmlSystemGetDriverVersion(driver, 96)
        gpus = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0:
                continue
            device_name = ctypes.create_string_buffer(96)
            nvml.nvmlDeviceGetName(handle, device_name, 96)
            memory = _NvmlMemory()
            supported = nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) == 0
            gpus.append(
                {
                    "name": device_name.value.decode(errors="replace"),
                    "memory_total": memory.total if supported else None,
                    "memory_free": memory.free if supported else None,
                    "driver": driver.value.decode(errors="replace"),
                }
            )
        return gpus
    finally:
        nvml.nvmlShutdown()


class RecordedProbe:
    """Replays a device fixture: {"system", "files", "dirs", "commands", "memory", "cpu_counts", "disk_free",
    "nvml"}."""

    def __init__(self, recording: dict[str, Any]) -> None:
        self.recording = recording

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RecordedProbe:
        return cls(json.loads(Path(path).read_text()))

    def system(self) -> dict[str, str]:
        return dict(self.recording["system"])

    def read_file(self, path: str) -> str | None:
        found = self.recording.get("files", {}).get(path)
        return found if isinstance(found, str) else None

    def list_dir(self, path: str) -> list[str]:
        listed = self.recording.get("dirs", {}).get(path)
        if listed is not None:
            return sorted(listed)
        prefix = path.rstrip("/") + "/"
        names = {p[len(prefix) :].split("/")[0] for p in self.recording.get("files", {}) if p.startswith(prefix)}
        return sorted(names)

    def command(self, argv: tuple[str, ...]) -> str | None:
        found = self.recording.get("commands", {}).get(" ".join(argv))
        return found if isinstance(found, str) else None

    def memory(self) -> dict[str, int]:
        return dict(self.recording["memory"])

    def cpu_counts(self) -> dict[str, int | None]:
        return dict(self.recording["cpu_counts"])

    def disk_free(self, path: str) -> int | None:
        return self.recording.get("disk_free")

    def nvml_gpus(self) -> list[dict[str, Any]] | None:
        return self.recording.get("nvml")
