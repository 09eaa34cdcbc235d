"""The flags shared by every command that loads a model, named as llama.cpp names them, and their values (`Flags`).

Each flag's default can be set in EDGELLM_HOME/config.toml under the flag's long name
(`ctx-size = 8192`, `threads = 4`); a flag given on the command line wins over the file. The command line adds them
to its parsers (cli.arguments); the TUI and the chat settings use the same table and parsers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgellm import paths
from edgellm.engine.contract import KV_TYPES, SPEC_MODES, GenerationOptions, Sampling
from edgellm.errors import EdgellmError

if TYPE_CHECKING:
    from edgellm.engine.endpoint import Endpoint
    from edgellm.plan.planner import Wishes

MIB = 2**20

FLASH_ATTN = ("auto", "on", "off")
LOAD_TIMEOUT_S = 600.0  # how long a load may go without progress: a stall (a disk that hangs), not a slow disk


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not a number") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("not a number") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def n_predict(text: str) -> int:
    value = _int(text)
    if value < -1:
        raise ValueError("must be -1 (until the model stops) or more")
    return value


def gpu_layers(text: str) -> str | int:
    if text in ("auto", "all"):
        return text
    if not text.isdigit():
        raise ValueError("must be auto, all or a layer count of 0 or more")
    return int(text)


def non_negative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise ValueError("must be 0 or more")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a number of seconds above 0")
    return value


def probability(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def seed(text: str) -> int:
    value = _int(text)
    if not -1 <= value < 2**32:
        raise ValueError("must be -1 (random) or between 0 and 4294967295")
    return value


def choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return parse


@dataclass(frozen=True)
class Flag:
    """One common flag: its spellings, where it lands, how it parses, its default and its help."""

    names: tuple[str, ...]
    dest: str
    parse: Callable[[str], Any] | None
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()  # the words it takes, for completion and the reference (`parse` checks them)

    @property
    def config_key(self) -> str:
        return self.dest.replace("_", "-")


MODEL_FLAGS = (
    Flag(("-m", "--model"), "model", str, None, "GGUF file to load", "MODEL"),
    Flag(("-hf", "--hf-repo"), "hf_repo", str, None, "Hugging Face repo to take the model from", "REPO[:QUANT]"),
    Flag(
        ("-c", "--ctx-size"),
        "ctx_size",
        non_negative_int,
        None,
        "context size in tokens (default: 4096, or the model's trained context if smaller)",
        "N",
    ),
    Flag(("-n", "--n-predict"), "n_predict", n_predict, -1, "tokens to generate, -1 until the model stops", "N"),
    Flag(("--ignore-eos",), "ignore_eos", None, False, "keep generating past end-of-sequence"),
    Flag(("-t", "--threads"), "threads", positive_int, None, "CPU threads (default: physical performance cores)", "N"),
    Flag(
        ("-ngl", "--gpu-layers", "--n-gpu-layers"),
        "gpu_layers",
        gpu_layers,
        "auto",
        "layers on the GPU: auto, all or a count",
        "auto|all|N",
        ("auto", "all"),
    ),
    Flag(("--temp",), "temp", non_negative_float, 0.8, "sampling temperature, 0 for greedy", "T"),
    Flag(("--top-k",), "top_k", non_negative_int, 40, "top-k sampling, 0 to disable", "K"),
    Flag(("--top-p",), "top_p", probability, 0.95, "top-p sampling, 1.0 to disable", "P"),
    Flag(("--min-p",), "min_p", probability, 0.05, "min-p sampling, 0.0 to disable", "P"),
    Flag(("--repeat-penalty",), "repeat_penalty", non_negative_float, 1.0, "penalty for repeated tokens, 1.0 off", "X"),
    Flag(("-s", "--seed"), "seed", seed, -1, "sampling seed, -1 for random", "SEED"),
    Flag(("-sys", "--system-prompt"), "system_prompt", str, None, "system prompt (chat models)", "TEXT"),
    Flag(
        ("--kv", "--cache-type"),
        "kv",
        choice(KV_TYPES),
        None,
        "KV cache type: f16, q8_0 or q4_0 (default: f16, q8_0 when memory is short)",
        "TYPE",
        KV_TYPES,
    ),
    Flag(
        ("-fa", "--flash-attn"),
        "flash_attn",
        choice(FLASH_ATTN),
        "auto",
        "flash attention: auto, on or off",
        "auto|on|off",
        FLASH_ATTN,
    ),
    Flag(
        ("--ram-margin",),
        "ram_margin",
        non_negative_int,
        None,
        "MiB of RAM to keep free (default: max(512, 10%% of RAM))",
        "MIB",
    ),
    Flag(
        ("--gpu-margin",),
        "gpu_margin",
        non_negative_int,
        None,
        "MiB to keep free on a discrete GPU (default 1024)",
        "MIB",
    ),
    Flag(
        ("--spec",),
        "spec",
        choice(SPEC_MODES),
        "auto",
        "speculative decoding: auto (a draft model when one fits and pays, else n-gram lookup), off, ngram or draft",
        "auto|off|ngram|draft",
        SPEC_MODES,
    ),
    Flag(
        ("-md", "--model-draft"),
        "model_draft",
        str,
        None,
        "draft model for speculative decoding: a GGUF file or a stored model of the same tokenizer",
        "MODEL",
    ),
    Flag(("--draft-hf",), "draft_hf", str, None, "Hugging Face repo to take the draft model from", "REPO[:QUANT]"),
    Flag(
        ("-mm", "--mmproj"),
        "mmproj",
        str,
        None,
        "vision projector (mmproj GGUF) loaded with the model, so messages may carry images (default: the one kept "
        "with the model, or an mmproj file beside it)",
        "FILE",
    ),
    Flag(("--no-mmproj",), "no_mmproj", None, False, "load no vision projector, even one kept with the model"),
    Flag(
        ("--min-quality",),
        "min_quality",
        non_negative_float,
        None,
        "refuse quants whose KL divergence from the original is above KLD (measured by `bench --quality`, else a "
        "published prior), such as 0.1",
        "KLD",
    ),
    Flag(
        ("--load-timeout",),
        "load_timeout",
        positive_float,
        LOAD_TIMEOUT_S,
        f"seconds a model load may go without progress before it is stopped (default {LOAD_TIMEOUT_S:g})",
        "SECONDS",
    ),
    Flag(("--offline",), "offline", None, False, "use only models already stored (also HF_HUB_OFFLINE=1)"),
    Flag(("--force",), "force", None, False, "run even when the memory estimate says it will not fit"),
    Flag(("-v", "--verbose"), "verbose", None, False, "show the memory budget, llama.cpp's log and load details"),
)


@dataclass(frozen=True)
class Flags:
    """The values of the common flags for one command: the command line over config.toml over the defaults."""

    model: str | None
    hf_repo: str | None
    ctx_size: int | None
    n_predict: int
    ignore_eos: bool
    threads: int | None
    gpu_layers: str | int
    temp: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    seed: int
    system_prompt: str | None
    kv: str | None  # None: the planner chooses (f16 unless memory is short)
    flash_attn: str
    ram_margin: int | None
    gpu_margin: int | None
    offline: bool
    force: bool
    verbose: bool
    rpc: tuple[Endpoint, ...] = ()  # RPC workers the model is split across; only from --rpc
    parallel: int | str = 0  # sequences decoded together (serve, run --batch): N or "auto"; 0: one at a time
    spec: str = "auto"  # SPEC_MODES: how replies are drafted
    model_draft: str | None = None  # -md: the draft model
    draft_hf: str | None = None  # --draft-hf: the draft model from the Hub
    mmproj: str | None = None  # --mmproj: the vision projector (None: the one kept with the model, if any)
    no_mmproj: bool = False  # --no-mmproj: text only
    min_quality: float | None = None  # --min-quality: the largest KL divergence a chosen quant may have
    load_timeout: float = LOAD_TIMEOUT_S  # --load-timeout: seconds a load may go without progress

    def wishes(self) -> Wishes:
        """What these flags ask of the planner (None: choose for me), the margins included."""
        from edgellm.plan.planner import Wishes  # the planner is not needed to parse a command line

        return Wishes(
            ctx=self.ctx_size,
            gpu_layers=self.gpu_layers,
            kv=self.kv,
            flash_attn=self.flash_attn,
            threads=self.threads,
            force=self.force,
            ram_margin=None if self.ram_margin is None else self.ram_margin * MIB,
            gpu_margin=None if self.gpu_margin is None else self.gpu_margin * MIB,
            parallel=0 if self.rpc else self.parallel,
            min_quality=self.min_quality,
        )

    def generation_options(self, chat: bool = False) -> GenerationOptions:
        """The per-call options these flags ask for. The loop guard is on in chat unless --ignore-eos or -n is
        given."""
        sampling = Sampling(self.temp, self.top_k, self.top_p, self.min_p, self.repeat_penalty)
        return GenerationOptions(
            sampling=sampling,
            max_tokens=self.n_predict,
            ignore_eos=self.ignore_eos,
            seed=self.seed,
            loop_guard=chat and not self.ignore_eos and self.n_predict < 0,
            speculation=self.spec,
        )


SAMPLING_DESTS = (
    "n_predict",
    "ignore_eos",
    "temp",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "seed",
    "system_prompt",
)


def load_config(path: Path) -> dict[str, Any]:
    """The flag defaults in config.toml, checked with the flags' own parsers; {} when there is no file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise EdgellmError(f"cannot read {path}: {error}; fix or remove the file") from None
    except tomllib.TOMLDecodeError as error:
        raise EdgellmError(f"{path} is not valid TOML ({error}); fix or remove the file") from None
    by_key = {flag.config_key: flag for flag in MODEL_FLAGS}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        flag = by_key.get(key)
        if flag is None:
            raise EdgellmError(f"{path}: unknown setting {key!r}; known settings: {', '.join(sorted(by_key))}")
        if flag.parse is None:
            if not isinstance(value, bool):
                raise EdgellmError(f"{path}: {key} must be true or false")
            values[flag.dest] = value
            continue
        if isinstance(value, (dict, list)) or isinstance(value, bool):
            raise EdgellmError(f"{path}: {key} = {value!r} is not a valid value for {flag.names[0]}")
        try:
            values[flag.dest] = flag.parse(str(value))
        except ValueError as error:
            raise EdgellmError(f"{path}: {key} = {value!r}: {error}") from None
    return values


def flags_from(args: object, config: dict[str, Any]) -> Flags:
    """The flags given (`args`: an argparse namespace, or anything with the flags' names as attributes) over
    config.toml's values, over the built-in defaults."""
    defaults = {flag.dest: flag.default for flag in MODEL_FLAGS}
    values: dict[str, Any] = {}
    for field in fields(Flags):
        if field.name == "rpc":
            values["rpc"] = tuple(getattr(args, "rpc", None) or ())
            continue
        if field.name == "parallel":
            values["parallel"] = getattr(args, "parallel", None) or 0
            continue
        given = getattr(args, field.name, None)
        values[field.name] = given if given is not None else config.get(field.name, defaults[field.name])
    return Flags(**values)


def flags_of(args: object) -> Flags:
    """The flags given, with EDGELLM_HOME/config.toml filling what the command line left out."""
    return flags_from(args, load_config(paths.config_path()))


def parallel(text: str) -> int | str:
    """--parallel: auto, or how many sequences decode together (1 to 256, llama.cpp's most)."""
    if text == "auto":
        return text
    value = positive_int(text)
    if value > 256:
        raise ValueError("must be auto or from 1 to 256 (llama.cpp decodes at most 256 sequences together)")
    return value


def config_wishes(ctx: int | None = None, min_quality: float | None = None) -> Wishes:
    """What config.toml asks of the planner (its margins, context, KV cache, quality bound...) for work that plans
    without the model flags (pull, recommend, convert's quant choice); `ctx` and `min_quality` as given on that
    command's line."""
    wishes = flags_of(object()).wishes()
    if ctx is not None:
        wishes = replace(wishes, ctx=ctx)
    return wishes if min_quality is None else replace(wishes, min_quality=min_quality)
