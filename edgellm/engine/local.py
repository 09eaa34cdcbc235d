"""A model loaded in this process: load a GGUF into llama.cpp with parameters already checked, turning load failures
into LoadFailed errors that name the cause; `LocalModel` is the engine contract's `Model` over a llama_cpp.Llama."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import (
    HOST_BATCH,
    HOST_CONTEXT,
    KV_GGML_TYPES,
    LLAMA_DEFAULT_SEED,
    GenerationOptions,
    LoadParams,
    SlotState,
    projector_mismatch,
    text_only,
)
from edgellm.engine.llama_log import LlamaLog, interrupt_after
from edgellm.errors import LoadFailed, LoadTimedOut, UnknownToken
from edgellm.reasons import reason
from edgellm.storage import disk

if TYPE_CHECKING:
    from edgellm.engine.generate import LocalGeneration
    from edgellm.engine.speculative import SpeculativeGeneration
    from edgellm.engine.vision import Projector
    from edgellm.media.images import Image

# The output layer's weights: its norm, its matrix, and the input embedding that a tied output reuses (the input
# layer is on this CPU whatever the split). Anchored: llama.cpp searches the pattern in each tensor's name, and
# "output" alone would also take every layer's attn_output.
OUTPUT_WEIGHTS = r"^(output_norm|output|token_embd)\.weight$"


class LocalModel:
    """A model loaded in this process: the engine contract's `Model` over a llama_cpp.Llama."""

    parallel = 1  # one generation at a time: llama-cpp-python's context holds one sequence

    def __init__(self, llm: Any, params: LoadParams, load_ms: float, log: LlamaLog) -> None:
        self.llm = llm  # llama_cpp.Llama: the engine's own (generate.py, compat.py)
        self.params = params
        self.load_ms = load_ms
        self.log = log
        self.closed = False
        self._metadata: dict[str, str] = dict(llm.metadata)
        self._current: LocalGeneration | SpeculativeGeneration | None = None
        self._vocabulary_size: int | None = None
        self.draft: LocalModel | None = None  # a draft model for speculative decoding, loaded beside this one
        self.draft_cost = 0.5  # the draft's time per token over this model's (the plan's estimate)
        self.projector: Projector | None = None  # images: libmtmd's context beside this model (params.projector)

    @property
    def n_ctx(self) -> int:
        """llama.cpp pads the context it allocates (to 256 cells), but llama-cpp-python's token buffer has the size
        that was asked for: a generation may hold the smaller."""
        allocated: int = self.llm.n_ctx()
        return min(allocated, len(self.llm.input_ids))

    @property
    def metadata(self) -> dict[str, str]:
        return self._metadata

    @property
    def token_bos(self) -> int:
        return int(self.llm.token_bos())

    @property
    def token_eos(self) -> int:
        return int(self.llm.token_eos())

    @property
    def other_processes(self) -> tuple[int, ...]:
        return ()

    @property
    def vision(self) -> bool:
        return self.projector is not None

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def tokenize_with_images(
        self, text: str, images: Sequence[Image], *, add_bos: bool, special: bool = True
    ) -> list[int]:
        if self.projector is None:
            raise text_only(self.params.path)
        return self.projector.tokenize(text, images, add_bos=add_bos, special=special)

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        """The tokens' text; UnknownToken for an id outside the vocabulary (llama.cpp would abort the process)."""
        n_vocab = self._n_vocab()
        unknown = next((token for token in tokens if not 0 <= token < n_vocab), None)
        if unknown is not None:
            raise UnknownToken(unknown, n_vocab)
        return bytes(self.llm.detokenize(tokens, special=special))

    def _n_vocab(self) -> int:
        if self._vocabulary_size is None:
            from edgellm.engine.compat import vocabulary_size

            self._vocabulary_size = vocabulary_size(self.llm)
        return self._vocabulary_size

    def generation(
        self, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> LocalGeneration | SpeculativeGeneration:
        """A completion of `prompt_tokens`: iterate it for text pieces; its stats and tokens once it ends. Drafted
        (engine.speculative) when the options ask for it and the model's KV cache can be cut back."""
        from edgellm.engine.vision import is_image_token

        with_images = any(is_image_token(token) for token in prompt_tokens)
        mode = "off" if with_images else self.drafter(options.speculation)  # a draft model never sees the image
        if mode != "off":
            from edgellm.engine.speculative import SpeculativeGeneration

            draft = (self.draft.llm, self.draft_cost) if mode == "draft" and self.draft is not None else None
            self._current = SpeculativeGeneration(self.llm, self.n_ctx, prompt_tokens, options, draft, cancel=cancel)
            return self._current
        from edgellm.engine.generate import LocalGeneration

        projector = self.projector if with_images else None
        self._current = LocalGeneration(self.llm, self.n_ctx, prompt_tokens, options, cancel=cancel, images=projector)
        return self._current

    def drafter(self, asked: str) -> str:
        """How a generation asking `asked` (contract.SPEC_MODES) drafts: draft (this model's draft model), ngram, or
        off (asked so, or a recurrent model, whose KV cache cannot drop a rejected draft)."""
        if asked == "off" or self._recurrent():
            return "off"
        if asked in ("auto", "draft") and self.draft is not None:
            return "draft"
        return "ngram"

    def _recurrent(self) -> bool:
        from edgellm.engine.compat import is_recurrent

        return is_recurrent(self.llm)

    def slots(self) -> list[SlotState]:
        current = self._current
        busy = current is not None and current.running
        return [
            SlotState(
                0,
                busy,
                self.n_ctx,
                int(self.llm.n_tokens),
                current.stats.prompt_tokens if current and busy else 0,
                current.stats.completion_tokens if current and busy else 0,
            )
        ]

    def close(self) -> None:
        """Free llama.cpp's model and context (and its draft model's)."""
        if self.draft is not None:
            self.draft.close()
            self.draft = None
        if self.projector is not None:
            self.projector.close()
            self.projector = None
        self.llm.close()
        self.closed = True


class LoadWatch:
    """A load as llama.cpp reports it, the fraction of the weights loaded as each tensor is read: passed on to
    `progress`, and watched for a stall. With no progress for `stall_s` seconds (counted from the start of the load,
    so a file that cannot even be opened counts), the next report stops the load (llama.cpp's progress callback
    answered False): `stalled` says so. What comes after the weights (the context) is not watched."""

    def __init__(
        self,
        progress: Callable[[float], None] | None = None,
        stall_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress, self.stall_s, self.clock = progress, stall_s, clock
        self.last = clock()
        self.stalled = False

    def __call__(self, fraction: float) -> bool:
        """llama.cpp's report: False stops the load."""
        now = self.clock()
        if self.stalled or (self.stall_s is not None and now - self.last > self.stall_s):
            self.stalled = True
            return False
        self.last = now
        if self.progress is not None:
            self.progress(fraction)
        return True


def load(
    params: LoadParams,
    log: LlamaLog,
    keep_terminal: bool = False,
    progress: Callable[[float], None] | None = None,
    stall_s: float | None = None,
    device: str = "this machine",
) -> LocalModel:
    """Load the model; a failure comes out as a LoadFailed naming the cause found in llama.cpp's log. `progress` is
    told the fraction loaded as each tensor is read; a load with no progress for `stall_s` seconds is stopped, and
    comes out as LoadTimedOut naming the file and `device` (where the weights go, as a person names it). With
    `params.parallel`, its own context stays token-sized: the batched engine (`engine.batched.open_batched`) makes
    the one that generates.

    Unless verbose, llama-cpp-python points file descriptors 1 and 2 at /dev/null while it loads; a full-screen
    UI drawing to them asks `keep_terminal` (llama.cpp's log still goes to `log`)."""
    from edgellm.engine import backends, compat

    started = time.perf_counter()
    watch = LoadWatch(progress, stall_s)
    try:
        # a warning said while llama-cpp-python silences fds 1 and 2 is said after
        with interrupt_after(), disk.held(), compat.templates_left_to_edgellm():
            log.install()
            backends.load_backends()  # a portable build's CPU variant; logged into `log` like the rest
            cpu_weights = OUTPUT_WEIGHTS if params.output_here and params.rpc_servers else None
            watched = watch if progress is not None or stall_s is not None else None
            with compat.model_params(cpu_weights, watched) as held:
                llm = _llama(params, log, keep_terminal)
            compat.keep_with(llm, held)  # llama.cpp keeps pointing at the overrides while the model lives
        llm.verbose = log.echo  # loaded: llama-cpp-python's own per-call prints only when asked for
    except (ValueError, RuntimeError, OSError) as error:
        log.flush()
        if watch.stalled:
            assert stall_s is not None
            said = reason("load_timed_out", path=str(params.path), device=device, seconds=stall_s)
            raise LoadTimedOut(said, params.path, device, stall_s) from None
        raise explain_load_failure(params.path, log, error) from None
    log.flush()
    model = LocalModel(llm, params, (time.perf_counter() - started) * 1000, log)
    if params.projector is not None and not params.vocab_only:
        model.projector = load_projector(params.projector, llm, params, log)
        model.load_ms = (time.perf_counter() - started) * 1000
    return model


def load_projector(path: Path, llm: Any, params: LoadParams, log: LlamaLog) -> Projector:
    """The vision projector beside a loaded model, on its GPU when any layer is offloaded; LoadFailed (freeing the
    model) when llama.cpp refuses it."""
    from edgellm.engine.vision import Projector

    try:
        with interrupt_after(), disk.held():
            return Projector(path, llm, use_gpu=params.n_gpu_layers != 0, n_threads=params.n_threads_batch)
    except LoadFailed:
        log.flush()
        llm.close()
        found = log.find("mtmd_init_from_file: error") or log.find("clip_init") or ""
        why = found.split("error: ", 1)[-1].strip() or "llama.cpp refused it"
        raise projector_mismatch(path, params.path, why) from None
    except BaseException:
        log.flush()
        llm.close()
        raise


def load_for_context(path: Path, n_threads: int, n_gpu_layers: int, log: LlamaLog) -> LocalModel:
    """The model's weights, with a token-sized context of its own (as the batched engine's host): for an engine that
    makes its own context beside them (embedding, scoring). LoadFailed naming the cause."""
    host = LoadParams(
        path,
        n_ctx=HOST_CONTEXT,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        n_gpu_layers=n_gpu_layers,
        flash_attn=False,
        kv="f16",
        seed=-1,
        parallel=1,  # load's own context stays token-sized; the caller's is made beside it
    )
    return load(host, log)


def _llama(params: LoadParams, log: LlamaLog, keep_terminal: bool) -> Any:
    import llama_cpp

    host = params.parallel > 0  # the batched engine makes its own context: this one stays token-sized
    return llama_cpp.Llama(
        model_path=str(params.path),
        n_ctx=HOST_CONTEXT if host else params.n_ctx,
        n_batch=HOST_BATCH if host else params.n_batch,
        n_ubatch=HOST_BATCH if host else params.n_batch,
        n_threads=params.n_threads,
        n_threads_batch=params.n_threads_batch,
        n_gpu_layers=params.n_gpu_layers,
        tensor_split=[float(layers) for layers in params.tensor_split] or None,
        vocab_only=params.vocab_only,
        flash_attn=params.flash_attn,
        type_k=KV_GGML_TYPES[params.kv],
        type_v=KV_GGML_TYPES[params.kv],
        seed=LLAMA_DEFAULT_SEED if params.seed < 0 else params.seed,
        use_mmap=params.use_mmap,
        use_mlock=params.use_mlock,
        swa_full=False,  # sliding-window layers keep only their window: what the planner budgets
        verbose=log.echo or keep_terminal,
    )


def explain_load_failure(path: Path, log: LlamaLog, error: Exception) -> LoadFailed:
    unknown = log.find("unknown model architecture")
    if unknown:
        found = re.search(r"unknown model architecture: '([^']*)'", unknown)
        arch = found.group(1) if found else "?"
        return LoadFailed(
            f"{path}: model architecture '{arch}' is not supported by this llama.cpp build; "
            f"use a model of a supported architecture or update edgellm",
            path,
            "architecture",
        )
    for needle in ("failed to allocate", "unable to allocate", "out of memory"):
        line = log.find(needle)
        if line:
            return LoadFailed(reason("load_out_of_memory", path=str(path), line=line), path, "memory")
    cause = log.find("error loading model") or log.find("failed to") or str(error)
    return LoadFailed(f"{path}: llama.cpp could not load the model ({cause}); see the log: {log.path}", path, "other")
