"""Write a tiny llama-shaped GGUF with random weights: a model that always exists, for self-tests.

doctor uses it when no model is at hand; the tests use it (with another architecture name, or cut
short) to make bad files. Needs numpy and gguf, imported here only.
"""

from __future__ import annotations

from pathlib import Path


def write_tiny_llama(path: Path, *, architecture: str = "llama", n_embd: int = 256, n_layers: int = 2,
                     n_ff: int = 512, n_vocab: int = 512, n_head: int = 4, n_head_kv: int = 2,
                     quant: str = "q8_0", context_length: int = 2048, seed: int = 0) -> Path:
    """Write the model to `path` (through a temporary name) and return `path`."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    qtype = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0,
             "f16": GGMLQuantizationType.F16, "f32": GGMLQuantizationType.F32}[quant]
    rng = np.random.default_rng(seed)
    partial = path.with_name(path.name + ".partial")
    writer = GGUFWriter(str(partial), architecture)
    writer.add_name(f"tiny {architecture}")
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_file_type(int(qtype) if quant != "f32" else 0)
    _add_spm_vocab(writer, n_vocab)

    def weight(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
        if qtype == GGMLQuantizationType.F32:
            writer.add_tensor(name, data)
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(n_embd, dtype=np.float32))

    weight("token_embd.weight", n_vocab, n_embd)
    norm("output_norm.weight")
    weight("output.weight", n_vocab, n_embd)
    head_dim = n_embd // n_head
    for layer in range(n_layers):
        prefix = f"blk.{layer}"
        norm(f"{prefix}.attn_norm.weight")
        weight(f"{prefix}.attn_q.weight", n_embd, n_embd)
        weight(f"{prefix}.attn_k.weight", head_dim * n_head_kv, n_embd)
        weight(f"{prefix}.attn_v.weight", head_dim * n_head_kv, n_embd)
        weight(f"{prefix}.attn_output.weight", n_embd, n_embd)
        norm(f"{prefix}.ffn_norm.weight")
        weight(f"{prefix}.ffn_gate.weight", n_ff, n_embd)
        weight(f"{prefix}.ffn_up.weight", n_ff, n_embd)
        weight(f"{prefix}.ffn_down.weight", n_embd, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)
    return path


def _add_spm_vocab(writer, n_vocab: int) -> None:
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
