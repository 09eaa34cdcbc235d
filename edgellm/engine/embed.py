"""Embeddings: one GGUF model in llama.cpp's embedding mode, a vector per text.

`open_embedder` loads the model (`engine.local.load`, whose own context stays token-sized, as the batched engine's
host) and makes an embedding context beside it on the same weights (`compat.EmbeddingContext`). `Embedder.embed`
tokenizes every text first (so a text that cannot be embedded is refused before any work), packs them into batches
(`pack`: in order, up to n_batch tokens and n_seq_max texts each), decodes each batch in one llama_decode with one
sequence id per text, and reads one pooled vector per text: raw, not normalised (each caller normalises as its API
says).

A micro-batch holds a whole batch (n_ubatch = n_batch = n_ctx): llama.cpp pools each micro-batch on its own, so a text
split across two would be pooled wrong; a text is therefore at most n_ctx tokens.

The context is the model's trained one up to 8192 tokens, but a causal language model (Gemma, Llama, Qwen...) gets
less: llama.cpp computes its output layer's logits for every token even in embedding mode, n_ubatch × n_vocab floats
in the compute buffer and as many again in the output buffer (Gemma 3's 262k-token vocabulary at 8192 tokens: 8.7 GiB
of compute buffer, reserved at start, and 9 GB resident once a batch fills it), so its context is held to what
LOGITS_BUDGET of logits allow (512 tokens for Gemma 3, llama-server's default micro-batch). An encoder (a BERT: no
output layer) keeps the full context. Asking for a context (`n_ctx`) overrides both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LocalModel, explain_load_failure, load_for_context
from edgellm.errors import EmptyPrompt, EngineFailed, InputTooLong, ModelFileError
from edgellm.reasons import reason

if TYPE_CHECKING:
    from edgellm.engine.compat import EmbeddingContext

POOLING_NAMES = ("none", "mean", "cls", "last", "rank")  # llama_pooling_type's values, from 0
POOLING_NONE, POOLING_MEAN, POOLING_RANK = 0, 1, 4
MAX_CONTEXT = 8192  # tokens, when the model's trained context is longer
LOGITS_BUDGET = 512 * 2**20  # bytes of logits one micro-batch of a causal model may compute
CONTEXT_STEP = 256  # a context held to the budget is a multiple of this


@dataclass(frozen=True)
class EmbedResult:
    """The embeddings of some texts: one raw pooled vector per text, in their order; the tokens decoded (after
    truncation, special tokens included) and the seconds the call took."""

    vectors: list[list[float]]
    prompt_tokens: int
    seconds: float


def pooling_of(metadata: Mapping[str, str]) -> int:
    """The pooling the embeddings get: the GGUF's `<arch>.pooling_type`, or mean pooling when it has none (a causal
    language model) or says none (one vector per token: a text still gets one vector here)."""
    arch = metadata.get("general.architecture", "")
    found = metadata.get(f"{arch}.pooling_type", "")
    pooling = int(found) if found.lstrip("-").isdigit() else POOLING_NONE
    return POOLING_MEAN if pooling <= POOLING_NONE or pooling >= len(POOLING_NAMES) else pooling


def trained_context(metadata: Mapping[str, str]) -> int:
    """The model's trained context in tokens (`<arch>.context_length`); 0 when the GGUF does not say."""
    found = metadata.get(f"{metadata.get('general.architecture', '')}.context_length", "")
    return int(found) if found.isdigit() else 0


def is_causal(metadata: Mapping[str, str]) -> bool:
    """Whether the model attends causally: a language model, with an output layer llama.cpp computes; an encoder (a
    BERT) says `<arch>.attention.causal = false`."""
    return metadata.get(f"{metadata.get('general.architecture', '')}.attention.causal", "true") != "false"


def embedding_context(trained: int, n_vocab: int, causal: bool, asked: int | None = None) -> int:
    """The embedding context in tokens (the longest text, and a batch): `asked` when given; else the trained context
    up to MAX_CONTEXT (MAX_CONTEXT when unknown), and for a causal model no more than LOGITS_BUDGET of float logits
    allow, in steps of CONTEXT_STEP (one step at least)."""
    if asked is not None:
        return asked
    context = min(trained or MAX_CONTEXT, MAX_CONTEXT)
    if causal and n_vocab > 0:
        allowed = LOGITS_BUDGET // (n_vocab * 4) // CONTEXT_STEP * CONTEXT_STEP
        context = min(context, max(allowed, CONTEXT_STEP))
    return context


def fitted(tokens: list[int], index: int, n_ctx: int, truncate: bool, keeps_end: bool) -> list[int]:
    """Input `index`'s tokens, fitted to the context: as they are when they fit; else the first n_ctx when
    `truncate` (the model's end token kept last when it adds one, `keeps_end`, as a tokenizer truncating with special
    tokens does), or InputTooLong."""
    if len(tokens) <= n_ctx:
        return tokens
    if not truncate:
        raise InputTooLong(
            reason("input_too_long", index=index, tokens=len(tokens), context=n_ctx), index, len(tokens), n_ctx
        )
    return tokens[: n_ctx - 1] + tokens[-1:] if keeps_end and n_ctx > 1 else tokens[:n_ctx]


def pack(lengths: list[int], n_batch: int, n_seq_max: int | None = None) -> list[list[int]]:
    """The inputs of these token `lengths` in batches, as lists of their indices: in order, each batch up to
    `n_batch` tokens and `n_seq_max` inputs, a new one started when the next input would not fit. ValueError for an
    input longer than a batch (fit it first)."""
    batches: list[list[int]] = []
    tokens = 0
    for index, length in enumerate(lengths):
        if length > n_batch:
            raise ValueError(f"input {index} is {length} tokens, more than a batch of {n_batch}")
        full = bool(batches) and n_seq_max is not None and len(batches[-1]) >= n_seq_max
        if not batches or tokens + length > n_batch or full:
            batches.append([])
            tokens = 0
        batches[-1].append(index)
        tokens += length
    return batches


class Embedder:
    """One model in embedding mode: its loaded weights and vocabulary (`local`), its embedding context (`context`,
    a compat.EmbeddingContext of `n_ctx` tokens holding `n_seq_max` texts per batch) and the pooling it applies. One
    caller decodes at a time (its lock)."""

    def __init__(
        self, local: LocalModel, context: EmbeddingContext, pooling: int, keeps_end: bool, owns_local: bool = True
    ) -> None:
        self.local = local
        self.owns_local = owns_local  # False: the weights belong to a model loaded for generation, which frees them
        self.context = context
        self.n_ctx = context.n_ctx
        self.n_seq_max = context.n_seq_max
        self.keeps_end = keeps_end
        self._pooling = pooling
        self._lock = threading.Lock()
        self.closed = False

    @property
    def dimensions(self) -> int:
        """The floats in each vector (the model's n_embd)."""
        return self.context.width

    @property
    def pooling(self) -> str:
        """How a text's token vectors become one: mean, cls or last."""
        return POOLING_NAMES[self._pooling]

    def embed(self, texts: list[str], truncate: bool = True) -> EmbedResult:
        """One vector per text, in their order. A text longer than the context is cut to it when `truncate`, else
        refused (InputTooLong) before anything is decoded. An empty text is its special tokens alone (a BOS), as
        llama-server embeds it; on a model that adds none it has no token, and is refused (EmptyPrompt) as
        llama-server refuses it."""
        started = time.perf_counter()
        with self._lock:
            if self.closed:
                raise EngineFailed("the embedding model was closed; open it again")
            inputs = [self._tokens(text, index, truncate) for index, text in enumerate(texts)]
            vectors: list[list[float]] = [[] for _ in inputs]
            for batch in pack([len(tokens) for tokens in inputs], self.n_ctx, self.n_seq_max):
                for index, vector in zip(batch, self.context.embed([inputs[index] for index in batch])):
                    vectors[index] = vector
        return EmbedResult(vectors, sum(len(tokens) for tokens in inputs), time.perf_counter() - started)

    def _tokens(self, text: str, index: int, truncate: bool) -> list[int]:
        # as llama-server tokenizes them: the model's special tokens added, and those written in the text parsed
        tokens = self.local.tokenize(text, add_bos=True, special=True)
        if not tokens:
            raise EmptyPrompt(f"input {index + 1} is empty, and this model adds no token to it: leave it out")
        return fitted(tokens, index, self.n_ctx, truncate, self.keeps_end)

    def close(self) -> None:
        """Free llama.cpp's model and context; again does nothing."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.context.close()
            if self.owns_local:
                self.local.close()


def open_embedder(
    path: Path,
    n_threads: int,
    n_gpu_layers: int,
    log: LlamaLog,
    n_ctx: int | None = None,
    loaded: LocalModel | None = None,
) -> Embedder:
    """Load the model at `path` in embedding mode: `n_gpu_layers` on the GPU (-1: all), `n_threads` computing, a
    context of `n_ctx` tokens (None: `embedding_context` chooses). `loaded`: the model already loaded for
    generation, whose weights the embedding context shares (nothing is loaded twice; closing the embedder leaves
    them). LoadFailed naming the cause when llama.cpp cannot load it or make the context; ModelFileError for a
    reranker (it scores pairs of texts, it embeds none)."""

    if loaded is not None:
        return _embedder(loaded, path, n_threads, log, n_ctx, owns_local=False)

    return _embedder(load_for_context(path, n_threads, n_gpu_layers, log), path, n_threads, log, n_ctx, owns_local=True)


def _embedder(
    local: LocalModel, path: Path, n_threads: int, log: LlamaLog, n_ctx: int | None, owns_local: bool
) -> Embedder:
    """The embedding context on `local`'s weights (closed again when it cannot be made, if it is ours)."""
    from edgellm.engine import compat

    try:
        metadata = local.metadata
        pooling = pooling_of(metadata)
        if pooling == POOLING_RANK:
            raise ModelFileError(
                f"{path}: is a reranker (pooling rank): it scores pairs of texts and makes no embeddings; use an "
                f"embedding model",
                path,
                "unsupported",
            )
        vocabulary = compat.vocabulary_size(local.llm)
        context_size = embedding_context(trained_context(metadata), vocabulary, is_causal(metadata), n_ctx)
        n_seq_max = min(context_size, compat.max_sequences())
        context = compat.EmbeddingContext(
            local.llm, n_ctx=context_size, n_seq_max=n_seq_max, pooling=pooling, threads=n_threads
        )
    except (ValueError, RuntimeError, OSError) as error:
        if owns_local:
            local.close()
        log.flush()
        raise explain_load_failure(path, log, error) from None
    except BaseException:
        if owns_local:
            local.close()
        raise
    log.flush()
    return Embedder(local, context, pooling, compat.adds_end_token(local.llm), owns_local)
