"""The memory estimate against llama.cpp for real, after a 512-token prompt and 64 generated tokens at the planned
settings: the resident estimate within ± 10 % of the process's RSS growth, the allocation estimate within ± 10 % of
the buffers llama.cpp logs, and the weights its CPU backend repacks as many bytes as its CPU_REPACK buffer.
Small shapes, to stay fast: benchmarks/bench_estimate.py measures real shapes at three contexts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

SHAPES = {
    "llama-untied": dict(
        architecture="llama",
        n_embd=512,
        n_layers=4,
        n_ff=1536,
        n_vocab=32000,
        n_head=8,
        n_head_kv=2,
        context_length=8192,
    ),
    "qwen2-tied": dict(
        architecture="qwen2",
        n_embd=256,
        n_layers=6,
        n_ff=1024,
        n_vocab=151936,
        n_head=4,
        n_head_kv=2,
        tied=True,
        context_length=32768,
    ),
    "gemma3-sliding-window": dict(
        architecture="gemma3",
        n_embd=640,
        n_layers=6,
        n_ff=2048,
        n_vocab=32768,
        n_head=4,
        n_head_kv=1,
        head_dim=256,
        tied=True,
        sliding_window=512,
        context_length=32768,
    ),
}


def measure(model: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "measure_memory.py"), str(model), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_within_ten_percent(result: dict) -> None:
    assert 0.9 <= result["resident"] / result["rss_growth"] <= 1.1, result
    assert 0.9 <= result["estimate"] / result["logged"] <= 1.1, result


def test_test_model(test_model: Path) -> None:
    result = measure(test_model)
    assert_within_ten_percent(result)
    assert result["resident"] < result["estimate"] / 2  # the logits of a whole batch are reserved, not written


def test_test_model_without_flash_attention(test_model: Path) -> None:
    assert_within_ten_percent(measure(test_model, "-fa", "off", "-c", "8192"))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_synthetic_shapes(tmp_path: Path, name: str) -> None:
    from edgellm.convert.tinymodel import Shape, write_model

    model = write_model(tmp_path / f"{name}.gguf", Shape(**SHAPES[name]))
    result = measure(model)
    assert_within_ten_percent(result)
    assert result["n_ctx"] == 4096


def test_the_repacked_weights_are_what_llama_cpp_repacks(tmp_path: Path) -> None:
    # a tied Q4_0 model: on an AVX2 or ARM dot-product build its layers and its tied output are repacked (the
    # embedding stays mapped beside); elsewhere nothing is, and llama.cpp logs no CPU_REPACK buffer
    from edgellm.convert.tinymodel import Shape, write_model

    model = write_model(tmp_path / "q4_0-tied.gguf", Shape(**SHAPES["qwen2-tied"]), quant="q4_0")
    result = measure(model)
    logged = result["buffers"].get("CPU_REPACK model", 0)
    assert abs(result["repacked"] - logged) <= 0.01 * max(logged, 2**20), result
    assert_within_ten_percent(result)


def test_a_draft_model_as_planned_beside_its_model(draft_model: Path) -> None:
    # session.speculation plans a draft with a 64-token micro-batch (its logits buffer sized by it)
    from edgellm.session.speculation import DRAFT_UBATCH

    result = measure(draft_model, "--ubatch", str(DRAFT_UBATCH), "--prompt-tokens", "256")
    assert_within_ten_percent(result)
