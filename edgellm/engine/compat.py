"""Every use of llama-cpp-python's internals, in one place: its private attributes, and the module globals edgellm
swaps while a model loads. Nothing else in edgellm touches them; the rest of the engine calls the functions here.

Imported only by the engine, when a model is loaded (it imports llama_cpp). The installed llama-cpp-python is checked
at import: these internals are those of one release, so another release is refused in one line with the command that
installs the right one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp._ggml
import llama_cpp.llama_chat_format
import numpy

from edgellm.errors import EdgellmError, EngineFailed, EngineUnavailable, GrammarDeadEnd, GrammarInvalid, LoadFailed
from edgellm.hw.buildconfig import LLAMA_CPP_PYTHON_VERSION


def check_version(installed: str, expected: str = LLAMA_CPP_PYTHON_VERSION) -> None:
    """EngineUnavailable unless `installed` is the llama-cpp-python release these internals are written for."""
    if installed != expected:
        raise EngineUnavailable(
            f"llama-cpp-python {installed} is installed, but edgellm is written for {expected} "
            f"(it uses that release's internals): run `python3 scripts/install.py` to install it",
            installed,
            expected,
        )


check_version(getattr(llama_cpp, "__version__", "unknown"))


# --- a loaded Llama's internals ------------------------------------------------------------------------------------


def end_of_generation(llm: Any) -> Callable[[int], bool]:
    """A test of whether a token ends generation (EOS, EOT, ...), for this model's vocabulary."""
    return functools.partial(llama_cpp.llama_vocab_is_eog, llm._model.vocab)


def set_abort_check(llm: Any, check: Callable[[], bool] | None) -> Any:
    """Let llama.cpp stop a decode of this model's context once `check()` is true; None removes the check. Returns
    what llama.cpp points at, to keep while the check is set."""
    callback = (
        llama_cpp.ggml_abort_callback()
        if check is None  # NULL: no check
        else llama_cpp.ggml_abort_callback(lambda data: check())
    )
    llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, None)
    return None if check is None else callback


def free_sampler(llm: Any) -> None:
    """Free the sampler llama-cpp-python made for a generation. It makes one per `generate()` and frees it only
    when Python's cycle collector runs (the sampler's cleanup refers to itself), so a server or a long chat would
    pile up about 3 MB of native memory per reply (the test model) between collections."""
    sampler = getattr(llm, "_sampler", None)
    if sampler is not None:
        llm._sampler = None
        sampler.close()


def keep_with(llm: Any, held: tuple[Any, ...]) -> None:
    """Keep `held` (what llama.cpp points at: overrides, callbacks) alive as long as the model."""
    llm._edgellm_params = held


# --- while a model loads --------------------------------------------------------------------------------------------

_PARAMS_SWAP = threading.Lock()


class _BufferOverride(ctypes.Structure):
    """struct llama_model_tensor_buft_override: the tensors whose name matches `pattern` go to buffer type `buft`."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@contextlib.contextmanager
def model_params(
    cpu_weights: str | None = None, progress: Callable[[float], bool | None] | None = None
) -> Iterator[tuple[Any, ...]]:
    """While a model is created inside, two model parameters llama-cpp-python leaves unset: `cpu_weights`, a pattern
    of weights kept in this CPU's memory (their matrix products run here), as llama.cpp's `--override-tensor
    PATTERN=CPU` does; and `progress`, called with the fraction loaded as each tensor is read (or sent to a worker):
    its False stops the load (llama.cpp then fails it as cancelled).
    llama-cpp-python builds the parameters and loads in one call, so its default parameters come back with these set
    for the while. Yields what llama.cpp points at: keep it as long as the model (`keep_with`)."""
    if cpu_weights is None and progress is None:
        yield ()
        return
    kept: list[Any] = []
    if cpu_weights is not None:
        kept.append(_cpu_overrides(cpu_weights))
    if progress is not None:

        def report(fraction: float, user_data: Any) -> bool:
            try:
                return progress(fraction) is not False
            except Exception:
                return True

        kept.append(llama_cpp.llama_progress_callback(report))
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def with_ours() -> Any:
        params = original()
        if cpu_weights is not None:
            params.tensor_buft_overrides = ctypes.addressof(kept[0])
        if progress is not None:
            params.progress_callback = kept[-1]
        return params

    with _PARAMS_SWAP:  # one patch of the module at a time
        module.llama_model_default_params = with_ours
        try:
            yield tuple(kept)
        finally:
            module.llama_model_default_params = original


def _cpu_overrides(pattern: str) -> Any:
    """The NULL-ended override list that keeps the weights matching `pattern` in the CPU's buffers."""
    from edgellm.engine import backends

    lib = backends.registry()
    if lib is None:
        raise LoadFailed(
            "this llama.cpp build's backend registry cannot be read, so the output layer cannot be kept "
            "here; reinstall with `python3 scripts/install.py`",
            Path(""),
            "other",
        )
    lib.ggml_backend_dev_by_type.argtypes, lib.ggml_backend_dev_by_type.restype = [ctypes.c_int], ctypes.c_void_p
    lib.ggml_backend_dev_buffer_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_buffer_type.restype = ctypes.c_void_p
    cpu = lib.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU: its buffer type is the one llama.cpp
    overrides = (_BufferOverride * 2)()  # compares with to use the CPU's (repacked) buffers; the second ends the list
    overrides[0].pattern, overrides[0].buft = pattern.encode(), lib.ggml_backend_dev_buffer_type(cpu)
    return overrides


class _UncompiledTemplate:
    """Stands in for llama-cpp-python's Jinja2ChatFormatter while a model loads: it compiles nothing."""

    def __init__(self, template: str, *args: object, **kwargs: object) -> None:
        self.template = template

    def to_chat_handler(self) -> Callable[..., object]:
        def refuse(*args: object, **kwargs: object) -> object:
            raise NotImplementedError("edgellm renders chat templates itself (edgellm.templates.sandbox)")

        return refuse


_TEMPLATE_SWAP = threading.Lock()


@contextlib.contextmanager
def templates_left_to_edgellm() -> Iterator[None]:
    """While a model loads: llama-cpp-python compiles every chat template in a GGUF as it loads it, in a Jinja
    sandbox without bounds, where `{{ 'x' * 10**10 }}` is folded into 10 GB at compile time. edgellm never uses
    those handlers (it renders in its own bounded sandbox), so during the load they are stand-ins that compile
    nothing; afterwards llama-cpp-python's own class is back."""
    module = llama_cpp.llama_chat_format  # the module llama_cpp.llama calls it through
    with _TEMPLATE_SWAP:
        original = module.Jinja2ChatFormatter
        # the library's class swapped for a stand-in on purpose (mypy refuses assigning to a class)
        module.Jinja2ChatFormatter = _UncompiledTemplate  # type: ignore[misc, assignment]
        try:
            yield
        finally:
            module.Jinja2ChatFormatter = original  # type: ignore[misc]  # the library's class back (as above)


# --- sampling one sequence: its chain, its grammar, its log-probabilities ------------------------------------------

LIKELY_TIERS = (512, 8192)  # how many of the most likely tokens the grammar is checked on before all of them
LOGPROB_WINDOW = 30.0  # logits this far below the largest add under e**-30 each to the softmax: left out of its sum
_TOKEN_DATA = numpy.dtype([("id", numpy.int32), ("logit", numpy.float32), ("p", numpy.float32)])


def sampler_chain(n_vocab: int, options: Any) -> Any:
    """The sampler chain `options` (engine.contract.GenerationOptions) ask for: the chain llama-cpp-python's `Llama`
    builds, so a sequence alone samples as `Llama.generate` does; None for plain greedy decoding (no penalties), which
    is the largest logit, read without a chain."""
    from edgellm.engine.contract import LLAMA_DEFAULT_SEED

    sampling = options.sampling
    if sampling.temp == 0 and (sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty) == (
        1.0,
        0.0,
        0.0,
    ):
        return None
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = functools.partial(llama_cpp.llama_sampler_chain_add, chain)
    add(
        llama_cpp.llama_sampler_init_penalties(
            n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty
        )
    )
    seed = LLAMA_DEFAULT_SEED if options.seed < 0 else options.seed
    if sampling.temp < 0:
        add(llama_cpp.llama_sampler_init_dist(seed))
    elif sampling.temp == 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        add(llama_cpp.llama_sampler_init_typical(1.0, 1))
        add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(sampling.temp))
        add(llama_cpp.llama_sampler_init_dist(seed))
    return chain


def grammar_sampler(llm: Any, grammar: Any) -> Any:
    """llama.cpp's grammar sampler for `grammar` (engine.contract.Grammar), lazy when it has triggers; GrammarInvalid
    naming what llama.cpp's parser found when it refuses it (the parser writes that straight to stderr: it is caught
    there and said in the error, once)."""
    vocab, text = llm._model.vocab, grammar.gbnf.encode()
    with _stderr_caught() as said:
        if grammar.lazy:
            patterns = (ctypes.c_char_p * max(1, len(grammar.trigger_patterns)))(
                *[pattern.encode() for pattern in grammar.trigger_patterns]
            )
            tokens = (llama_cpp.llama_token * max(1, len(grammar.trigger_tokens)))(*grammar.trigger_tokens)
            found = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, text, b"root", patterns, len(grammar.trigger_patterns), tokens, len(grammar.trigger_tokens)
            )
        else:
            found = llama_cpp.llama_sampler_init_grammar(vocab, text, b"root")
    source = {line.strip() for line in grammar.gbnf.splitlines()}  # the parser writes its error and the grammar
    parser = [line for line in said if "error parsing grammar" in line or line.strip() in source]
    sys.stderr.write("".join(line + "\n" for line in said if line not in parser))  # others' lines meanwhile
    if not found:
        reason = next((line for line in parser if "error parsing grammar" in line), "")
        reason = reason.split("error parsing grammar:", 1)[-1].strip() or "see llama.cpp's log"
        raise GrammarInvalid(f"llama.cpp could not parse the grammar ({reason}): correct it")
    return found


_STDERR_SWAP = threading.Lock()


@contextlib.contextmanager
def _stderr_caught() -> Iterator[list[str]]:
    """While inside, what is written to file descriptor 2 (by C code too) is kept; its lines are in the list after."""
    said: list[str] = []
    with _STDERR_SWAP, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            said += [line for line in caught.read().decode(errors="replace").splitlines() if line.strip()]


class TokenSampler:
    """How one sequence picks its tokens: its sampler chain (or the largest logit), its grammar, and the
    log-probabilities it records (`found`), from the logits row of each step.

    With a grammar, as llama.cpp's own tools do: the token is sampled as if free, then checked alone against the
    grammar; only when it is refused is the whole vocabulary filtered and the token sampled again. A grammar that
    refuses every token raises GrammarDeadEnd before anything is accepted (llama.cpp would throw an exception that
    stops the process); an end-of-generation token is never fed to the grammar (it only ends the reply)."""

    def __init__(self, llm: Any, options: Any, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.chain = sampler_chain(n_vocab, options)
        try:
            self.grammar = grammar_sampler(llm, options.grammar) if options.grammar is not None else None
        except BaseException:
            if self.chain is not None:
                llama_cpp.llama_sampler_free(self.chain)
            raise
        self.top_logprobs: int | None = options.logprobs
        self.found: list[Any] = []  # engine.contract.TokenLogprob, one per sampled token
        self._is_eog = end_of_generation(llm)
        sampling = options.sampling
        self.sampling = sampling
        neutral = (sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty) == (1.0, 0.0, 0.0)
        # the most likely tokens give a refused token's replacement when the chain keeps the best few: greedy, or
        # top-k sampling (penalties change the order: then the whole vocabulary is filtered)
        self._likely_suffice = self.chain is None or (neutral and sampling.temp > 0 and sampling.top_k > 0)
        self._candidates: Any = None  # numpy llama_token_data, filled from a logits row when the grammar refuses
        self._one = (llama_cpp.llama_token_data * 1)()  # a single token checked against the grammar

    def sample(self, ctx: Any, index: int) -> int:
        row = numpy.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        if self.grammar is None:
            chain = self.chain
            token = int(row.argmax()) if chain is None else int(llama_cpp.llama_sampler_sample(chain, ctx, index))
        else:
            token = self._constrained(row)
        if self.top_logprobs is not None:
            self.found.append(_logprob(row, token, self.top_logprobs))
        return token

    def _constrained(self, row: Any) -> int:
        if self.chain is None:
            token = int(row.argmax())
        else:
            token = self._pick(row, self.chain)
        if not self._allows(token):
            found = self._pick_among_likely(row) if self._likely_suffice else None
            token = found if found is not None else self._pick(row, self.chain, filtered=True)
        if not self._is_eog(token):
            llama_cpp.llama_sampler_accept(self.grammar, token)
        if self.chain is not None:
            llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def _allows(self, token: int) -> bool:
        self._one[0] = llama_cpp.llama_token_data(token, 1.0, 0.0)
        llama_cpp.llama_sampler_apply(
            self.grammar, ctypes.byref(llama_cpp.llama_token_data_array(self._one, 1, -1, False))
        )
        return bool(self._one[0].logit != -numpy.inf)

    def _pick_among_likely(self, row: Any) -> int | None:
        """A refused token's replacement, found among the most likely tokens: the grammar checked on the top
        LIKELY_TIERS[i] tokens. Greedy takes the first it admits (what filtering everything gives). The chain takes
        the `top_k` first admitted, or those admitted in the tier when min-p cuts everything below it (a token below
        is less likely than min_p × the best admitted one: only top-p's sum can differ) — what filtering everything
        gives; in the last tier, whatever it admits (a token outside the 8192 most likely is left out when one inside
        is admitted: llama.cpp's own check-then-filter would take it with a tiny probability). None when no tier
        admits a token: the whole vocabulary is filtered then. Filtering 262k tokens costs 100-300 ms (llama.cpp's
        grammar checks each token's text), a tier of 512 about 1 ms, of 8192 about 5."""
        sampling = self.sampling
        for size in LIKELY_TIERS:
            if size * 4 > self.n_vocab:
                return None
            likely = numpy.argpartition(row, -size)[-size:]
            likely = likely[numpy.argsort(-row[likely], kind="stable")]
            candidates = numpy.empty(size, _TOKEN_DATA)
            candidates["id"], candidates["logit"], candidates["p"] = likely, row[likely], 0.0
            array = llama_cpp.llama_token_data_array(
                candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), size, -1, False
            )
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
            admitted = candidates[numpy.isfinite(candidates["logit"])]
            if not len(admitted):
                continue
            if self.chain is None:
                return int(admitted["id"][0])
            below = float(row[likely[-1]])
            cut_by_min_p = sampling.min_p > 0 and below < float(admitted["logit"][0]) + math.log(sampling.min_p)
            if len(admitted) >= sampling.top_k or cut_by_min_p or size == LIKELY_TIERS[-1]:
                kept = numpy.ascontiguousarray(admitted[: sampling.top_k])
                array = llama_cpp.llama_token_data_array(
                    kept.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), len(kept), -1, False
                )
                llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
                return int(array.data[array.selected].id)
        return None

    def _pick(self, row: Any, chain: Any, filtered: bool = False) -> int:
        """The token `chain` picks from `row` (None: the largest), after the grammar when `filtered`; accepts none."""
        if self._candidates is None:
            self._candidates = numpy.empty(self.n_vocab, _TOKEN_DATA)
            self._ids = numpy.arange(self.n_vocab, dtype=numpy.int32)
        candidates = self._candidates
        candidates["id"], candidates["logit"], candidates["p"] = self._ids, row, 0.0
        array = llama_cpp.llama_token_data_array(
            candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), self.n_vocab, -1, False
        )
        if filtered:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
            if not numpy.isfinite(candidates["logit"][: array.size]).any():
                raise GrammarDeadEnd(
                    "the grammar admits no token here: the schema or grammar cannot be completed; change it"
                )
        if chain is None:
            logits = candidates["logit"][: array.size]
            return int(candidates["id"][int(logits.argmax())])
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))  # may sort the data elsewhere: read it there
        return int(array.data[array.selected].id)

    def close(self) -> None:
        for sampler in (self.chain, self.grammar):
            if sampler is not None:
                llama_cpp.llama_sampler_free(sampler)
        self.chain = self.grammar = None


def _logprob(row: Any, token: int, top: int) -> Any:
    """`token`'s log-probability in `row` (a log-softmax of the raw logits) and the `top` most likely tokens'."""
    from edgellm.engine.contract import TokenLogprob

    largest = float(row.max())
    near = row[row > largest - LOGPROB_WINDOW]
    total = largest + float(numpy.log(numpy.exp(near - largest).sum(dtype=numpy.float64)))
    best: list[tuple[int, float]] = []
    if top > 0:
        found = numpy.flatnonzero(row >= largest - 8.0)
        if len(found) < top:
            found = numpy.argpartition(row, -top)[-top:]
        found = found[numpy.argsort(-row[found], kind="stable")[:top]]
        best = [(int(i), float(row[i]) - total) for i in found]
    return TokenLogprob(token, float(row[token]) - total, tuple(best))


def use_sampler(llm: Any, sampler: TokenSampler | None) -> None:
    """From now on `llm.generate` picks each token with `sampler` (a grammar, log-probabilities) instead of the chain
    llama-cpp-python builds (its `sample`, for this instance, reads the last logits row); None: its own again."""
    if sampler is None:
        llm.__dict__.pop("sample", None)
    else:
        llm.sample = lambda *args, **kwargs: sampler.sample(llm._ctx.ctx, -1)


def is_recurrent(llm: Any) -> bool:
    """Whether the model keeps a recurrent state (a recurrent or hybrid model): its KV cache cannot drop a tail."""
    model = llm._model.model
    return bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))


def vocabulary_size(llm: Any) -> int:
    return int(llama_cpp.llama_vocab_n_tokens(llm._model.vocab))


# --- a loaded Llama's own sequence, driven token by token: the speculative loop's ----------------------------------


def keep_prefix(llm: Any, count: int) -> int:
    """Keep the first `count` tokens of a Llama's own context, drop the rest; how many are kept (0 when llama.cpp
    cannot cut)."""
    if count < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, count, -1):
        llm._ctx.kv_cache_clear()
        count = 0
    llm.n_tokens = min(count, llm.n_tokens)
    llm._requires_eval = True  # the context's logits are no longer those of its last token
    return int(llm.n_tokens)


def record_held(llm: Any, start: int, tokens: list[int]) -> None:
    """Record that the Llama's KV cache holds `tokens` from position `start` on (evaluated outside llama-cpp-python:
    an image's embeddings), so its next `generate` reuses them as a common prefix."""
    llm.input_ids[start : start + len(tokens)] = tokens
    llm.n_tokens = start + len(tokens)
    llm._requires_eval = True


def context_of(llm: Any) -> Any:
    """The llama_context a Llama decodes in."""
    return llm._ctx.ctx


class OwnSequence:
    """The one sequence of a llama-cpp-python Llama's own context, as engine.speculative drives it: batches decoded
    at its end (the logits of every row when asked), cut back to a prefix, and the Llama's own record of what its KV
    cache holds kept in step, so that its next `generate` reuses the common prefix as always."""

    def __init__(self, llm: Any, most_rows: int) -> None:
        self.llm = llm
        self.ctx = llm._ctx.ctx
        self.n_batch = int(llm.n_batch)
        self.n_vocab = vocabulary_size(llm)
        self._batch: Any = llama_cpp.llama_batch_init(max(self.n_batch, most_rows), 0, 1)

    @property
    def n_tokens(self) -> int:
        return int(self.llm.n_tokens)

    def cached(self) -> list[int]:
        """The tokens its KV cache holds, in order."""
        held: list[int] = self.llm.input_ids[: self.llm.n_tokens].tolist()
        return held

    def keep(self, count: int) -> int:
        """Keep the first `count` tokens, drop the rest; returns how many are kept (0 when llama.cpp cannot cut)."""
        return keep_prefix(self.llm, count)

    def decode(self, tokens: list[int], *, every_row: bool = False) -> None:
        """Decode `tokens` after those held, in micro-batches of n_batch; the logits of the last row are kept, of every
        row with `every_row` (then the tokens go in one batch). RuntimeError when llama.cpp stops (its abort check)
        or fails, as llama-cpp-python's own decode raises."""
        llm, batch = self.llm, self._batch
        step = len(tokens) if every_row else self.n_batch
        for start in range(0, len(tokens), max(1, step)):
            part = tokens[start : start + step]
            past = int(llm.n_tokens)
            for index, token in enumerate(part):
                batch.token[index], batch.pos[index] = token, past + index
                batch.n_seq_id[index], batch.seq_id[index][0] = 1, 0
                batch.logits[index] = every_row or index == len(part) - 1
            batch.n_tokens = len(part)
            status = int(llama_cpp.llama_decode(self.ctx, batch))
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            llm.input_ids[past : past + len(part)] = part
            llm.n_tokens = past + len(part)
        llm._requires_eval = True

    def logits(self, index: int) -> Any:
        """The logits row of batch row `index` of the last decode (-1: its last), as a NumPy view."""
        return numpy.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None


# --- a second context on a loaded model's weights: the batched engine's ------------------------------------------


PENALTY_LAST_N = 64  # tokens the repetition penalties look back at: llama-cpp-python's `last_n_tokens_size`


def sliding_window(llm: Any) -> int:
    """The model's sliding attention window in tokens; 0 when it has none."""
    return max(0, int(llama_cpp.llama_model_n_swa(llm._model.model)))


class SequenceContext:
    """A llama.cpp context on `llm`'s weights holding `n_seq_max` sequences in `n_ctx` KV cells, and the calls the
    batched engine makes on it (one thread at a time: the stepper's). `unified`: one pool any sequence may grow into;
    else each sequence has a stream of n_ctx / n_seq_max cells of its own, whose attention reads only that stream
    (llama.cpp's "high-throughput mode": with 8 sequences of 512 on the test model, 1.2-1.6 times the aggregate decode
    of a unified pool, whose attention reads every cell in use)."""

    def __init__(
        self,
        llm: Any,
        *,
        n_ctx: int,
        n_seq_max: int,
        n_batch: int,
        threads: int,
        threads_batch: int,
        flash_attn: bool,
        type_kv: int,
        unified: bool,
    ) -> None:
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max, params.kv_unified = n_ctx, n_seq_max, unified
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads, params.n_threads_batch = threads, threads_batch
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.type_k = params.type_v = type_kv
        params.swa_full = False  # as the single-sequence context: sliding-window layers keep only their window
        params.no_perf = True
        self._llm = llm
        self._context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.ctx = self._context.ctx
        self.memory = self._context.memory
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(llm._model.vocab))

    def decode(self, batch: Any) -> int:
        """llama_decode's status: 0 done, 1 no room in the KV pool, 2 aborted, < 0 an error."""
        return int(llama_cpp.llama_decode(self.ctx, batch))

    def sampler(self, options: Any) -> TokenSampler:
        """The sampler of one sequence with `options` (engine.contract.GenerationOptions)."""
        return TokenSampler(self._llm, options, self.n_vocab)

    def sample(self, sampler: TokenSampler, index: int) -> int:
        """Sample (and accept) the token at batch index `index`."""
        return sampler.sample(self.ctx, index)

    @staticmethod
    def free_sampler(sampler: TokenSampler) -> None:
        sampler.close()

    def forget(self, sequence: int) -> None:
        """Drop every cell of `sequence`."""
        llama_cpp.llama_memory_seq_rm(self.memory, sequence, -1, -1)

    def cut(self, sequence: int, keep: int) -> bool:
        """Drop the cells of `sequence` from position `keep` on (a rejected draft's rows); False when llama.cpp
        cannot (then the sequence's cells are not what its slot says: forget them)."""
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, sequence, keep, -1))

    def keep_prefix(self, sequence: int, keep: int, n_swa: int) -> int:
        """Keep the first `keep` cells of `sequence` and drop the rest; returns how many were kept. Nothing is kept
        when the cells cannot be cut there (a recurrent model), or when a sliding-window layer no longer holds the
        window the next token attends to (its older cells are gone), as llama-server decides."""
        if keep > 0 and n_swa > 0:
            oldest = int(llama_cpp.llama_memory_seq_pos_min(self.memory, sequence))
            if oldest > max(0, keep - n_swa):
                keep = 0
        if keep > 0 and not llama_cpp.llama_memory_seq_rm(self.memory, sequence, keep, -1):
            keep = 0
        if keep == 0:
            self.forget(sequence)
        return keep

    def close(self) -> None:
        self._context.close()


# --- a context that embeds, on a loaded model's weights: engine.embed's ---------------------------------------------


def embedding_width(llm: Any) -> int:
    """The floats in one of the model's embeddings (its output width: n_embd for every text model)."""
    return int(llama_cpp.llama_model_n_embd_out(llm._model.model))


def adds_start_token(llm: Any) -> bool:
    """Whether tokenizing with special tokens begins each text with BOS."""
    return bool(llama_cpp.llama_vocab_get_add_bos(llm._model.vocab))


def adds_end_token(llm: Any) -> bool:
    """Whether tokenizing with special tokens ends each text with one (EOS or SEP: a BERT's [SEP])."""
    vocab = llm._model.vocab
    return bool(llama_cpp.llama_vocab_get_add_eos(vocab) or llama_cpp.llama_vocab_get_add_sep(vocab))


def max_sequences() -> int:
    """The most sequences one llama.cpp context holds (LLAMA_MAX_SEQ)."""
    return int(llama_cpp.llama_max_parallel_sequences())


class EmbeddingContext:
    """A llama.cpp context on `llm`'s weights in embedding mode: each call decodes several token sequences in one
    llama_decode, one sequence id each, and reads one pooled vector per sequence (`pooling`, a llama_pooling_type).
    Its micro-batch is as large as its batch (`n_ctx` tokens), so that a sequence is never split across two: llama.cpp
    pools each micro-batch on its own. One KV pool (unified) that any sequence may fill, emptied before each call. One
    thread at a time (engine.embed's lock)."""

    def __init__(self, llm: Any, *, n_ctx: int, n_seq_max: int, pooling: int, threads: int) -> None:
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_seq_max, params.kv_unified = n_seq_max, True
        params.embeddings, params.pooling_type = True, pooling
        params.n_threads = params.n_threads_batch = threads
        params.swa_full = False
        params.no_perf = True
        self.n_ctx, self.n_seq_max = n_ctx, n_seq_max
        self.width = embedding_width(llm)
        self._context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch: Any = llama_cpp.llama_batch_init(n_ctx, 0, 1)

    def embed(self, sequences: list[list[int]]) -> list[list[float]]:
        """One pooled vector per sequence, from one llama_decode; the sequences hold n_ctx tokens at most together.
        EngineFailed when llama.cpp fails."""

        batch, size = self._batch, sum(len(tokens) for tokens in sequences)
        if size > self.n_ctx or len(sequences) > self.n_seq_max:
            raise ValueError(f"{len(sequences)} sequences of {size} tokens do not fit one batch of {self.n_ctx}")
        index = 0
        for sequence, tokens in enumerate(sequences):
            for position, token in enumerate(tokens):
                batch.token[index], batch.pos[index] = token, position
                batch.n_seq_id[index], batch.seq_id[index][0] = 1, sequence
                batch.logits[index] = True  # embedding mode outputs every token: said, so llama.cpp says nothing
                index += 1
        batch.n_tokens = index
        if self._context.memory is not None:  # a non-causal encoder (a BERT) keeps no KV cells
            llama_cpp.llama_memory_clear(self._context.memory, True)
        status = int(llama_cpp.llama_decode(self._context.ctx, batch))
        if status != 0:
            raise EngineFailed(
                f"llama.cpp could not compute the embeddings (llama_decode returned {status}); see llama.cpp's log"
            )
        vectors = []
        for sequence in range(len(sequences)):
            pooled = llama_cpp.llama_get_embeddings_seq(self._context.ctx, sequence)
            if not pooled:
                raise EngineFailed(f"llama.cpp computed no embedding for sequence {sequence}; see llama.cpp's log")
            vectors.append(numpy.ctypeslib.as_array(pooled, shape=(self.width,)).tolist())
        return vectors

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._context.close()


# --- a context that scores a text, on a loaded model's weights: engine.scoring's -------------------------------------


class ScoringContext:
    """A llama.cpp context on `llm`'s weights that reads one chunk of `n_ctx` tokens at a time, from an empty KV
    cache, in micro-batches of `n_batch` tokens, asking for the logits of the rows from `first` on only: the logits
    buffer holds n_batch rows, never the chunk's (Gemma 3's 262k-token vocabulary: 1 MiB a row)."""

    def __init__(self, llm: Any, *, n_ctx: int, n_batch: int, threads: int) -> None:
        from llama_cpp import _internals

        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = n_ctx, 1
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = threads
        params.swa_full = False
        params.no_perf = True
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.n_vocab = vocabulary_size(llm)
        self._context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch: Any = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def read(self, tokens: list[int], first: int) -> Iterator[Any]:
        """Decode `tokens` (one chunk) from position 0; yields, after each micro-batch that has any, the logits of its
        rows at positions ≥ `first`, in order, as a NumPy view (rows × n_vocab) valid until the next one.
        RuntimeError when llama.cpp fails."""
        ctx, batch = self._context.ctx, self._batch
        llama_cpp.llama_memory_clear(self._context.memory, True)
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            for index, token in enumerate(part):
                batch.token[index], batch.pos[index] = token, start + index
                batch.n_seq_id[index], batch.seq_id[index][0] = 1, 0
                batch.logits[index] = start + index >= first
            batch.n_tokens = len(part)
            status = int(llama_cpp.llama_decode(ctx, batch))
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            rows = sum(1 for index in range(len(part)) if start + index >= first)
            if rows:
                # the rows asked for, in batch order (llama_get_logits puts back any order llama.cpp computed them in)
                yield numpy.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(rows, self.n_vocab))

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._context.close()


# --- collecting an importance matrix: a model and context with an eval callback (convert.imatrix's) ---------------
# What collecting an importance matrix needs of llama.cpp beyond llama-cpp-python's `Llama`: a model and context
# made with an eval callback (`llama_context_params.cb_eval`, which the `Llama()` constructor does not take), a ctypes
# mirror of `struct ggml_tensor`, and three ggml functions llama-cpp-python does not bind, declared here by hand on its
# private `llama_cpp._ggml.libggml`. The rest of edgellm (convert/imatrix.py) sees graph nodes as `Node`s and their
# activations as NumPy arrays.
#
# Imported only in the child process that collects the matrix (it imports llama_cpp). The mirror is that of the ggml
# vendored in llama-cpp-python 0.3.36 (ggml/include/ggml.h); the release check of edgellm.engine.compat refuses
# another release, and `check_layout` compares the mirror's size and name offset with what ggml itself reports.

GGML_MAX_DIMS = 4
GGML_MAX_OP_PARAMS = 64  # bytes
GGML_MAX_SRC = 10
GGML_MAX_NAME = 64
GGML_OBJECT_SIZE = 32  # struct ggml_object: offs, size, next, type, padding[4] (ggml/src/ggml.c)
GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` (ggml/include/ggml.h), field for field."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


def _ggml() -> Any:
    """llama-cpp-python's handle on libggml, with the functions used here declared."""
    lib = llama_cpp._ggml.libggml
    if not getattr(lib, "_edgellm_declared", False):
        lib.ggml_op_name.argtypes, lib.ggml_op_name.restype = [ctypes.c_int], ctypes.c_char_p
        lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
        lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_tensor_overhead.argtypes, lib.ggml_tensor_overhead.restype = [], ctypes.c_size_t
        lib.ggml_get_name.argtypes, lib.ggml_get_name.restype = [ctypes.c_void_p], ctypes.c_void_p
        lib._edgellm_declared = True
    return lib


def check_layout() -> None:
    """EngineFailed unless the mirror has ggml's size (ggml_tensor_overhead less the object header)."""
    expected = _ggml().ggml_tensor_overhead() - GGML_OBJECT_SIZE
    if ctypes.sizeof(GgmlTensor) != expected:
        raise EngineFailed(
            f"this llama.cpp's ggml_tensor is {expected} bytes where edgellm expects {ctypes.sizeof(GgmlTensor)}: "
            "it cannot collect an importance matrix with it"
        )


def op_numbers(*names: str) -> dict[str, int]:
    """The enum ggml_op value of each op name ("MUL_MAT", "MUL_MAT_ID"), looked up through ggml_op_name from the
    first op on. The lookup stops once every name is found: ggml_op_name has no bound check, so it must never be
    asked past the ops that exist, and the names asked for are among them."""
    lib, wanted, found = _ggml(), set(names), {}
    for number in range(1024):
        name = lib.ggml_op_name(number)
        if name is not None and name.decode() in wanted:
            found[name.decode()] = number
            if len(found) == len(wanted):
                return found
    raise EngineFailed(f"this llama.cpp has no ggml op {', '.join(sorted(wanted - set(found)))}")


class Node:
    """A graph node as the eval callback sees it: its op, its sources, and its data read as NumPy arrays."""

    __slots__ = ("address", "tensor")

    def __init__(self, address: int) -> None:
        self.address = address
        self.tensor = GgmlTensor.from_address(address)

    @property
    def op(self) -> int:
        return int(self.tensor.op)

    @property
    def name(self) -> str:
        return bytes(self.tensor.name).split(b"\0", 1)[0].decode(errors="replace")

    @property
    def type(self) -> int:
        return int(self.tensor.type)

    @property
    def ne(self) -> tuple[int, int, int, int]:
        ne = self.tensor.ne
        return (int(ne[0]), int(ne[1]), int(ne[2]), int(ne[3]))

    def src(self, index: int) -> Node | None:
        address = self.tensor.src[index]
        return Node(address) if address else None

    def name_in_place(self) -> bool:
        """Whether ggml finds this node's name where the mirror does (a check of the layout on a live tensor)."""
        return bool(_ggml().ggml_get_name(self.address) == self.address + GgmlTensor.name.offset)

    def array(self, dtype: Any) -> numpy.ndarray:
        """The node's data as an array of shape (ne3, ne2, ne1, ne0), strided as ggml lays it out; read in place
        when it lives in host memory, else copied from the device first."""
        t = self.tensor
        size = numpy.dtype(dtype).itemsize
        if t.nb[0] != size:
            raise EngineFailed(f"{self.name}: elements of {t.nb[0]} bytes where {size} were expected")
        ne, nb = self.ne, [int(t.nb[i]) for i in range(GGML_MAX_DIMS)]
        nbytes = size + sum((ne[i] - 1) * nb[i] for i in range(GGML_MAX_DIMS))
        shape, strides = tuple(reversed(ne)), tuple(reversed(nb))
        if t.buffer and not _ggml().ggml_backend_buffer_is_host(t.buffer):
            copy = numpy.empty(nbytes, dtype=numpy.uint8)
            _ggml().ggml_backend_tensor_get(self.address, copy.ctypes.data, 0, nbytes)
            buffer: Any = copy
        elif not t.data:
            raise EngineFailed(f"{self.name}: no data to read")
        else:
            buffer = (ctypes.c_char * nbytes).from_address(t.data)
        array: numpy.ndarray = numpy.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)
        return array


class EvalModel:
    """A model and a context whose graph nodes pass through `callback(node, ask)` (llama.cpp's cb_eval: asked
    first whether a node's data is wanted, then called again once it is computed when the answer was yes). Every
    token of a batch is an output, so every layer sees the whole batch (llama.cpp computes the last layer only for
    the outputs otherwise)."""

    def __init__(self, model: Any, context: Any, batch: Any, n_batch: int, keep: tuple[Any, ...]) -> None:
        self.model, self.context, self.batch, self.n_batch, self._keep = model, context, batch, n_batch, keep
        self.vocab = llama_cpp.llama_model_get_vocab(model)

    @property
    def n_vocab(self) -> int:
        return int(llama_cpp.llama_vocab_n_tokens(self.vocab))

    @property
    def bos(self) -> int | None:
        """The token a sequence starts with, when the model adds one."""
        return int(llama_cpp.llama_vocab_bos(self.vocab)) if llama_cpp.llama_vocab_get_add_bos(self.vocab) else None

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        room = len(data) + 16
        tokens = (llama_cpp.llama_token * room)()
        count = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, room, True, False)
        if count < 0:
            raise EngineFailed(f"llama.cpp could not tokenize the text ({-count} tokens needed)")
        return list(tokens[:count])

    def clear(self) -> None:
        """Forget every position: the next batch starts a sequence afresh."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.context), True)

    def decode(self, tokens: list[int], first_position: int) -> None:
        """Decode `tokens` (at most n_batch) at positions from `first_position`, each one an output."""
        batch = self.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = first_position + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        code = llama_cpp.llama_decode(self.context, batch)
        if code != 0:
            raise EngineFailed(f"llama.cpp could not decode a batch (llama_decode returned {code})")


@contextlib.contextmanager
def eval_model(
    path: Path,
    n_ctx: int,
    n_batch: int,
    threads: int,
    callback: Callable[[Node, bool], bool],
    ops: frozenset[int] | None = None,
) -> Iterator[EvalModel]:
    """`path` loaded on the CPU with a context of `n_ctx` whose nodes pass through `callback` (those of `ops` only,
    when named: the others are answered no without building a Node); batches and micro-batches of `n_batch` tokens.
    A callback that raises answers no (and its error is lost): catch inside."""
    check_layout()
    op_offset = GgmlTensor.op.offset

    def on_node(address: int, ask: bool, user_data: Any) -> bool:
        if ops is not None and ctypes.c_int.from_address(address + op_offset).value not in ops:
            return False
        return callback(Node(address), ask)

    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
    if not model:
        raise EdgellmError(f"llama.cpp could not load {path}")
    context = batch = None
    trampoline = llama_cpp.ggml_backend_sched_eval_callback(on_node)
    try:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = n_ctx, n_batch, n_batch, 1
        params.n_threads = params.n_threads_batch = threads
        params.cb_eval, params.cb_eval_user_data = trampoline, None
        params.no_perf = True
        context = llama_cpp.llama_init_from_model(model, params)
        if not context:
            raise EdgellmError(f"llama.cpp could not make a {n_ctx}-token context for {path}")
        batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        yield EvalModel(model, context, batch, n_batch, (trampoline,))
    finally:
        if batch is not None:
            llama_cpp.llama_batch_free(batch)
        if context is not None:
            llama_cpp.llama_free(context)
        llama_cpp.llama_model_free(model)


def silence_log(keep: Callable[[str], None]) -> Any:
    """Send llama.cpp's log to `keep` (line pieces) from now on; returns the callback to keep referenced."""

    def write(level: int, text: bytes, user_data: Any) -> None:
        keep(text.decode(errors="replace"))

    forward = llama_cpp.llama_log_callback(write)
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    return forward
