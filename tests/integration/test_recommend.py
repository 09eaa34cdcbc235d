"""`edgellm recommend` as a user runs it: offline, for a GPU laptop, and with sizes from the local Hub. The catalog and
the decode-speed estimates it ranks by: tests/unit/test_recommend.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import edgellm


def test_recommend_offline_ranks_what_is_fast_enough() -> None:
    done = edgellm("recommend", "--profile", "raspberry-pi-5-8gb", "--offline", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    picks = data["recommended"]
    assert picks and all(p["tokens_per_s"] >= 5 for p in picks)
    assert all(p["sizes_from"] == "estimated" for p in picks)
    good = [p for p in picks if p["quant"] in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")]
    assert picks[: len(good)] == good, "4-bit and better first"
    assert [p["params_b"] for p in good] == sorted((p["params_b"] for p in good), reverse=True)
    assert any("Qwen2.5 7B Instruct" in line for line in data["left_out"])
    assert picks[0]["pull"].startswith("edgellm pull ")


def test_recommend_for_a_gpu_laptop_puts_models_on_the_gpu() -> None:
    data = json.loads(edgellm("recommend", "--profile", "laptop-rtx4060-8gb", "--offline", "--json").stdout)
    top = data["recommended"][0]
    assert top["name"] == "Qwen2.5 7B Instruct" and top["where"] == "GPU"


def test_recommend_takes_sizes_from_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.fakehub import FakeHub, FakeRepo

    hub = FakeHub()
    try:
        files = {}
        for quant, size in (("Q8_0", 531_000_000), ("Q4_K_M", 398_000_000)):
            path = tmp_path / f"qwen2.5-0.5b-instruct-{quant.lower()}.gguf"
            with open(path, "wb") as handle:
                handle.truncate(size)  # a sparse file: only its listed size matters here
            files[path.name] = path
        hub.add("Qwen/Qwen2.5-0.5B-Instruct-GGUF", FakeRepo(files, sha256={n: "0" * 64 for n in files}))
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        data = json.loads(edgellm("recommend", "--profile", "raspberry-pi-5-8gb", "--json").stdout)
    finally:
        hub.close()
    qwen = next(p for p in data["recommended"] if p["name"] == "Qwen2.5 0.5B Instruct")
    assert (qwen["quant"], qwen["size"], qwen["sizes_from"]) == ("Q8_0", 531_000_000, "hub")
    others = [p for p in data["recommended"] if p["name"] != "Qwen2.5 0.5B Instruct"]
    assert others and all(p["sizes_from"] == "estimated" for p in others)  # not on this Hub: estimated
