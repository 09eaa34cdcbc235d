"""The embedder's pure parts: how texts are packed into batches, fitted to the context, which pooling and context a
model gets from its GGUF metadata, and a vector scaled to length 1."""

from __future__ import annotations

import itertools
import math

import pytest

from edgellm.api.openai import normalize as normalized
from edgellm.engine.embed import (
    POOLING_MEAN,
    POOLING_RANK,
    embedding_context,
    fitted,
    is_causal,
    pack,
    pooling_of,
    trained_context,
)
from edgellm.errors import InputTooLong
from edgellm.session.embedding import gpu_layer_count
from edgellm.words import say


def test_pack_fills_batches_in_order_up_to_n_batch_tokens() -> None:
    assert pack([3, 4, 2, 5, 1], 8) == [[0, 1], [2, 3, 4]]
    assert pack([8, 1, 8], 8) == [[0], [1], [2]]  # a full batch is one input alone
    assert pack([2] * 4, 8) == [[0, 1, 2, 3]]  # exactly full: one batch
    assert pack([], 8) == []


def test_pack_starts_a_new_batch_past_n_seq_max_inputs() -> None:
    assert pack([1] * 5, 100, n_seq_max=2) == [[0, 1], [2, 3], [4]]
    assert pack([1] * 5, 3, n_seq_max=10) == [[0, 1, 2], [3, 4]]


def test_pack_keeps_every_input_once_and_each_batch_within_its_limits() -> None:
    lengths = [(index * 37) % 50 + 1 for index in range(300)]
    batches = pack(lengths, 64, n_seq_max=7)
    assert [index for batch in batches for index in batch] == list(range(300))
    assert all(sum(lengths[i] for i in batch) <= 64 and 1 <= len(batch) <= 7 for batch in batches)
    # greedy: a batch ends only when the next input would not fit it
    for batch, following in itertools.pairwise(batches):
        assert sum(lengths[i] for i in batch) + lengths[following[0]] > 64 or len(batch) == 7


def test_pack_refuses_an_input_longer_than_a_batch() -> None:
    with pytest.raises(ValueError, match="input 1 is 9 tokens"):
        pack([1, 9], 8)


def test_fitted_truncates_or_refuses_a_long_input() -> None:
    tokens = [2, 10, 11, 12, 13, 1]
    assert fitted(tokens, 0, 6, truncate=False, keeps_end=False) == tokens  # fits: as is
    assert fitted(tokens, 0, 4, truncate=True, keeps_end=False) == [2, 10, 11, 12]
    assert fitted(tokens, 0, 4, truncate=True, keeps_end=True) == [2, 10, 11, 1]  # the end token ([SEP]) stays last
    with pytest.raises(InputTooLong) as raised:
        fitted(tokens, 3, 4, truncate=False, keeps_end=False)
    error = raised.value
    assert (error.index, error.tokens, error.context, error.exit_code) == (3, 6, 4, 2)
    assert str(error) == (
        "input 4 is 6 tokens, more than the 4-token embedding context; shorten it, let it be truncated, or raise "
        "the context size"
    )
    assert error.reason is not None and "6 tokens" in say(error.reason)


def gguf(arch: str = "gemma3", **values: str) -> dict[str, str]:
    return {"general.architecture": arch, **{f"{arch}.{key}": value for key, value in values.items()}}


def test_pooling_comes_from_the_gguf_and_is_mean_when_it_says_none() -> None:
    assert pooling_of(gguf()) == POOLING_MEAN  # a causal language model: no pooling_type
    assert pooling_of(gguf("bert", pooling_type="2")) == 2  # CLS
    assert pooling_of(gguf("qwen3", pooling_type="3")) == 3  # LAST
    assert pooling_of(gguf("bert", pooling_type="0")) == POOLING_MEAN  # NONE: still one vector per text
    assert pooling_of(gguf("bert", pooling_type="-1")) == POOLING_MEAN
    assert pooling_of(gguf("bert", pooling_type="4")) == POOLING_RANK  # a reranker: refused by open_embedder


def test_trained_context_and_causality_come_from_the_gguf() -> None:
    assert trained_context(gguf(context_length="32768")) == 32768
    assert trained_context(gguf()) == 0
    assert is_causal(gguf()) and is_causal(gguf(**{"attention.causal": "true"}))
    assert not is_causal(gguf("bert", **{"attention.causal": "false"}))


def test_the_context_is_the_trained_one_up_to_8192_and_a_language_model_is_held_to_its_logits() -> None:
    assert embedding_context(512, 30522, causal=False) == 512  # a BERT: its trained context
    assert embedding_context(32768, 250002, causal=False) == 8192  # an encoder has no output layer: no logits
    assert embedding_context(0, 30522, causal=False) == 8192  # unknown: the most
    assert embedding_context(32768, 262144, causal=True) == 512  # Gemma 3: 512 MiB of logits
    assert embedding_context(131072, 128256, causal=True) == 1024  # Llama 3
    assert embedding_context(4096, 32000, causal=True) == 4096  # Llama 2: its trained context fits the budget
    assert embedding_context(32768, 4_000_000, causal=True) == 256  # one step at least
    assert embedding_context(32768, 262144, causal=True, asked=4096) == 4096  # asked: as asked


def test_normalized_scales_to_length_one() -> None:
    vector = normalized([3.0, 4.0])
    assert vector == pytest.approx([0.6, 0.8])
    assert math.isclose(math.fsum(v * v for v in normalized([1e-3, -2e-3, 5e-4])), 1.0)
    assert normalized([0.0, 0.0]) == [0.0, 0.0]


def test_gpu_layers_are_all_unless_counted() -> None:
    assert gpu_layer_count("auto") == gpu_layer_count("all") == -1
    assert gpu_layer_count(0) == 0 and gpu_layer_count(12) == 12
