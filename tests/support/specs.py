"""Model shapes for the tests: ModelSpecs at real shapes for the planner (no file needed), and tinymodel's small
Llama that the local Hub serves."""

from __future__ import annotations

from edgellm.convert.tinymodel import Shape
from edgellm.plan.spec import ModelSpec

MIB, GIB = 2**20, 2**30


def llama_like(
    layer_bytes: int,
    n_layers: int = 32,
    n_embd: int = 4096,
    n_vocab: int = 128256,
    n_ff: int = 14336,
    quant: str = "Q4_K_M",
    tied: bool = False,
    trained_ctx: int = 131072,
    n_head_kv: int = 8,
) -> ModelSpec:
    """A spec at a real shape (Llama 3.1 8B by default) without a file: the planner needs only the numbers."""
    layer_params = 2 * n_embd * n_embd + 2 * n_embd * n_head_kv * 128 + 3 * n_embd * n_ff
    embd_bytes = n_vocab * n_embd * layer_bytes // layer_params  # the embedding at the layers' density
    return ModelSpec(
        path=f"/models/llama-{quant}.gguf",
        architecture="llama",
        n_layers=n_layers,
        layer_bytes=(layer_bytes,) * n_layers,
        token_embd_bytes=embd_bytes,
        output_bytes=0 if tied else embd_bytes,
        tied_embeddings=tied,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=32,
        n_head_kv=(n_head_kv,) * n_layers,
        key_length=128,
        value_length=128,
        swa_layers=(False,) * n_layers,
        sliding_window=0,
        trained_ctx=trained_ctx,
        n_vocab=n_vocab,
        file_type=quant,
        has_chat_template=True,
        file_bytes=layer_bytes * n_layers + 2 * embd_bytes,
        n_tensors=9 * n_layers + 3,
    )


LLAMA_8B_Q4 = llama_like(132 * MIB)  # ~4.6 GB, like Meta-Llama-3.1-8B-Instruct-Q4_K_M
LLAMA_8B_Q8 = llama_like(230 * MIB, quant="Q8_0")
LLAMA_3B_Q4 = llama_like(62 * MIB, n_layers=28, n_embd=3072, n_ff=8192, tied=True)
LLAMA_1B_Q4 = llama_like(30 * MIB, n_layers=16, n_embd=2048, n_ff=8192, tied=True)

# A small Llama (tinymodel's Shape) for GGUFs written on the spot: what the local Hub serves in the pull tests.
SMALL = Shape("llama", n_embd=512, n_layers=4, n_ff=1536, n_vocab=32000, n_head=8, n_head_kv=2)
