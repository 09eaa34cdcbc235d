"""The engine's contract: what every layer above the engine knows of a model. Pure: no llama.cpp here.

A `Model` is a loaded model, wherever its weights live (`engine.local.LocalModel` in this process,
`engine.split.SplitModel` across RPC workers): its vocabulary (tokenize, detokenize, BOS/EOS, metadata), its context
size, and `generation()`, which makes one `Generation` of a prompt with the options of that call. The session layer,
the server and bench use only this; `LoadParams`, `Sampling`, `GenerationOptions` and `GenerationStats` are the
values that cross it.

A batched model (`engine.batched.BatchedModel`: one llama.cpp context with `parallel` sequences, each in a KV stream of
its own) is a `Model` whose `generation()` may be called again while earlier generations run, up to `parallel` decoding
together, each owning one sequence of the context (a slot), its own sampler built from its own `GenerationOptions`, and
its KV cells, kept as its slot's prompt cache when it ends; `slots()` tells what each slot holds. A draft model for
speculative decoding is a second model loaded beside the target (`engine.local.LocalModel.draft`), its vocabulary
checked against the target's before it loads (`gguf.vocab`); a generation asks for drafting through its options.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from edgellm.errors import NoVision

if TYPE_CHECKING:
    from edgellm.media.images import Image

SPEC_MODES = ("auto", "off", "ngram", "draft")  # how replies are drafted (engine.speculative)
KV_TYPES = ("f16", "q8_0", "q4_0")  # KV cache types llama.cpp can hold (a quantized V needs flash attention)
KV_GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # their ggml_type numbers
LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's "random seed"
HOST_CONTEXT = 256  # the context of the Llama that holds the weights and vocabulary for the batched engine
HOST_BATCH = 32  # and its micro-batch: it never generates
StopReason = Literal["eos", "length", "context", "stop", "repetition", "interrupted"]


@dataclass(frozen=True)
class LoadParams:
    """What llama.cpp is asked for when a model loads; every value already resolved (no 'auto'). The field names
    are llama.cpp's."""

    path: Path
    n_ctx: int
    n_threads: int
    n_threads_batch: int
    n_gpu_layers: int  # -1: all
    flash_attn: bool
    kv: str  # one of KV_TYPES, for both K and V
    seed: int  # -1: random
    n_batch: int = 512
    use_mmap: bool = True
    use_mlock: bool = False
    rpc_servers: tuple[str, ...] = ()  # RPC workers (HOST:PORT) the last n_gpu_layers go to, shared by tensor_split
    tensor_split: tuple[int, ...] = ()  # per worker, the layers (and output) it holds
    output_here: bool = False  # with workers: the output layer stays on this CPU, so no logits cross the network
    vocab_only: bool = False  # the vocabulary and metadata only: tokenizing for a model run elsewhere
    parallel: int = 0  # sequences decoded together by the batched engine, each up to n_ctx tokens; 0: none, one
    # sequence at a time on llama-cpp-python's own context (a chat)
    kv_pool: int = 0  # the batched engine's KV cells, shared by its sequences; 0: n_ctx per sequence
    projector: Path | None = None  # a vision projector (mmproj GGUF) loaded beside the model: prompts with images

    @property
    def kv_cells(self) -> int:
        """The KV cells the context holds: n_ctx, or the batched engine's pool."""
        if self.parallel <= 0:
            return self.n_ctx
        return self.kv_pool or self.n_ctx * self.parallel

    def as_dict(self) -> dict[str, Any]:
        """The load parameters as `run --json`, `plan --json` and a saved conversation report them."""
        found: dict[str, Any] = {
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "n_batch": self.n_batch,
            "threads": self.n_threads,
            "threads_batch": self.n_threads_batch,
            "flash_attn": self.flash_attn,
            "kv": self.kv,
            "use_mmap": self.use_mmap,
            "use_mlock": self.use_mlock,
        }
        if self.parallel:
            found.update(parallel=self.parallel, kv_pool=self.kv_cells)
        if self.projector is not None:
            found.update(mmproj=str(self.projector))
        if self.rpc_servers:
            found.update(rpc=list(self.rpc_servers), tensor_split=list(self.tensor_split), output_here=self.output_here)
        return found


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
class Grammar:
    """What a reply must match: a GBNF grammar (rule `root`), enforced by llama.cpp's grammar sampler. Lazy when it
    has triggers: the reply is free until its text ends with a match of one of `trigger_patterns` (regular
    expressions; the grammar is fed the text from the first capture group on) or one of `trigger_tokens` is sampled,
    and constrained from there (a tool call's opening marker)."""

    gbnf: str
    trigger_patterns: tuple[str, ...] = ()
    trigger_tokens: tuple[int, ...] = ()

    @property
    def lazy(self) -> bool:
        return bool(self.trigger_patterns or self.trigger_tokens)


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token's log-probability under the model (the raw logits, before any sampler), and the `top` most
    likely tokens at that step with theirs, the most likely first."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class GenerationOptions:
    """What one call asks for, passed with the call: two calls on one model never see each other's options."""

    sampling: Sampling = Sampling()
    max_tokens: int = -1  # -1: until the model stops or the context is full
    ignore_eos: bool = False
    seed: int = -1  # -1: random
    stop: tuple[str, ...] = ()  # text that ends a reply (applied by the session layer, which sees text)
    loop_guard: bool = False  # stop a reply that repeats the same run of tokens over and over
    cache_prompt: bool = True  # reuse the KV cache of the previous call's common prefix; off: the whole prompt is
    # evaluated afresh, so the result never depends on what ran before (a server's requests)
    grammar: Grammar | None = None  # what the reply must match; a reply that matches it whole ends (EOG)
    logprobs: int | None = None  # None: none; k: each sampled token's log-probability and the top k (0 to 20)
    special_text: tuple[int, ...] = ()  # special tokens written out as text (a tool call's marker, [TOOL_CALLS])
    speculation: str = "off"  # SPEC_MODES: how the reply is drafted (auto: the model's draft if it has one, else
    # n-gram lookup); the reply is the model's own whichever (up to the rounding of a batch's rows: docs/speculative.md)

    def as_dict(self) -> dict[str, Any]:
        """The options as `run --json` and a saved conversation report them."""
        sampling = self.sampling
        return {
            "n_predict": self.max_tokens,
            "temp": sampling.temp,
            "top_k": sampling.top_k,
            "top_p": sampling.top_p,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "seed": self.seed,
            "ignore_eos": self.ignore_eos,
            "stop": list(self.stop),
            "loop_guard": self.loop_guard,
            "speculation": self.speculation,
        }

    def with_saved(self, saved: object) -> GenerationOptions:
        """These options with the ones a saved conversation kept (`as_dict`'s keys but `speculation`, which the flags
        decide); unknown or odd values are skipped, so an old or hand-edited record never breaks a load."""
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
            sampling=replace(
                sampling,
                temp=float(value("temp", number, sampling.temp)),
                top_k=value("top_k", int, sampling.top_k),
                top_p=float(value("top_p", number, sampling.top_p)),
                min_p=float(value("min_p", number, sampling.min_p)),
                repeat_penalty=float(value("repeat_penalty", number, sampling.repeat_penalty)),
            ),
            max_tokens=value("n_predict", int, self.max_tokens),
            ignore_eos=value("ignore_eos", bool, self.ignore_eos),
            seed=value("seed", int, self.seed),
            loop_guard=value("loop_guard", bool, self.loop_guard),
            stop=tuple(s for s in stop if isinstance(s, str)) if isinstance(stop, list) else self.stop,
        )


def text_only(path: Path) -> NoVision:
    """The error for images sent to a model loaded without a projector."""
    return NoVision(
        f"{path.name} reads text only (no vision projector is loaded with it): load its projector with the model "
        f"(--mmproj mmproj-….gguf) or use a vision model",
        path.name,
    )


def projector_mismatch(projector: Path, model: Path, why: str) -> NoVision:
    """The error for a projector that does not go with the model it is loaded with (`why`: the difference)."""
    return NoVision(
        f"the projector {projector.name} does not belong to {model.name} ({why}): pass the mmproj file published "
        f"with this model, or --no-mmproj to chat without images",
        model.name,
        projector.name,
        why,
    )


def settings_record(params: LoadParams, options: GenerationOptions) -> dict[str, Any]:
    """The one record of the settings a model ran with: what `run --json` reports and a saved conversation keeps
    (`plan --json` reports the load half, `LoadParams.as_dict`)."""
    return {**params.as_dict(), **options.as_dict()}


@dataclass
class SpeculationStats:
    """What speculative decoding did in one reply: the drafter (ngram or draft), the tokens drafted and how many the
    target kept, in how many rounds, and why drafting stopped early (empty when it did not)."""

    mode: str
    drafted: int = 0
    accepted: int = 0
    rounds: int = 0
    stopped: str = ""
    gain: float | None = None  # the rounds' tokens per second over the plain steps' (None: not both measured)

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    def as_dict(self) -> dict[str, Any]:
        acceptance = self.acceptance
        return {
            "mode": self.mode,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "rounds": self.rounds,
            "acceptance": None if acceptance is None else round(acceptance, 3),
            "gain": None if self.gain is None else round(self.gain, 2),
            **({"stopped": self.stopped} if self.stopped else {}),
        }

    @classmethod
    def from_dict(cls, data: object) -> SpeculationStats | None:
        if not isinstance(data, dict) or not isinstance(data.get("mode"), str):
            return None
        counts = {key: data.get(key) for key in ("drafted", "accepted", "rounds")}
        stopped, gain = data.get("stopped"), data.get("gain")
        return cls(
            data["mode"],
            **{key: value for key, value in counts.items() if isinstance(value, int) and not isinstance(value, bool)},
            stopped=stopped if isinstance(stopped, str) else "",
            gain=float(gain) if isinstance(gain, (int, float)) and not isinstance(gain, bool) else None,
        )


@dataclass
class GenerationStats:
    """What one generation measured; its counts grow while it runs (a server's metrics read them live)."""

    prompt_tokens: int = 0
    prompt_evaluated: int = 0  # prompt tokens actually processed: the rest were reused from the KV cache
    completion_tokens: int = 0
    ttft_ms: float | None = None  # prompt evaluation plus the first sampled token
    prompt_tokens_per_s: float | None = None
    tokens_per_s: float | None = None  # decode only: tokens after the first over the time after the first
    stop_reason: StopReason = "eos"
    queue_ms: float | None = None  # time waiting for a slot and room in the KV pool (a batched model)
    speculation: SpeculationStats | None = None  # None: decoded without drafting
    image_tokens: int = 0  # context positions of the images evaluated for this prompt (0: none, or all cached)
    image_ms: float | None = None  # encoding those images and decoding their embeddings (part of ttft_ms)

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
            **({} if self.queue_ms is None else {"queue_ms": rounded(self.queue_ms)}),
            **({} if self.speculation is None else {"speculation": self.speculation.as_dict()}),
            **(
                {} if self.image_ms is None else {"image_tokens": self.image_tokens, "image_ms": rounded(self.image_ms)}
            ),
        }

    @classmethod
    def from_dict(cls, data: object) -> GenerationStats:
        """The stats a record kept (`as_dict`'s keys); odd or missing values fall back to the defaults."""
        found = cls()
        if not isinstance(data, dict):
            return found
        for name, kinds in (
            ("prompt_tokens", int),
            ("prompt_evaluated", int),
            ("completion_tokens", int),
            ("ttft_ms", (int, float)),
            ("prompt_tokens_per_s", (int, float)),
            ("tokens_per_s", (int, float)),
            ("stop_reason", str),
            ("queue_ms", (int, float)),
            ("image_tokens", int),
            ("image_ms", (int, float)),
        ):
            value = data.get(name)
            if isinstance(value, kinds) and not isinstance(value, bool):
                setattr(found, name, value)
        found.speculation = SpeculationStats.from_dict(data.get("speculation"))
        return found


@dataclass(frozen=True)
class SlotState:
    """One slot of a model: a sequence place in its context, and what it holds now (GET /slots)."""

    id: int
    busy: bool
    n_ctx: int  # the most tokens its sequence may hold
    cached: int  # tokens its KV cells hold (a busy slot's prompt and reply so far; an idle one's prompt cache)
    prompt_tokens: int = 0  # the running request's
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_processing": self.busy,
            "n_ctx": self.n_ctx,
            "cached_tokens": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class Generation(Protocol):
    """One completion of a prompt: iterate it for text pieces. `stats` grows as tokens come and is complete once
    iteration ends (also when it ends early); `tokens` are the sampled tokens the KV cache holds; `logprobs`, when the
    options ask for them, one per token of `tokens`, growing with it."""

    stats: GenerationStats
    tokens: list[int]
    logprobs: list[TokenLogprob]

    def __iter__(self) -> Generator[str, None, None]:
        """The text pieces; closing the generator early ends the generation (its stats then say interrupted)."""
        ...


class Model(Protocol):
    """A loaded model, as every layer above the engine uses it."""

    params: LoadParams
    load_ms: float
    parallel: int  # generations that may run at once (1: one after another)

    @property
    def n_ctx(self) -> int:
        """How many tokens a generation may hold, its prompt included."""
        ...

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF's metadata (`general.name`, `tokenizer.chat_template`, ...)."""
        ...

    @property
    def token_bos(self) -> int:
        """The beginning-of-sequence token; -1 when the model has none."""
        ...

    @property
    def token_eos(self) -> int:
        """The end-of-sequence token; -1 when the model has none."""
        ...

    @property
    def other_processes(self) -> tuple[int, ...]:
        """Processes besides this one that hold the model's memory on this machine (a split's child)."""
        ...

    @property
    def vision(self) -> bool:
        """A projector is loaded beside the model: its prompts may carry images (`tokenize_with_images`)."""
        ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]: ...

    def tokenize_with_images(
        self, text: str, images: Sequence[Image], *, add_bos: bool, special: bool = True
    ) -> list[int]:
        """A prompt's tokens (a chat prompt's special tokens parsed) with `images` where the MARKERs of `text` are, in
        order: each
        image a run of one negative id per context position it takes (`engine.vision.image_token`). NoVision when the
        model has no projector; ImageRefused when llama.cpp cannot decode an image."""
        ...

    def detokenize(self, tokens: list[int], *, special: bool = False) -> bytes: ...

    def generation(
        self, prompt_tokens: list[int], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> Generation:
        """A completion of `prompt_tokens` with `options`; a set `cancel` (even before it starts) ends it with
        stop_reason "interrupted"."""
        ...

    def slots(self) -> list[SlotState]:
        """Each slot's state, for a server's /slots."""
        ...

    def close(self) -> None:
        """Free the model's memory; the model is not used after."""
        ...
