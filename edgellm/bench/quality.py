"""What a quant costs, measured: perplexity over a text and, against a reference (the same model at a higher
precision), the KL divergence of the next-token distributions, the share of positions where the top token agrees,
and Δp (the change in the probability of the token that came), each with its standard error.

The text is read as llama-perplexity reads it: tokenized once (with BOS when the model adds one), cut into chunks of
`n_ctx` tokens (512), each read from an empty KV cache with BOS in its first place, and only its second half scored:
the rows at positions n_ctx/2 … n_ctx−2 predict the tokens after them (255 per chunk). The figures and their standard
errors are llama-perplexity's own (its `kl_divergence` and `perplexity`), so the two can be compared; the KL
divergence here is computed from both models' float32 logits, summed in float64 (llama-perplexity stores the
reference's logits in 16 bits, whence its f16-vs-f16 0.0005).

Pure: NumPy arithmetic on logits rows handed in by the engine; nothing here loads a model.
"""

from __future__ import annotations

import math
from concurrent.futures import wait
from dataclasses import dataclass, field
from typing import Any

import numpy

CHUNK = 512  # tokens per chunk: llama-perplexity's default context
ROW_BLOCK = 32  # logits rows worked on at once: 32 MiB of float32 temporaries for a 262k vocabulary
PERCENTILES = (99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0)


def chunks(tokens: list[int], n_ctx: int, bos: int | None, most: int | None = None) -> list[list[int]]:
    """The whole chunks of `n_ctx` tokens in `tokens` (a tail shorter than one is left out), `most` at most; each
    begins with `bos` when the model adds one (llama-perplexity puts it in the first token's place)."""
    count = len(tokens) // n_ctx
    if most is not None:
        count = min(count, most)
    cut = [list(tokens[index * n_ctx : (index + 1) * n_ctx]) for index in range(count)]
    if bos is not None:
        for chunk in cut:
            chunk[0] = bos
    return cut


def first_scored(n_ctx: int) -> int:
    """The first position whose logits are read: the chunk's second half."""
    return n_ctx // 2


def _row_figures(rows: Any, probabilities: bool) -> tuple[Any, Any, Any]:
    """Each row's top token, its logsumexp (float64), and (when asked) its softmax (float32; else None)."""
    top = rows.argmax(axis=1)
    highest = rows[numpy.arange(len(rows)), top][:, None]
    exponentials = numpy.subtract(rows, highest)
    numpy.exp(exponentials, out=exponentials)
    sums = exponentials.sum(axis=1)
    lse = highest[:, 0].astype(numpy.float64) + numpy.log(sums.astype(numpy.float64))
    if not probabilities:
        return top, lse, None
    exponentials /= sums[:, None]
    return top, lse, exponentials


def _block_figures(rows: Any, targets: Any, reference_rows: Any) -> tuple[Any, ...]:
    """One block's figures: the NLL of each target and, with a reference, the reference's NLL, the KL divergence,
    Δp and whether the top tokens agree."""
    picked = numpy.arange(len(targets))
    top, lse, _ = _row_figures(rows, probabilities=False)
    nll = lse - rows[picked, targets].astype(numpy.float64)
    if reference_rows is None:
        return (nll,)
    reference_top, reference_lse, reference_probabilities = _row_figures(reference_rows, probabilities=True)
    reference_nll = reference_lse - reference_rows[picked, targets].astype(numpy.float64)
    # KL(reference ‖ model) = Σ p_ref · (log p_ref − log p) = Σ p_ref · (x_ref − x) − lse_ref + lse; the products
    # in float32, their sum in float64 (a float32 sum over 262k terms would be off by ~1e-5: a Q8_0's whole KLD)
    difference = numpy.subtract(reference_rows, rows)
    difference *= reference_probabilities
    kld = numpy.maximum(0.0, difference.sum(axis=1, dtype=numpy.float64) - reference_lse + lse)
    delta_p = numpy.exp(-nll) - numpy.exp(-reference_nll)
    return nll, reference_nll, kld, delta_p, top == reference_top


@dataclass
class QualityTally:
    """Per-token figures of the chunks read so far: the model's negative log-likelihood of each next token and, when
    a reference is read beside it, the reference's, the KL divergence, Δp and whether the top tokens agree. `pool`
    (a thread pool: NumPy lets go of the GIL) works on several blocks of rows at once."""

    nll: list[Any] = field(default_factory=list)
    reference_nll: list[Any] = field(default_factory=list)
    kld: list[Any] = field(default_factory=list)
    delta_p: list[Any] = field(default_factory=list)
    same_top: list[Any] = field(default_factory=list)
    chunks: int = 0
    pool: Any = None

    def add(self, rows: Any, targets: Any, reference_rows: Any = None) -> None:
        """Score logits `rows` (float32, n × n_vocab) against the `targets` that followed each; with `reference_rows`
        (the reference's logits at the same positions), compare the two distributions."""
        targets = numpy.asarray(targets, dtype=numpy.int64)
        blocks = [
            (rows[start : start + ROW_BLOCK], targets[start : start + ROW_BLOCK])
            + (None if reference_rows is None else reference_rows[start : start + ROW_BLOCK],)
            for start in range(0, len(targets), ROW_BLOCK)
        ]
        if self.pool is None:
            done = [_block_figures(*block) for block in blocks]
        else:  # every block finished (or failed) before any result is read: none outlives the rows it reads
            futures = [self.pool.submit(_block_figures, *block) for block in blocks]
            wait(futures)
            done = [future.result() for future in futures]
        for figures in done:
            self.nll.append(figures[0])
            if len(figures) > 1:
                self.reference_nll.append(figures[1])
                self.kld.append(figures[2])
                self.delta_p.append(figures[3])
                self.same_top.append(figures[4])

    @property
    def tokens(self) -> int:
        return sum(len(part) for part in self.nll)

    def summary(self) -> dict[str, Any]:
        """The figures so far, as `bench --quality` stores and prints them."""
        nll = numpy.concatenate(self.nll) if self.nll else numpy.zeros(0)
        found: dict[str, Any] = {"chunks": self.chunks, "tokens": len(nll), **_perplexity(nll)}
        if self.kld:
            reference_nll = numpy.concatenate(self.reference_nll)
            kld = numpy.concatenate(self.kld)
            delta_p = numpy.concatenate(self.delta_p)
            same = numpy.concatenate(self.same_top).astype(numpy.float64)
            log_ratio = nll - reference_nll
            reference = _perplexity(reference_nll)
            found["reference_ppl"], found["reference_ppl_se"] = reference["ppl"], reference["ppl_se"]
            found["ln_ppl_ratio"], found["ln_ppl_ratio_se"] = _mean_and_error(log_ratio)
            found["ppl_correlation"] = _correlation(nll, reference_nll)
            found["kld"], found["kld_se"] = _mean_and_error(kld)
            found["kld_percentiles"] = {
                f"{value:g}": float(numpy.percentile(kld, value)) for value in (100.0, *PERCENTILES, 0.0)
            }
            found["same_top"], found["same_top_se"] = _share_and_error(same)
            found["delta_p"], found["delta_p_se"] = _mean_and_error(delta_p)
            found["rms_delta_p"], found["rms_delta_p_se"] = _rms_and_error(delta_p)
        return found


def _mean_and_error(values: Any) -> tuple[float, float]:
    """The mean and its standard error, as llama-perplexity reckons it: √((E[x²] − E[x]²) / (n − 1))."""
    count = len(values)
    if count == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    if count < 2:
        return mean, math.nan
    spread = float((values * values).mean()) - mean * mean
    return mean, math.sqrt(max(0.0, spread) / (count - 1))


def _share_and_error(hits: Any) -> tuple[float, float]:
    count = len(hits)
    share = float(hits.mean()) if count else math.nan
    return share, math.sqrt(share * (1 - share) / (count - 1)) if count > 1 else math.nan


def _rms_and_error(values: Any) -> tuple[float, float]:
    """The root mean square and its standard error (through the error of the mean square)."""
    mean_square, error = _mean_and_error(values * values)
    rms = math.sqrt(mean_square) if mean_square == mean_square else math.nan
    return rms, (error / (2 * rms) if rms > 0 else 0.0)


def _correlation(first: Any, second: Any) -> float:
    if len(first) < 2 or float(first.std()) == 0 or float(second.std()) == 0:
        return math.nan
    return float(numpy.corrcoef(first, second)[0, 1])


def _perplexity(nll: Any) -> dict[str, float]:
    """exp(mean NLL) and its standard error (llama-perplexity's "PPL = x +/- y")."""
    mean, error = _mean_and_error(nll)
    if mean != mean:
        return {"ppl": math.nan, "ppl_se": math.nan}
    ppl = math.exp(mean)
    return {"ppl": ppl, "ppl_se": error * ppl if error == error else math.nan}
