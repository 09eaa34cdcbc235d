"""`edgellm hw`: what this machine has, as a report or as the device-profile JSON."""

from __future__ import annotations

import argparse

from edgellm import formatting
from edgellm.hw.detect import detect_this_machine
from edgellm.hw.profile import DeviceProfile

NAME = "hw"
HELP = "show this machine's CPU, memory, GPUs and llama.cpp build (--json: the device profile)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the device profile (schema edgellm.device-profile)")


def main(args: argparse.Namespace) -> int:
    profile = detect_this_machine()
    print(profile.to_json() if args.json else render(profile))
    return 0


def size(n_bytes: int | None) -> str:
    return "unknown" if n_bytes is None else formatting.size(n_bytes)


def render(profile: DeviceProfile) -> str:
    cpu, memory = profile.cpu, profile.memory
    cores = f"{cpu.physical_cores} physical / {cpu.logical_cores} logical cores"
    if cpu.efficiency_cores:
        cores += f" ({cpu.performance_cores} performance + {cpu.efficiency_cores} efficiency)"
    rows = [
        ("Machine", f"{profile.name} ({profile.os})"),
        (
            "Board",
            f"{profile.board.model}"
            + (f", {profile.board.module}" if profile.board.module else "")
            + (f", {profile.board.release}" if profile.board.release else "")
            if profile.board
            else "-",
        ),
        ("CPU", f"{cpu.model} ({cpu.arch}), {cores}"),
        ("SIMD", " ".join(cpu.features) or "none detected"),
        (
            "Memory",
            f"{size(memory.total_bytes)} total, {size(memory.available_bytes)} available, "
            f"swap {size(memory.swap_free_bytes)} free of {size(memory.swap_total_bytes)}",
        ),
        ("Disk", f"{size(profile.disk_free_bytes)} free for {profile.disk_path}"),
    ]
    for gpu in profile.gpus or ():
        kind = "unified memory" if gpu.unified_memory else "dedicated"
        rows.append(
            (
                "GPU",
                f"{gpu.name} ({gpu.backend}): {size(gpu.memory_free_bytes)} free of "
                f"{size(gpu.memory_total_bytes)} {kind}",
            )
        )
    if not profile.gpus:
        rows.append(("GPU", "none"))
    build = profile.llama_build
    variant = f" (portable build: the {build.cpu_variant} variant)" if build and build.cpu_variant else ""
    rows.append(
        (
            "llama.cpp",
            f"llama-cpp-python {build.llama_cpp_python}, backend {build.backend}, CPU kernels: "
            f"{' '.join(build.cpu_features) or 'baseline'}{variant}"
            if build
            else "build not recorded (installed without scripts/install.py); `edgellm doctor` tests it",
        )
    )
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
