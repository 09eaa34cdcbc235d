"""Flash attention on or off, from this device's measurements when `edgellm bench -fa on,off` has made them.

On a CPU, flash attention can cost or gain 10-15 % of decode at short context, and which way differs between
machines and builds, so a measurement beats a rule. Pure: bench/results.py reads the records."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlashAttnMeasured:
    """Decode speed of one model (or the nearest benchmarked one) on this device with flash attention on and off."""

    on_tokens_per_s: float
    off_tokens_per_s: float
    model: str  # the benchmarked model the figures come from

    @property
    def faster(self) -> bool:
        """Whether flash attention on was the faster."""
        return self.on_tokens_per_s >= self.off_tokens_per_s
