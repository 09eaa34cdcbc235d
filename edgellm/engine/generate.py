"""Stream text from a loaded model, token by token, with the timings a user sees."""

from __future__ import annotations

import codecs
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

from edgellm.engine.loop_guard import LoopGuard
from edgellm.engine.local import LLAMA_DEFAULT_SEED, LoadSettings, context_size


@dataclass(frozen=True)
class Sampling:
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0  # OpenAI's penalties, as llama.cpp applies them
    presence_penalty: float = 0.0


@dataclass(frozen=True)
class GenerationOptions:
    """What one call asks for, passed with the call: two calls on one model never see each other's options."""

    sampling: Sampling = Sampling()
    max_tokens: int = -1  # -1: until the model stops or the context is full
    ignore_eos: bool = False
    seed: int = -1  # -1: random
    stop: tuple[str, ...] = ()  # text that ends a reply (applied by the chat layer, which sees text)
    loop_guard: bool = False  # stop a reply that repeats the same run of tokens over and over
    cache_prompt: bool = True  # reuse the KV cache of the previous call's common prefix; off: the whole prompt is
    # evaluated afresh, so the result never depends on what ran before (a server's requests)

    def as_dict(self) -> dict[str, Any]:
        """The options as `run --json` and a saved conversation report them."""
        sampling = self.sampling
        return {"n_predict": self.max_tokens, "temp": sampling.temp, "top_k": sampling.top_k, "top_p": sampling.top_p,
                "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty, "seed": self.seed,
                "ignore_eos": self.ignore_eos, "stop": list(self.stop), "loop_guard": self.loop_guard}

    def with_saved(self, saved: dict[str, Any]) -> "GenerationOptions":
        """These options with the ones a saved conversation kept (`as_dict`'s keys); unknown or odd values are
        skipped, so an old or hand-edited record never breaks a load."""
        if not isinstance(saved, dict):
            return self

        def value(key: str, kinds: Any, default: Any) -> Any:
            found = saved.get(key, default)
            if isinstance(found, bool) != (kinds is bool):  # True is an int: keep switches and numbers apart
                return default
            return found if isinstance(found, kinds) else default

        number, sampling = (int, float), self.sampling
        stop = saved.get("stop")
        return replace(
            self,
            sampling=replace(sampling, temp=float(value("temp", number, sampling.temp)),
                             top_k=value("top_k", int, sampling.top_k),
                             top_p=float(value("top_p", number, sampling.top_p)),
                             min_p=float(value("min_p", number, sampling.min_p)),
                             repeat_penalty=float(value("repeat_penalty", number, sampling.repeat_penalty))),
            max_tokens=value("n_predict", int, self.max_tokens), ignore_eos=value("ignore_eos", bool, self.ignore_eos),
            seed=value("seed", int, self.seed), loop_guard=value("loop_guard", bool, self.loop_guard),
            stop=tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else self.stop)


def settings_report(load_settings: LoadSettings, options: GenerationOptions) -> dict[str, Any]:
    """The one settings dictionary: what `run --json` reports and a saved conversation keeps (plan --json
    reports the load half, `LoadSettings.as_dict`)."""
    return {**load_settings.as_dict(), **options.as_dict()}


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prompt_evaluated: int = 0  # prompt tokens actually processed: the rest were reused from the KV cache
    completion_tokens: int = 0
    ttft_ms: float | None = None  # prompt evaluation plus the first sampled token
    prompt_tokens_per_s: float | None = None
    tokens_per_s: float | None = None  # decode only: tokens after the first over the time after the first
    stop_reason: str = "eos"  # eos | length | context | stop (a stop sequence) | repetition | interrupted

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 2)

        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_evaluated": self.prompt_evaluated,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": rounded(self.ttft_ms),
            "prompt_tokens_per_s": rounded(self.prompt_tokens_per_s),
            "tokens_per_s": rounded(self.tokens_per_s),
            "stop_reason": self.stop_reason,
        }


class Generation:
    """Iterate to get text pieces as tokens are sampled; `stats` is complete once iteration ends.

    Stops at end-of-generation (unless ignore_eos), after max_tokens (-1: no limit), when the context is
    full, or (with the loop guard) when the reply repeats itself. A KeyboardInterrupt or a set `cancel` event,
    even one set before the call starts, ends it with stop_reason "interrupted"; `tokens` holds the sampled
    tokens that were evaluated (the KV cache's view of the reply).
    """

    def __init__(self, llm: Any, prompt_tokens: list[int], options: GenerationOptions,
                 cancel: threading.Event | None = None) -> None:
        self.llm = llm
        self.prompt_tokens = prompt_tokens
        self.options = options
        room = context_size(llm) - len(prompt_tokens)
        self.limit = room if options.max_tokens < 0 else min(options.max_tokens, room)
        self.limited_by_context = options.max_tokens < 0 or options.max_tokens > room
        self.cancel = cancel
        self._abort_callback = None  # the ctypes callback llama.cpp holds while a prompt is read
        self.tokens: list[int] = []
        cached = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt_tokens) if options.cache_prompt else 0
        self.stats = GenerationStats(prompt_tokens=len(prompt_tokens),
                                     prompt_evaluated=max(1, len(prompt_tokens) - cached))

    def __iter__(self) -> Iterator[str]:
        import llama_cpp

        llm, stats, options = self.llm, self.stats, self.options
        sampling, ignore_eos = options.sampling, options.ignore_eos
        cancel = self.cancel
        if cancel is not None and cancel.is_set():  # cancelled before it started: nothing is evaluated
            stats.stop_reason, stats.prompt_evaluated = "interrupted", 0
            return
        vocab = llm._model.vocab
        is_eog = llama_cpp.llama_vocab_is_eog
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        guard = LoopGuard() if options.loop_guard else None
        llm.set_seed(LLAMA_DEFAULT_SEED if options.seed < 0 else options.seed)  # per call: samplers read it
        if not options.cache_prompt:
            llm.reset()  # no common prefix: llama-cpp-python evaluates the whole prompt and clears the KV cache
        started = time.perf_counter()
        first = last = started
        sampled = 0
        tokens = llm.generate(self.prompt_tokens, top_k=sampling.top_k, top_p=sampling.top_p,
                              min_p=sampling.min_p, temp=sampling.temp, repeat_penalty=sampling.repeat_penalty,
                              frequency_penalty=sampling.frequency_penalty,
                              presence_penalty=sampling.presence_penalty, reset=True)
        stats.stop_reason = "context" if self.limited_by_context else "length"
        self._abort_when(cancel)  # a long prompt can be stopped while llama.cpp reads it
        try:
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
                if is_eog(vocab, token) and not ignore_eos:
                    stats.stop_reason = "eos"
                    break
                stats.completion_tokens += 1
                self.tokens.append(token)
                text = decoder.decode(llm.detokenize([token]))
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
            free_sampler(llm)
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
        import llama_cpp

        self._abort_callback = (llama_cpp.ggml_abort_callback() if event is None  # NULL: no check
                                else llama_cpp.ggml_abort_callback(lambda data: event.is_set()))
        llama_cpp.llama_set_abort_callback(self.llm._ctx.ctx, self._abort_callback, None)
        if event is None:
            self._abort_callback = None

    def _finish(self, started: float, first: float, last: float, sampled: int) -> None:
        stats = self.stats
        if first > started:
            stats.ttft_ms = (first - started) * 1000
            stats.prompt_tokens_per_s = stats.prompt_evaluated / (first - started)
        if sampled > 1 and last > first:
            stats.tokens_per_s = (sampled - 1) / (last - first)


def free_sampler(llm: Any) -> None:
    """Free the sampler llama-cpp-python made for this generation. It makes one per `generate()` and frees it only
    when Python's cycle collector runs (the sampler's cleanup refers to itself), so a server or a long chat would
    pile up about 3 MB of native memory per reply (the test model) between collections."""
    sampler = getattr(llm, "_sampler", None)
    if sampler is not None:
        llm._sampler = None
        sampler.close()


def common_prefix(cached: list[int], tokens: list[int]) -> int:
    """How many leading tokens two sequences share: what llama-cpp-python reuses from the KV cache."""
    count = 0
    for old, new in zip(cached, tokens):
        if old != new:
            break
        count += 1
    return count
