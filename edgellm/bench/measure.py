"""Measure a loaded model as llama-bench does, through the path edgellm itself generates with.

Prompt speed (pp): a prompt of `pp` tokens read into an empty KV cache, with the time to the first token (TTFT).
Decode speed (tg): `tg` tokens generated after a prompt of `depth` tokens, one figure per depth (how decoding slows as
a conversation grows). Each is repeated and given as mean ± standard deviation. The prompt is ordinary English text,
so no control tokens reach the model; decoding is greedy and ignores end-of-sequence, as llama-bench does.
"""

from __future__ import annotations

import re
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgellm.engine.contract import GenerationOptions, GenerationStats, Model, Sampling

FILLER = (
    "The river runs past the old mill and under the stone bridge, where the town keeps its market on "
    "Saturdays. Farmers bring apples, cheese and bread; children watch the boats go by. In winter the water "
    "rises and the path along the bank is closed until spring returns. "
)


@dataclass(frozen=True)
class BenchRequest:
    """What to measure: prompt and generation lengths, repetitions, and the context depths to decode at."""

    pp: int = 512
    tg: int = 128
    repetitions: int = 3
    depths: tuple[int, ...] = (0,)

    def context_needed(self) -> int:
        """The context the runs need: the prompt and its first token, or the deepest prompt and tg + 1 tokens."""
        return max(self.pp + 1, max(max(depth, 1) for depth in self.depths) + self.tg + 1)

    def steps(self) -> int:
        """Timed runs per configuration (the progress line counts them)."""
        return self.repetitions * (1 + len(self.depths))


def summary(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value) and the values themselves."""
    return {
        "mean": statistics.fmean(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def filler_tokens(model: Model, count: int) -> list[int]:
    """`count` tokens of ordinary text, BOS first."""
    piece = model.tokenize(FILLER, add_bos=False, special=False)
    first = model.tokenize("", add_bos=True, special=False)
    tokens = list(first)
    while len(tokens) < count:
        tokens += piece
    return tokens[:count]


class PeakMemory:
    """The process's peak resident memory since `reset`: Linux resets its high-water mark on request
    (/proc/self/clear_refs); elsewhere the peak since the process started (getrusage)."""

    def reset(self) -> str:
        """Reset the high-water mark; what `peak` will count from: "load" (reset) or "process start" (not)."""
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return "load"
        except OSError:
            return "process start"

    def current(self) -> int:
        """This process's resident memory now."""
        import psutil

        return int(psutil.Process().memory_info().rss)

    def peak(self, pid: int | str = "self") -> int:
        """The peak of this process, or of process `pid` (Linux only: 0 elsewhere)."""
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        if pid != "self":
            return 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


BUFFER_LINE = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


class LoadLog:
    """What llama.cpp writes to its log file (EDGELLM_HOME/logs, where the model host sends it) from the moment this
    is made: the buffers a load allocates are read from there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.start = path.stat().st_size
        except OSError:
            self.start = 0

    def text(self) -> str:
        """The text logged since; from the top when the file was started afresh (moved aside when it grew large),
        "" when it cannot be read."""
        try:
            with open(self.path, "rb") as file:
                size = file.seek(0, 2)
                file.seek(self.start if size >= self.start else 0)
                return file.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


def logged_buffers(text: str) -> dict[str, int]:
    """The buffers llama.cpp logged allocating in `text`, in bytes, by buffer type and kind ("CPU_Mapped model",
    "CUDA0 KV"); a buffer logged twice is counted twice, as llama.cpp allocated it twice."""
    found: dict[str, int] = {}
    for match in BUFFER_LINE.finditer(text):
        key = f"{match.group(1)} {match.group(2)}"
        found[key] = found.get(key, 0) + round(float(match.group(3)) * 2**20)
    return found


def on_host(buffer: str) -> bool:
    """Whether a llama.cpp buffer ("CPU_REPACK model", "CUDA_Host compute") is in system RAM: the CPU's own
    (CPU, CPU_Mapped, CPU_REPACK, AMX...) and a GPU backend's pinned host memory (CUDA_Host, Vulkan_Host)."""
    name = buffer.split()[0]
    return name.startswith("CPU") or name == "AMX" or name.endswith("_Host")


class Interrupted(KeyboardInterrupt):
    """A generation ended by Ctrl-C: the benchmark stops and stores nothing."""


def timed(
    model: Model, prompt: list[int], max_tokens: int, cache_prompt: bool, cancel: threading.Event | None = None
) -> GenerationStats:
    """One greedy generation, its text thrown away; its stats (ttft, prompt and decode tokens/s). `cancel` set (Ctrl-C)
    stops it between tokens or inside the prompt, and raises Interrupted."""
    if cancel is not None and cancel.is_set():
        raise Interrupted()
    options = GenerationOptions(
        sampling=Sampling(temp=0.0), max_tokens=max_tokens, ignore_eos=True, seed=0, cache_prompt=cache_prompt
    )
    generation = model.generation(prompt, options, cancel=cancel)
    for _ in generation:
        pass
    if generation.stats.stop_reason == "interrupted":
        raise Interrupted()
    return generation.stats


def measure(
    model: Model,
    request: BenchRequest,
    step: Callable[[str], None],
    gpu_free: Callable[[], int | None] = lambda: None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Measure one loaded model: pp (and TTFT) and tg at each depth, `request.repetitions` times each. `step` is
    called before each timed run with what it measures; `gpu_free` reads the GPU's free memory (None: no GPU)."""
    tokens = filler_tokens(model, max(request.pp, max(request.depths), 1))
    lowest_free = gpu_free()
    # warm-up, as llama-bench does: a whole prompt and a token, so first-touch costs (pages, GPU kernels) are left out
    timed(model, tokens[: request.pp], 2, cache_prompt=False, cancel=cancel)
    pp, ttft = [], []
    tg: dict[int, list[float]] = {depth: [] for depth in request.depths}
    for _rep in range(request.repetitions):
        step(f"pp{request.pp}")
        stats = timed(model, tokens[: request.pp], 1, cache_prompt=False, cancel=cancel)
        pp.append(stats.prompt_tokens_per_s or 0.0)
        ttft.append(stats.ttft_ms or 0.0)
    for depth in sorted(request.depths):  # each depth's prompt extends the last: the cache keeps the prefix
        for _rep in range(request.repetitions):
            step(f"tg{request.tg}" + (f" at depth {depth}" if depth else ""))
            stats = timed(model, tokens[: max(depth, 1)], request.tg + 1, cache_prompt=True, cancel=cancel)
            tg[depth].append(stats.tokens_per_s or 0.0)
            free = gpu_free()
            if free is not None and lowest_free is not None:
                lowest_free = min(lowest_free, free)
    return {
        "pp": summary(pp),
        "ttft_ms": summary(ttft),
        "tg": [{"depth": depth, **summary(values)} for depth, values in sorted(tg.items())],
        "lowest_gpu_free_bytes": lowest_free,
    }


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
