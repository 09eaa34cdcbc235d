"""The device profile: what `edgellm hw --json` prints and what the planner plans against.

Schema "edgellm.device-profile", version 1. Every size is in bytes. A profile saved on one machine
(`edgellm hw --json > pi.json`) can be planned against on another (`--profile pi.json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgellm.paths import Traversable

SCHEMA = "edgellm.device-profile"
SCHEMA_VERSION = 1
GPU_VENDORS = ("nvidia", "amd", "apple", "intel")
GPU_BACKENDS = ("cuda", "rocm", "metal", "vulkan")


class ProfileError(ValueError):
    """A device profile that is missing values or holds absurd ones; the message names the field."""


@dataclass(frozen=True)
class Cpu:
    model: str
    arch: str
    logical_cores: int
    physical_cores: int
    performance_cores: int  # physical big cores: the ones llama.cpp should use
    efficiency_cores: int
    features: tuple[str, ...]  # SIMD features llama.cpp uses: avx2, avx512f, amx_int8, neon, dotprod, i8mm, sve...


@dataclass(frozen=True)
class Memory:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    bandwidth_bytes_per_s: int | None = None  # RAM to CPU (and a unified-memory GPU)


@dataclass(frozen=True)
class Gpu:
    vendor: str
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    unified_memory: bool  # shares system RAM (Apple Silicon, Jetson)
    backend: str  # the llama.cpp backend that drives it
    driver: str | None = None
    bandwidth_bytes_per_s: int | None = None


@dataclass(frozen=True)
class Board:
    kind: str  # raspberry-pi, jetson, mac, pc
    model: str
    module: str | None = None  # Jetson module (p3767-0005), Mac model id (Mac14,2)
    release: str | None = None  # L4T release on Jetson


@dataclass(frozen=True)
class LlamaBuild:
    backend: str
    cpu_features: tuple[str, ...]
    llama_cpp_python: str
    cmake_args: tuple[str, ...] = ()
    cpu_variant: str | None = None  # a portable build: the CPU library ggml loads on this CPU ("zen4")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    os: str
    cpu: Cpu
    memory: Memory
    gpus: tuple[Gpu, ...] = ()
    board: Board | None = None
    disk_free_bytes: int | None = None
    disk_path: str | None = None
    llama_build: LlamaBuild | None = None
    schema: str = field(default=SCHEMA)
    schema_version: int = field(default=SCHEMA_VERSION)

    @property
    def unified_memory(self) -> bool:
        return any(gpu.unified_memory for gpu in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unified_memory"] = self.unified_memory
        head = {"schema": data.pop("schema"), "schema_version": data.pop("schema_version")}
        return {**head, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, optional: bool = False) -> Any:
    if key not in data or data[key] is None:
        if optional:
            return None
        raise ProfileError(f"{where}.{key} is missing")
    value = data[key]
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise ProfileError(f"{where}.{key} should be {getattr(kind, '__name__', kind)}, not {value!r}")
    return value


def _size_or_none(data: dict[str, Any], key: str, where: str) -> int | None:
    value: int | None = _get(data, key, int, where, optional=True)
    if value is not None and not 0 <= value < 2**56:
        raise ProfileError(f"{where}.{key} = {value} is not a plausible size in bytes")
    return value


def _size(data: dict[str, Any], key: str, where: str) -> int:
    value: int = _get(data, key, int, where)
    return _size_or_none({key: value}, key, where) or 0


def _count(data: dict[str, Any], key: str, where: str, low: int = 1) -> int:
    value: int = _get(data, key, int, where)
    if not low <= value <= 4096:
        raise ProfileError(f"{where}.{key} = {value} is not a plausible core count")
    return value


def from_dict(data: Any) -> DeviceProfile:
    """Check and load a profile; raise ProfileError naming the first missing or absurd value."""
    if not isinstance(data, dict):
        raise ProfileError("a device profile is a JSON object")
    if data.get("schema") != SCHEMA:
        raise ProfileError(f"not a device profile (schema should be {SCHEMA!r}); make one with `edgellm hw --json`")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ProfileError(f"device profile schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
    cpu_data = _get(data, "cpu", dict, "profile")
    cpu = Cpu(
        model=_get(cpu_data, "model", str, "cpu"),
        arch=_get(cpu_data, "arch", str, "cpu"),
        logical_cores=_count(cpu_data, "logical_cores", "cpu"),
        physical_cores=_count(cpu_data, "physical_cores", "cpu"),
        performance_cores=_count(cpu_data, "performance_cores", "cpu"),
        efficiency_cores=_count(cpu_data, "efficiency_cores", "cpu", low=0),
        features=tuple(_get(cpu_data, "features", list, "cpu")),
    )
    if cpu.performance_cores > cpu.physical_cores or cpu.physical_cores > cpu.logical_cores:
        raise ProfileError("cpu: performance_cores <= physical_cores <= logical_cores does not hold")
    mem_data = _get(data, "memory", dict, "profile")
    memory = Memory(
        _size(mem_data, "total_bytes", "memory"),
        _size(mem_data, "available_bytes", "memory"),
        _size(mem_data, "swap_total_bytes", "memory"),
        _size(mem_data, "swap_free_bytes", "memory"),
        bandwidth_bytes_per_s=_size_or_none(mem_data, "bandwidth_bytes_per_s", "memory"),
    )
    if memory.total_bytes < 64 * 2**20:
        raise ProfileError(f"memory.total_bytes = {memory.total_bytes} is too small for any model")
    if memory.available_bytes > memory.total_bytes:
        raise ProfileError("memory.available_bytes is larger than memory.total_bytes")
    gpus = []
    for index, gpu_data in enumerate(_get(data, "gpus", list, "profile", optional=True) or []):
        where = f"gpus[{index}]"
        if not isinstance(gpu_data, dict):
            raise ProfileError(f"{where} should be an object")
        gpu = Gpu(
            vendor=_get(gpu_data, "vendor", str, where),
            name=_get(gpu_data, "name", str, where),
            memory_total_bytes=_size(gpu_data, "memory_total_bytes", where),
            memory_free_bytes=_size(gpu_data, "memory_free_bytes", where),
            unified_memory=_get(gpu_data, "unified_memory", bool, where),
            backend=_get(gpu_data, "backend", str, where),
            driver=_get(gpu_data, "driver", str, where, optional=True),
            bandwidth_bytes_per_s=_size_or_none(gpu_data, "bandwidth_bytes_per_s", where),
        )
        if gpu.vendor not in GPU_VENDORS or gpu.backend not in GPU_BACKENDS:
            raise ProfileError(f"{where}: vendor {gpu.vendor!r} / backend {gpu.backend!r} is not known")
        if gpu.memory_free_bytes > gpu.memory_total_bytes:
            raise ProfileError(f"{where}.memory_free_bytes is larger than memory_total_bytes")
        gpus.append(gpu)
    board_data = _get(data, "board", dict, "profile", optional=True)
    board = None
    if board_data:
        board = Board(
            _get(board_data, "kind", str, "board"),
            _get(board_data, "model", str, "board"),
            _get(board_data, "module", str, "board", True),
            _get(board_data, "release", str, "board", True),
        )
    build_data = _get(data, "llama_build", dict, "profile", optional=True)
    build = None
    if build_data:
        build = LlamaBuild(
            _get(build_data, "backend", str, "llama_build"),
            tuple(_get(build_data, "cpu_features", list, "llama_build")),
            _get(build_data, "llama_cpp_python", str, "llama_build"),
            tuple(_get(build_data, "cmake_args", list, "llama_build", True) or ()),
            _get(build_data, "cpu_variant", str, "llama_build", True),
        )
    return DeviceProfile(
        name=_get(data, "name", str, "profile"),
        os=_get(data, "os", str, "profile"),
        cpu=cpu,
        memory=memory,
        gpus=tuple(gpus),
        board=board,
        disk_free_bytes=_size_or_none(data, "disk_free_bytes", "profile"),
        disk_path=_get(data, "disk_path", str, "profile", optional=True),
        llama_build=build,
    )


def load(path: str | Path | Traversable) -> DeviceProfile:
    """Read a profile file (or a built-in one, inside the package); a missing, unreadable or malformed file raises
    ProfileError."""
    try:
        return from_dict(json.loads((Path(path) if isinstance(path, str) else path).read_text(encoding="utf-8")))
    except OSError as error:
        raise ProfileError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, ProfileError):
            raise ProfileError(f"{path}: {error}") from None
        raise ProfileError(f"{path} is not JSON ({error})") from None
