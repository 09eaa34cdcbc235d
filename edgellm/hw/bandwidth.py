"""Memory bandwidth of known boards, Apple chips and GPUs (vendors' data sheets), for decode-speed estimates.

Token generation reads every weight once per token, so it runs at about 0.4-0.5 × bandwidth ÷ model bytes
(the field notes' rule of thumb). Unknown hardware gets a conservative default.
"""

from __future__ import annotations

GB = 10**9
# (substring of the board model / Jetson module, bytes per second); first match wins
BOARDS = (
    ("Raspberry Pi 5", 17.1 * GB),
    ("Raspberry Pi 4", 12.8 * GB),
    ("Orin Nano", 68 * GB),
    ("Orin NX", 102.4 * GB),
    ("AGX Orin", 204.8 * GB),
    ("Jetson Nano", 25.6 * GB),
)
APPLE = (
    ("M4 Max", 546 * GB),
    ("M4 Pro", 273 * GB),
    ("M4", 120 * GB),
    ("M3 Max", 400 * GB),
    ("M3 Pro", 150 * GB),
    ("M3", 100 * GB),
    ("M2 Ultra", 800 * GB),
    ("M2 Max", 400 * GB),
    ("M2 Pro", 200 * GB),
    ("M2", 100 * GB),
    ("M1 Ultra", 800 * GB),
    ("M1 Max", 400 * GB),
    ("M1 Pro", 200 * GB),
    ("M1", 68.25 * GB),
)
GPUS = (
    ("RTX 4090", 1008 * GB),
    ("RTX 4080", 716.8 * GB),
    ("RTX 4070 Ti", 504 * GB),
    ("RTX 4070", 504 * GB),
    ("RTX 4060 Ti", 288 * GB),
    ("RTX 4060 Laptop", 256 * GB),
    ("RTX 4060", 272 * GB),
    ("RTX 3090", 936 * GB),
    ("RTX 3080", 760 * GB),
    ("RTX 3070", 448 * GB),
    ("RTX 3060", 360 * GB),
    ("H200", 4800 * GB),
    ("H100", 3350 * GB),
    ("A100", 1555 * GB),
    ("L40S", 864 * GB),
    ("L4", 300 * GB),
    ("T4", 320 * GB),
    ("A10", 600 * GB),
)
DEFAULT_CPU = {"x86_64": 40 * GB, "amd64": 40 * GB}  # dual-channel DDR4/DDR5 laptops and desktops
DEFAULT_ARM = 15 * GB
DEFAULT_GPU = 200 * GB


def lookup(table: tuple[tuple[str, float], ...], name: str) -> int | None:
    return next((int(value) for key, value in table if key.lower() in name.lower()), None)


def system_bandwidth(arch: str, board_model: str | None, board_module: str | None, cpu_model: str) -> int:
    """Bytes per second between RAM and the CPU (and a unified-memory GPU)."""
    for name in (board_module, board_model):
        if name and (found := lookup(BOARDS, name)):
            return found
    if cpu_model.startswith("Apple") and (found := lookup(APPLE, cpu_model)):
        return found
    return DEFAULT_CPU.get(arch.lower(), DEFAULT_ARM)


def gpu_bandwidth(name: str) -> int:
    return lookup(GPUS, name) or DEFAULT_GPU
