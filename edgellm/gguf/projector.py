"""What a vision projector (`mmproj-*.gguf`, llama.cpp's libmtmd) holds, read from its GGUF header alone. Pure.

A projector is a GGUF of architecture `clip`: a vision encoder (a ViT: `clip.vision.*` keys, `v.*` tensors) and the
projection into the text model's embedding (`mm.*` tensors). `projector_spec` sizes it for the planner: its
weights, the tokens one image takes in the text model's context, and the compute buffer llama.cpp reserves to
encode one image (tools/mtmd/clip.cpp: `clip_n_output_tokens`, and the graph `reserve_compute_meta` sizes).

The compute buffer was checked against what clip.cpp logs (`reserve_compute_meta: CPU compute buffer size`) for
Gemma 3's layout (edgellm.convert.tinyprojector, CPU, llama.cpp of llama-cpp-python 0.3.36): with Gemma 3 4B's
vision shape (n_embd 1152, n_ff 4304, 16 heads), 896 px → 104.66 MiB logged, 104.66 estimated (flash attention on)
and 1132.00 logged, 1128.66 estimated (off); 448 px → 27.22 / 27.22 and 91.00 / 91.22. Toy shapes (n_embd 64-128)
come out 3-7 % low, where ggml's small tensors and alignment weigh.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgellm.gguf.header import GGUFError, GGUFHeader, read_header
from edgellm.gguf.quants import FILE_TYPES

ARCHITECTURE = "clip"
UNKNOWN = "unknown"
TYPICAL_ASPECT = (4, 3)  # a photo's sides, for the projectors that tile an image by its shape


@dataclass(frozen=True)
class TokenRule:
    """How one projector type turns an image into tokens (clip.cpp's clip_n_output_tokens).

    fixed: the image is resized to image_size, (image_size / patch_size / merge)² tokens;
    tiles: as fixed, per tile of image_size, a 4:3 photo cut to `clip.vision.preproc_image_size` on its long side,
    plus one overview tile (idefics3: SmolVLM);
    dynamic: the image keeps its shape up to a pixel limit; a photo reaches it: max_tokens (or the file's
    clip.vision.image_max_pixels / (patch_size × merge)²).
    """

    kind: str  # fixed | tiles | dynamic
    merge: int  # patches merged per side, unless the file says (projector.scale_factor / spatial_merge_size)
    max_tokens: int = 0  # dynamic: llama.cpp's default limit of tokens per image


# A small table of the projectors small vision models ship with; the rest are estimated as `fixed` with the file's
# own merge factor and said to be unknown.
TOKEN_RULES: dict[str, TokenRule] = {
    "gemma3": TokenRule("fixed", 4),  # Gemma 3: 896 px, patches of 14, pooled 4×4: 256 tokens
    "mlp": TokenRule("fixed", 1),  # LLaVA 1.5, Moondream-style CLIP + MLP
    "mlp_norm": TokenRule("fixed", 1),
    "ldp": TokenRule("fixed", 2),  # MobileVLM: a 2×2 downsample
    "ldpv2": TokenRule("fixed", 2),
    "idefics3": TokenRule("tiles", 1),  # SmolVLM: pixel shuffle by scale_factor, per tile
    "qwen2vl_merger": TokenRule("dynamic", 2, 4096),  # Qwen2-VL, Qwen2.5-VL, Qwen3-VL: 2×2 merge, up to 4096 tokens
    "qwen2.5vl_merger": TokenRule("dynamic", 2, 4096),
    "qwen3vl_merger": TokenRule("dynamic", 2, 4096),
    "lfm2": TokenRule("dynamic", 2, 256),  # LFM2-VL: 64-256 tokens
    "pixtral": TokenRule("dynamic", 1, 1024),
}
MERGE_KEYS = ("clip.vision.projector.scale_factor", "clip.vision.spatial_merge_size")

# Where the text model's embedding width is read, per type: (tensor, ggml dimension); clip.cpp's clip_n_mmproj_embd.
TEXT_EMBD_TENSORS: dict[str, tuple[tuple[str, int], ...]] = {
    "gemma3": (("mm.input_projection.weight", 0),),
    "idefics3": (("mm.model.fc.weight", 1),),
    "qwen2vl_merger": (("mm.2.bias", 0),),
    "qwen2.5vl_merger": (("mm.2.bias", 0),),
    "mlp_norm": (("mm.3.bias", 0),),
}
GENERIC_TEXT_EMBD = (("mm.input_projection.weight", 0), ("mm.2.weight", 1), ("mm.model.fc.weight", 1))

# Text architectures each projector type is made for (llama.cpp's names); a type not here is checked by width only.
TEXT_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "gemma3": ("gemma3",),
    "qwen2vl_merger": ("qwen2vl",),
    "qwen2.5vl_merger": ("qwen2vl",),
    "qwen3vl_merger": ("qwen3vl", "qwen3vlmoe"),
    "lfm2": ("lfm2",),
}

# Types whose image tokens attend to each other (mtmd_decode_use_non_causal): one image's tokens must fit one
# micro-batch of the text model.
NON_CAUSAL = ("gemma3", "gemma4uv")

LIBMTMD_CONTEXT = 5 * 2**20  # RSS of loading the tiny test projector beyond its weights and encode buffer
PHOTO_PIXELS = 2_000_000  # the image a plan budgets for: a 2-megapixel photo or a 1920×1080 screenshot

# Why a projector does not go with a model (returned by `matches`; the front ends wrap it in NoVision).
NOT_VISION = "it has no vision encoder (an audio-only projector?)"
WRONG_WIDTH = "it projects images to {projector}-wide embeddings but the model's are {model} wide"
WRONG_ARCHITECTURE = "it is a {kind} projector, made for {wanted} models, and the model is {model}"


@dataclass(frozen=True)
class ProjectorSpec:
    """What the planner needs of a projector: its weights, the tokens of one typical image, its encoder's shape."""

    path: str
    projector_type: str  # clip.projector_type, or UNKNOWN
    known: bool  # the type is in TOKEN_RULES (its image tokens are counted as llama.cpp counts them)
    has_vision: bool
    weights_bytes: int
    file_bytes: int
    file_type: str | None  # F16, Q8_0... from general.file_type
    image_size: int
    patch_size: int
    merge: int
    n_embd: int  # the vision encoder's width
    n_ff: int
    n_head: int
    n_layers: int
    text_n_embd: int  # the width of the embeddings it hands the text model (0: not found)
    image_tokens: int  # context tokens one typical image takes
    patches: int  # positions the encoder attends over in one pass (one tile, or the typical image)

    @property
    def whole_image_batch(self) -> int:
        """The least n_ubatch the text model may run with (an image's tokens decoded in one micro-batch); 0: any."""
        return self.image_tokens if self.projector_type in NON_CAUSAL else 0

    def encode_bytes(self, flash_attn: bool = True) -> int:
        """The compute buffer llama.cpp reserves to encode one image (a tile): the larger of the input phase (the
        image as floats, its patch embeddings) and an encoder layer's activations (residual, normed copy and the
        feed-forward's hidden: patches × (n_ff + 2 n_embd) floats), with flash attention off the f32 score matrix
        (patches² × n_head), and Gemma 3's transposed copy of its projection (F16)."""
        encoder = 4 * self.patches * (self.n_ff + 2 * self.n_embd)
        if not flash_attn:
            encoder += 4 * self.patches * self.patches * self.n_head
        image_input = 4 * (self.image_size * self.image_size * 3 + self.patches * self.n_embd)
        projection = 2 * self.text_n_embd * self.n_embd if self.projector_type == "gemma3" else 0
        return max(encoder, image_input) + projection

    def working_bytes(self) -> int:
        """What libmtmd holds besides the weights and the encode buffer: its own context (its graph's metadata, the
        warm-up image: ~5 MiB, measured with the smallest projector), and the image being read: decoded (budgeted as
        a 2-megapixel photo in RGB) and preprocessed to the encoder's size as floats (twice: the preprocessed image
        and the encoder's input)."""
        return LIBMTMD_CONTEXT + PHOTO_PIXELS * 3 + 2 * 4 * 3 * self.image_size * self.image_size

    def to_dict(self, flash_attn: bool = True) -> dict[str, Any]:
        return {
            **asdict(self),
            "encode_bytes": self.encode_bytes(flash_attn),
            "working_bytes": self.working_bytes(),
        }


def _int(header: GGUFHeader, key: str, default: int = 0) -> int:
    value = header.metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _text_n_embd(header: GGUFHeader, kind: str) -> int:
    shapes = {tensor.name: tensor.shape for tensor in header.tensors}
    for name, dim in TEXT_EMBD_TENSORS.get(kind, GENERIC_TEXT_EMBD):
        shape = shapes.get(name)
        if shape is not None and len(shape) > dim:
            return shape[dim]
    return _int(header, "clip.vision.projection_dim")


def image_tokens(rule: TokenRule, image_size: int, patch_size: int, merge: int, header: GGUFHeader) -> tuple[int, int]:
    """(context tokens, encoder positions of one pass) of a typical image under `rule`."""
    side = image_size // patch_size if patch_size else 0
    per_tile = (side // merge) ** 2 if merge else 0
    if rule.kind == "tiles":
        longest = _int(header, "clip.vision.preproc_image_size")
        tiles = 1
        if longest > image_size > 0:
            long_side, short_side = TYPICAL_ASPECT
            tiles += math.ceil(longest / image_size) * math.ceil(longest * short_side / long_side / image_size)
        return per_tile * tiles, side * side
    if rule.kind == "dynamic":
        area = (patch_size * merge) ** 2
        max_pixels = _int(header, "clip.vision.image_max_pixels")
        tokens = max_pixels // area if max_pixels and area else rule.max_tokens
        return tokens, tokens * merge * merge
    return per_tile, side * side


def projector_spec(header: GGUFHeader) -> ProjectorSpec:
    """The spec of the projector whose header is `header`; GGUFError when it is no projector."""
    if header.architecture != ARCHITECTURE:
        raise GGUFError(
            f"not a vision projector: its architecture is {header.architecture or 'missing'}, not {ARCHITECTURE}"
        )
    kind = header.metadata.get("clip.vision.projector_type") or header.metadata.get("clip.projector_type")
    kind = kind if isinstance(kind, str) and kind else UNKNOWN
    rule = TOKEN_RULES.get(kind)
    merge = next((_int(header, key) for key in MERGE_KEYS if _int(header, key) > 0), 0)
    merge = merge or (rule.merge if rule else 1)
    image_size = _int(header, "clip.vision.image_size")
    patch_size = _int(header, "clip.vision.patch_size")
    tokens, patches = image_tokens(rule or TokenRule("fixed", merge), image_size, patch_size, merge, header)
    n_embd = _int(header, "clip.vision.embedding_length")
    has_vision = header.metadata.get("clip.has_vision_encoder")
    file_type = _int(header, "general.file_type", -1)
    return ProjectorSpec(
        path=str(header.path),
        projector_type=kind,
        known=rule is not None,
        has_vision=bool(has_vision) if isinstance(has_vision, bool) else image_size > 0,
        weights_bytes=sum(tensor.n_bytes for tensor in header.tensors),
        file_bytes=header.file_size,
        file_type=FILE_TYPES.get(file_type),
        image_size=image_size,
        patch_size=patch_size,
        merge=merge,
        n_embd=n_embd,
        n_ff=_int(header, "clip.vision.feed_forward_length", 4 * n_embd),
        n_head=_int(header, "clip.vision.attention.head_count", 1),
        n_layers=_int(header, "clip.vision.block_count"),
        text_n_embd=_text_n_embd(header, kind),
        image_tokens=tokens,
        patches=patches,
    )


def read_projector(path: str | Path) -> ProjectorSpec:
    """The spec of the projector file at `path`; GGUFError (with the reason) when it cannot be read or is none."""
    return projector_spec(read_header(path))


def is_projector(path: str | Path) -> bool:
    """Whether the file at `path` is a projector llama.cpp's libmtmd loads: a readable GGUF of architecture clip."""
    try:
        header = read_header(path)
    except GGUFError:
        return False
    return header.architecture == ARCHITECTURE


def matches(projector: ProjectorSpec, model_n_embd: int, model_arch: str) -> str:
    """Why `projector` does not go with a text model of width `model_n_embd` and architecture `model_arch`; "" when
    it does (libmtmd refuses a width that differs: mtmd.cpp, "mismatch between text model and mmproj")."""
    if not projector.has_vision:
        return NOT_VISION
    wanted = TEXT_ARCHITECTURES.get(projector.projector_type)
    if wanted and model_arch not in wanted:
        return WRONG_ARCHITECTURE.format(kind=projector.projector_type, wanted="/".join(wanted), model=model_arch)
    if projector.text_n_embd and projector.text_n_embd != model_n_embd:
        return WRONG_WIDTH.format(projector=projector.text_n_embd, model=model_n_embd)
    return ""


PRECISIONS = ("F16", "BF16", "Q8_0")  # the projector precisions preferred, best first; the rest come after


def preference(quant: str | None) -> int:
    """A projector's place by its precision (`quant`: F16, Q8_0... or None), lower first: F16, BF16, Q8_0, the rest
    (F32 among them: twice the memory for no visible gain)."""
    return PRECISIONS.index(quant) if quant in PRECISIONS else len(PRECISIONS)
