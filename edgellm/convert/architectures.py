"""Per-architecture rules for turning a transformers checkpoint into the tensors and metadata llama.cpp reads.

`plan_tensors(config, names)` pairs every tensor `gguf_tensors(config)` lists with the checkpoint tensor it comes
from (found through gguf's tensor name map) and the change it needs on the way:

- llama: q_proj / k_proj rows permuted from HF's rotate-half layout to llama.cpp's interleaved rotary layout
  (k with the KV head count); Llama 3 rope scaling becomes a generated `rope_freqs` tensor.
- qwen2, qwen3, phi3: copied as stored (NEOX rope: no permutation).
- gemma3: +1 on every `*norm.weight` (Gemma3RMSNorm multiplies by 1 + weight).
- phi3: fused qkv and gate_up kept fused; long-rope factors become `rope_factors_long` / `rope_factors_short`.

`add_metadata(writer, config, file_type)` writes the `<arch>.*` keys llama.cpp needs to build the graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import gguf
import numpy as np

from edgellm.convert.hf_config import HFConfig, gguf_tensors

GGUF_ARCH = {
    "llama": gguf.MODEL_ARCH.LLAMA,
    "qwen2": gguf.MODEL_ARCH.QWEN2,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "gemma3": gguf.MODEL_ARCH.GEMMA3,
    "phi3": gguf.MODEL_ARCH.PHI3,
}
# checkpoint name prefixes of multimodal wrappers -> the text model's own names
_PREFIXES = (
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
)
# checkpoint tensors that are not part of the text model and are skipped
_SKIPPED = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.")


# transformers 5's configs of these always carry head_dim, so llama.cpp's converter always writes key/value_length
HEAD_DIM_ALWAYS = ("llama", "qwen3", "gemma3")

# Every key llama.cpp's convert_hf_to_gguf.py writes for these architectures, edgellm writes with the same value
# (tests/integration/test_convert_parity.py compares them key by key, and llama.cpp's tokens of a sample text with
# both files). These it writes besides, so that a file says what it holds rather than leave it to the loader:
KEYS_ONLY_EDGELLM_WRITES = (
    "{arch}.vocab_size",  # the embedding's rows (llama.cpp writes it for llama only; it reads the token list's length)
    "{arch}.rope.dimension_count",  # the rotated dimensions (llama.cpp writes it for llama and phi3 only)
    "tokenizer.ggml.add_eos_token",  # SentencePiece: false, llama.cpp's default for it
    # SentencePiece: the model's own add_dummy_prefix; llama.cpp's converter leaves it to the loader (true), which is
    # wrong for a model trained without the prefix (it writes false itself for gemma3 only)
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.ggml.remove_extra_whitespaces",  # the model's normalizer setting; llama.cpp reads it for UGM only
    "tokenizer.ggml.unknown_token_id",  # SentencePiece: the model's unk piece, which llama.cpp finds by its type
    "tokenizer.ggml.scores",  # BPE: 0 a token, -10000 a padding row (llama.cpp's BPE reads no scores)
)


@dataclass(frozen=True)
class PlannedTensor:
    """One GGUF tensor: `shape` in ggml order, `source` the checkpoint tensor it is made from (None: generated),
    `transform` what is done to the source's float32 array (or, when generated, makes it from nothing).

    Every transform works row by row or on groups of `row_block` rows (a q/k head), so it may be given any slab
    of the source's rows that starts and ends on a multiple of `row_block`: large tensors are converted in slabs,
    never whole. `moves_only`: the transform only moves values (no arithmetic), so it may be given the source in
    any dtype (read straight as the output's float16, say) and gives the same values."""

    name: str
    shape: tuple[int, ...]
    source: str | None
    transform: Callable[[np.ndarray | None], np.ndarray]
    row_block: int = 1
    moves_only: bool = False

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The shape the checkpoint tensor must have (numpy order: ggml's reversed)."""
        return tuple(reversed(self.shape))


def text_name(name: str) -> str | None:
    """The checkpoint name as a text-only model spells it; None for a tensor of a vision tower or projector."""
    if name.startswith(_SKIPPED):
        return None
    for old, new in _PREFIXES:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def map_names(config: HFConfig, names: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(GGUF name -> checkpoint name, checkpoint names that map to nothing llama.cpp reads)."""
    tmap = gguf.get_tensor_name_map(GGUF_ARCH[config.architecture], config.n_layers)
    found: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        text = text_name(name)
        if text is None or text.endswith(".rotary_emb.inv_freq"):
            continue
        gguf_name = tmap.get_name(text, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            unknown.append(name)
        else:
            found.setdefault(gguf_name, name)
    return found, unknown


def expected_source(config: HFConfig, gguf_name: str) -> str:
    """The checkpoint name a tensor is usually stored under (for error messages when it is missing)."""
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        layer, kind, suffix = parts[1], parts[2], parts[3]
        hf = {
            "attn_norm": "input_layernorm",
            "attn_q": "self_attn.q_proj",
            "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj",
            "attn_qkv": "self_attn.qkv_proj",
            "attn_q_norm": "self_attn.q_norm",
            "attn_k_norm": "self_attn.k_norm",
            "ffn_norm": "pre_feedforward_layernorm" if config.architecture == "gemma3" else "post_attention_layernorm",
            "post_attention_norm": "post_attention_layernorm",
            "post_ffw_norm": "post_feedforward_layernorm",
            "ffn_gate": "mlp.gate_proj",
            "ffn_up": "mlp.gate_up_proj" if config.architecture == "phi3" else "mlp.up_proj",
            "ffn_down": "mlp.down_proj",
        }.get(kind, kind)
        return f"model.layers.{layer}.{hf}.{suffix}"
    return {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }.get(gguf_name, gguf_name)


def _permute(head_rows: int) -> Callable[[np.ndarray | None], np.ndarray]:
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs, per head of `head_rows` rows (weights and biases
    alike); any whole number of heads at a time, so a tensor may be permuted slab by slab."""

    def apply(w: np.ndarray | None) -> np.ndarray:
        assert w is not None
        permuted: np.ndarray = w.reshape(-1, 2, head_rows // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        return permuted

    return apply


def _plus_one(w: np.ndarray | None) -> np.ndarray:
    assert w is not None
    plus_one: np.ndarray = w + np.float32(1.0)
    return plus_one


def _as_is(w: np.ndarray | None) -> np.ndarray:
    assert w is not None
    return w


def _constant(values: np.ndarray) -> Callable[[np.ndarray | None], np.ndarray]:
    return lambda _: values


def llama3_rope_factors(config: HFConfig) -> np.ndarray:
    """The per-frequency divisors Llama 3's rope scaling applies: 1 for high frequencies, `factor` for low ones,
    a smooth blend between (transformers' _compute_llama3_parameters, as factors instead of new frequencies)."""
    s = config.rope_scaling
    assert s is not None
    factor = s.factor or 8.0
    low, high = s.low_freq_factor or 1.0, s.high_freq_factor or 4.0
    old_context = s.original_context or 8192
    dim = config.rope_dim
    # in float32 throughout, as llama.cpp's converter computes them with torch, so that the file holds the same bits
    # whatever numpy's promotion rules: each Python number made float32 where it meets one, and `number / x` as
    # torch does it, x's reciprocal times the number
    f32 = np.float32
    freqs = f32(1.0) / (f32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=f32) / f32(dim)))
    out = []
    for freq in freqs:
        wavelen = (f32(1.0) / freq) * f32(2 * math.pi)
        if wavelen < f32(old_context / high):
            out.append(f32(1.0))
        elif wavelen > f32(old_context / low):
            out.append(f32(factor))
        else:
            smooth = ((f32(1.0) / wavelen) * f32(old_context) - f32(low)) / f32(high - low)
            out.append(f32(1.0) / ((f32(1.0) - smooth) / f32(factor) + smooth))
    return np.asarray(out, dtype=f32)


def plan_tensors(config: HFConfig, sources: dict[str, str]) -> tuple[list[PlannedTensor], list[str]]:
    """(every GGUF tensor with its source and transform, the GGUF names with no source in the checkpoint)."""
    arch = config.architecture
    planned: list[PlannedTensor] = []
    missing: list[str] = []
    scaling = config.rope_scaling
    for tensor in gguf_tensors(config):
        name = tensor.name
        if name == "rope_freqs.weight":
            planned.append(PlannedTensor(name, tensor.shape, None, _constant(llama3_rope_factors(config))))
            continue
        if name in ("rope_factors_long.weight", "rope_factors_short.weight"):
            assert scaling is not None
            values = scaling.long_factors if "long" in name else scaling.short_factors
            array = np.asarray(values or (1.0,) * tensor.shape[0], dtype=np.float32)
            planned.append(PlannedTensor(name, tensor.shape, None, _constant(array)))
            continue
        source = sources.get(name)
        if source is None:
            missing.append(name)
            continue
        transform: Callable[[np.ndarray | None], np.ndarray] = _as_is
        row_block = 1
        kind = name.split(".")[2] if name.startswith("blk.") else ""
        if arch == "llama" and kind in ("attn_q", "attn_k"):
            n_head = config.n_head if kind == "attn_q" else config.n_head_kv
            row_block = tensor.shape[-1] // n_head  # the rows of one head (shape is in ggml order)
            transform = _permute(row_block)
        elif arch == "gemma3" and name.endswith("norm.weight"):
            transform = _plus_one
        planned.append(
            PlannedTensor(name, tensor.shape, source, transform, row_block, moves_only=transform is not _plus_one)
        )
    return planned, missing


def add_metadata(writer: gguf.GGUFWriter, config: HFConfig, file_type: int) -> None:
    """The architecture keys llama.cpp reads for `config`."""
    c = config
    writer.add_context_length(c.context_length)
    writer.add_embedding_length(c.n_embd)
    writer.add_block_count(c.n_layers)
    writer.add_feed_forward_length(c.n_ff)
    writer.add_head_count(c.n_head)
    writer.add_head_count_kv(c.n_head_kv)
    if c.head_dim != c.n_embd // c.n_head or (
        c.architecture != "phi3" and (c.head_dim_given or c.architecture in HEAD_DIM_ALWAYS)
    ):
        writer.add_key_length(c.head_dim)
        writer.add_value_length(c.head_dim)
    writer.add_rope_dimension_count(c.rope_dim)
    writer.add_rope_freq_base(c.rope_theta)
    writer.add_layer_norm_rms_eps(c.rms_eps)
    writer.add_vocab_size(c.n_vocab)
    writer.add_file_type(file_type)
    s = c.rope_scaling
    if c.architecture == "phi3":
        writer.add_rope_scaling_orig_ctx_len(s.original_context if s and s.original_context else c.context_length)
        writer.add_sliding_window(c.sliding_window)
        if s is not None and s.long_factors and s.original_context:
            scale = c.context_length / s.original_context
            if s.kind in ("longrope", "su"):
                attn = math.sqrt(1 + math.log(scale) / math.log(s.original_context)) if scale > 1 else 1.0
            else:
                attn = 0.1 * math.log(scale) + 1.0 if scale > 1 else 1.0
            writer.add_rope_scaling_attn_factors(attn)
        return
    if c.architecture == "gemma3":
        if c.sliding_window:
            writer.add_sliding_window(c.sliding_window)
        if c.rope_theta_swa is not None:
            writer.add_rope_freq_base_swa(c.rope_theta_swa)
        if c.logit_softcap:
            writer.add_final_logit_softcapping(c.logit_softcap)
    if s is None or s.kind == "llama3":
        return  # llama3: the rope_freqs tensor carries it
    if s.kind == "linear" and s.factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(s.factor)
    elif s.kind == "yarn" and s.factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(s.factor)
        if s.original_context:
            writer.add_rope_scaling_orig_ctx_len(s.original_context)
        for value, add in (
            (s.extrapolation_factor, writer.add_rope_scaling_yarn_ext_factor),
            (s.attention_factor, writer.add_rope_scaling_yarn_attn_factor),
            (s.beta_fast, writer.add_rope_scaling_yarn_beta_fast),
            (s.beta_slow, writer.add_rope_scaling_yarn_beta_slow),
        ):
            if value is not None:
                add(value)
    elif s.kind in ("longrope", "su"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
