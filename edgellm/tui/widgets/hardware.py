"""The hardware panel: the CPU, RAM, GPUs and board the plans are made for, with live memory and CPU gauges."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from edgellm.formatting import gib
from edgellm.tui.gauges import Gauges, LiveSampler, Sampler, live_sampler, profile_gauges

if TYPE_CHECKING:
    from textual import getters

    from edgellm.hw.profile import DeviceProfile
    from edgellm.tui.base import EdgellmApp

GIB = 2**30
BAR_WIDTH = 16


def bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A gauge of `width` cells, green, then yellow above 70 %, red above 90 %."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    colour = "green" if fraction < 0.7 else "yellow" if fraction < 0.9 else "red"
    return Text.assemble(("█" * filled, colour), ("░" * (width - filled), "dim"))


def memory_gauge(label: str, used: int, total: int) -> Text:
    fraction = used / total if total else 0.0
    return Text.assemble(
        (f"{label:<6}", "bold"), bar(fraction), f" {gib(used, 1, unit=False)} / {gib(total, 1)} {fraction:4.0%}"
    )


def facts_text(profile: DeviceProfile) -> Text:
    """The fixed facts, two lines: CPU model and cores; SIMD features and the board."""
    cpu = profile.cpu
    cores = f"{cpu.physical_cores} cores / {cpu.logical_cores} threads"
    if cpu.efficiency_cores:
        cores += f" ({cpu.performance_cores}P + {cpu.efficiency_cores}E)"
    text = Text.assemble(
        ("CPU   ", "bold"),
        f"{cpu.model} ({cpu.arch}) · {cores}",
        ("\nSIMD  ", "bold"),
        " ".join(cpu.features) or "none detected",
    )
    if profile.board is not None:
        board = profile.board
        text.append("  Board ", "bold")
        text.append(" · ".join(part for part in (board.model, board.module, board.release) if part))
    return text


def gauges_text(profile: DeviceProfile, gauges: Gauges) -> Text:
    """The live part: RAM and CPU load, then a line per GPU with its memory (or unified memory, or no GPU)."""
    text = memory_gauge("RAM", gauges.ram_used, gauges.ram_total)
    text.append_text(
        Text.assemble(("   CPU ", "bold"), bar(gauges.cpu_percent / 100, 8), f" {gauges.cpu_percent:3.0f}%")
    )
    if not profile.gpus:
        text.append_text(Text.assemble(("\nGPU   ", "bold"), "no GPU: models run on the CPU"))
    for index, gpu in enumerate(profile.gpus):
        if gpu.unified_memory:
            text.append_text(
                Text.assemble(("\nGPU   ", "bold"), f"{gpu.name} ({gpu.backend}) · unified memory: shares the RAM")
            )
            continue
        used, total = (
            gauges.gpus[index]
            if index < len(gauges.gpus)
            else (gpu.memory_total_bytes - gpu.memory_free_bytes, gpu.memory_total_bytes)
        )
        text.append("\n")
        text.append_text(memory_gauge("VRAM", used, total))
        text.append(f"  {gpu.name} ({gpu.backend})")
    return text


class HardwarePanel(Widget):
    """This machine (or the profile given to the app) with gauges refreshed every second from `app.sampler`."""

    DEFAULT_CSS = """
    HardwarePanel {
        height: auto;
        border: round $primary;
        border-title-color: $text-accent;
        padding: 0 1;
    }
    HardwarePanel Static {
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    if TYPE_CHECKING:
        app = getters.app(EdgellmApp)  # for the type checker only: the app is edgellm's

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = "This machine"
        self.sampler: Sampler | None = None
        self.gauges: Gauges | None = None

    def compose(self) -> ComposeResult:
        profile = self.app.profile
        yield Static(facts_text(profile), id="hw-facts")
        yield Static(gauges_text(profile, profile_gauges(profile)), id="hw-gauges")

    def on_mount(self) -> None:
        profile = self.app.profile
        self.sampler = getattr(self.app, "sampler", None) or live_sampler(profile)
        self.sample()
        self.set_interval(1.0, self.sample)
        if isinstance(self.sampler, LiveSampler) and self.sampler.has_nvidia:
            self._refresh_gpus()
            self.set_interval(2.0, self._refresh_gpus)

    def sample(self) -> None:
        """Take a reading and show it; a sampler that fails leaves the last reading shown. Nothing while another
        screen is in front: the UI thread shares the cores with the model."""
        if self.sampler is None or not self.screen.is_current:
            return
        try:
            gauges = self.sampler()
        except Exception:
            return
        if gauges != self.gauges:
            self.gauges = gauges
            self.query_one("#hw-gauges", Static).update(gauges_text(self.app.profile, gauges))

    @work(thread=True, exclusive=True, group="gpu-gauges", exit_on_error=False)
    def _refresh_gpus(self) -> None:
        if isinstance(self.sampler, LiveSampler) and self.screen.is_current:
            self.sampler.refresh_gpus()
