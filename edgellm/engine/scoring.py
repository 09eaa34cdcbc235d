"""Scoring a text: one GGUF model read chunk by chunk, with the logits of each chunk's scored rows only.

`open_scorer` loads the model (`engine.local.load` with a token-sized context of its own, as the embedder does) and
makes a scoring context beside it on the same weights (`compat.ScoringContext`): a chunk of n_ctx tokens from an
empty KV cache, in micro-batches of n_batch, asking llama.cpp for the logits of the scored rows only (the chunk's
second half), never of a whole text (what `logits_all=True` would keep: n_ctx × n_vocab floats per chunk read).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LocalModel, explain_load_failure, load_for_context
from edgellm.errors import EngineFailed

if TYPE_CHECKING:
    from edgellm.engine.compat import ScoringContext

SCORING_BATCH = 512  # tokens per micro-batch: a chunk at once (as llama-perplexity); its 256 scored rows' logits
# are 256 MiB of float32 for a 262k vocabulary (a smaller micro-batch holds fewer, but reads the chunk slower: 128
# took 1.8 times as long on 2 cores)


class Scorer:
    """A model that reads chunks of a text and hands back the logits of their scored rows."""

    def __init__(self, local: LocalModel, context: ScoringContext) -> None:
        self.local, self._context = local, context
        self.n_ctx, self.n_vocab = context.n_ctx, context.n_vocab

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.local.metadata

    @property
    def bos(self) -> int | None:
        """The token each chunk begins with, when the model adds one."""
        from edgellm.engine import compat

        return self.local.token_bos if compat.adds_start_token(self.local.llm) else None

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens, BOS first when the model adds one (llama-perplexity's tokenization)."""
        return self.local.tokenize(text, add_bos=True, special=False)

    def read(self, chunk: list[int], first: int) -> Iterator[Any]:
        """The logits of `chunk`'s rows from `first` on, in blocks (NumPy views valid until the next)."""
        try:
            yield from self._context.read(chunk, first)
        except RuntimeError as error:
            raise EngineFailed(f"llama.cpp failed while reading the text ({error}); see llama.cpp's log") from None

    def close(self) -> None:
        self._context.close()
        self.local.close()


def open_scorer(
    path: Path, n_threads: int, n_gpu_layers: int, log: LlamaLog, n_ctx: int, n_batch: int = SCORING_BATCH
) -> Scorer:
    """Load the model at `path` for scoring: `n_gpu_layers` on the GPU (-1: all), chunks of `n_ctx` tokens. LoadFailed
    naming the cause when llama.cpp cannot load it or make the context."""
    from edgellm.engine import compat

    local = load_for_context(path, n_threads, n_gpu_layers, log)
    try:
        context = compat.ScoringContext(local.llm, n_ctx=n_ctx, n_batch=min(n_batch, n_ctx), threads=n_threads)
    except (ValueError, RuntimeError, OSError) as error:
        local.close()
        log.flush()
        raise explain_load_failure(path, log, error) from None
    except BaseException:
        local.close()
        raise
    return Scorer(local, context)
