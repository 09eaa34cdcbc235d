"""What the planner needs to know about a model, read from the GGUF header and tensor table alone.

Pure: `model_spec(headers)` sums the headers of a model's shards into its spec; `storage.specs.load_spec(path)` reads
them from the file and caches the spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgellm.gguf.header import GGML_TYPES, ArrayInfo, GGUFError, GGUFHeader
from edgellm.gguf.quants import FILE_TYPES, parse_quant
from edgellm.plan.repack import row_class

SPEC_VERSION = 3
# Architectures whose sliding-window layers follow a fixed pattern in llama.cpp: every Nth layer is global.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "exaone4": 4}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")
OUTPUT_LAYER = -1


@dataclass(frozen=True)
class ModelSpec:
    path: str
    architecture: str
    n_layers: int
    layer_bytes: tuple[int, ...]  # weight bytes of each repeating block
    token_embd_bytes: int
    output_bytes: int  # output.weight + output_norm; 0 weight bytes when tied to the embedding
    tied_embeddings: bool
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer (grouped-query attention; some models vary it by layer)
    key_length: int
    value_length: int
    swa_layers: tuple[bool, ...]  # per layer: True where the layer attends to a sliding window only
    sliding_window: int
    trained_ctx: int
    n_vocab: int
    file_type: str | None  # Q4_K_M, Q8_0, ... from general.file_type or the file name
    has_chat_template: bool
    file_bytes: int  # all shards
    n_tensors: int
    # The matrices a matrix multiplication reads, summed by (layer, ggml type name, row class, bytes): the layer's
    # index, or OUTPUT_LAYER for the output (the token embedding when tied); the row class is repack.row_class of the
    # rows (ne[1]). What plan.repack needs to know which weights ggml's CPU backend copies; () when not read.
    matrices: tuple[tuple[int, str, int, int], ...] = ()

    def __post_init__(self) -> None:
        # a spec read back from JSON holds lists where tuples were: keep the spec hashable
        object.__setattr__(self, "matrices", tuple(tuple(item) for item in self.matrices))

    @property
    def weight_bytes(self) -> int:
        return sum(self.layer_bytes) + self.token_embd_bytes + self.output_bytes

    @property
    def n_kv_heads_max(self) -> int:
        return max(self.n_head_kv) if self.n_head_kv else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(header: GGUFHeader, key: str, default: int = 0) -> int:
    value = header.arch_value(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _per_layer(header: GGUFHeader, key: str, n_layers: int, default: int) -> tuple[int, ...]:
    """A hyper-parameter that is either one number or an array with one value per layer."""
    full_key = f"{header.architecture}.{key}"
    value = header.metadata.get(full_key)
    if isinstance(value, ArrayInfo):
        items = header.small_arrays.get(full_key)
        if items and len(items) == n_layers:
            return tuple(int(item) for item in items)
        return (default,) * n_layers
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n_layers
    return (default,) * n_layers


def _swa_layers(header: GGUFHeader, n_layers: int, window: int) -> tuple[bool, ...]:
    if window <= 0:
        return (False,) * n_layers
    key = f"{header.architecture}.attention.sliding_window_pattern"
    pattern = header.small_arrays.get(key)
    if pattern and len(pattern) == n_layers:
        return tuple(bool(item) for item in pattern)
    every = SWA_PATTERNS.get(header.architecture or "")
    if every is None:
        value = header.metadata.get(key)
        every = value if isinstance(value, int) and value > 0 else None
    if every is None:
        return (True,) * n_layers  # e.g. Mistral's sliding window on every layer
    return tuple(layer % every < every - 1 for layer in range(n_layers))


def model_spec(headers: list[GGUFHeader]) -> ModelSpec:
    """The spec of one model from the headers of all its shards (the first shard holds the metadata)."""
    header = headers[0]
    arch = header.architecture
    if not arch:
        raise GGUFError("the file has no general.architecture: it is not a model llama.cpp can run")
    n_layers = _int(header, "block_count")
    if n_layers <= 0:
        raise GGUFError(f"{arch}.block_count is missing: it is not a model llama.cpp can run")
    layer_bytes = [0] * n_layers
    token_embd = output = 0
    has_output_weight = False
    n_tensors = 0
    for part in headers:
        for tensor in part.tensors:
            n_tensors += 1
            found = _BLOCK_RE.match(tensor.name)
            if found and int(found.group(1)) < n_layers:
                layer_bytes[int(found.group(1))] += tensor.n_bytes
                continue
            if tensor.name.startswith("token_embd."):
                token_embd += tensor.n_bytes
            elif tensor.name.startswith("output"):
                output += tensor.n_bytes
                has_output_weight = has_output_weight or tensor.name == "output.weight"
            else:
                token_embd += tensor.n_bytes  # other non-layer tensors (position embeddings...) stay with the input
    n_embd = _int(header, "embedding_length")
    n_head = max(_per_layer(header, "attention.head_count", n_layers, 0)) or 1
    n_head_kv = _per_layer(header, "attention.head_count_kv", n_layers, n_head)
    head_dim = n_embd // n_head if n_head else 0
    window = _int(header, "attention.sliding_window")
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    n_vocab = _int(header, "vocab_size") or (tokens.count if isinstance(tokens, ArrayInfo) else 0)
    file_type = header.metadata.get("general.file_type")
    quant = FILE_TYPES.get(file_type) if isinstance(file_type, int) else None
    return ModelSpec(
        path=str(header.path),
        architecture=arch,
        n_layers=n_layers,
        layer_bytes=tuple(layer_bytes),
        token_embd_bytes=token_embd,
        output_bytes=output,
        tied_embeddings=not has_output_weight,
        n_embd=n_embd,
        n_ff=max(_per_layer(header, "feed_forward_length", n_layers, 4 * n_embd)),
        n_head=n_head,
        n_head_kv=n_head_kv,
        key_length=_int(header, "attention.key_length", head_dim),
        value_length=_int(header, "attention.value_length", head_dim),
        swa_layers=_swa_layers(header, n_layers, window),
        sliding_window=window,
        trained_ctx=_int(header, "context_length"),
        n_vocab=n_vocab,
        file_type=quant or parse_quant(Path(header.path).name),
        has_chat_template=isinstance(header.metadata.get("tokenizer.chat_template"), str),
        file_bytes=sum(part.file_size for part in headers),
        n_tensors=n_tensors,
        matrices=matrices_of(
            (
                (tensor.name, tensor.shape, GGML_TYPES.get(tensor.ggml_type, ("?",))[0], tensor.n_bytes)
                for part in headers
                for tensor in part.tensors
            ),
            n_layers,
        ),
    )


def matrices_of(
    tensors: Iterable[tuple[str, tuple[int, ...], str, int]], n_layers: int
) -> tuple[tuple[int, str, int, int], ...]:
    """ModelSpec.matrices from a model's tensors, each (GGUF name, shape in ggml order, ggml type name, bytes): the
    layers' 2-D and 3-D weights and the output's (the token embedding's, when no output.weight ties them)."""
    matrices: dict[tuple[int, str, int], int] = {}
    embedding: tuple[str, int, int] | None = None
    tied = True
    for name, shape, kind, n_bytes in tensors:
        found = _BLOCK_RE.match(name)
        layer = int(found.group(1)) if found and int(found.group(1)) < n_layers else None
        if layer is not None and len(shape) in (2, 3) and name.endswith(".weight"):
            key = (layer, kind, row_class(shape[1]))
        elif name == "output.weight" and len(shape) == 2:
            key, tied = (OUTPUT_LAYER, kind, row_class(shape[1])), False
        else:
            if name == "token_embd.weight" and len(shape) == 2:
                embedding = (kind, row_class(shape[1]), n_bytes)
            continue
        matrices[key] = matrices.get(key, 0) + n_bytes
    if tied and embedding is not None:  # the tied output multiplies by the embedding itself
        matrices[(OUTPUT_LAYER, embedding[0], embedding[1])] = embedding[2]
    return tuple((layer, kind, rows, size) for (layer, kind, rows), size in sorted(matrices.items()))
