"""Embeddings on the real llama.cpp and the test model (Gemma 3, a causal language model: mean pooling): vectors of the
model's width, the same for the same text, the same in a batch of many as alone (the batch keeps its sequences
apart), closer for a paraphrase than for an unrelated text, mean pooling as llama.cpp's own per-token vectors average,
an over-long text truncated or refused; and `edgellm embed` end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest

from edgellm.engine.embed import Embedder, open_embedder, pack
from edgellm.engine.llama_log import LlamaLog
from edgellm.errors import EngineFailed, InputTooLong
from tests.support import assert_one_line_error, edgellm

# one thread: these decodes are small, and llama.cpp's threads wait on each other for long on a busy machine
THREADS = 1
TEXTS = [
    "The cat sat on the mat.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    "def add(a, b):\n    return a + b",
    "Quarterly revenue grew by twelve percent, driven by strong sales in Europe.",
    "",
    "Le chat est assis sur le tapis.",
    "The Eiffel Tower is in Paris.",
    "How do I reset my password?",
    "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
    "!!!",
    "Water boils at 100 degrees Celsius at sea level.",
    "She plays the violin every evening after dinner.",
    "The stock market fell sharply on Monday.",
    "A recipe for pancakes: flour, eggs, milk and a pinch of salt.",
    "Neural networks learn by adjusting weights with gradient descent.",
    "It rained all weekend, so the picnic was cancelled.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "The library opens at nine in the morning.",
    "Electric cars are becoming cheaper every year.",
    "Jupiter is the largest planet in the solar system.",
]


@pytest.fixture(scope="module")
def embedder(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedder]:
    log = LlamaLog(tmp_path_factory.mktemp("log") / "llama.log", echo=False)
    model = open_embedder(test_model, THREADS, 0, log)
    try:
        yield model
    finally:
        model.close()


def cosine(a: list[float], b: list[float]) -> float:
    x, y = numpy.asarray(a), numpy.asarray(b)
    return float(x @ y / (numpy.linalg.norm(x) * numpy.linalg.norm(y)))


def test_the_embedder_is_the_models_width_with_mean_pooling(embedder: Embedder) -> None:
    assert embedder.dimensions == 640  # gemma3.embedding_length
    assert embedder.pooling == "mean"  # the GGUF names no pooling: a causal language model
    assert embedder.n_ctx == 512  # Gemma 3's 262k-token vocabulary: 512 MiB of logits
    result = embedder.embed(TEXTS[:3])
    assert [len(vector) for vector in result.vectors] == [640] * 3
    assert all(math.isfinite(value) for vector in result.vectors for value in vector)
    assert all(numpy.linalg.norm(vector) > 0 for vector in result.vectors)  # raw: not normalised
    assert result.prompt_tokens > 3 and result.seconds > 0
    assert embedder.embed([]).vectors == []


def test_the_same_text_gives_the_same_vector(embedder: Embedder) -> None:
    first = embedder.embed([TEXTS[1], TEXTS[1]]).vectors
    again = embedder.embed([TEXTS[1]]).vectors[0]
    assert cosine(first[0], first[1]) > 0.9999
    assert cosine(first[0], again) > 0.9999


def test_a_batch_of_twenty_is_each_text_alone(embedder: Embedder) -> None:
    """The twenty texts decode in one llama_decode, one sequence each, and each vector is the one it gets alone. Not
    bit for bit: llama.cpp's CPU kernels take other paths (and sum in another order) past about 50 tokens in a batch,
    so a vector moves a little with the batch's size (the next test shows it never moves with the other texts); a
    two-token text, half of it the BOS, moves the most (cosine 0.9966 measured, 0.9991 or more for the others)."""
    lengths = [len(embedder.local.tokenize(text, add_bos=True, special=True)) for text in TEXTS]
    assert len(pack(lengths, embedder.n_ctx, embedder.n_seq_max)) == 1  # one batch
    together = embedder.embed(TEXTS)
    assert together.prompt_tokens == sum(lengths)
    similar = [cosine(vector, embedder.embed([text]).vectors[0]) for text, vector in zip(TEXTS, together.vectors)]
    assert min(similar) > 0.995, list(zip(TEXTS, similar))
    assert sorted(similar)[1] > 0.999, list(zip(TEXTS, similar))  # all but the two-token "!!!"


def test_a_text_is_the_same_whatever_the_other_texts_of_its_batch_say(embedder: Embedder) -> None:
    """Batches of one shape (a first text of as many tokens, then this one): the same vector bit for bit, so no
    sequence attends to another's tokens or is pooled with them."""
    first, other = " ".join(["apple"] * 30), " ".join(["river"] * 30)
    tokens = [len(embedder.local.tokenize(text, add_bos=True, special=True)) for text in (first, other)]
    assert tokens[0] == tokens[1]
    for text in TEXTS[:2]:
        assert embedder.embed([first, text]).vectors[1] == embedder.embed([other, text]).vectors[1], text


def test_a_paraphrase_is_closer_than_an_unrelated_text(embedder: Embedder) -> None:
    cases = [
        ("The cat sat on the mat.", "A cat was sitting on the rug.", "Quarterly revenue grew by twelve percent."),
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "Jupiter is the largest planet in the solar system.",
        ),
    ]
    for text, paraphrase, unrelated in cases:
        vectors = embedder.embed([text, paraphrase, unrelated]).vectors
        near = cosine(vectors[0], vectors[1])
        assert near > cosine(vectors[0], vectors[2]) + 0.05, text
        assert near > cosine(vectors[1], vectors[2]) + 0.05, text


def test_mean_pooling_is_the_average_of_llama_cpps_token_vectors(test_model: Path, embedder: Embedder) -> None:
    """Independently of the embedder's own context: llama-cpp-python's embedding mode without pooling gives one
    vector per token; their average is the pooled vector."""
    import llama_cpp

    text = TEXTS[3]
    reference = llama_cpp.Llama(
        model_path=str(test_model),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
        n_ctx=512,
        n_batch=512,
        n_ubatch=512,
        n_threads=THREADS,
        flash_attn=True,  # as the embedder's context (llama.cpp's auto: on for the CPU)
        verbose=False,
    )
    try:
        tokens = numpy.asarray(reference.embed(text))
    finally:
        reference.close()
    ours = numpy.asarray(embedder.embed([text]).vectors[0])
    assert tokens.shape == (embedder.embed([text]).prompt_tokens, 640)
    assert cosine(list(tokens.mean(axis=0)), list(ours)) > 0.9999
    assert numpy.allclose(tokens.mean(axis=0), ours, rtol=1e-3, atol=1e-3)


def test_an_over_long_text_is_refused_before_anything_is_decoded(embedder: Embedder) -> None:
    with pytest.raises(InputTooLong) as raised:
        embedder.embed(["short", "word " * 800], truncate=False)
    assert (raised.value.index, raised.value.context) == (1, 512) and raised.value.tokens > 512


def test_an_empty_text_is_its_bos_alone(embedder: Embedder) -> None:
    """As llama-server: the model adds a BOS, so an empty text has one token to embed."""
    result = embedder.embed([""])
    assert result.prompt_tokens == 1 and len(result.vectors[0]) == 640


def test_a_context_asked_for_truncates_to_it_and_closes_twice(test_model: Path, tmp_path: Path) -> None:
    model = open_embedder(test_model, THREADS, 0, LlamaLog(tmp_path / "llama.log", echo=False), n_ctx=64)
    assert model.n_ctx == 64
    long = "word " * 100
    short = len(model.local.tokenize("short", add_bos=True, special=True))
    assert model.embed(["short", long]).prompt_tokens == short + 64
    with pytest.raises(InputTooLong, match=r"input 2 is \d+ tokens, more than the 64-token embedding context"):
        model.embed(["short", long], truncate=False)
    cut = model.local.detokenize(model.local.tokenize(long, add_bos=False, special=True)[:63]).decode()
    assert model.embed([long]).vectors == model.embed([cut]).vectors  # its first 64 tokens, BOS first
    model.close()
    model.close()
    with pytest.raises(EngineFailed, match="closed"):
        model.embed(["x"])


def test_the_command_prints_one_json_array_per_text(test_model: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("first line\n\n  \nsecond line\n")
    done = edgellm("embed", "-m", str(test_model), "-t", str(THREADS), "a text", "-f", str(texts))
    assert done.returncode == 0, done.stderr
    vectors = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(vectors) == 3 and all(len(vector) == 640 for vector in vectors)
    assert all(math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-6) for vector in vectors)  # normalised

    done = edgellm(
        "embed", "-m", str(test_model), "-t", str(THREADS), "--json", "--no-normalize", "-f", "-", input="x\ny\n"
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record) == {"model", "dimensions", "embeddings", "prompt_tokens"}
    assert record["model"] == str(test_model) and record["dimensions"] == 640
    assert len(record["embeddings"]) == 2 and record["prompt_tokens"] == 4  # BOS and one token each
    assert math.fsum(v * v for v in record["embeddings"][0]) > 1.5  # raw


def test_the_command_refuses_bad_input_in_one_line(test_model: Path, tmp_path: Path) -> None:
    assert_one_line_error(edgellm("embed", "-m", str(tmp_path / "nope.gguf"), "x"), "no such file", "check the path")
    assert_one_line_error(edgellm("embed", "-m", str(test_model)), "nothing to embed", "-f FILE")
    assert_one_line_error(edgellm("embed", "x"), "no model", "-m MODEL")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    assert_one_line_error(edgellm("embed", "-m", str(test_model), "-f", str(empty)), "no text to embed")
    assert_one_line_error(
        edgellm("embed", "-m", str(test_model), "-f", str(tmp_path / "missing.txt")), "cannot read", "missing.txt"
    )
