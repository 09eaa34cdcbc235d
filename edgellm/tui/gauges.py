"""The readings the hardware panel draws: RAM and CPU in use on this machine (psutil), GPU memory (NVML), or a
recorded device's, one `Gauges` at a time from a `Sampler`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgellm.hw.profile import DeviceProfile


@dataclass(frozen=True)
class Gauges:
    """One reading: RAM in use and in all (bytes), CPU load (percent), and (used, total) bytes per GPU."""

    ram_used: int
    ram_total: int
    cpu_percent: float
    gpus: tuple[tuple[int, int], ...] = ()


Sampler = Callable[[], Gauges]


def profile_gauges(profile: DeviceProfile) -> Gauges:
    """The reading the profile itself holds (from when it was made): the start, and all a recorded device has."""
    memory = profile.memory
    return Gauges(
        memory.total_bytes - memory.available_bytes,
        memory.total_bytes,
        0.0,
        tuple((gpu.memory_total_bytes - gpu.memory_free_bytes, gpu.memory_total_bytes) for gpu in profile.gpus),
    )


class LiveSampler:
    """This machine's gauges. RAM and CPU come from psutil on each call (fast enough for the UI thread);
    NVIDIA memory comes from NVML through `refresh_gpus`, which is slower and is called off the UI thread."""

    def __init__(self, profile: DeviceProfile) -> None:
        self._gpus = profile_gauges(profile).gpus
        self._nvidia = [
            index for index, gpu in enumerate(profile.gpus) if gpu.vendor == "nvidia" and not gpu.unified_memory
        ]
        self._lock = threading.Lock()

    @property
    def has_nvidia(self) -> bool:
        return bool(self._nvidia)

    def __call__(self) -> Gauges:
        import psutil

        memory = psutil.virtual_memory()
        with self._lock:
            gpus = self._gpus
        return Gauges(memory.total - memory.available, memory.total, psutil.cpu_percent(interval=None), gpus)

    def refresh_gpus(self) -> None:
        """Read the NVIDIA GPUs' memory through NVML; keep the last reading when NVML does not answer."""
        from edgellm.hw.probes import LiveProbe

        found = LiveProbe().nvml_gpus() or []
        with self._lock:
            gpus = list(self._gpus)
            for index, reading in zip(self._nvidia, found):
                total, free = reading.get("memory_total"), reading.get("memory_free")
                if total and free is not None:
                    gpus[index] = (total - free, total)
            self._gpus = tuple(gpus)


def live_sampler(profile: DeviceProfile) -> LiveSampler:
    """The sampler of this machine, starting from the profile's GPU memory."""
    return LiveSampler(profile)
