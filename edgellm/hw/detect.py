"""Detect the machine through a probe and describe it as a DeviceProfile.

Pure over the probe: every fact comes from `probe`, so recorded fixtures of a Raspberry Pi, a
Jetson, a Mac or a GPU laptop give the same answers here as on the device itself.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from edgellm import paths
from edgellm.hw.bandwidth import gpu_bandwidth, system_bandwidth
from edgellm.hw.buildconfig import cpu_variant, read_build_info, variant_features
from edgellm.hw.probes import LiveProbe, Probe
from edgellm.hw.profile import Board, Cpu, DeviceProfile, Gpu, LlamaBuild, Memory

# /proc/cpuinfo x86 flag or ARM feature -> the name edgellm reports (llama.cpp's feature names, lower case).
LINUX_FEATURES = {
    "pni": "sse3",
    "ssse3": "ssse3",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "bmi2": "bmi2",
    "avx_vnni": "avx_vnni",
    "avx512f": "avx512f",
    "avx512vbmi": "avx512_vbmi",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx_tile",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
    "asimd": "neon",
    "asimdhp": "fp16",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
    "bf16": "bf16",
    "sme": "sme",
}
MAC_FEATURES = {
    "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.arm.FEAT_DotProd": "dotprod",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_SME": "sme",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.avx1_0": "avx",
    "hw.optional.fma": "fma",
    "hw.optional.avx512f": "avx512f",
}
FEATURE_ORDER = tuple(dict.fromkeys(list(LINUX_FEATURES.values()) + list(MAC_FEATURES.values())))
# ARM "CPU part" ids (implementer 0x41) -> core names.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2",
    "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3",
    "0xd4f": "Neoverse-V2",
}
JETSON_MODULES = {
    "p3767-0000": "Jetson Orin NX 16GB",
    "p3767-0001": "Jetson Orin NX 8GB",
    "p3767-0003": "Jetson Orin Nano 8GB",
    "p3767-0004": "Jetson Orin Nano 4GB",
    "p3767-0005": "Jetson Orin Nano 8GB (developer kit)",
    "p3701-0000": "Jetson AGX Orin",
    "p3701-0004": "Jetson AGX Orin 32GB",
    "p3701-0005": "Jetson AGX Orin 64GB",
    "p3448-0000": "Jetson Nano",
}
NVIDIA_SMI_QUERY = (
    "nvidia-smi",
    "--query-gpu=name,memory.total,memory.free,driver_version",
    "--format=csv,noheader,nounits",
)
MAC_SYSCTL = ("sysctl", "hw", "machdep")
MIB = 2**20


def cpuinfo_fields(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block (plus a trailing block for board lines on ARM)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            low, high = part.split("-")
            cpus += range(int(low), int(high) + 1)
        elif part:
            cpus.append(int(part))
    return cpus


def parse_sysctl(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def ordered(features: set[str]) -> tuple[str, ...]:
    return tuple(name for name in FEATURE_ORDER if name in features)


def detect_cpu(probe: Probe, sysctl: dict[str, str]) -> Cpu:
    system = probe.system()
    counts = probe.cpu_counts()
    logical = counts.get("logical") or 1
    physical = counts.get("physical") or logical
    if system["os"] == "Darwin":
        features = {name for key, name in MAC_FEATURES.items() if sysctl.get(key) == "1"}
        if system["machine"] == "arm64":
            features.add("neon")
        performance = int(sysctl.get("hw.perflevel0.physicalcpu", physical))
        efficiency = int(sysctl.get("hw.perflevel1.physicalcpu", 0))
        model = sysctl.get("machdep.cpu.brand_string", "unknown CPU")
        return Cpu(model, system["machine"], logical, physical, performance, efficiency, ordered(features))

    blocks = cpuinfo_fields(probe.read_file("/proc/cpuinfo") or "")
    first = blocks[0] if blocks else {}
    flags = set((first.get("flags") or first.get("features") or "").split())
    features = {LINUX_FEATURES[flag] for flag in flags if flag in LINUX_FEATURES}
    model = first.get("model name") or _arm_model(blocks) or system["machine"]
    performance, efficiency = _core_split(probe, physical)
    return Cpu(model, system["machine"], logical, physical, performance, efficiency, ordered(features))


def _arm_model(blocks: list[dict[str, str]]) -> str | None:
    parts = [block["cpu part"] for block in blocks if "cpu part" in block]
    if not parts:
        return None
    names = [ARM_PARTS.get(part, f"ARM core {part}") for part in parts]
    groups = {name: names.count(name) for name in names}
    return " + ".join(f"{count}x {name}" for name, count in groups.items())


def _core_split(probe: Probe, physical: int) -> tuple[int, int]:
    """(performance, efficiency) physical cores: Intel hybrid through cpu_atom, ARM big.LITTLE through cpu_capacity."""
    atom = probe.read_file("/sys/devices/cpu_atom/cpus")
    if atom and atom.strip():
        efficiency = len(parse_cpu_list(atom))
        return max(1, physical - efficiency), efficiency
    capacities = []
    for name in probe.list_dir("/sys/devices/system/cpu"):
        if re.fullmatch(r"cpu\d+", name):
            value = probe.read_file(f"/sys/devices/system/cpu/{name}/cpu_capacity")
            if value and value.strip().isdigit():
                capacities.append(int(value))
    if capacities and len(set(capacities)) > 1:
        big = sum(1 for value in capacities if value == max(capacities))
        return big, len(capacities) - big
    return physical, 0


def detect_board(probe: Probe, sysctl: dict[str, str]) -> Board | None:
    if probe.system()["os"] == "Darwin":
        model_id = sysctl.get("hw.model")
        return Board("mac", sysctl.get("machdep.cpu.brand_string", "Mac"), model_id) if model_id else None
    model = (probe.read_file("/proc/device-tree/model") or "").rstrip("\x00").strip()
    if model.startswith("Raspberry Pi"):
        return Board("raspberry-pi", model)
    tegra = probe.read_file("/etc/nv_tegra_release")
    compatible = (probe.read_file("/proc/device-tree/compatible") or "").split("\x00")
    if tegra or any(entry.startswith("nvidia,tegra") for entry in compatible):
        module = next(
            (entry.split(",", 1)[1] for entry in compatible if re.fullmatch(r"nvidia,p\d{4}-\d{4}", entry)), None
        )
        release = None
        if tegra:
            found = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", tegra)
            release = f"L4T R{found.group(1)}.{found.group(2)}" if found else None
        name = JETSON_MODULES.get(module or "", model or "NVIDIA Jetson")
        return Board("jetson", model or name, f"{name} ({module})" if module else None, release)
    if model:
        return Board("sbc", model)
    product = (probe.read_file("/sys/class/dmi/id/product_name") or "").strip()
    vendor = (probe.read_file("/sys/class/dmi/id/sys_vendor") or "").strip()
    if product:
        return Board("pc", f"{vendor} {product}".strip())
    return None


def detect_gpus(probe: Probe, memory: Memory, board: Board | None, sysctl: dict[str, str]) -> list[Gpu]:
    system = probe.system()
    if system["os"] == "Darwin" and system["machine"] == "arm64":
        name = sysctl.get("machdep.cpu.brand_string", "Apple Silicon") + " GPU"
        return [Gpu("apple", name, memory.total_bytes, memory.available_bytes, True, "metal")]
    if board and board.kind == "jetson":
        # Jetson shares system RAM with its GPU; NVML reports its memory as not supported.
        name = (board.module or board.model).split(" (")[0] + " GPU"
        return [Gpu("nvidia", name, memory.total_bytes, memory.available_bytes, True, "cuda")]
    gpus = _nvidia(probe)
    gpus += _amd(probe)
    return gpus


def _nvidia(probe: Probe) -> list[Gpu]:
    nvml = probe.nvml_gpus()
    if nvml:
        return [
            Gpu(
                "nvidia",
                gpu["name"],
                gpu["memory_total"] or 0,
                gpu["memory_free"] or 0,
                False,
                "cuda",
                gpu.get("driver"),
            )
            for gpu in nvml
        ]
    text = probe.command(NVIDIA_SMI_QUERY)
    gpus = []
    for line in (text or "").splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            driver = fields[3] if len(fields) > 3 else None
            gpus.append(Gpu("nvidia", fields[0], int(fields[1]) * MIB, int(fields[2]) * MIB, False, "cuda", driver))
    return gpus


def _amd(probe: Probe) -> list[Gpu]:
    gpus = []
    for card in probe.list_dir("/sys/class/drm"):
        if not re.fullmatch(r"card\d+", card):
            continue
        device = f"/sys/class/drm/{card}/device"
        if (probe.read_file(f"{device}/vendor") or "").strip() != "0x1002":
            continue
        total = (probe.read_file(f"{device}/mem_info_vram_total") or "").strip()
        used = (probe.read_file(f"{device}/mem_info_vram_used") or "").strip()
        if not total.isdigit():
            continue
        name = (probe.read_file(f"{device}/product_name") or "").strip() or "AMD Radeon GPU"
        free = int(total) - int(used) if used.isdigit() else int(total)
        gpus.append(Gpu("amd", name, int(total), free, False, "rocm"))
    return gpus


def sysctl_values(probe: Probe) -> dict[str, str]:
    """macOS sysctl hw.* and machdep.* values; {} on other systems."""
    return parse_sysctl(probe.command(MAC_SYSCTL) or "") if probe.system()["os"] == "Darwin" else {}


def llama_build(build_info: dict[str, Any], probe: Probe) -> LlamaBuild:
    """The recorded llama.cpp build; for a portable one, the CPU variant ggml will load here and its features,
    found from this CPU's flags without loading llama.cpp."""
    features, variant = tuple(build_info.get("cpu_features", ())), None
    if build_info.get("cpu_variants"):
        blocks = cpuinfo_fields(probe.read_file("/proc/cpuinfo") or "")
        flags = set((blocks[0].get("flags") or "").split()) if blocks else set()
        variant = cpu_variant(flags)
        features = tuple(variant_features(variant)) if variant else ()
    return LlamaBuild(
        build_info.get("backend", "cpu"),
        features,
        build_info.get("llama_cpp_python", "unknown"),
        tuple(build_info.get("cmake_args", ())),
        variant,
    )


def detect(probe: Probe, home_path: str, build_info: dict[str, Any] | None = None) -> DeviceProfile:
    """The device profile of the machine behind `probe`, with the llama.cpp build recorded at install."""
    system = probe.system()
    sysctl = sysctl_values(probe)
    raw = probe.memory()
    board = detect_board(probe, sysctl)
    cpu = detect_cpu(probe, sysctl)
    bandwidth = system_bandwidth(
        system["machine"], board.model if board else None, board.module if board else None, cpu.model
    )
    memory = Memory(raw["total"], raw["available"], raw["swap_total"], raw["swap_free"], bandwidth)
    build = llama_build(build_info, probe) if build_info else None
    hostname = system.get("node", "").strip()
    return DeviceProfile(
        name=hostname or (board.model if board else system["machine"]),
        os=system["os"].lower(),
        cpu=cpu,
        memory=memory,
        gpus=tuple(
            replace(gpu, bandwidth_bytes_per_s=bandwidth if gpu.unified_memory else gpu_bandwidth(gpu.name))
            for gpu in detect_gpus(probe, memory, board, sysctl)
        ),
        board=board,
        disk_free_bytes=probe.disk_free(home_path),
        disk_path=home_path,
        llama_build=build,
    )


def detect_this_machine() -> DeviceProfile:
    """The profile of the machine edgellm runs on: live probes, EDGELLM_HOME's disk, the recorded llama.cpp build."""
    return detect(LiveProbe(), str(paths.home()), read_build_info())
