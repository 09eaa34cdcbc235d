"""Model references and repo listings: quants by name, shards grouped, projectors left out."""

from __future__ import annotations

import pytest

from edgellm.errors import EdgellmError
from edgellm.hub.files import RemoteFile, group_quants, matching_projector, name_stem
from edgellm.hub.refs import ModelRef, parse_ref


def test_parse_ref() -> None:
    assert parse_ref("bartowski/Llama-3.2-1B-Instruct-GGUF") == ModelRef("bartowski/Llama-3.2-1B-Instruct-GGUF")
    assert parse_ref("Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m").quant == "Q4_K_M"
    assert parse_ref("unsloth/gemma-3-4b-it-GGUF:UD-Q4_K_XL").quant == "Q4_K_XL"
    for bad in ("llama", "a/b/c", "../etc:Q4", "owner/repo:Q4 K"):
        with pytest.raises(EdgellmError):
            parse_ref(bad)


def test_group_quants_with_odd_names() -> None:
    listing = [
        RemoteFile("README.md", 100),
        RemoteFile("model-q8_0.gguf", 800, "a" * 64),
        RemoteFile("model.Q2_K.gguf", 300, "b" * 64),
        RemoteFile("mmproj-F16.gguf", 50, "c" * 64),
        RemoteFile("UD-Q4_K_XL/model-UD-Q4_K_XL-00002-of-00002.gguf", 200, "d" * 64),
        RemoteFile("UD-Q4_K_XL/model-UD-Q4_K_XL-00001-of-00002.gguf", 250, "e" * 64),
        RemoteFile("Q6_K/model-Q6_K-00001-of-00003.gguf", 300, "f" * 64),  # two shards of three: incomplete
        RemoteFile("Q6_K/model-Q6_K-00002-of-00003.gguf", 300, "0" * 64),
        RemoteFile("BF16/model-bf16.gguf", 1600, "1" * 64),
    ]
    groups = group_quants(listing)
    assert [g.quant for g in groups] == ["BF16", "Q8_0", "Q4_K_XL", "Q2_K"]
    split = groups[2]
    assert [f.path for f in split.files] == [
        "UD-Q4_K_XL/model-UD-Q4_K_XL-00001-of-00002.gguf",
        "UD-Q4_K_XL/model-UD-Q4_K_XL-00002-of-00002.gguf",
    ]
    assert split.size == 450
    assert all(g.projector == RemoteFile("mmproj-F16.gguf", 50, "c" * 64) for g in groups)  # the repo's projector


def files(*names: str) -> list[RemoteFile]:
    return [RemoteFile(name, 100 + index, f"{index:064d}") for index, name in enumerate(names)]


def test_a_projector_is_matched_by_the_model_name_and_precision() -> None:
    assert name_stem("mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf") == name_stem("Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf")
    assert name_stem("UD-Q4_K_XL/gemma-3-4b-it-UD-Q4_K_XL-00001-of-00002.gguf") == "gemma-3-4b-it"
    assert name_stem("mmproj-model-f16.gguf") == name_stem("mmproj-BF16.gguf") == ""
    # unsloth: projectors named for no model; F16 over BF16 and F32
    unsloth = files("mmproj-F32.gguf", "mmproj-BF16.gguf", "mmproj-F16.gguf")
    assert matching_projector("gemma-3-4b-it-Q4_K_M.gguf", "Q4_K_M", unsloth).path == "mmproj-F16.gguf"
    # ... and a BF16 model takes the BF16 one
    assert matching_projector("gemma-3-4b-it-BF16.gguf", "BF16", unsloth).path == "mmproj-BF16.gguf"
    # ggml-org: F16 over Q8_0
    smol = files("mmproj-SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-f16.gguf")
    assert matching_projector("SmolVLM-256M-Instruct-Q8_0.gguf", "Q8_0", smol).path.endswith("-f16.gguf")
    # a repo of two models: each its own
    two = files("mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf", "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf")
    assert "7B" in matching_projector("Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf", "Q4_K_M", two).path
    assert matching_projector("Qwen2.5-VL-32B-Instruct-Q4_K_M.gguf", "Q4_K_M", two) is None
    # bartowski's prefix, a repo's one projector name for a model named otherwise
    assert matching_projector("google_gemma-3-4b-it-Q4_K_M.gguf", "Q4_K_M", files("mmproj-gemma-3-f16.gguf"))
    assert matching_projector("model-Q4_K_M.gguf", "Q4_K_M", []) is None


def test_group_quants_gives_each_model_its_projector() -> None:
    listing = files(
        "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
        "Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
        "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
        "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf",
    )
    groups = group_quants(listing)
    assert [g.quant for g in groups] == ["Q8_0", "Q4_K_M"]  # the projectors are no models
    assert {g.projector.path for g in groups if g.projector} == {"mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf"}
    assert group_quants(files("model-Q4_K_M.gguf"))[0].projector is None
