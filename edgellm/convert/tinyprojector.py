"""Write a llama.cpp-loadable vision projector (`mmproj-*.gguf`) with random weights: Gemma 3's layout (a SigLIP
vision tower, a 2-D average pool, an RMS norm and one projection into the text model's embedding).

No small real vision model can be downloaded here, so tests and benchmarks pair one of these with the Gemma 3 test
model (a text model whose vocabulary has `<start_of_image>` and `<end_of_image>`): libmtmd loads it as it loads a
real `mmproj-gemma-3-4b-it-f16.gguf`, and llama.cpp's own `llama-mtmd-cli` runs the same pair. Needs numpy and gguf,
imported here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

GEMMA3_MEAN = (0.5, 0.5, 0.5)  # SigLIP's normalization, as Gemma 3's projector has it
GEMMA3_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ProjectorShape:
    """A Gemma 3 projector's hyper-parameters. Its images are `image_size` pixels square, cut into patches of
    `patch_size`, pooled by `merge` on each side: (image_size / patch_size / merge)² tokens per image."""

    text_embd: int = 640  # the text model's n_embd (Gemma 3 270M: 640)
    n_embd: int = 64
    n_ff: int = 160  # never n_embd: llama.cpp takes equal sizes for an old export with up and down swapped
    n_layers: int = 2
    n_head: int = 4
    image_size: int = 64
    patch_size: int = 8
    merge: int = 2
    seed: int = 1
    f16: bool = True  # matrices in F16 (an `mmproj-…-f16.gguf`), else F32

    @property
    def image_tokens(self) -> int:
        side = self.image_size // self.patch_size // self.merge
        return side * side


def write_projector(path: Path, shape: ProjectorShape = ProjectorShape(), name: str = "tiny-gemma3-vision") -> Path:
    """Write a Gemma 3 projector of `shape` to `path` (a temporary name, renamed when complete)."""
    import numpy
    from gguf import GGUFWriter

    rng = numpy.random.default_rng(shape.seed)
    matrix_type = numpy.float16 if shape.f16 else numpy.float32

    def weights(*dims: int, scale: float = 0.05) -> Any:
        return (rng.standard_normal(dims) * scale).astype(matrix_type)

    def vector(size: int, around: float = 0.0, scale: float = 0.02) -> Any:
        return (around + rng.standard_normal(size) * scale).astype(numpy.float32)

    partial = path.with_name(path.name + ".partial")
    writer = GGUFWriter(partial, "clip")
    writer.add_name(name)
    writer.add_file_type(1 if shape.f16 else 0)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_audio_encoder", False)
    writer.add_string("clip.projector_type", "gemma3")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", shape.image_size)
    writer.add_uint32("clip.vision.patch_size", shape.patch_size)
    writer.add_uint32("clip.vision.embedding_length", shape.n_embd)
    writer.add_uint32("clip.vision.feed_forward_length", shape.n_ff)
    writer.add_uint32("clip.vision.block_count", shape.n_layers)
    writer.add_uint32("clip.vision.projection_dim", shape.text_embd)
    writer.add_uint32("clip.vision.attention.head_count", shape.n_head)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_uint32("clip.vision.projector.scale_factor", shape.merge)
    writer.add_array("clip.vision.image_mean", list(GEMMA3_MEAN))
    writer.add_array("clip.vision.image_std", list(GEMMA3_STD))

    n_embd, patches = shape.n_embd, (shape.image_size // shape.patch_size) ** 2
    writer.add_tensor("v.patch_embd.weight", weights(n_embd, 3, shape.patch_size, shape.patch_size))
    writer.add_tensor("v.patch_embd.bias", vector(n_embd))
    positions = weights(patches, n_embd, scale=0.02).astype(numpy.float32)  # added to F32 activations: F32
    writer.add_tensor("v.position_embd.weight", positions)
    for layer in range(shape.n_layers):
        prefix = f"v.blk.{layer}"
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"{prefix}.{part}.weight", weights(n_embd, n_embd))
            writer.add_tensor(f"{prefix}.{part}.bias", vector(n_embd))
        for norm in ("ln1", "ln2"):
            writer.add_tensor(f"{prefix}.{norm}.weight", vector(n_embd, around=1.0))
            writer.add_tensor(f"{prefix}.{norm}.bias", vector(n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(shape.n_ff, n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.bias", vector(shape.n_ff))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(n_embd, shape.n_ff))
        writer.add_tensor(f"{prefix}.ffn_down.bias", vector(n_embd))
    writer.add_tensor("v.post_ln.weight", vector(n_embd, around=1.0))
    writer.add_tensor("v.post_ln.bias", vector(n_embd))
    writer.add_tensor("mm.soft_emb_norm.weight", vector(n_embd, around=1.0))
    # ggml reads it as [text_embd, n_embd] and multiplies by its transpose: rows are the vision embedding
    writer.add_tensor("mm.input_projection.weight", weights(n_embd, shape.text_embd, scale=0.5))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
