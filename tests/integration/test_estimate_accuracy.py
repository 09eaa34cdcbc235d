"""The memory estimate against llama.cpp for real: between the RSS growth (lower bound) and the buffers
llama.cpp logs (upper bound) after a 512-token prompt and 64 generated tokens, at the planned settings."""

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


def assert_bracketed(result: dict) -> None:
    assert result["estimate"] >= 0.9 * result["rss_growth"], result
    assert result["estimate"] <= 1.1 * result["logged"], result


def test_test_model(test_model: Path) -> None:
    assert_bracketed(measure(test_model))


def test_test_model_without_flash_attention_and_q8_cache(test_model: Path) -> None:
    assert_bracketed(measure(test_model, "-fa", "off", "-c", "8192"))
    assert_bracketed(measure(test_model, "--kv", "q8_0"))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_synthetic_shapes(tmp_path: Path, name: str) -> None:
    from edgellm.convert.tinymodel import Shape, write_model

    model = write_model(tmp_path / f"{name}.gguf", Shape(**SHAPES[name]))
    result = measure(model)
    assert_bracketed(result)
    assert result["n_ctx"] == 4096


def test_a_draft_model_as_planned_beside_its_model(draft_model: Path) -> None:
    # session.speculation plans a draft with a 64-token micro-batch (its logits buffer sized by it)
    from edgellm.session.speculation import DRAFT_UBATCH

    result = measure(draft_model, "--ubatch", str(DRAFT_UBATCH), "--prompt-tokens", "256")
    assert_bracketed(result)
    assert result["estimate"] <= 1.1 * result["logged"] and result["estimate"] >= 0.9 * result["logged"], result
