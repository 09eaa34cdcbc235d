"""A transformers checkpoint's config.json, normalized, and the ModelSpec of the GGUF converting it would produce.

`read_config(folder)` is the only I/O: it parses config.json into an `HFConfig` (GGUF architecture name, shape,
rope, norms, tied embeddings, sliding window, token ids). `spec_from_config(config, quant, path)` is pure: it lists
the tensors convert_hf_to_gguf.py writes for the architecture, gives each the type it would get at `quant`, and
sums their bytes into the same `ModelSpec` that `edgellm.plan.spec.load_spec` reads from a GGUF header, so
`plan()` and `choose_quant()` size a conversion before any GGUF exists.

Tensor types, per tensor (not catalog.py's average bits per weight, which is Llama-3-8B's mix):

- F32 / F16 / BF16 / Q8_0 are what convert_hf_to_gguf.py writes itself: every 2-D `.weight` at that type (Q8_0
  falls back to F16 for a row not a multiple of 32), 1-D tensors, norms and biases in F32.
- Every other quant is llama.cpp's quantize run on such a file, and the K-quant mixes follow its
  `llama_tensor_get_type` for the dense architectures here: the output (or, when tied, the token embedding) in
  Q6_K, attn_v and ffn_down a step or two up in some layers (`use_more_bits`), attn_output up for Q2_K/Q3_K, and a
  row that is not a multiple of 256 falls back to a 32-block type (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1,
  Q6_K -> Q8_0). Checked tensor by tensor against llama.cpp's quantize on tinymodel GGUFs and against the real
  Gemma 3 270M Q4_K_M (tests/integration/test_convert_hf_config.py). Not modelled: an importance matrix (IQ quants
  and Q2_K_S
  need one, and are refused here), `--pure`, per-tensor overrides, MoE and Falcon rules.
- The file's header is estimated (tensor table exactly, the vocabulary at about 32 bytes a token: Gemma 3's
  SentencePiece vocabulary takes 25, BPE vocabularies with their merges somewhat more): under 1% of any real model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgellm.errors import EdgellmError, ModelFileError
from edgellm.gguf.header import DEFAULT_ALIGNMENT, GGML_TYPES
from edgellm.gguf.quants import ALIASES, QUANT_ORDER, normalize
from edgellm.plan.spec import SWA_PATTERNS, ModelSpec, matrices_of

# transformers class (config.json `architectures[0]`) -> GGUF architecture, as convert_hf_to_gguf.py maps them.
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Gemma3ForCausalLM": "gemma3",
    "Gemma3ForConditionalGeneration": "gemma3",
    "Phi3ForCausalLM": "phi3",
}
# config.json `model_type` -> GGUF architecture, used only when `architectures` is absent.
MODEL_TYPES = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "phi3": "phi3",
}

# transformers' defaults for what config.json may leave out, per GGUF architecture. Gemma 3's multimodal configs
# carry only the values that differ from Gemma3TextConfig's defaults in `text_config`, so all of those are here.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "qwen2": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "qwen3": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "phi3": {"max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0},
    "gemma3": {
        "vocab_size": 262208,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10000.0,
        "sliding_window": 4096,
        "sliding_window_pattern": 6,
        "tie_word_embeddings": True,
        "bos_token_id": 2,
        "eos_token_id": 1,
    },
}
_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")

# The quants spec_from_config can size: the converter's own types, and llama.cpp's legacy and K-quant mixes.
# ftype -> the type most 2-D tensors get.
_DEFAULT_TYPE = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "Q8_0": "Q8_0",
    "Q4_0": "Q4_0",
    "Q4_1": "Q4_1",
    "Q5_0": "Q5_0",
    "Q5_1": "Q5_1",
    "Q2_K": "Q2_K",
    "Q3_K_S": "Q3_K",
    "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K",
    "Q4_K_M": "Q4_K",
    "Q5_K_S": "Q5_K",
    "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K",
}
SUPPORTED_QUANTS = tuple(q for q in QUANT_ORDER if q in _DEFAULT_TYPE)
CONVERTER_TYPES = ("F32", "F16", "BF16", "Q8_0")  # written by the converter itself, no llama.cpp quantize step
# A K-quant type whose row length is not a multiple of 256 falls back to one with 32-element blocks.
_K_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_BLOCKS = {name: (elements, n_bytes) for name, elements, n_bytes in GGML_TYPES.values()}
VOCAB_ENTRY_BYTES = 32  # header bytes per vocabulary entry (token string, score/type, BPE merges), on average
OTHER_METADATA_BYTES = 64 * 1024  # hyper-parameters, chat template, special token ids


@dataclass(frozen=True)
class RopeScaling:
    """config.json's `rope_scaling`, normalized."""

    kind: str  # llama3 | linear | longrope | yarn | dynamic | ...
    factor: float | None = None
    low_freq_factor: float | None = None  # llama3
    high_freq_factor: float | None = None  # llama3
    original_context: int | None = None  # llama3, yarn, longrope: the context before scaling
    long_factors: tuple[float, ...] = ()  # phi3 longrope: written to the GGUF as rope_factors_long
    short_factors: tuple[float, ...] = ()  # and rope_factors_short
    extrapolation_factor: float | None = None  # yarn: ext_factor
    attention_factor: float | None = None  # yarn: attn_factor
    beta_fast: float | None = None  # yarn
    beta_slow: float | None = None  # yarn


@dataclass(frozen=True)
class HFConfig:
    """What converting a checkpoint needs to know from its config.json, in GGUF's terms."""

    hf_architecture: str  # architectures[0] (or model_type when there is none)
    architecture: str  # GGUF: llama | qwen2 | qwen3 | gemma3 | phi3
    n_layers: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int  # key and value length per head
    head_dim_given: bool  # the config names head_dim (transformers 5 always does for llama, qwen3, gemma3)
    rope_dim: int  # dimensions rotated per head (phi3's partial_rotary_factor makes it less than head_dim)
    n_vocab: int
    context_length: int  # max_position_embeddings
    rope_theta: float
    rope_theta_swa: float | None  # gemma3: the sliding-window layers' rope base (rope_local_base_freq)
    rope_scaling: RopeScaling | None
    rms_eps: float
    logit_softcap: float | None  # gemma3: final_logit_softcapping (tanh-capped logits), when the config sets one
    tied_embeddings: bool  # no output.weight: the output reuses token_embd
    sliding_window: int  # the window the GGUF records (0: none)
    swa_layers: tuple[bool, ...]  # per layer: True where llama.cpp attends to the window only
    qk_norm: bool  # per-head RMS norms on q and k (qwen3, gemma3)
    qkv_bias: bool  # biases on q, k and v (qwen2; llama's attention_bias)
    o_bias: bool  # bias on the attention output (llama's attention_bias)
    mlp_bias: bool  # biases on gate, up and down (llama's mlp_bias)
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    dtype: str | None  # torch_dtype: the checkpoint's weights (bfloat16, float16, float32)


@dataclass(frozen=True)
class TensorShape:
    """One tensor the converter writes: its GGUF name and shape in ggml order (shape[0] is the row length)."""

    name: str
    shape: tuple[int, ...]

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


def read_config(folder: Path) -> HFConfig:
    """Parse `folder`/config.json; ModelFileError when it is missing, unreadable, broken or unsupported."""
    folder = Path(folder)
    path = folder / "config.json"
    if folder.is_file():
        raise ModelFileError(
            f"{folder} is a file: pass the folder of a Hugging Face checkpoint "
            f"(the one holding config.json and the *.safetensors)",
            folder,
            "not-folder",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = f"{folder} has no config.json" if folder.is_dir() else f"{folder} does not exist"
        raise ModelFileError(
            f"{where}: pass the folder of a Hugging Face transformers checkpoint "
            f"(config.json beside the *.safetensors)",
            path,
            "missing",
        ) from None
    except PermissionError:
        raise ModelFileError(f"{path}: permission denied: make it readable (chmod +r)", path, "permission") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path} cannot be read ({error}): download it again", path, "corrupt") from None
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ModelFileError(f"{path} is not valid JSON ({error}): download it again", path, "corrupt") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path} is not a transformers config (a JSON object): download it again", path, "corrupt")
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path | str = "config.json") -> HFConfig:
    """The normalized config from config.json's parsed contents (`path` only names it in errors)."""
    path = Path(path)
    names = raw.get("architectures")
    found = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    model_type = raw.get("model_type") if isinstance(raw.get("model_type"), str) else None
    arch = ARCHITECTURES.get(found) if found else MODEL_TYPES.get(model_type or "")
    if arch is None:
        supported = ", ".join(f"{name} ({gguf})" for name, gguf in ARCHITECTURES.items())
        what = found or (f"model_type {model_type!r}" if model_type else "no architecture named")
        raise ModelFileError(
            f"{path}: {what} is not an architecture edgellm can convert; supported: {supported}. "
            f"Look for a GGUF of this model on the Hub (edgellm pull)",
            path,
            "unsupported",
        )
    hf_architecture = found or model_type or arch
    text = raw.get("text_config") if hf_architecture == "Gemma3ForConditionalGeneration" else None
    values = _merged(arch, raw, text if isinstance(text, dict) else None)

    def integer(key: str) -> int:
        value = values.get(key)
        if value is None:
            raise ModelFileError(
                f"{path} has no {key}: it is not a complete {hf_architecture} config; download it again",
                path,
                "corrupt",
            )
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelFileError(
                f"{path}: {key} is {value!r}, not a positive whole number: download it again", path, "corrupt"
            )
        return value

    def number(key: str) -> float:
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelFileError(f"{path}: {key} is {value!r}, not a number: download it again", path, "corrupt")
        return float(value)

    for key in _REQUIRED:
        integer(key)
    n_embd, n_head = values["hidden_size"], values["num_attention_heads"]
    n_layers = values["num_hidden_layers"]
    if values.get("num_key_value_heads") is None:
        values["num_key_value_heads"] = n_head
    head_dim_given = values.get("head_dim") is not None
    if not head_dim_given:
        values["head_dim"] = n_embd // n_head
    n_head_kv, head_dim = integer("num_key_value_heads"), integer("head_dim")
    if n_head % n_head_kv:
        raise ModelFileError(
            f"{path}: num_attention_heads {n_head} is not a multiple of num_key_value_heads "
            f"{n_head_kv}: download it again",
            path,
            "corrupt",
        )
    partial = values.get("partial_rotary_factor")
    rope_dim = int(head_dim * partial) if isinstance(partial, (int, float)) and 0 < partial < 1 else head_dim
    given_rope = values.get("rope_parameters")  # transformers 5's, which wins over a stale rope_scaling beside it
    scaling = _rope_scaling(given_rope if isinstance(given_rope, dict) else values.get("rope_scaling"))
    top_original = values.get("original_max_position_embeddings")  # Phi-3 128k and 3.5 keep it at the top level
    if scaling is not None and scaling.original_context is None and isinstance(top_original, int):
        scaling = replace(scaling, original_context=top_original)
    window, swa_layers = _sliding_window(arch, values, n_layers)
    eos = values.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, list) else (eos,) if isinstance(eos, int) else ()
    bos = values.get("bos_token_id")
    theta_swa = values.get("rope_local_base_freq") if arch == "gemma3" else None
    tied = values.get("tie_word_embeddings")
    softcap = values.get("final_logit_softcapping")
    return HFConfig(
        hf_architecture=hf_architecture,
        architecture=arch,
        n_layers=n_layers,
        n_embd=n_embd,
        n_ff=integer("intermediate_size"),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        head_dim_given=head_dim_given,
        rope_dim=rope_dim,
        n_vocab=integer("vocab_size"),
        context_length=integer("max_position_embeddings"),
        rope_theta=number("rope_theta"),
        rope_theta_swa=float(theta_swa) if theta_swa is not None else None,
        rope_scaling=scaling,
        rms_eps=number("rms_norm_eps"),
        logit_softcap=float(softcap) if isinstance(softcap, (int, float)) and softcap and arch == "gemma3" else None,
        tied_embeddings=bool(tied) if tied is not None else arch == "gemma3",
        sliding_window=window,
        swa_layers=swa_layers,
        qk_norm=arch in ("qwen3", "gemma3"),
        qkv_bias=arch == "qwen2" or (arch == "llama" and bool(values.get("attention_bias"))),
        o_bias=arch == "llama" and bool(values.get("attention_bias")),
        mlp_bias=arch == "llama" and bool(values.get("mlp_bias")),
        bos_token_id=bos if isinstance(bos, int) and not isinstance(bos, bool) else None,
        eos_token_ids=tuple(int(i) for i in eos_ids if isinstance(i, int) and not isinstance(i, bool)),
        dtype=_dtype(values.get("torch_dtype") or values.get("dtype")),
    )


def _merged(arch: str, raw: dict[str, Any], text: dict[str, Any] | None) -> dict[str, Any]:
    """The config's own values over the architecture's defaults: a default applies only where the checkpoint says
    nothing, at the top level or in `rope_parameters` (for a Gemma 3 wrapper: text_config's values, with the top
    level's token ids and dtype where text_config has none)."""
    values = dict(_DEFAULTS.get(arch, {}))
    if text is None:
        values.update(_explicit(raw))
        return values
    for key in ("bos_token_id", "eos_token_id", "tie_word_embeddings", "torch_dtype", "dtype"):
        if raw.get(key) is not None:
            values[key] = raw[key]
    values.update(_explicit(text))
    return values


def _explicit(config: dict[str, Any]) -> dict[str, Any]:
    """What a config.json sets itself, in the keys older configs use: transformers 5 writes the rope's values into
    `rope_parameters` (per layer type for Gemma 3: `full_attention`, `sliding_attention`) instead of `rope_theta`,
    `rope_local_base_freq`, `partial_rotary_factor` and `rope_scaling` at the top level. `rope_parameters` is
    flattened to the full-attention layers' values and wins over a top-level key, as in transformers 5 and
    llama.cpp's converter; its scaling is read from it by `_rope_scaling`."""
    values = {key: value for key, value in config.items() if value is not None}
    rope = values.get("rope_parameters")
    if not isinstance(rope, dict):
        return values
    if isinstance(rope.get("full_attention"), dict):
        sliding = rope.get("sliding_attention")
        if isinstance(sliding, dict) and sliding.get("rope_theta") is not None:
            values["rope_local_base_freq"] = sliding["rope_theta"]
        rope = rope["full_attention"]
        values["rope_parameters"] = rope
    for key in ("rope_theta", "partial_rotary_factor"):
        if rope.get(key) is not None:
            values[key] = rope[key]
    return values


def _dtype(value: Any) -> str | None:
    if isinstance(value, str):
        return value.removeprefix("torch.")
    return None


def _rope_scaling(value: Any) -> RopeScaling | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("rope_type") or value.get("type")
    if not isinstance(kind, str) or kind == "default":
        return None

    def number(key: str) -> float | None:
        item = value.get(key)
        return float(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else None

    def factors(key: str) -> tuple[float, ...]:
        items = value.get(key)
        return tuple(float(item) for item in items) if isinstance(items, list) else ()

    original = value.get("original_max_position_embeddings")
    return RopeScaling(
        kind=kind,
        factor=number("factor"),
        low_freq_factor=number("low_freq_factor"),
        high_freq_factor=number("high_freq_factor"),
        original_context=original if isinstance(original, int) else None,
        long_factors=factors("long_factor"),
        short_factors=factors("short_factor"),
        extrapolation_factor=number("extrapolation_factor"),
        attention_factor=number("attention_factor")
        if value.get("attention_factor") is not None
        else number("attn_factor"),
        beta_fast=number("beta_fast"),
        beta_slow=number("beta_slow"),
    )


def _sliding_window(arch: str, values: dict[str, Any], n_layers: int) -> tuple[int, tuple[bool, ...]]:
    """(the window the GGUF records, the layers llama.cpp runs with it).

    Only gemma3 and phi3 GGUFs record a window (convert_hf_to_gguf.py writes none for llama, qwen2, qwen3, so
    Mistral 7B v0.1's 4096 and Qwen2's unused sliding_window are ignored), and llama.cpp turns Phi-3's off
    (llama.cpp#13676): every phi3 layer keeps the full context.
    """
    window = values.get("sliding_window")
    window = window if isinstance(window, int) and not isinstance(window, bool) and window > 0 else 0
    if arch == "phi3":
        return window, (False,) * n_layers
    if arch != "gemma3" or not window:
        return 0, (False,) * n_layers
    kinds = values.get("layer_types")
    if isinstance(kinds, list) and len(kinds) == n_layers:
        return window, tuple(kind == "sliding_attention" for kind in kinds)
    every = values.get("sliding_window_pattern") or values.get("_sliding_window_pattern") or SWA_PATTERNS[arch]
    every = every if isinstance(every, int) and every > 0 else SWA_PATTERNS[arch]
    return window, tuple((layer + 1) % every != 0 for layer in range(n_layers))


def gguf_tensors(config: HFConfig) -> list[TensorShape]:
    """The tensors convert_hf_to_gguf.py writes for `config`, in llama.cpp's order: the non-layer tensors, then
    each layer's (the order llama.cpp's quantize counts attn_v and ffn_down in)."""
    c = config
    q_size, kv_size = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    tensors = [TensorShape("token_embd.weight", (c.n_embd, c.n_vocab)), TensorShape("output_norm.weight", (c.n_embd,))]
    if not c.tied_embeddings:
        tensors.append(TensorShape("output.weight", (c.n_embd, c.n_vocab)))
    scaling = c.rope_scaling
    if c.architecture == "llama" and scaling is not None and scaling.kind == "llama3":
        tensors.append(TensorShape("rope_freqs.weight", (c.rope_dim // 2,)))
    if c.architecture == "phi3" and scaling is not None and (scaling.long_factors or scaling.short_factors):
        tensors.append(TensorShape("rope_factors_long.weight", (len(scaling.long_factors) or c.rope_dim // 2,)))
        tensors.append(TensorShape("rope_factors_short.weight", (len(scaling.short_factors) or c.rope_dim // 2,)))
    for layer in range(c.n_layers):
        blk = f"blk.{layer}"
        layer_tensors: list[tuple[str, tuple[int, ...]]] = [(f"{blk}.attn_norm.weight", (c.n_embd,))]
        if c.architecture == "phi3":  # fused q/k/v and gate/up, as Phi-3 stores them
            layer_tensors += [
                (f"{blk}.attn_qkv.weight", (c.n_embd, q_size + 2 * kv_size)),
                (f"{blk}.attn_output.weight", (q_size, c.n_embd)),
                (f"{blk}.ffn_norm.weight", (c.n_embd,)),
                (f"{blk}.ffn_up.weight", (c.n_embd, 2 * c.n_ff)),
                (f"{blk}.ffn_down.weight", (c.n_ff, c.n_embd)),
            ]
            tensors += [TensorShape(name, shape) for name, shape in layer_tensors]
            continue
        layer_tensors += [
            (f"{blk}.attn_q.weight", (c.n_embd, q_size)),
            (f"{blk}.attn_k.weight", (c.n_embd, kv_size)),
            (f"{blk}.attn_v.weight", (c.n_embd, kv_size)),
            (f"{blk}.attn_output.weight", (q_size, c.n_embd)),
        ]
        if c.qkv_bias:
            layer_tensors += [
                (f"{blk}.attn_q.bias", (q_size,)),
                (f"{blk}.attn_k.bias", (kv_size,)),
                (f"{blk}.attn_v.bias", (kv_size,)),
            ]
        if c.o_bias:
            layer_tensors.append((f"{blk}.attn_output.bias", (c.n_embd,)))
        if c.qk_norm:
            layer_tensors += [
                (f"{blk}.attn_q_norm.weight", (c.head_dim,)),
                (f"{blk}.attn_k_norm.weight", (c.head_dim,)),
            ]
        if c.architecture == "gemma3":
            layer_tensors += [
                (f"{blk}.post_attention_norm.weight", (c.n_embd,)),
                (f"{blk}.post_ffw_norm.weight", (c.n_embd,)),
            ]
        layer_tensors += [
            (f"{blk}.ffn_norm.weight", (c.n_embd,)),
            (f"{blk}.ffn_gate.weight", (c.n_embd, c.n_ff)),
            (f"{blk}.ffn_up.weight", (c.n_embd, c.n_ff)),
            (f"{blk}.ffn_down.weight", (c.n_ff, c.n_embd)),
        ]
        if c.mlp_bias:
            layer_tensors += [
                (f"{blk}.ffn_gate.bias", (c.n_ff,)),
                (f"{blk}.ffn_up.bias", (c.n_ff,)),
                (f"{blk}.ffn_down.bias", (c.n_embd,)),
            ]
        tensors += [TensorShape(name, shape) for name, shape in layer_tensors]
    return tensors


def canonical_quant(quant: str) -> str:
    """`quant` spelled as SUPPORTED_QUANTS spell it ('q4_k' -> 'Q4_K_M', 'fp16' -> 'F16'); EdgellmError if it is
    none of them."""
    name = normalize(quant)
    name = ALIASES.get(name, name)
    if name not in _DEFAULT_TYPE:
        raise EdgellmError(
            f"{quant!r} is not a quant edgellm can convert to: use one of {', '.join(SUPPORTED_QUANTS)} "
            f"(an IQ quant: convert to F16, then quantize that with an importance matrix: `edgellm quantize`)"
        )
    return name


def tensor_types(config: HFConfig, quant: str) -> dict[str, str]:
    """The ggml type of each tensor of `gguf_tensors(config)` in the GGUF converted to `quant`."""
    quant = canonical_quant(quant)
    default = _DEFAULT_TYPE[quant]
    types: dict[str, str] = {}
    for tensor in gguf_tensors(config):
        name = tensor.name
        if len(tensor.shape) < 2 or name.endswith("_norm.weight") or not name.endswith(".weight"):
            types[name] = "F32"  # what the converter keeps in F32, and quantize leaves alone
        elif quant in ("F32", "F16", "BF16"):
            types[name] = quant
        elif quant == "Q8_0":
            types[name] = "Q8_0" if tensor.shape[0] % 32 == 0 else "F16"  # the converter's fallback
        else:
            layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
            wanted = _mixed_type(config, quant, default, tensor, layer)
            types[name] = _fallback(wanted, tensor.shape[0])
    return types


def _use_more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits in the _M mixes: the first and last eighth, every third
    in between."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def _mixed_type(config: HFConfig, quant: str, default: str, tensor: TensorShape, layer: int) -> str:
    """The type llama.cpp's quantize picks for one 2-D tensor of a dense model at `quant`, before any fallback."""
    name, n = tensor.name, config.n_layers
    output = name == "output.weight" or (config.tied_embeddings and name == "token_embd.weight")
    if output:
        if tensor.shape[0] % _BLOCKS[default][0]:
            return "Q8_0"
        return default if default == "Q8_0" else "Q6_K"
    if name == "token_embd.weight":
        return default
    kind = name.split(".")[2] if layer >= 0 else ""
    if kind in ("attn_v", "attn_qkv"):
        chosen = _attn_v_type(config, quant, default, layer)
        if n == 80 and config.architecture in ("llama", "qwen2") and config.n_head != config.n_head_kv:
            # llama.cpp's 70B rule: attn_v is 8x smaller than attn_q there, so Q3_K/Q4_K go up to Q5_K
            chosen = "Q5_K" if chosen in ("Q3_K", "Q4_K") else chosen
        return chosen
    if kind == "ffn_down":
        if quant == "Q2_K":
            return "Q3_K"
        if quant == "Q3_K_M":
            return "Q5_K" if layer < n // 16 else "Q4_K"
        if quant == "Q3_K_L":
            return "Q5_K"
        if quant in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n):
            return "Q6_K"
        if quant == "Q4_K_S" and layer < n // 8:
            return "Q5_K"
        return default
    if kind == "attn_output":
        return {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(quant, default)
    return default


def _attn_v_type(config: HFConfig, quant: str, default: str, layer: int) -> str:
    if quant == "Q2_K":
        return "Q4_K" if config.n_head // config.n_head_kv >= 4 else "Q3_K"
    if quant == "Q3_K_M":
        return "Q5_K" if layer < 2 else "Q4_K"
    if quant == "Q3_K_L":
        return "Q5_K"
    if quant in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, config.n_layers):
        return "Q6_K"
    if quant == "Q4_K_S" and layer < 4:
        return "Q5_K"
    return default


def _fallback(wanted: str, row: int) -> str:
    """llama.cpp's type for a row length the wanted type's blocks do not divide."""
    if row % _BLOCKS[wanted][0] == 0:
        return wanted
    fallback = _K_FALLBACK.get(wanted, "F16")
    return fallback if row % _BLOCKS[fallback][0] == 0 else "F16"


def tensor_bytes(shape: tuple[int, ...], ggml_type: str) -> int:
    elements, n_bytes = _BLOCKS[ggml_type]
    return math.prod(shape) // elements * n_bytes


def spec_from_config(config: HFConfig, quant: str, path: str, *, has_chat_template: bool = False) -> ModelSpec:
    """The ModelSpec of the GGUF that converting `config`'s checkpoint to `quant` would write, as
    `edgellm.plan.spec.load_spec` would read it back; `path` names it (where it would be written).

    `has_chat_template`: whether the checkpoint's tokenizer_config.json carries one (read_config does not look).
    """
    quant = canonical_quant(quant)
    tensors = gguf_tensors(config)
    types = tensor_types(config, quant)
    layer_bytes = [0] * config.n_layers
    token_embd = output = data = info = 0
    for tensor in tensors:
        size = tensor_bytes(tensor.shape, types[tensor.name])
        data += -(-size // DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
        info += 8 + len(tensor.name) + 4 + 8 * len(tensor.shape) + 4 + 8
        if tensor.name.startswith("blk."):
            layer_bytes[int(tensor.name.split(".")[1])] += size
        elif tensor.name.startswith("output"):
            output += size
        else:
            token_embd += size  # with rope_freqs / rope_factors, as spec.py counts non-layer tensors
    header = 24 + info + config.n_vocab * VOCAB_ENTRY_BYTES + OTHER_METADATA_BYTES
    header = -(-header // DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT
    swa = config.swa_layers if any(config.swa_layers) else (False,) * config.n_layers
    return ModelSpec(
        path=str(path),
        architecture=config.architecture,
        n_layers=config.n_layers,
        layer_bytes=tuple(layer_bytes),
        token_embd_bytes=token_embd,
        output_bytes=output,
        tied_embeddings=config.tied_embeddings,
        n_embd=config.n_embd,
        n_ff=config.n_ff,
        n_head=config.n_head,
        n_head_kv=(config.n_head_kv,) * config.n_layers,
        key_length=config.head_dim,
        value_length=config.head_dim,
        swa_layers=swa,
        sliding_window=config.sliding_window if any(swa) else 0,
        trained_ctx=config.context_length,
        n_vocab=config.n_vocab,
        file_type=quant,
        has_chat_template=has_chat_template,
        file_bytes=header + data,
        n_tensors=len(tensors),
        matrices=matrices_of(
            ((t.name, t.shape, types[t.name], tensor_bytes(t.shape, types[t.name])) for t in tensors), config.n_layers
        ),
    )
