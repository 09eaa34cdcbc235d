"""Continuous batching: several generations decoding together on one model, the engine contract's `Model` whose
`generation()` may be called again while earlier generations run.

One llama.cpp context with `slots` sequences sits beside the loaded `Llama` (which keeps the weights, the vocabulary and
a token-sized context of its own; the weights are shared, not copied). Each sequence has a KV stream of its own, n_ctx
cells; a pool smaller than the slots' contexts (`LoadParams.kv_pool`) is one unified pool they share. One thread, the
stepper, owns that context. Each step: every generating sequence adds its last sampled token; prompts of new requests
fill the rest of the micro-batch in chunks (a long prompt delays the running streams by one chunk at most); one
`llama_decode`; each sequence sampled by its own sampler chain at its batch index. Requests join, stop and leave between
steps only, each alone: a cancelled or finished sequence never disturbs the others.

Admission: a request is admitted when a slot is idle and its prompt plus the tokens it may write fit the free cells
(with a stream per sequence they always do; in a shared pool idle slots' cached prompts are dropped, least recently
used first, to make room); otherwise it waits, in order. A full pool never aborts a running sequence: the cells each
one may still need are reserved when it starts.

Prompt cache: a finished sequence's cells stay as its slot's cache; a new request goes to the idle slot holding its
longest common prefix (`_choose`), and only the rest of its prompt is evaluated.

Drafting (options.speculation other than off): a sequence decoding alone, with no other running and no prompt to
evaluate, drafts by n-gram lookup over its prompt and reply (engine.drafting) and verifies the draft in the step's
batch, its rows sampled in turn by its own sampler and the rows not kept cut from its cells, as engine.speculative
does for a model alone; while others run, each adds one token a step as always. The draft length adapts and drafting
stops for the reply once its rounds yield fewer tokens per second than its plain steps.

The consumer's side (`BatchedGeneration.__iter__`, on the caller's thread) reads sampled tokens from its sequence's
mailbox and turns them into text, so the stepper never waits for a reader.
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import (
    KV_GGML_TYPES,
    GenerationOptions,
    GenerationStats,
    LoadParams,
    SlotState,
    SpeculationStats,
    StopReason,
    TokenLogprob,
    text_only,
)
from edgellm.engine.drafting import Controller, NgramDrafter
from edgellm.engine.generate import common_prefix
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LocalModel, explain_load_failure, load
from edgellm.engine.loop_guard import LoopGuard
from edgellm.engine.vision import is_image_token, resume_point, text_run
from edgellm.errors import EdgellmError, EmptyPrompt, EngineFailed

if TYPE_CHECKING:
    from edgellm.media.images import Image

SIMILAR_PREFIX = 0.5  # an idle slot's cache is reused when it covers this share of a new prompt (else the LRU slot)


def open_batched(
    params: LoadParams,
    log: LlamaLog,
    keep_terminal: bool = False,
    progress: Callable[[float], None] | None = None,
    stall_s: float | None = None,
    device: str = "this machine",
) -> BatchedModel:
    """Load the model (`engine.local.load`, which reports its `progress` and stops a load stalled for `stall_s`
    seconds), then the batched engine's context on its weights: `params.parallel` sequences in a pool of
    `params.kv_cells` cells, each up to `params.n_ctx`."""
    from edgellm.engine import compat

    slots = max(1, params.parallel)
    local = load(params, log, keep_terminal, progress, stall_s, device)
    started = time.perf_counter()
    try:
        context = compat.SequenceContext(
            local.llm,
            n_ctx=params.kv_cells,
            n_seq_max=slots,
            n_batch=max(params.n_batch, slots),
            threads=params.n_threads,
            threads_batch=params.n_threads_batch,
            flash_attn=params.flash_attn,
            type_kv=KV_GGML_TYPES[params.kv],
            unified=params.kv_cells < params.n_ctx * slots,  # a pool smaller than the slots' contexts: shared
        )
    except (ValueError, RuntimeError, OSError) as error:
        local.close()
        log.flush()
        raise explain_load_failure(params.path, log, error) from None
    except BaseException:
        local.close()
        raise
    local.load_ms += (time.perf_counter() - started) * 1000
    return BatchedModel(local, slots, params.n_ctx, params.kv_cells, context, max(params.n_batch, slots))


class PoolTooSmall(EdgellmError):
    """A request needs more KV cells than the whole pool holds."""


@dataclass(frozen=True)
class _End:
    """The last message in a sequence's mailbox."""

    reason: StopReason
    error: BaseException | None = None


@dataclass(eq=False)
class _Sequence:
    """One request in the stepper's hands."""

    prompt: list[int]
    options: GenerationOptions
    cancel: threading.Event
    limit: int  # tokens it may sample
    limited_by_context: bool
    mailbox: queue.SimpleQueue[int | _End] = field(default_factory=queue.SimpleQueue)
    submitted: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0
    first_at: float = 0.0
    last_at: float = 0.0
    slot: int = -1
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    chunk: int = 0  # how many of them this step evaluates
    evaluated_prompt: int = 0  # prompt tokens evaluated: the rest came from its slot's cache
    n_past: int = 0  # tokens the slot's cells hold
    sampled: int = 0
    last_token: int = -1
    batch_index: int = -1  # where its output sits in this step's batch; -1: none
    sampler: Any = None  # compat.TokenSampler
    logprobs: list[TokenLogprob] = field(default_factory=list)  # per sampled token, when the options ask
    guard: LoopGuard | None = None
    left: bool = False  # its reader stopped reading
    drafter: NgramDrafter | None = None  # n-gram lookup, when its options ask for drafting
    controller: Controller | None = None
    drafted: list[int] = field(default_factory=list)  # this step's draft, after its last token in the batch
    ending: _End | None = None  # how it ends, once a sampled token ended it (said after its round is counted)
    alone: bool = False  # this step decodes it alone: its time is its own
    with_images: bool = False  # its prompt holds images (evaluated by the model's projector; never drafted)
    image_tokens: int = 0  # positions of the images evaluated for its prompt
    image_ms: float | None = None  # their encoding and decoding (None: no image evaluated)
    step_started: float = 0.0

    @property
    def needs(self) -> int:
        """The cells it may come to hold: its prompt and every token it may sample."""
        return len(self.prompt) + self.limit


@dataclass
class _Slot:
    id: int
    cached: list[int] = field(default_factory=list)  # the tokens its cells hold
    running: _Sequence | None = None
    used_at: float = 0.0


class BatchedModel:
    """The engine contract's `Model` over `llm`'s weights with `slots` sequences decoding together in a pool of
    `pool` KV cells (each sequence holds at most `n_ctx` of them)."""

    def __init__(self, local: LocalModel, slots: int, n_ctx: int, pool: int, context: Any, n_batch: int) -> None:
        from edgellm.engine import compat

        self.local = local
        self.params = local.params
        self.load_ms = local.load_ms
        self.parallel = slots
        self._n_ctx = n_ctx
        self.pool = pool
        self.n_batch = n_batch  # tokens one decode holds: at least one per slot
        self._context = context  # compat.SequenceContext: the llama.cpp context the stepper owns
        self._is_eog = compat.end_of_generation(local.llm)
        self._n_swa = compat.sliding_window(local.llm)
        self._drafts = not compat.is_recurrent(local.llm)  # a recurrent state cannot drop a rejected draft's rows
        self._slots = [_Slot(i) for i in range(slots)]
        self._waiting: deque[_Sequence] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._failure: BaseException | None = None  # what broke the stepper: every later request hears of it
        self._paused = 0
        self.steps = 0  # decode calls so far
        self.step_tokens = 0  # tokens those calls held: over steps, the batch occupancy
        self.step_sequences = 0  # sequences that sampled in those calls (once each, whatever their drafts)
        self._thread = threading.Thread(target=self._run, name="edgellm-stepper", daemon=True)
        self._thread.start()

    # the contract

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def metadata(self) -> dict[str, str]:
        return self.local.metadata

    @property
    def token_bos(self) -> int:
        return self.local.token_bos

    @property
    def token_eos(self) -> int:
        return self.local.token_eos

    @property
    def other_processes(self) -> tuple[int, ...]:
        return ()

    @property
    def vision(self) -> bool:
        return self.local.vision

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self.local.tokenize(text, add_bos=add_bos, special=special)

    def tokenize_with_images(
        self, text: str, images: Sequence[Image], *, add_bos: bool, special: bool = True
    ) -> list[int]:
        return self.local.tokenize_with_images(text, images, add_bos=add_bos, special=special)

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes:
        return self.local.detokenize(tokens, special=special)

    def generation(
        self, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> BatchedGeneration:
        return BatchedGeneration(self, prompt_tokens, options, cancel or threading.Event())

    def slots(self) -> list[SlotState]:
        with self._condition:
            return [
                SlotState(
                    id=slot.id,
                    busy=slot.running is not None,
                    n_ctx=self._n_ctx,
                    cached=len(slot.cached),
                    prompt_tokens=len(slot.running.prompt) if slot.running else 0,
                    completion_tokens=slot.running.sampled if slot.running else 0,
                )
                for slot in self._slots
            ]

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot or for room in the pool."""
        return len(self._waiting)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the stepper between two steps: requests submitted meanwhile are admitted together when it goes on,
        in one batch shape (`bench --parallel` and the tests)."""
        with self._condition:
            self._paused += 1
        try:
            yield
        finally:
            with self._condition:
                self._paused -= 1
                self._condition.notify_all()

    def close(self) -> None:
        """End every sequence (interrupted), stop the stepper, free the context, then the model."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join()
        self._context.close()
        self.local.close()

    # the reader's side

    def _submit(self, sequence: _Sequence) -> None:
        if not sequence.prompt:
            raise EmptyPrompt("the prompt is empty: give it some text")
        if sequence.needs > self.pool:
            raise PoolTooSmall(
                f"the request needs {sequence.needs} KV cells and the pool holds {self.pool}; "
                f"ask for fewer max_tokens or a shorter prompt"
            )
        with self._condition:
            if self._failure is not None:
                raise EngineFailed(f"the batched engine stopped: {self._failure}") from self._failure
            if self._closed:
                sequence.mailbox.put(_End("interrupted"))
                return
            self._waiting.append(sequence)
            self._condition.notify_all()

    def _leave(self, sequence: _Sequence) -> None:
        """Its reader stopped: the stepper drops it before the next step."""
        with self._condition:
            sequence.left = True
            self._condition.notify_all()

    # the stepper

    def _run(self) -> None:
        import llama_cpp

        batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        try:
            while True:
                with self._condition:
                    self._drop_left()
                    while not self._closed and (self._paused or (not self._waiting and not self._running())):
                        self._condition.wait()
                        self._drop_left()
                    if self._closed:
                        break
                    self._admit()  # with every slot idle the next request always fits: something runs
                    running = self._running()
                    if not running:  # cannot happen (see _submit); never spin if it did
                        self._condition.wait(0.05)
                        continue
                self._step(batch, running)
        except BaseException as error:  # a bug or a broken context: every reader hears of it, none hangs
            with self._condition:
                self._closed, self._failure = True, error
                failure = EngineFailed(f"the batched engine stopped: {type(error).__name__}: {error}")
                for sequence in self._running():
                    self._end(sequence, "interrupted", failure)
                for sequence in self._waiting:
                    sequence.mailbox.put(_End("interrupted", failure))
                self._waiting.clear()
            raise
        finally:
            with self._condition:
                for sequence in self._running():
                    self._end(sequence, "interrupted")
                for sequence in self._waiting:
                    sequence.mailbox.put(_End("interrupted"))
                self._waiting.clear()
            llama_cpp.llama_batch_free(batch)

    def _running(self) -> list[_Sequence]:
        return [slot.running for slot in self._slots if slot.running is not None]

    def _drop_left(self) -> None:
        """Sequences whose reader left or whose cancel is set: ended now, their cells kept as their slot's cache."""
        for sequence in self._running():
            if sequence.left or sequence.cancel.is_set():
                self._end(sequence, "interrupted")
        for sequence in [s for s in self._waiting if s.left or s.cancel.is_set()]:
            self._waiting.remove(sequence)
            sequence.mailbox.put(_End("interrupted"))

    def _admit(self) -> None:
        """Start waiting requests, in order, while a slot is idle and the pool has room for the next one."""
        while self._waiting:
            sequence = self._waiting[0]
            idle = [slot for slot in self._slots if slot.running is None]
            if not idle:
                return
            slot = self._choose(idle, sequence)
            if not self._make_room(sequence, slot):
                return
            self._waiting.popleft()
            self._start(sequence, slot)

    def _choose(self, idle: list[_Slot], sequence: _Sequence) -> _Slot:
        """The idle slot whose cache covers at least SIMILAR_PREFIX of the prompt (the most), else an empty one (the
        lowest id: llama.cpp decodes consecutive sequence ids in one pass), else the least recently used one, whose
        cache is the least likely to be asked for again (as llama-server chooses)."""
        prompt = sequence.prompt
        if sequence.options.cache_prompt:
            best = max(idle, key=lambda slot: common_prefix(slot.cached, prompt))
            if common_prefix(best.cached, prompt) >= max(1, int(len(prompt) * SIMILAR_PREFIX)):
                return best
        return min(idle, key=lambda slot: (bool(slot.cached), slot.used_at if slot.cached else slot.id))

    def _make_room(self, sequence: _Sequence, chosen: _Slot) -> bool:
        """Whether `sequence` fits in the pool once idle slots' caches are dropped (least recently used first);
        drops them only when it then fits."""
        reserved = sum(slot.running.needs for slot in self._slots if slot.running is not None)
        idle = sorted(
            (s for s in self._slots if s.running is None and s is not chosen and s.cached), key=lambda s: s.used_at
        )
        held = sum(len(slot.cached) for slot in idle)
        room = self.pool - reserved - sequence.needs
        if room < 0:
            return False
        for slot in idle:
            if held <= room:
                break
            self._context.forget(slot.id)
            held -= len(slot.cached)
            slot.cached = []
        return True

    def _start(self, sequence: _Sequence, slot: _Slot) -> None:
        sequence.admitted = time.perf_counter()
        sequence.slot, slot.running, slot.used_at = slot.id, sequence, sequence.admitted
        reuse = resume_point(slot.cached, sequence.prompt) if sequence.options.cache_prompt else 0
        reuse = max(0, min(reuse, len(sequence.prompt) - 1))  # at least one token is evaluated: its logits are sampled
        reuse = self._context.keep_prefix(slot.id, reuse, self._n_swa)
        slot.cached = sequence.prompt[:reuse]
        sequence.n_past, sequence.pending = reuse, sequence.prompt[reuse:]
        sequence.evaluated_prompt = len(sequence.pending)
        sequence.guard = LoopGuard() if sequence.options.loop_guard else None
        if sequence.options.speculation != "off" and self._drafts and not sequence.with_images:
            from edgellm.plan.speculation import NGRAM_MOST, NGRAM_START_LENGTH

            sequence.drafter = NgramDrafter()
            sequence.controller = Controller(NGRAM_START_LENGTH, NGRAM_MOST)
        try:
            sequence.sampler = self._context.sampler(sequence.options)
            sequence.sampler.found = sequence.logprobs  # the reader reads each token's as it comes
        except (EdgellmError, OSError) as error:  # a grammar llama.cpp refuses: this request's error alone
            self._end(sequence, "interrupted", error)

    def _step(self, batch: Any, running: list[_Sequence]) -> None:
        """One decode: a token from each generating sequence, then prompt chunks up to the batch's size."""
        n_batch = self.n_batch
        count = 0
        generating = [s for s in running if not s.pending]
        alone = len(running) == 1 and len(generating) == 1
        for sequence in generating:
            sequence.batch_index, sequence.alone, sequence.step_started = count, alone, time.perf_counter()
            sequence.drafted = self._draft(sequence) if alone else []
            for offset, token in enumerate([sequence.last_token, *sequence.drafted]):
                _put(batch, count, token, sequence.n_past + offset, sequence.slot, True)
                count += 1
        for sequence in running:
            if sequence.pending and is_image_token(sequence.pending[0]):
                self._decode_image(sequence)
                continue
            sequence.chunk = min(text_run(sequence.pending), n_batch - count)
            if sequence.chunk <= 0:
                continue
            whole = sequence.chunk == len(sequence.pending)
            for offset, token in enumerate(sequence.pending[: sequence.chunk]):
                last = whole and offset == sequence.chunk - 1
                _put(batch, count + offset, token, sequence.n_past + offset, sequence.slot, last)
            count += sequence.chunk
            sequence.batch_index = count - 1
        if count == 0:  # this step evaluated images only
            return
        batch.n_tokens = count
        status = self._context.decode(batch)
        self.steps += 1
        self.step_tokens += count
        if status != 0:
            self._failed(running, status)
            return
        with self._condition:
            for sequence in running:
                self._advance(sequence)

    def _decode_image(self, sequence: _Sequence) -> None:
        """Evaluate the image at the head of the sequence's pending prompt, alone (libmtmd decodes it in a batch of
        its own: its embeddings, not tokens); a failure ends that request alone."""
        projector = self.local.projector
        try:
            if projector is None:
                raise text_only(self.params.path)
            image = projector.chunk(sequence.pending[0])
            ms = projector.decode_image(self._context.ctx, image, sequence.n_past, sequence.slot, self.n_batch)
        except EdgellmError as error:
            with self._condition:
                self._end(sequence, "interrupted", error)
            return
        held = sequence.pending[: image.n_pos]
        self._slots[sequence.slot].cached.extend(held)
        sequence.n_past += len(held)
        sequence.pending = sequence.pending[len(held) :]
        sequence.image_tokens += len(held)
        sequence.image_ms = (sequence.image_ms or 0.0) + ms

    def _draft(self, sequence: _Sequence) -> list[int]:
        """The tokens a lone sequence drafts this step (none when it does not draft, or drafting stopped)."""
        controller, drafter = sequence.controller, sequence.drafter
        if controller is None or drafter is None or not controller.drafting:
            return []
        room = min(sequence.limit - sequence.sampled, self._n_ctx - sequence.n_past, self.n_batch) - 1
        wanted = min(controller.length, room)
        if wanted <= 0:
            return []
        return drafter.propose(self._slots[sequence.slot].cached + [sequence.last_token], wanted)

    def _advance(self, sequence: _Sequence) -> None:
        """After a decode: the sequence's evaluated tokens are in its slot; a sampled token goes to its reader (with a
        draft, the drafted tokens its own sampler picks too, up to the first it does not)."""
        slot = self._slots[sequence.slot]
        if sequence.pending:
            evaluated, sequence.chunk = sequence.pending[: sequence.chunk], 0
            slot.cached.extend(evaluated)
            sequence.n_past += len(evaluated)
            sequence.pending = sequence.pending[len(evaluated) :]
            if sequence.pending or not evaluated:  # more of its prompt to go
                return
            self.step_sequences += 1
            self._take(sequence, sequence.batch_index)
        else:
            self.step_sequences += 1
            drafted, accepted = sequence.drafted, 0
            for row, token in enumerate([sequence.last_token, *drafted]):
                slot.cached.append(token)
                sequence.n_past += 1
                going = self._take(sequence, sequence.batch_index + row)
                if not going or row == len(drafted) or sequence.last_token != drafted[row]:
                    break
                accepted += 1
            if drafted and not self._context.cut(sequence.slot, sequence.n_past):  # the rows not kept leave its cells
                self._context.forget(sequence.slot)
                slot.cached = []
                sequence.ending = sequence.ending or _End(
                    "interrupted", EngineFailed("llama.cpp could not drop a draft")
                )
            if sequence.controller is not None:
                seconds = time.perf_counter() - sequence.step_started
                if drafted:
                    sequence.controller.record_round(len(drafted), accepted, accepted + 1, seconds)
                elif sequence.alone:
                    sequence.controller.record_plain(seconds)
        if sequence.ending is not None:
            self._end(sequence, sequence.ending.reason, sequence.ending.error)

    def _take(self, sequence: _Sequence, index: int) -> bool:
        """Sample the sequence at batch row `index` and send the token to its reader; whether it goes on (when not,
        `sequence.ending` says how it ends)."""
        if sequence.left or sequence.cancel.is_set():
            sequence.ending = _End("interrupted")
            return False
        try:
            token = self._context.sample(sequence.sampler, index)
        except EdgellmError as error:  # its grammar admits no token: this request's error alone
            sequence.ending = _End("interrupted", error)
            return False
        now = time.perf_counter()
        if not sequence.sampled:
            sequence.first_at = now
        sequence.last_at, sequence.sampled = now, sequence.sampled + 1
        if self._is_eog(token) and (not sequence.options.ignore_eos or sequence.options.grammar is not None):
            sequence.ending = _End("eos")  # a grammar's reply ends where the grammar lets it end
            return False
        sequence.last_token = token
        sequence.mailbox.put(token)
        if sequence.sampled >= sequence.limit:
            sequence.ending = _End("context" if sequence.limited_by_context else "length")
            return False
        if sequence.guard is not None and sequence.guard.feed(token):
            sequence.ending = _End("repetition")
            return False
        return True

    def _end(self, sequence: _Sequence, reason: StopReason, error: BaseException | None = None) -> None:
        slot = self._slots[sequence.slot]
        slot.running, slot.used_at = None, time.perf_counter()
        if sequence.sampler is not None:
            self._context.free_sampler(sequence.sampler)
            sequence.sampler = None
        sequence.mailbox.put(_End(reason, error))
        self._condition.notify_all()

    def _failed(self, running: list[_Sequence], status: int) -> None:
        """A decode that failed (llama.cpp out of memory, a backend error): the sequences of that batch end with
        EngineFailed and their slots' caches are dropped (llama.cpp may have kept part of the batch); the engine
        takes the next requests."""
        error = EngineFailed(f"llama.cpp could not decode the batch (llama_decode returned {status})")
        with self._condition:
            for sequence in running:
                slot = self._slots[sequence.slot]
                self._context.forget(slot.id)
                slot.cached = []
                self._end(sequence, "interrupted", error)


def _put(batch: Any, index: int, token: int, position: int, sequence: int, output: bool) -> None:
    batch.token[index] = token
    batch.pos[index] = position
    batch.n_seq_id[index] = 1
    batch.seq_id[index][0] = sequence
    batch.logits[index] = output


class BatchedGeneration:
    """One request on a `BatchedModel`: iterate it for text pieces (on the reader's thread); `stats` is complete
    once iteration ends. Closing the iterator early, or setting `cancel`, ends the sequence at the next step."""

    def __init__(
        self, model: BatchedModel, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event
    ) -> None:
        self.model = model
        room = model.n_ctx - len(prompt_tokens)
        limit = room if options.max_tokens < 0 else min(options.max_tokens, room)
        self.sequence = _Sequence(
            list(prompt_tokens), options, cancel, max(0, limit), options.max_tokens < 0 or options.max_tokens > room
        )
        self.sequence.with_images = any(is_image_token(token) for token in prompt_tokens)
        self.tokens: list[int] = []
        self.logprobs = self.sequence.logprobs
        self.stats = GenerationStats(prompt_tokens=len(prompt_tokens), prompt_evaluated=0)

    def __iter__(self) -> Generator[str, None, None]:
        sequence, stats, model = self.sequence, self.stats, self.model
        if sequence.cancel.is_set():
            stats.stop_reason = "interrupted"
            return
        if sequence.limit <= 0:
            stats.stop_reason = "context" if sequence.limited_by_context else "length"
            stats.prompt_evaluated = max(1, len(sequence.prompt))
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        special = set(sequence.options.special_text)
        model._submit(sequence)
        ended: _End | None = None
        try:
            while True:
                item = sequence.mailbox.get()
                if isinstance(item, _End):
                    ended = item
                    break
                stats.completion_tokens += 1
                self.tokens.append(item)
                text = decoder.decode(model.detokenize([item], special=item in special))
                if text:
                    yield text
        finally:
            if ended is None:
                model._leave(sequence)
                stats.stop_reason = "interrupted"
            else:
                stats.stop_reason = ended.reason
            self._finish()
        if ended.error is not None:
            raise ended.error
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def _finish(self) -> None:
        sequence, stats = self.sequence, self.stats
        if sequence.admitted:
            stats.queue_ms = (sequence.admitted - sequence.submitted) * 1000
            stats.prompt_evaluated = sequence.evaluated_prompt
        if sequence.first_at:
            stats.ttft_ms = (sequence.first_at - sequence.admitted) * 1000
            stats.prompt_tokens_per_s = stats.prompt_evaluated / max(sequence.first_at - sequence.admitted, 1e-9)
        if sequence.sampled > 1 and sequence.last_at > sequence.first_at:
            stats.tokens_per_s = (sequence.sampled - 1) / (sequence.last_at - sequence.first_at)
        if sequence.image_ms is not None:
            stats.image_tokens, stats.image_ms = sequence.image_tokens, sequence.image_ms
        controller = sequence.controller
        if controller is not None:
            stats.speculation = SpeculationStats(
                "ngram",
                controller.drafted,
                controller.accepted,
                controller.rounds,
                controller.stopped_why,
                controller.gain(),
            )
