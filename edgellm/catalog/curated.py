"""The curated catalog of chat models for edge devices (edgellm/data/catalog.toml), as specs the planner can use.

A catalog entry carries the model's shape; a quant's file size comes from the Hub listing when it can be
reached, else from the parameter count and the quant's bits per weight.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from edgellm.paths import data_dir
from edgellm.plan.spec import SWA_PATTERNS, ModelSpec

# Average bits per weight of llama.cpp's quants (llama.cpp tools/quantize, Llama-3-8B).
BITS_PER_WEIGHT = {
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K_M": 5.70,
    "Q5_K_S": 5.57,
    "Q4_K_M": 4.89,
    "Q4_K_S": 4.67,
    "IQ4_XS": 4.46,
    "Q4_0": 4.55,
    "Q3_K_L": 4.30,
    "Q3_K_M": 4.0,
    "Q3_K_S": 3.64,
    "Q2_K": 3.16,
}
EMBEDDING_BITS = 6.56  # Q6_K
OFFERED = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")  # what GGUF repos commonly hold


@dataclass(frozen=True)
class CatalogModel:
    name: str
    repo: str
    params: float  # billions
    arch: str
    layers: int
    embd: int
    ff: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    context: int
    licence: str
    window: int = 0
    draft: str = ""  # the repo of a smaller model of the same tokenizer that drafts for it (speculative decoding)

    def estimated_size(self, quant: str) -> int:
        """Without the Hub: K-quant mixes keep the embedding and output at Q6_K or better, and a few
        layer tensors a step above the nominal quant."""
        bits = BITS_PER_WEIGHT[quant]
        embedding = self.vocab * self.embd * (1 if self.tied else 2)
        layers = self.params * 1e9 - embedding
        return int((embedding * max(bits, EMBEDDING_BITS) + layers * bits * 1.05) / 8)

    def spec(self, quant: str, file_bytes: int | None = None) -> ModelSpec:
        """The spec of this model at `quant`: bytes shared out by parameter count over embedding and layers."""
        total = file_bytes or self.estimated_size(quant)
        embedding = self.vocab * self.embd
        per_layer = self.embd * self.head_dim * (2 * self.heads + 2 * self.kv_heads) + 3 * self.embd * self.ff
        params = embedding * (1 if self.tied else 2) + per_layer * self.layers
        bytes_per_param = total / params
        every = SWA_PATTERNS.get(self.arch)
        swa = tuple(bool(self.window) and (every is None or layer % every < every - 1) for layer in range(self.layers))
        return ModelSpec(
            path=f"{self.repo}:{quant}",
            architecture=self.arch,
            n_layers=self.layers,
            layer_bytes=(int(per_layer * bytes_per_param),) * self.layers,
            token_embd_bytes=int(embedding * bytes_per_param),
            output_bytes=0 if self.tied else int(embedding * bytes_per_param),
            tied_embeddings=self.tied,
            n_embd=self.embd,
            n_ff=self.ff,
            n_head=self.heads,
            n_head_kv=(self.kv_heads,) * self.layers,
            key_length=self.head_dim,
            value_length=self.head_dim,
            swa_layers=swa,
            sliding_window=self.window,
            trained_ctx=self.context,
            n_vocab=self.vocab,
            file_type=quant,
            has_chat_template=True,
            file_bytes=total,
            n_tensors=9 * self.layers + 3,
        )


def load_catalog() -> list[CatalogModel]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((data_dir() / "catalog.toml").read_text(encoding="utf-8"))
    return [CatalogModel(**entry) for entry in data["model"]]
