"""A vision model pulled from a local Hub comes with its projector: the matching mmproj file of the repo, in F16 over
F32, kept in the store with the model, marked by `ls`, deleted by `rm`; a projector that does not go with the model
is said and left out. Real HTTP, the real test model (Gemma 3 270M) and real projectors (tinyprojector)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgellm.convert.tinyprojector import ProjectorShape, write_projector
from edgellm.storage import store
from edgellm.storage.projectors import projector_for
from tests.support import edgellm
from tests.support.fakehub import FakeHub, FakeRepo, point_hub_at

MODEL = "gemma-3-270m-it-Q4_K_M.gguf"
F16 = "mmproj-gemma-3-270m-it-f16.gguf"
F32 = "mmproj-gemma-3-270m-it-f32.gguf"


@pytest.fixture(scope="module")
def projectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("projectors")
    return {
        "f16": write_projector(folder / F16),
        "f32": write_projector(folder / F32, ProjectorShape(f16=False)),
        "wide": write_projector(folder / "mmproj-wide-f16.gguf", ProjectorShape(text_embd=1024)),
    }


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, test_model: Path, projectors: dict[str, Path]):
    server = point_hub_at(FakeHub(), monkeypatch, tmp_path)
    server.add("tests/vision-GGUF", FakeRepo({MODEL: test_model, F16: projectors["f16"], F32: projectors["f32"]}))
    server.add("tests/mismatch-GGUF", FakeRepo({MODEL: test_model, "mmproj-F16.gguf": projectors["wide"]}))
    yield server
    server.close()


def listed() -> list[dict]:
    done = edgellm("ls", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_pull_brings_the_projector_and_the_store_keeps_it(hub: FakeHub, edgellm_home: Path) -> None:
    done = edgellm("pull", "tests/vision-GGUF")
    assert done.returncode == 0, done.stderr
    folder = edgellm_home / "models" / "tests" / "vision-GGUF"
    assert Path(done.stdout.strip().splitlines()[-1]) == folder / MODEL
    assert (folder / F16).read_bytes() == hub.repos["tests/vision-GGUF"].files[F16].read_bytes()
    assert not (folder / F32).exists() and hub.repos["tests/vision-GGUF"].digest(F32) not in hub.served
    [model] = store.load_models().values()
    assert model.projector == f"tests/vision-GGUF/{F16}" and model.files == [f"tests/vision-GGUF/{MODEL}"]
    assert projector_for(folder / MODEL) == folder / F16

    [row] = listed()
    assert row["vision"] and row["projector"] == str(folder / F16)
    text = edgellm("ls").stdout
    assert "tests/vision-GGUF:Q4_K_M · vision" in text

    served = dict(hub.served)
    assert edgellm("pull", "tests/vision-GGUF").returncode == 0
    assert hub.served == served, "a stored model and its projector are never downloaded again"

    assert edgellm("rm", "tests/vision-GGUF:Q4_K_M").returncode == 0
    assert not (edgellm_home / "models" / "tests").exists(), "the projector goes with its model"


def test_a_remote_projector_is_sized_from_its_header_alone(hub: FakeHub) -> None:
    from edgellm.hub.client import list_files
    from edgellm.hub.files import group_quants
    from edgellm.hub.pull import remote_projector

    commit, files = list_files("tests/vision-GGUF")
    [group] = group_quants(files)
    assert group.projector is not None and group.projector.path == F16
    found = remote_projector("tests/vision-GGUF", group, commit)
    assert found is not None and (found.projector_type, found.image_tokens, found.text_n_embd) == ("gemma3", 16, 640)


def test_a_projector_that_does_not_go_with_the_model_is_left_out(hub: FakeHub, edgellm_home: Path) -> None:
    done = edgellm("pull", "tests/mismatch-GGUF")
    assert done.returncode == 0, done.stderr
    assert (
        "mmproj-F16.gguf left out: it projects images to 1024-wide embeddings but the model's are 640 wide"
        in done.stderr
    )
    [model] = store.load_models().values()
    assert model.projector is None
    assert not (edgellm_home / "models" / "tests" / "mismatch-GGUF" / "mmproj-F16.gguf").exists()
    [row] = listed()
    assert not row["vision"] and row["projector"] is None
    assert "vision" not in edgellm("ls").stdout


def test_a_manifest_from_before_projectors_loads_unchanged(edgellm_home: Path, test_model: Path) -> None:
    manifest = edgellm_home / "models" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    entry = {"name": "a/b:Q4_K_M", "repo": "a/b", "quant": "Q4_K_M", "files": [str(test_model)], "size": 1}
    manifest.write_text(json.dumps({"version": 1, "models": {"a/b:Q4_K_M": {**entry, "source": "import"}}}))
    [model] = store.load_models().values()
    assert model.projector is None and model.files == [str(test_model)]
    [row] = listed()
    assert row["name"] == "a/b:Q4_K_M" and not row["vision"]


def test_beside_a_model_file_the_matching_projector_is_found(
    tmp_path: Path, test_model: Path, projectors: dict[str, Path]
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / MODEL
    os.symlink(test_model, model)
    assert projector_for(model) is None  # a text model
    shutil.copy(projectors["wide"], folder / "mmproj-wide-f16.gguf")
    assert projector_for(model) is None  # 1024 wide: not this model's
    for name in ("f32", "f16"):
        shutil.copy(projectors[name], folder / projectors[name].name)
    assert projector_for(model) == folder / F16  # F16 over F32
    (folder / F16).unlink()
    assert projector_for(model) == folder / F32
