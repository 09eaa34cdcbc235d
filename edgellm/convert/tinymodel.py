"""Write llama.cpp-loadable GGUFs with random weights at any shape: llama, qwen2 and gemma3 layouts.

doctor's self-test uses a tiny one when no model is at hand; tests and benchmarks write models at
real shapes (a Llama 3.2 1B-like, a Qwen2.5 0.5B-like) to check the memory estimate against llama.cpp.
Needs numpy and gguf, imported here only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gguf import GGUFWriter


@dataclass(frozen=True)
class Shape:
    """The hyper-parameters that decide a model's memory: what the planner reads back from the header."""

    architecture: str = "llama"  # llama | qwen2 | gemma3 (or any name, to make a model llama.cpp rejects)
    n_embd: int = 256
    n_layers: int = 2
    n_ff: int = 512
    n_vocab: int = 512
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int | None = None  # default n_embd // n_head
    tied: bool = False  # no output.weight: the output reuses token_embd
    sliding_window: int | None = None  # gemma3 only
    context_length: int = 2048
    chat_template: str | None = None


LLAMA_1B = Shape("llama", 2048, 16, 8192, 128256, 32, 8, 64, tied=True, context_length=131072)
QWEN25_05B = Shape("qwen2", 896, 24, 4864, 151936, 14, 2, 64, tied=True, context_length=32768)
GEMMA3_SMALL = Shape("gemma3", 640, 6, 2048, 32768, 4, 1, 256, tied=True, sliding_window=512, context_length=32768)


def write_tiny_llama(path: Path, *, architecture: str = "llama", quant: str = "q8_0", seed: int = 0) -> Path:
    """A 1.5 MB two-layer llama: enough to load and sample a token."""
    return write_model(path, Shape(architecture=architecture), quant=quant, seed=seed)


def write_model(
    path: Path,
    shape: Shape,
    *,
    quant: str = "q8_0",
    seed: int = 0,
    split_max_tensors: int = 0,
    add_vocab: Callable[[Any], None] | None = None,
) -> Path:
    """Write a model of `shape` to `path` (through a temporary name) and return `path`.

    `add_vocab(writer)` writes the tokenizer (default: a synthetic SentencePiece vocabulary of shape.n_vocab tokens).
    With split_max_tensors, gguf writes shards `STEM-00001-of-0000N.gguf` beside `path`; the first is returned.

    Weights are a small random block tiled to each tensor's size: real shapes and byte counts without
    spending minutes on random numbers for a billion parameters.
    """
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    qtype = {
        "q8_0": GGMLQuantizationType.Q8_0,
        "q4_0": GGMLQuantizationType.Q4_0,
        "f16": GGMLQuantizationType.F16,
        "f32": GGMLQuantizationType.F32,
    }[quant]
    rng = np.random.default_rng(seed)
    block = (rng.standard_normal(1 << 16) * 0.02).astype(np.float32)
    head_dim = shape.head_dim or shape.n_embd // shape.n_head
    arch = shape.architecture
    partial = path if split_max_tensors else path.with_name(path.name + ".partial")
    writer = GGUFWriter(str(partial), arch, split_max_tensors=split_max_tensors)
    add_shape(writer, shape, f"synthetic {arch}", {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2}[quant])
    if add_vocab is None:
        _add_spm_vocab(writer, shape.n_vocab)
    else:
        add_vocab(writer)
    if shape.chat_template:
        writer.add_chat_template(shape.chat_template)

    def weight(name: str, rows: int, cols: int) -> None:
        data = np.resize(block, rows * cols).reshape(rows, cols)
        if qtype == GGMLQuantizationType.F32:
            writer.add_tensor(name, data)
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)

    def vector(name: str, size: int, value: float = 1.0) -> None:
        writer.add_tensor(name, np.full(size, value, dtype=np.float32))

    q_size, kv_size = head_dim * shape.n_head, head_dim * shape.n_head_kv
    weight("token_embd.weight", shape.n_vocab, shape.n_embd)
    vector("output_norm.weight", shape.n_embd)
    if not shape.tied:
        weight("output.weight", shape.n_vocab, shape.n_embd)
    for layer in range(shape.n_layers):
        blk = f"blk.{layer}"
        vector(f"{blk}.attn_norm.weight", shape.n_embd)
        weight(f"{blk}.attn_q.weight", q_size, shape.n_embd)
        weight(f"{blk}.attn_k.weight", kv_size, shape.n_embd)
        weight(f"{blk}.attn_v.weight", kv_size, shape.n_embd)
        weight(f"{blk}.attn_output.weight", shape.n_embd, q_size)
        if arch == "qwen2":
            vector(f"{blk}.attn_q.bias", q_size, 0.0)
            vector(f"{blk}.attn_k.bias", kv_size, 0.0)
            vector(f"{blk}.attn_v.bias", kv_size, 0.0)
        if arch == "gemma3":
            vector(f"{blk}.attn_q_norm.weight", head_dim)
            vector(f"{blk}.attn_k_norm.weight", head_dim)
            vector(f"{blk}.post_attention_norm.weight", shape.n_embd)
            vector(f"{blk}.post_ffw_norm.weight", shape.n_embd)
        vector(f"{blk}.ffn_norm.weight", shape.n_embd)
        weight(f"{blk}.ffn_gate.weight", shape.n_ff, shape.n_embd)
        weight(f"{blk}.ffn_up.weight", shape.n_ff, shape.n_embd)
        weight(f"{blk}.ffn_down.weight", shape.n_embd, shape.n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        return sorted(path.parent.glob(f"{path.stem}-00001-of-*.gguf"))[0]
    partial.replace(path)
    return path


def add_shape(writer: GGUFWriter, shape: Shape, name: str, file_type: int) -> None:
    """The hyper-parameters of `shape` as GGUF metadata (what llama.cpp and the planner read back)."""
    head_dim = shape.head_dim or shape.n_embd // shape.n_head
    writer.add_name(name)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    if shape.sliding_window:
        writer.add_sliding_window(shape.sliding_window)
    writer.add_file_type(file_type)


def _add_spm_vocab(writer: GGUFWriter, n_vocab: int) -> None:
    """A SentencePiece-style vocabulary: <unk> <s> </s>, the 256 byte tokens, then plain pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, control, byte
    pieces = [f"\u2581{chr(ord('a') + i % 26)}{i // 26}" for i in range(n_vocab - len(tokens))]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens + pieces)
    writer.add_token_scores([0.0] * len(tokens) + [-float(i) for i in range(len(pieces))])
    writer.add_token_types(types + [1] * len(pieces))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
