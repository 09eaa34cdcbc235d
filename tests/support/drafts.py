"""Draft models for the speculative decoding tests, made from a real GGUF (the test model): its first layers alone
(a smaller, faster model with the very same vocabulary, which llama.cpp accepts as a draft), and a copy whose
vocabulary llama.cpp's draft check refuses although the copy loads and runs.

Both copy the source with the gguf package: metadata field by field, tensors as their raw (quantized) bytes,
written to `dest.name + ".partial"` and renamed to `dest` when whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gguf import GGUFReader, GGUFValueType, GGUFWriter

BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.")
SWAPPED_TOKENS = (1000, 1001)  # the ids other_vocab_copy swaps: ordinary tokens in the test model
PER_TOKEN_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


def first_layers_draft(source: Path, dest: Path, n_layers: int) -> Path:
    """A copy of the model `source` at `dest` keeping its first `n_layers` blocks: the `blk.N.*` tensors below
    n_layers and every other tensor, `{arch}.block_count` set to n_layers and per-layer arrays cut to it."""
    reader = GGUFReader(source)
    arch = str(reader.fields["general.architecture"].contents())
    block_count_key = f"{arch}.block_count"
    n_blocks = int(reader.fields[block_count_key].contents())
    if not 0 < n_layers <= n_blocks:
        raise ValueError(f"{source.name} has {n_blocks} layers: cannot keep the first {n_layers}")

    def cut(key: str, value: Any) -> Any:
        if key == block_count_key:
            return n_layers
        if key.startswith(f"{arch}.") and isinstance(value, list) and len(value) == n_blocks:
            return value[:n_layers]
        return value

    def kept(name: str) -> bool:
        block = BLOCK_TENSOR.match(name)
        return block is None or int(block[1]) < n_layers

    return _copy_gguf(reader, dest, cut, kept)


def other_vocab_copy(source: Path, dest: Path) -> Path:
    """A copy of the model `source` at `dest` with the texts of tokens 1000 and 1001 swapped (their scores and
    types with them): it loads and runs, and llama.cpp refuses it as a draft for `source` at token 1000."""
    first, second = SWAPPED_TOKENS

    def swap(key: str, value: Any) -> Any:
        if key in PER_TOKEN_ARRAYS:
            value = list(value)
            value[first], value[second] = value[second], value[first]
        return value

    return _copy_gguf(GGUFReader(source), dest, swap, lambda name: True)


def _copy_gguf(reader: GGUFReader, dest: Path, edit: Callable[[str, Any], Any], kept: Callable[[str], bool]) -> Path:
    """Write the GGUF `reader` reads to `dest` through a temporary name: each metadata value as `edit(key, value)`
    returns it, the tensors whose names `kept` accepts as their raw bytes."""
    partial = dest.with_name(dest.name + ".partial")
    writer = GGUFWriter(str(partial), str(reader.fields["general.architecture"].contents()))
    try:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":  # the writer writes these itself
                continue
            value = edit(key, field.contents())
            if key == "general.alignment":
                writer.add_custom_alignment(int(value))
                continue
            kind = field.types[0]
            writer.add_key_value(key, value, kind, sub_type=field.types[-1] if kind == GGUFValueType.ARRAY else None)
        tensors = [tensor for tensor in reader.tensors if kept(tensor.name)]
        for tensor in tensors:
            writer.add_tensor_info(
                tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, raw_dtype=tensor.tensor_type
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in tensors:
            writer.write_tensor_data(tensor.data)
        writer.close()
        partial.replace(dest)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return dest
