"""Model references and repo listings: quants by name, shards grouped, projectors left out."""

from __future__ import annotations

import pytest

from edgellm.errors import EdgellmError
from edgellm.hub.files import RemoteFile, group_quants
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
