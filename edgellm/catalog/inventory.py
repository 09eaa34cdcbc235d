"""The models on this machine and how each fits it, and the catalog models recommended for it.

Shared by the front ends (the TUI's home screen); no network and nothing raised for a bad file: a model
that cannot be used is listed with `fits=False` and the reason.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgellm.bench import results
from edgellm.catalog.recommend import Pick, recommend
from edgellm.errors import EdgellmError, ModelFileError
from edgellm.gguf.header import GGUFError
from edgellm.gguf.projector import ProjectorSpec, read_projector
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.planner import NOT_MEASURED, Plan, PlanError, Wishes, plan
from edgellm.plan.speed import Sample, estimate_speed, placement
from edgellm.reasons import Reason
from edgellm.storage import store
from edgellm.storage.projectors import projector_for
from edgellm.storage.specs import read_spec

log = logging.getLogger(__name__)

DOES_NOT_FIT = "does not fit"
UNUSABLE = "cannot be read"
MIN_SPEED = 5.0  # tokens/s: slower than this is no pleasure to chat with


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path
    size: int
    source: str  # pull, convert, import, hf-cache, lm-studio, llama.cpp, dev
    fits: bool
    verdict: str  # full GPU | partial: N of M layers on GPU | CPU | does not fit | cannot be read
    tokens_per_s: float | None = None  # estimated (calibrated when this device has benchmarks)
    n_ctx: int | None = None
    reason: Reason | None = None  # why it does not fit or cannot be read
    measured_tokens_per_s: float | None = None  # what `edgellm bench` measured for this file here
    projector: Path | None = None  # the vision projector kept with it (storage.projectors), counted in its fit

    @property
    def vision(self) -> bool:
        """Whether it answers about images: a projector is kept with it."""
        return self.projector is not None


def vision_projector(path: Path) -> tuple[Path | None, ProjectorSpec | None]:
    """The projector kept with the model at `path` and its spec; (None, None) for a text model or one whose
    projector cannot be read (the model is listed as a text model then)."""
    found = projector_for(path)
    if found is None:
        return None, None
    try:
        return found, read_projector(found)
    except (GGUFError, OSError) as error:
        log.warning("%s: %s", found, error)
        return None, None


def verdict(plan: Plan | None) -> str:
    """Where a plan puts the model, in a few words; None (planning failed) or a plan that does not fit: does not fit.
    Layers are counted as llama.cpp does: the repeating layers and the output layer."""
    if plan is None or not plan.fits:
        return DOES_NOT_FIT
    if plan.full_offload:
        return "full GPU"
    if plan.gpu is not None and plan.n_gpu_layers:
        return f"partial: {plan.n_gpu_layers} of {plan.estimate_layers + 1} layers on GPU"
    return "CPU"


def assess(
    name: str,
    path: Path,
    size: int,
    source: str,
    profile: DeviceProfile,
    wishes: Wishes = Wishes(),
    samples: list[Sample] | None = None,
    benchmarks: dict[str, dict[str, Any]] | None = None,
    kept: list[dict[str, Any]] | None = None,
) -> ModelFile:
    """One model file with its fit on `profile`, with its vision projector when one is kept with it: its plan (given
    what this device's results `kept` measured of memory and flash attention) and estimated decode speed
    (calibrated by `samples`), the speed measured for it (`benchmarks`: this device's latest result per model), or
    why it has none."""
    try:
        spec = read_spec(path)
    except ModelFileError as error:
        return ModelFile(name, path, size, source, False, UNUSABLE, reason=error.as_reason())
    projector_path, projector = vision_projector(path)
    on_device = results.device_measurements(profile, spec, wishes, kept) if kept else NOT_MEASURED
    try:
        chosen = plan(profile, spec, wishes, measured=on_device, projector=projector)
    except PlanError as error:
        return ModelFile(
            name,
            path,
            size or spec.file_bytes,
            source,
            False,
            DOES_NOT_FIT,
            reason=error.reason,
            projector=projector_path,
        )
    measured = results.measured_for(
        profile, path.name, spec.file_bytes, chosen.flash_attn, benchmarks or {}, where=placement(chosen)
    )
    return ModelFile(
        name,
        path,
        size or spec.file_bytes,
        source,
        chosen.fits,
        verdict(chosen),
        estimate_speed(spec, chosen, profile, samples).tokens_per_s,
        chosen.n_ctx,
        measured_tokens_per_s=measured.tokens_per_s if measured else None,
        projector=projector_path,
    )


def dev_models_dir() -> Path | None:
    """The test models of a development install (`.venv/models`), when there is such a folder."""
    folder = Path(sys.prefix) / "models"
    return folder if folder.is_dir() else None


def candidates() -> list[tuple[str, Path, int, str]]:
    """(name, path, size, source) of every model file found: the store, other tools' GGUFs, the dev models.
    A file is listed once, under the first of these that has it."""
    found: list[tuple[str, Path, int, str]] = []
    seen: set[Path] = set()

    def add(name: str, path: Path, size: int, source: str) -> None:
        key = path.resolve() if path.exists() else path
        if key not in seen:
            seen.add(key)
            found.append((name, path, size, source))

    folder = store.store_dir()
    try:
        stored = store.load_models()
    except EdgellmError as error:
        log.warning("%s", error)
        stored = {}
    for model in stored.values():
        add(model.name, model.path(folder), model.size, model.source)
    try:
        external = store.scan_external()
    except OSError as error:
        log.warning("scanning other tools' models: %s", error)
        external = []
    for other in external:
        add(other.name, other.path, other.size, other.source)
    dev = dev_models_dir()
    for path in store.model_files(dev) if dev else []:
        add(path.name.removesuffix(".gguf"), path, _size(path), "dev")
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def local_models(profile: DeviceProfile, wishes: Wishes = Wishes()) -> list[ModelFile]:
    """Every model on this machine with its fit on `profile` as `wishes` ask (the flags and config.toml the app runs
    with), in the order `candidates` finds them."""
    samples, benchmarks = results.calibration_samples(profile), results.latest_by_model(profile)
    kept = results.load_results(profile)
    return [
        assess(name, path, size, source, profile, wishes, samples, benchmarks, kept)
        for name, path, size, source in candidates()
    ]


def store_is_empty() -> bool:
    """True when the store records no model (a damaged manifest is not empty: `store_problem` says what is wrong)."""
    try:
        return not store.load_models()
    except EdgellmError:
        return False


def store_problem() -> str | None:
    """Why the store's manifest cannot be read, with the way out; None when it can."""
    try:
        store.load_models()
    except EdgellmError as error:
        return str(error)
    return None


def recommended(profile: DeviceProfile, wishes: Wishes = Wishes()) -> list[Pick]:
    """The catalog models that suit `profile`, from offline size estimates (instant, no network)."""
    return recommend(
        profile,
        min_speed=MIN_SPEED,
        online=False,
        samples=results.calibration_samples(profile),
        measured=results.measured_by_repo(profile),
        wishes=wishes,
    ).picks
