"""Stream text from a model loaded here, token by token, with the timings a user sees: the engine contract's
`Generation` of an engine.local.LocalModel."""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from edgellm.engine.contract import LLAMA_DEFAULT_SEED, GenerationOptions, GenerationStats, TokenLogprob
from edgellm.engine.loop_guard import LoopGuard
from edgellm.errors import EngineFailed

if TYPE_CHECKING:
    from edgellm.engine.vision import Projector


class LocalGeneration:
    """Iterate to get text pieces as tokens are sampled; `stats` is complete once iteration ends.

    Stops at end-of-generation (unless ignore_eos), after max_tokens (-1: no limit), when the context is
    full, or (with the loop guard) when the reply repeats itself. A KeyboardInterrupt or a set `cancel` event,
    even one set before the call starts, ends it with stop_reason "interrupted"; `tokens` holds the sampled
    tokens that were evaluated (the KV cache's view of the reply).
    """

    def __init__(
        self,
        llm: Any,
        n_ctx: int,
        prompt_tokens: list[int],
        options: GenerationOptions,
        cancel: threading.Event | None = None,
        images: Projector | None = None,
    ) -> None:
        self.llm = llm  # llama_cpp.Llama
        self.images = images  # the projector that evaluates the prompt's images (None: a prompt of text)
        self.prompt_tokens = prompt_tokens
        self.options = options
        room = n_ctx - len(prompt_tokens)
        self.limit = room if options.max_tokens < 0 else min(options.max_tokens, room)
        self.limited_by_context = options.max_tokens < 0 or options.max_tokens > room
        self.cancel = cancel
        self._abort_callback: Any = None  # the ctypes callback llama.cpp holds while a prompt is read
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []  # per sampled token, when the options ask
        self.running = False  # while it is iterated
        llm = self.llm
        cached = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt_tokens) if options.cache_prompt else 0
        self.stats = GenerationStats(
            prompt_tokens=len(prompt_tokens), prompt_evaluated=max(1, len(prompt_tokens) - cached)
        )

    def __iter__(self) -> Generator[str, None, None]:
        self.running = True
        try:
            yield from self._generate()
        finally:
            self.running = False

    def _generate(self) -> Generator[str, None, None]:
        from edgellm.engine import compat

        llm, stats, options = self.llm, self.stats, self.options
        sampling, ignore_eos = options.sampling, options.ignore_eos
        cancel = self.cancel
        if cancel is not None and cancel.is_set():  # cancelled before it started: nothing is evaluated
            stats.stop_reason, stats.prompt_evaluated = "interrupted", 0
            return
        is_eog = compat.end_of_generation(llm)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        guard = LoopGuard() if options.loop_guard else None
        llm.set_seed(LLAMA_DEFAULT_SEED if options.seed < 0 else options.seed)  # per call: samplers read it
        if not options.cache_prompt:
            llm.reset()  # no common prefix: llama-cpp-python evaluates the whole prompt and clears the KV cache
        special = set(options.special_text)
        sampler = None  # a grammar, or log-probabilities: edgellm's own sampler picks each token
        if options.grammar is not None or options.logprobs is not None:
            sampler = compat.TokenSampler(llm, options, compat.vocabulary_size(llm))
            sampler.found = self.logprobs
        ends_at_eog = not ignore_eos or options.grammar is not None  # a grammar's reply ends where it lets it end
        started = time.perf_counter()
        first = last = started
        sampled = 0
        tokens = llm.generate(
            self.prompt_tokens,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temp,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            reset=True,
        )
        stats.stop_reason = "context" if self.limited_by_context else "length"
        self._abort_when(cancel)  # a long prompt can be stopped while llama.cpp reads it
        compat.use_sampler(llm, sampler)
        try:
            if self.images is not None:
                try:
                    evaluated = self.images.evaluate(llm, self.prompt_tokens, int(llm.n_batch), cancel)
                except EngineFailed:  # an image's decode stopped by the abort check, or failed
                    if cancel is None or not cancel.is_set():
                        raise
                    stats.stop_reason = "interrupted"
                    return
                stats.image_tokens, stats.image_ms = evaluated.tokens, evaluated.ms
                if cancel is not None and cancel.is_set():  # between images: nothing more is evaluated
                    stats.stop_reason = "interrupted"
                    return
            if self.limit <= 0:
                return
            for token in tokens:
                last = time.perf_counter()
                sampled += 1
                if sampled == 1:
                    first = last
                    self._abort_when(None)  # decoding: cancel is checked between tokens, at no cost
                if cancel is not None and cancel.is_set():
                    stats.stop_reason = "interrupted"
                    break
                if is_eog(token) and ends_at_eog:
                    stats.stop_reason = "eos"
                    break
                stats.completion_tokens += 1
                self.tokens.append(token)
                text = decoder.decode(llm.detokenize([token], special=token in special))
                if text:
                    yield text
                if stats.completion_tokens >= self.limit:
                    break
                if guard is not None and guard.feed(token):
                    stats.stop_reason = "repetition"
                    break
        except KeyboardInterrupt:
            stats.stop_reason = "interrupted"
        except RuntimeError:  # llama_decode stopped by the abort callback (a cancelled prompt), or failed
            stats.stop_reason = "interrupted"
            if cancel is None or not cancel.is_set():
                raise
        except BaseException:  # the consumer closed the stream early (GeneratorExit), or a failure: unfinished
            stats.stop_reason = "interrupted"
            raise
        finally:
            self._abort_when(None)
            tokens.close()
            compat.use_sampler(llm, None)
            if sampler is not None:
                sampler.close()
            compat.free_sampler(llm)
            tail = decoder.decode(b"", final=True)
            self._finish(started, first, last, sampled)
        if tail:
            yield tail

    def _abort_when(self, event: threading.Event | None) -> None:
        """Let llama.cpp stop a prompt evaluation once `event` is set; None removes the check.

        ggml calls the check between graph nodes, a call into Python each time: worth it while a long prompt
        is read, about 3% of decode speed if left on, so it is removed once the first token is sampled.
        """
        if event is None and self._abort_callback is None:
            return
        from edgellm.engine import compat

        self._abort_callback = compat.set_abort_check(self.llm, None if event is None else event.is_set)

    def _finish(self, started: float, first: float, last: float, sampled: int) -> None:
        stats = self.stats
        if first > started:
            stats.ttft_ms = (first - started) * 1000
            stats.prompt_tokens_per_s = stats.prompt_evaluated / (first - started)
        if sampled > 1 and last > first:
            stats.tokens_per_s = (sampled - 1) / (last - first)


def common_prefix(cached: list[int], tokens: list[int]) -> int:
    """How many leading tokens two sequences share: what llama-cpp-python reuses from the KV cache."""
    count = 0
    for old, new in zip(cached, tokens):
        if old != new:
            break
        count += 1
    return count
