"""A vision projector's header read into what the planner needs: type, weights, image tokens, widths, and the compute
buffer of one image's encoding checked against what llama.cpp's clip.cpp logged for the same shapes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.convert.tinyprojector import ProjectorShape, write_projector
from edgellm.gguf.header import GGUFError, GGUFHeader, TensorInfo, read_header
from edgellm.gguf.projector import (
    ProjectorSpec,
    is_projector,
    matches,
    preference,
    projector_spec,
    read_projector,
)

MIB = 2**20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_projector(tmp_path_factory.mktemp("mmproj") / "mmproj-tiny-f16.gguf")


def test_a_gemma3_projector_is_read_from_its_header(tiny: Path) -> None:
    shape = ProjectorShape()
    found = read_projector(tiny)
    assert (found.projector_type, found.known, found.has_vision, found.file_type) == ("gemma3", True, True, "F16")
    assert (found.image_size, found.patch_size, found.merge) == (64, 8, 2)
    assert found.image_tokens == shape.image_tokens == 16  # (64 / 8 / 2)²
    assert found.patches == 64  # the encoder attends over (64 / 8)² patches before the pooling
    assert (found.n_embd, found.n_ff, found.n_head, found.n_layers) == (64, 160, 4, 2)
    assert found.text_n_embd == 640  # mm.input_projection's output: the test model's width
    header = read_header(tiny)
    assert found.weights_bytes == sum(tensor.n_bytes for tensor in header.tensors)
    assert found.weights_bytes < found.file_bytes == tiny.stat().st_size
    assert found.whole_image_batch == 16  # Gemma 3's image tokens attend to each other: one micro-batch


def test_f32_weights_weigh_more(tmp_path: Path, tiny: Path) -> None:
    wide = read_projector(write_projector(tmp_path / "mmproj-tiny-f32.gguf", ProjectorShape(f16=False)))
    assert wide.file_type == "F32" and wide.weights_bytes > read_projector(tiny).weights_bytes


def test_only_a_clip_gguf_is_a_projector(tiny: Path, test_model: Path, tmp_path: Path) -> None:
    assert is_projector(tiny)
    assert not is_projector(test_model)
    text = tmp_path / "mmproj-not.gguf"
    text.write_text("not a gguf")
    assert not is_projector(text) and not is_projector(tmp_path / "missing.gguf")
    with pytest.raises(GGUFError, match="not a vision projector: its architecture is gemma3"):
        projector_spec(read_header(test_model))


def test_a_projector_matches_the_model_of_its_width_and_family(tiny: Path) -> None:
    found = read_projector(tiny)
    assert matches(found, 640, "gemma3") == ""
    assert matches(found, 1024, "gemma3") == "it projects images to 640-wide embeddings but the model's are 1024 wide"
    assert "made for gemma3 models, and the model is llama" in matches(found, 640, "llama")
    assert "no vision encoder" in matches(replace(found, has_vision=False), 640, "gemma3")
    # a type whose text family is not known is checked by width alone
    assert matches(replace(found, projector_type="mlp"), 640, "llama") == ""


# What llama.cpp's clip.cpp logged (`reserve_compute_meta: CPU compute buffer size`, MiB) loading Gemma 3 projectors of
# these shapes (written by tinyprojector; one layer suffices: the buffer is one layer's) with the test model, on this
# project's llama.cpp (llama-cpp-python 0.3.36), flash attention on and off.
LOGGED = [
    # image, patch, n_embd, n_ff, heads, merge, flash on, flash off
    (896, 14, 1152, 4304, 16, 4, 104.66, 1132.00),  # Gemma 3 4B's vision tower
    (448, 14, 1152, 4304, 16, 4, 27.22, 91.00),
    (224, 14, 128, 320, 4, 2, 0.86, 1.78),
    (64, 8, 64, 160, 4, 2, 0.16, 0.22),  # ProjectorShape()
]


def gemma3(image: int, patch: int, n_embd: int, n_ff: int, heads: int, merge: int) -> ProjectorSpec:
    side = image // patch
    return ProjectorSpec(
        path="mmproj.gguf",
        projector_type="gemma3",
        known=True,
        has_vision=True,
        weights_bytes=0,
        file_bytes=0,
        file_type="F16",
        image_size=image,
        patch_size=patch,
        merge=merge,
        n_embd=n_embd,
        n_ff=n_ff,
        n_head=heads,
        n_layers=1,
        text_n_embd=640,
        image_tokens=(side // merge) ** 2,
        patches=side * side,
    )


@pytest.mark.parametrize("image, patch, n_embd, n_ff, heads, merge, flash_on, flash_off", LOGGED)
def test_the_encode_buffer_is_what_llama_cpp_reserves(
    image: int, patch: int, n_embd: int, n_ff: int, heads: int, merge: int, flash_on: float, flash_off: float
) -> None:
    spec = gemma3(image, patch, n_embd, n_ff, heads, merge)
    # within 1 % at real shapes; toy shapes, where ggml's small tensors and alignment weigh, within 8 %
    tolerance = 0.01 if n_embd >= 1024 else 0.08
    for flash_attn, logged in ((True, flash_on), (False, flash_off)):
        estimated = spec.encode_bytes(flash_attn) / MIB
        assert abs(estimated - logged) <= tolerance * logged, (flash_attn, estimated, logged)


def header(metadata: dict[str, object], tensors: tuple[TensorInfo, ...] = ()) -> GGUFHeader:
    return GGUFHeader(Path("mmproj-x.gguf"), 3, {"general.architecture": "clip", **metadata}, tensors, 0, 1000)


def vision(kind: str, image: int, patch: int, **more: object) -> dict[str, object]:
    return {
        "clip.projector_type": kind,
        "clip.has_vision_encoder": True,
        "clip.vision.image_size": image,
        "clip.vision.patch_size": patch,
        "clip.vision.embedding_length": 1280,
        **more,
    }


def test_image_tokens_per_projector_type() -> None:
    # Gemma 3 4B: 896 px, patches of 14, pooled 4×4 (no scale factor in the real file): 256 tokens
    assert projector_spec(header(vision("gemma3", 896, 14))).image_tokens == 256
    # LLaVA 1.5's CLIP: 336 px, 14 px patches, one token each
    assert projector_spec(header(vision("mlp", 336, 14))).image_tokens == 576
    # Qwen2.5-VL: a photo reaches llama.cpp's limit of 4096 tokens (2×2 merged patches of 14)
    qwen = projector_spec(header(vision("qwen2.5vl_merger", 560, 14)))
    assert (qwen.image_tokens, qwen.patches) == (4096, 4 * 4096)
    # ... or the file's own pixel limit
    limited = projector_spec(
        header(vision("qwen2.5vl_merger", 560, 14, **{"clip.vision.image_max_pixels": 28 * 28 * 1024}))
    )
    assert limited.image_tokens == 1024
    # SmolVLM: 512 px tiles pixel-shuffled by 4 (64 tokens each); a 4:3 photo cut to 2048 px: 4 × 3 tiles + overview
    smol = vision(
        "idefics3", 512, 16, **{"clip.vision.projector.scale_factor": 4, "clip.vision.preproc_image_size": 2048}
    )
    assert projector_spec(header(smol)).image_tokens == 13 * 64
    assert (
        projector_spec(header(vision("idefics3", 512, 16, **{"clip.vision.projector.scale_factor": 4}))).image_tokens
        == 64
    )


def test_an_unknown_type_is_said_and_estimated_from_its_image_and_patch_size() -> None:
    found = projector_spec(header(vision("newvlm", 384, 16)))
    assert (found.projector_type, found.known, found.image_tokens) == ("newvlm", False, 576)
    assert (
        projector_spec(header({"clip.vision.image_size": 224, "clip.vision.patch_size": 14})).projector_type
        == "unknown"
    )


def test_the_text_width_is_read_from_the_projection_tensor() -> None:
    qwen = (TensorInfo("mm.2.bias", (2048,), 0, 0, 8192),)
    assert projector_spec(header(vision("qwen2.5vl_merger", 560, 14), qwen)).text_n_embd == 2048
    llava = (TensorInfo("mm.2.weight", (4096, 5120), 1, 0, 2 * 4096 * 5120),)
    assert projector_spec(header(vision("mlp", 336, 14), llava)).text_n_embd == 5120
    # no projection tensor known: the projection_dim key
    assert projector_spec(header(vision("newvlm", 384, 16, **{"clip.vision.projection_dim": 896}))).text_n_embd == 896


def test_precision_preference() -> None:
    assert sorted(["Q8_0", None, "F32", "BF16", "F16"], key=preference)[:3] == ["F16", "BF16", "Q8_0"]
