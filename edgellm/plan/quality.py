"""What a quant gives up: its KL divergence from the original model, measured for a file (`bench --quality`) or, when
none was, a prior per quant type from published measurements, scaled up for small models.

The priors are llama.cpp's own table for Llama 3 8B (tools/perplexity/README.md: KL divergence of each quant's
next-token distributions from FP16's over wikitext-2; ../shared/notes/research/speculative_quality.md B2): F16
0.00055, Q8_0 0.00136, Q6_K 0.00545, Q5_K_M 0.01076, Q4_K_M 0.03127, IQ4_XS 0.03633, Q3_K_M 0.10191, IQ3_XXS
0.18363, Q2_K 0.44513, IQ2_XXS 0.81202, IQ1_S about 2.2. The other rows are placed between these by their size
(marked `interpolated` below). Smaller models lose more at low bits (Qwen1.5-0.5B: Q2_K +82 % perplexity; Llama 3
loses more than Llama 2 at the same quant), so below 8B parameters a prior of 4 bits or fewer is multiplied by
(8B / parameters)^¼, at most 2.5 (2.3 for a 270M model), and one of 5–6 bits by its square root. A prior is a
guide, not a figure for the file: `edgellm bench --quality` measures the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgellm.gguf.quants import ALIASES, normalize
from edgellm.plan.spec import ModelSpec

PRIOR_KLD = {
    "F32": 0.0,
    "BF16": 0.0005,
    "F16": 0.00055,
    "Q8_0": 0.00136,
    "Q6_K": 0.00545,
    "Q5_K_M": 0.01076,
    "Q5_K_S": 0.013,  # interpolated
    "Q5_1": 0.015,  # interpolated
    "Q5_0": 0.017,  # interpolated
    "Q4_K_M": 0.03127,
    "IQ4_NL": 0.035,  # interpolated
    "IQ4_XS": 0.03633,
    "Q4_K_S": 0.04,  # interpolated
    "Q4_1": 0.05,  # interpolated
    "Q4_0": 0.06,  # interpolated
    "MXFP4": 0.07,  # interpolated
    "Q3_K_L": 0.08,  # interpolated
    "Q3_K_M": 0.10191,
    "IQ3_M": 0.12,  # interpolated
    "IQ3_S": 0.14,  # interpolated
    "Q3_K_S": 0.16,  # interpolated
    "IQ3_XS": 0.17,  # interpolated
    "IQ3_XXS": 0.18363,
    "Q2_K": 0.44513,
    "Q2_K_S": 0.5,  # interpolated
    "IQ2_M": 0.5,  # interpolated
    "IQ2_S": 0.6,  # interpolated
    "IQ2_XS": 0.7,  # interpolated
    "IQ2_XXS": 0.81202,
    "TQ2_0": 1.0,  # interpolated
    "IQ1_M": 1.6,  # interpolated
    "TQ1_0": 2.0,  # interpolated
    "IQ1_S": 2.2,
}
LOW_BITS = 0.02  # priors above this are of 4 bits or fewer: scaled fully for a small model
SCALED_BELOW = 8e9  # parameters: the size the published table measured
MOST_SCALE = 2.5


@dataclass(frozen=True)
class QualityFigure:
    """A quant's KL divergence from the original model: `measured` by `bench --quality` against `reference` (a
    quant name) with the share of positions whose top token agrees, or a prior."""

    kld: float
    measured: bool = False
    reference: str | None = None
    same_top: float | None = None


def small_model_scale(parameters: float, kld: float) -> float:
    """How much more a model of `parameters` loses than the 8B one the table measured, for a quant of prior `kld`."""
    if parameters <= 0 or parameters >= SCALED_BELOW:
        return 1.0
    scale = min(MOST_SCALE, float((SCALED_BELOW / parameters) ** 0.25))
    return scale if kld > LOW_BITS else float(scale**0.5)


def prior(quant: str | None, parameters: float) -> QualityFigure | None:
    """The published prior for `quant` on a model of `parameters`; None for a quant the table does not know."""
    if not quant:
        return None
    name = normalize(quant)
    name = ALIASES.get(name, name)
    base = PRIOR_KLD.get(name) if name in PRIOR_KLD else PRIOR_KLD.get(name.removesuffix("_XL").removesuffix("_L"))
    if base is None:
        return None
    return QualityFigure(base * small_model_scale(parameters, base))


def parameters(spec: ModelSpec) -> float:
    """The model's parameter count from its shape: attention, feed-forward and the embeddings (twice when the output
    layer is not tied to them)."""
    heads_kv = max(spec.n_head_kv) if spec.n_head_kv else spec.n_head
    attention = spec.n_embd * (spec.n_head * (spec.key_length + spec.value_length) + 2 * heads_kv * spec.key_length)
    feed_forward = 3 * spec.n_embd * spec.n_ff
    embeddings = spec.n_vocab * spec.n_embd * (1 if spec.tied_embeddings else 2)
    return float(spec.n_layers * (attention + feed_forward) + embeddings)


def divergence_ratio(chosen: QualityFigure, over: QualityFigure) -> float | None:
    """How many times the divergence of `over` the chosen quant has; None when `over`'s is 0."""
    return chosen.kld / over.kld if over.kld > 0 else None
