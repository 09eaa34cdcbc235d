"""The models on this machine with their fit, and the recommended ones, against recorded device profiles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgellm.catalog import inventory
from edgellm.hw.builtin import resolve_profile
from edgellm.plan.planner import GPU_MARGIN, PlanError, plan
from edgellm.storage import store
from edgellm.storage.specs import read_spec
from edgellm.words import say

MIB = 2**20


@pytest.fixture(autouse=True)
def no_other_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Other tools' model folders (Hugging Face cache, LM Studio, llama.cpp's cache) made empty and private."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.setenv("LLAMA_CACHE", str(home / "llama.cpp"))
    return home


def with_gpu_free(name: str, free: int):
    profile = resolve_profile(name)
    return replace(profile, gpus=(replace(profile.gpus[0], memory_free_bytes=free),))


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("raspberry-pi-5-8gb", "CPU"),
        ("cpu-laptop-8gb", "CPU"),
        ("laptop-rtx4060-8gb", "full GPU"),
        ("macbook-air-m2-16gb", "full GPU"),
    ],
)
def test_verdict_on_recorded_devices(test_model: Path, profile: str, expected: str) -> None:
    device = resolve_profile(profile)
    assert inventory.verdict(plan(device, read_spec(test_model))) == expected


def test_verdict_partial_counts_the_output_layer(test_model: Path) -> None:
    spec = read_spec(test_model)
    # llama.cpp offloads the output (and with it the logits of a batch) first: 940 MiB before any repeating layer
    # (with the 256 MiB the CUDA runtime takes on a card this size), 1036 MiB with all of them
    partial = plan(with_gpu_free("laptop-rtx4060-8gb", GPU_MARGIN + 1000 * MIB), spec)
    assert 0 < partial.n_gpu_layers <= spec.n_layers
    assert inventory.verdict(partial) == f"partial: {partial.n_gpu_layers} of {spec.n_layers + 1} layers on GPU"


def test_verdict_when_nothing_fits() -> None:
    assert inventory.verdict(None) == inventory.DOES_NOT_FIT


def test_dev_model_is_listed_with_its_fit(test_model: Path) -> None:
    if inventory.dev_models_dir() != test_model.parent:
        pytest.skip("the test model is not in this venv's models folder")
    [model] = [m for m in inventory.local_models(resolve_profile("raspberry-pi-5-8gb")) if m.path == test_model]
    assert model.source == "dev" and model.fits and model.verdict == "CPU"
    assert model.size == test_model.stat().st_size and model.n_ctx and model.tokens_per_s > 5
    assert model.reason is None


def test_store_model_is_listed_once_under_the_store(test_model: Path) -> None:
    stored = store.import_path(test_model)
    models = inventory.local_models(resolve_profile("laptop-rtx4060-8gb"))
    mine = [m for m in models if m.path.resolve() == test_model.resolve()]
    assert [(m.name, m.source, m.verdict) for m in mine] == [(stored.name, "import", "full GPU")]
    assert not inventory.store_is_empty()


def test_models_that_do_not_fit_say_why(test_model: Path) -> None:
    store.import_path(test_model)
    pi = resolve_profile("raspberry-pi-4-4gb")
    starved = replace(pi, memory=replace(pi.memory, available_bytes=600 * MIB))
    with pytest.raises(PlanError):
        plan(starved, read_spec(test_model))
    [model] = [m for m in inventory.local_models(starved) if m.source == "import"]
    assert not model.fits and model.verdict == inventory.DOES_NOT_FIT
    assert model.reason.code == "too_big" and "MiB" in say(model.reason) and model.tokens_per_s is None


def test_broken_gguf_is_listed_with_the_reason(no_other_tools: Path) -> None:
    snapshot = no_other_tools / "hf" / "hub" / "models--someone--broken" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "broken-Q4_K_M.gguf").write_bytes(b"GGUF\x03\x00\x00\x00not really a model")
    models = inventory.local_models(resolve_profile("raspberry-pi-5-8gb"))
    [broken] = [m for m in models if m.source == "hf-cache"]
    assert broken.name == "someone/broken:Q4_K_M" and not broken.fits
    assert broken.verdict == inventory.UNUSABLE and "broken-Q4_K_M.gguf" in say(broken.reason)


def test_missing_store_file_is_listed_with_the_reason() -> None:
    store.add(
        store.StoredModel(
            name="someone/gone:Q4_K_M",
            repo="someone/gone",
            quant="Q4_K_M",
            files=["someone/gone/gone-Q4_K_M.gguf"],
            size=123 * MIB,
        )
    )
    [gone] = [m for m in inventory.local_models(resolve_profile("raspberry-pi-5-8gb")) if m.source == "pull"]
    assert gone.name == "someone/gone:Q4_K_M" and gone.size == 123 * MIB
    assert not gone.fits and gone.verdict == inventory.UNUSABLE and "gone-Q4_K_M.gguf" in say(gone.reason)


def test_damaged_manifest_is_reported_not_raised() -> None:
    store.store_dir().mkdir(parents=True)
    (store.store_dir() / "manifest.json").write_text("{not json")
    assert all(m.source == "dev" for m in inventory.local_models(resolve_profile("raspberry-pi-5-8gb")))
    assert not inventory.store_is_empty() and "damaged" in inventory.store_problem()


def test_empty_store() -> None:
    assert inventory.store_is_empty() and inventory.store_problem() is None


@pytest.mark.parametrize(
    "profile, where", [("raspberry-pi-5-8gb", {"CPU"}), ("laptop-rtx4060-8gb", {"GPU", "GPU+CPU", "CPU"})]
)
def test_recommended_offline(profile: str, where: set[str]) -> None:
    picks = inventory.recommended(resolve_profile(profile))
    assert picks and {pick.where for pick in picks} <= where
    assert all(pick.tokens_per_s >= inventory.MIN_SPEED and pick.sizes_from == "estimated" for pick in picks)
