"""The quality figures' arithmetic (edgellm.bench.quality) against direct computations on small vocabularies."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy
import pytest

from edgellm.bench.quality import QualityTally, chunks, first_scored


def test_chunks_are_whole_begin_with_bos_and_stop_at_most() -> None:
    tokens = list(range(10, 35))
    assert chunks(tokens, 10, bos=None) == [list(range(10, 20)), list(range(20, 30))]  # the tail of 5 is left
    assert [chunk[0] for chunk in chunks(tokens, 10, bos=1)] == [1, 1]
    assert chunks(tokens, 10, bos=1)[1][1:] == list(range(21, 30))
    assert len(chunks(tokens, 10, bos=None, most=1)) == 1
    assert chunks(tokens[:9], 10, bos=None) == []
    assert first_scored(512) == 256


def softmax(rows: numpy.ndarray) -> numpy.ndarray:
    shifted = numpy.exp(rows.astype(numpy.float64) - rows.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("pooled", [False, True])
def test_the_figures_match_a_direct_computation(pooled: bool) -> None:
    generator = numpy.random.default_rng(7)
    reference = (generator.normal(size=(80, 50)) * 3).astype(numpy.float32)
    model = (reference + generator.normal(size=reference.shape)).astype(numpy.float32)
    targets = generator.integers(0, 50, size=80)
    tally = QualityTally(pool=ThreadPoolExecutor(2) if pooled else None)
    tally.add(model[:45], targets[:45], reference[:45])  # two calls, as two micro-batches come
    tally.add(model[45:], targets[45:], reference[45:])
    found = tally.summary()

    p, q = softmax(reference), softmax(model)
    rows = numpy.arange(80)
    nll, reference_nll = -numpy.log(q[rows, targets]), -numpy.log(p[rows, targets])
    kld = (p * (numpy.log(p) - numpy.log(q))).sum(axis=1)
    assert found["tokens"] == 80
    assert found["ppl"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    assert found["reference_ppl"] == pytest.approx(math.exp(reference_nll.mean()), rel=1e-5)
    assert found["kld"] == pytest.approx(kld.mean(), rel=1e-4)
    assert found["kld_percentiles"]["50"] == pytest.approx(numpy.median(kld), rel=1e-4)
    assert found["kld_percentiles"]["100"] == pytest.approx(kld.max(), rel=1e-4)
    assert found["same_top"] == pytest.approx((p.argmax(axis=1) == q.argmax(axis=1)).mean())
    delta = q[rows, targets] - p[rows, targets]
    assert found["delta_p"] == pytest.approx(delta.mean(), rel=1e-4, abs=1e-7)
    assert found["rms_delta_p"] == pytest.approx(math.sqrt((delta**2).mean()), rel=1e-4)
    # llama-perplexity's standard errors: √(var / (n − 1)), and the binomial one for the share
    assert found["kld_se"] == pytest.approx(math.sqrt(kld.var() / 79), rel=1e-3)
    assert found["ppl_se"] == pytest.approx(math.sqrt(nll.var() / 79) * math.exp(nll.mean()), rel=1e-3)
    share = found["same_top"]
    assert found["same_top_se"] == pytest.approx(math.sqrt(share * (1 - share) / 79))


def test_a_model_against_itself_diverges_nowhere() -> None:
    rows = (numpy.random.default_rng(3).normal(size=(40, 300)) * 5).astype(numpy.float32)
    tally = QualityTally()
    tally.add(rows, numpy.arange(40), rows)
    found = tally.summary()
    assert found["kld"] == pytest.approx(0.0, abs=1e-6)
    assert found["same_top"] == 1.0 and found["same_top_se"] == 0.0
    assert found["delta_p"] == 0.0 and found["ln_ppl_ratio"] == 0.0
    assert found["ppl"] == found["reference_ppl"]


def test_perplexity_alone_has_no_divergence() -> None:
    tally = QualityTally()
    tally.add(numpy.zeros((4, 8), dtype=numpy.float32), [0, 1, 2, 3])
    found = tally.summary()
    assert found["ppl"] == pytest.approx(8.0)  # uniform over 8 tokens
    assert "kld" not in found and found["tokens"] == 4
