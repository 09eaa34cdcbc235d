"""Which benchmarked models stand for another on the same device: those whose weights are within SIZE_WINDOW of its
own. A tiny model spends a larger share of each token outside the weight reads (sampling, the vocabulary), so its
figures say little about a model 20 times larger. Pure; the speed and memory calibrations and the measured flash
attention choice all use it."""

from __future__ import annotations

SIZE_WINDOW = 4.0  # a measurement stands for models from a quarter to four times its weights


def similar_size(weights_bytes: int, measured_bytes: int) -> bool:
    """Whether a model measured with `measured_bytes` of weights stands for one of `weights_bytes`."""
    return weights_bytes / SIZE_WINDOW <= measured_bytes <= weights_bytes * SIZE_WINDOW
