"""Load a GGUF into llama.cpp with settings already checked, turning load failures into UserErrors."""

from __future__ import annotations

import contextlib
import ctypes
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterator

from edgellm.storage import disk
from edgellm.engine.llama_log import LlamaLog
from edgellm.errors import LoadFailed

if TYPE_CHECKING:
    from edgellm.engine.generate import Generation, GenerationOptions
    from edgellm.plan.planner import Plan

KV_GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}
LLAMA_DEFAULT_SEED = 0xFFFFFFFF


@dataclass(frozen=True)
class LoadSettings:
    """What llama.cpp is asked for; every value already resolved (no 'auto')."""

    path: Path
    n_ctx: int
    n_threads: int
    n_threads_batch: int
    n_gpu_layers: int  # -1: all
    flash_attn: bool
    kv: str
    seed: int  # -1: random
    n_batch: int = 512
    use_mmap: bool = True
    use_mlock: bool = False
    rpc_servers: tuple[str, ...] = ()  # RPC workers (HOST:PORT) the last n_gpu_layers go to, shared by tensor_split
    tensor_split: tuple[int, ...] = ()  # per worker, the layers (and output) it holds
    output_here: bool = False  # with workers: the output layer stays on this CPU, so no logits cross the network
    vocab_only: bool = False  # the vocabulary and metadata only: tokenizing for a model run elsewhere

    @classmethod
    def from_plan(cls, path: Path, plan: "Plan", seed: int = -1) -> "LoadSettings":
        """The llama.cpp settings that carry a plan out."""
        return cls(path=path, n_ctx=plan.n_ctx, n_threads=plan.n_threads, n_threads_batch=plan.n_threads_batch,
                   n_gpu_layers=plan.n_gpu_layers, flash_attn=plan.flash_attn, kv=plan.kv, seed=seed,
                   n_batch=plan.n_ubatch, use_mmap=plan.use_mmap, use_mlock=plan.use_mlock)

    def as_dict(self) -> dict[str, Any]:
        """The load settings as `run --json`, `plan --json` and a saved conversation report them."""
        found = {"n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers, "n_batch": self.n_batch,
                 "threads": self.n_threads, "threads_batch": self.n_threads_batch, "flash_attn": self.flash_attn,
                 "kv": self.kv, "use_mmap": self.use_mmap, "use_mlock": self.use_mlock}
        if self.rpc_servers:
            found.update(rpc=list(self.rpc_servers), tensor_split=list(self.tensor_split),
                         output_here=self.output_here)
        return found


@dataclass
class LoadedModel:
    """A model loaded in this process. What the layers above use of a model: `llm` for its vocabulary (tokenize,
    detokenize, metadata), `n_ctx`, `generation` and `close`; a model split across workers (engine.split) offers
    the same."""

    llm: Any  # llama_cpp.Llama
    settings: LoadSettings
    load_ms: float
    log: LlamaLog

    @property
    def n_ctx(self) -> int:
        return context_size(self.llm)

    def generation(self, prompt_tokens: list[int], options: "GenerationOptions",
                   cancel: threading.Event | None = None) -> "Generation":
        """A completion of `prompt_tokens`: iterate it for text pieces; its stats and tokens once it ends."""
        from edgellm.engine.generate import Generation

        return Generation(self.llm, prompt_tokens, options, cancel=cancel)

    def close(self) -> None:
        """Free llama.cpp's model and context."""
        self.llm.close()


def context_size(llm: Any) -> int:
    """How many tokens a generation may hold: llama.cpp pads the context it allocates (to 256 cells), but
    llama-cpp-python's token buffer has the size that was asked for."""
    return min(llm.n_ctx(), len(llm.input_ids))


def load(settings: LoadSettings, log: LlamaLog, keep_terminal: bool = False,
         progress: Callable[[float], None] | None = None) -> LoadedModel:
    """Load the model; a failure comes out as a LoadFailed naming the cause found in llama.cpp's log. `progress` is
    told the fraction loaded as each tensor is read.

    Unless verbose, llama-cpp-python points file descriptors 1 and 2 at /dev/null while it loads; a full-screen
    UI drawing to them asks `keep_terminal` (llama.cpp's log still goes to `log`)."""
    import llama_cpp

    from edgellm.engine import backends

    started = time.perf_counter()
    try:
        # a warning said while llama-cpp-python silences fds 1 and 2 is said after
        with interrupt_after(), disk.held(), templates_left_to_edgellm(llama_cpp):
            log.install()
            backends.load_backends()  # a portable build's CPU variant; logged into `log` like the rest
            llm = _new_llama(llama_cpp, settings, log, keep_terminal, progress)
        llm.verbose = log.echo  # loaded: llama-cpp-python's own per-call prints only when asked for
    except (ValueError, RuntimeError, OSError) as error:
        log.flush()
        raise explain_load_failure(settings.path, log, error) from None
    log.flush()
    return LoadedModel(llm, settings, (time.perf_counter() - started) * 1000, log)


def _new_llama(llama_cpp: ModuleType, settings: LoadSettings, log: LlamaLog, keep_terminal: bool,
               progress: Callable[[float], None] | None = None) -> Any:
    cpu_weights = OUTPUT_WEIGHTS if settings.output_here and settings.rpc_servers else None
    if cpu_weights is None and progress is None:
        return _llama(llama_cpp, settings, log, keep_terminal)
    with model_params(llama_cpp, cpu_weights, progress) as kept:
        llm = _llama(llama_cpp, settings, log, keep_terminal)
    llm._edgellm_params = kept  # llama.cpp keeps pointing at the overrides while the model lives
    return llm


# The output layer's weights: its norm, its matrix, and the input embedding that a tied output reuses (the input
# layer is on this CPU whatever the split). Anchored: llama.cpp searches the pattern in each tensor's name, and
# "output" alone would also take every layer's attn_output.
OUTPUT_WEIGHTS = r"^(output_norm|output|token_embd)\.weight$"
_PARAMS_SWAP = threading.Lock()


class _BufferOverride(ctypes.Structure):
    """struct llama_model_tensor_buft_override: the tensors whose name matches `pattern` go to buffer type `buft`."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@contextlib.contextmanager
def model_params(llama_cpp: ModuleType, cpu_weights: str | None = None,
                 progress: Callable[[float], None] | None = None) -> Iterator[tuple[Any, ...]]:
    """While a model is created inside, two model parameters llama-cpp-python leaves unset: `cpu_weights`, a pattern
    of weights kept in this CPU's memory (their matrix products run here), as llama.cpp's `--override-tensor
    PATTERN=CPU` does; and `progress`, called with the fraction loaded as each tensor is read (or sent to a worker).
    llama-cpp-python builds the parameters and loads in one call, so its default parameters come back with these set
    for the while. Yields what llama.cpp points at: keep it as long as the model."""
    kept: list[Any] = []
    if cpu_weights is not None:
        kept.append(_cpu_overrides(cpu_weights))
    if progress is not None:
        def report(fraction: float, user_data: Any) -> bool:
            try:
                progress(fraction)
            except Exception:  # noqa: BLE001 - ctypes would drop it; the load goes on
                pass
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
        raise LoadFailed("this llama.cpp build's backend registry cannot be read, so the output layer cannot be kept "
                         "here; reinstall with `python3 scripts/install.py`", Path(""), "other")
    lib.ggml_backend_dev_by_type.argtypes, lib.ggml_backend_dev_by_type.restype = [ctypes.c_int], ctypes.c_void_p
    lib.ggml_backend_dev_buffer_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_buffer_type.restype = ctypes.c_void_p
    cpu = lib.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU: its buffer type is the one llama.cpp
    overrides = (_BufferOverride * 2)()  # compares with to use the CPU's (repacked) buffers; the second ends the list
    overrides[0].pattern, overrides[0].buft = pattern.encode(), lib.ggml_backend_dev_buffer_type(cpu)
    return overrides


def _llama(llama_cpp: ModuleType, settings: LoadSettings, log: LlamaLog, keep_terminal: bool) -> Any:
    return llama_cpp.Llama(
        model_path=str(settings.path),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_batch,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads_batch,
        n_gpu_layers=settings.n_gpu_layers,
        tensor_split=[float(layers) for layers in settings.tensor_split] or None,
        vocab_only=settings.vocab_only,
        flash_attn=settings.flash_attn,
        type_k=KV_GGML_TYPES[settings.kv],
        type_v=KV_GGML_TYPES[settings.kv],
        seed=LLAMA_DEFAULT_SEED if settings.seed < 0 else settings.seed,
        use_mmap=settings.use_mmap,
        use_mlock=settings.use_mlock,
        swa_full=False,  # sliding-window layers keep only their window: what the planner budgets
        verbose=log.echo or keep_terminal,
    )


@contextlib.contextmanager
def interrupt_after() -> Iterator[None]:
    """Ctrl-C while llama.cpp works (a model loading) is kept and raised once the block ends. Python raises
    KeyboardInterrupt wherever it next runs Python code, which there is llama.cpp's log callback: ctypes drops an
    exception raised there, so the interrupt was lost and the command went on. The handler is the main thread's
    only (signals are its); the log callback keeps one that lands in it either way."""
    from edgellm.engine import llama_log

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import signal

    asked: list[bool] = []
    llama_log.interrupted.clear()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: asked.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if asked or llama_log.interrupted.is_set():
        llama_log.interrupted.clear()
        raise KeyboardInterrupt


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
def templates_left_to_edgellm(llama_cpp: ModuleType) -> Iterator[None]:
    """While a model loads: llama-cpp-python compiles every chat template in a GGUF as it loads it, in a Jinja
    sandbox without bounds, where `{{ 'x' * 10**10 }}` is folded into 10 GB at compile time. edgellm never uses
    those handlers (it renders in its own bounded sandbox), so during the load they are stand-ins that compile
    nothing; afterwards llama-cpp-python's own class is back."""
    module = llama_cpp.llama.llama_chat_format
    with _TEMPLATE_SWAP:
        original, module.Jinja2ChatFormatter = module.Jinja2ChatFormatter, _UncompiledTemplate
        try:
            yield
        finally:
            module.Jinja2ChatFormatter = original


def explain_load_failure(path: Path, log: LlamaLog, error: Exception) -> LoadFailed:
    unknown = log.find("unknown model architecture")
    if unknown:
        found = re.search(r"unknown model architecture: '([^']*)'", unknown)
        arch = found.group(1) if found else "?"
        return LoadFailed(f"{path}: model architecture '{arch}' is not supported by this llama.cpp build; "
                          f"use a model of a supported architecture or update edgellm", path, "architecture")
    for needle in ("failed to allocate", "unable to allocate", "out of memory"):
        line = log.find(needle)
        if line:
            return LoadFailed(f"{path}: not enough memory to load ({line}); try a smaller -c or a smaller quant",
                              path, "memory")
    reason = log.find("error loading model") or log.find("failed to") or str(error)
    return LoadFailed(f"{path}: llama.cpp could not load the model ({reason}); see the log: {log.path}", path, "other")
