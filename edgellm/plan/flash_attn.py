"""Flash attention on or off, from this device's measurements when `edgellm bench -fa on,off` has made them.

On a CPU, flash attention can cost or gain 10-15 % of decode at short context, and which way differs between
machines and builds, so a measurement beats a rule. A model's own measurement is taken when it has one, else that of
the benchmarked model nearest in weights size, within SIZE_WINDOW (the share of decode spent in attention changes
with the model's size). Pure: bench/results.py reads the records and passes the pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgellm.plan.similar import similar_size


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


@dataclass(frozen=True)
class FlashAttnPair:
    """One benchmark of a model on this device that decoded with flash attention on and with it off."""

    key: str  # the model file's key (name and size: bench/results.model_key)
    name: str
    weights_bytes: int
    on_tokens_per_s: float
    off_tokens_per_s: float


def measured_for(pairs: list[FlashAttnPair], key: str, weights_bytes: int) -> FlashAttnMeasured | None:
    """What decides flash attention for the model file `key` (of `weights_bytes` of weights): its own pair (the
    last of `pairs`, oldest first, when several), else the pair of the model nearest in weights size within
    SIZE_WINDOW; None when no model near its size was measured both ways."""
    usable = [pair for pair in pairs if pair.on_tokens_per_s > 0 and pair.off_tokens_per_s > 0]
    own = [pair for pair in usable if pair.key == key]
    if own:
        chosen = own[-1]
    elif weights_bytes <= 0:
        return None
    else:
        near = [pair for pair in usable if pair.weights_bytes > 0 and similar_size(weights_bytes, pair.weights_bytes)]
        if not near:
            return None
        # the nearest in size; of two as near, the later
        chosen = min(reversed(near), key=lambda pair: abs(math.log(pair.weights_bytes / weights_bytes)))
    return FlashAttnMeasured(chosen.on_tokens_per_s, chosen.off_tokens_per_s, chosen.name)
