"""K-quants through llama.cpp's quantizer in a child process: progress events, a complete file or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgellm.convert.quantize import quantize
from edgellm.convert.tinymodel import Shape, write_model
from edgellm.errors import EdgellmError
from edgellm.events import Progress
from edgellm.storage.specs import load_spec


@pytest.fixture(scope="module")
def f16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("f16") / "tiny-f16.gguf", Shape(), quant="f16")


def test_quantize_reports_each_tensor_and_writes_a_loadable_k_quant(f16_model: Path, tmp_path: Path) -> None:
    events: list[Progress] = []
    out = quantize(f16_model, tmp_path / "tiny-Q4_K_M.gguf", "Q4_K_M", events.append, threads=1)
    assert load_spec(out, tmp_path / "specs").file_type == "Q4_K_M"
    assert out.stat().st_size < f16_model.stat().st_size / 2
    steps = [(e.done, e.total) for e in events if not e.finished]
    total = steps[0][1]
    assert [done for done, _ in steps] == list(range(1, total + 1)) and all(t == total for _, t in steps)
    assert events[-1].finished and events[-1].done == total and events[-1].unit == "tensors"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".partial"] == []

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, verbose=False)
    completion = llm.create_completion("hello", max_tokens=4, temperature=0)  # it loads and generates
    assert completion["usage"]["prompt_tokens"] > 0 and completion["choices"][0]["finish_reason"] in ("length", "stop")


def test_a_stopped_or_failed_quantize_leaves_nothing(f16_model: Path, tmp_path: Path) -> None:
    def stop(event: Progress) -> None:
        raise KeyboardInterrupt  # Ctrl-C at the first tensor

    target = tmp_path / "stopped.gguf"
    with pytest.raises(KeyboardInterrupt):
        quantize(f16_model, target, "Q4_K_M", stop, threads=1)
    assert list(tmp_path.iterdir()) == []

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(f16_model.read_bytes()[:4096])
    with pytest.raises(EdgellmError, match="could not quantize broken.gguf to Q4_K_M"):
        quantize(broken, tmp_path / "out.gguf", "Q4_K_M", threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.gguf"]
    with pytest.raises(EdgellmError, match="cannot quantize to Q9_X"):
        quantize(f16_model, tmp_path / "out.gguf", "Q9_X")
