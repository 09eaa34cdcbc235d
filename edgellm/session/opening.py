"""The model opener: from the flags to a checked model file and its plan on a machine (split across RPC workers
when asked), as data: the choice, the plan, the llama.cpp parameters and the notices. Download progress is
reported as events; the model host (session.host) loads what is planned here, and each front end shows the rest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm.engine.contract import LoadParams
from edgellm.errors import DoesNotFit, EdgellmError, ModelFileError, NoModel
from edgellm.events import Notice, Report, ignore
from edgellm.gguf.header import GGUFError
from edgellm.gguf.quants import parse_quant, rank
from edgellm.hub.refs import parse_ref
from edgellm.hw.builtin import resolve_profile
from edgellm.hw.detect import detect_this_machine
from edgellm.hw.profile import DeviceProfile, ProfileError
from edgellm.plan.params import load_params, split_load_params
from edgellm.plan.planner import Plan, PlanError, Wishes, build_backend, choose_quant, flash_attention, plan
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import Reason, reason
from edgellm.session.flags import Flags
from edgellm.session.remote import stored_or_pulled
from edgellm.storage import store
from edgellm.storage.specs import cached_spec, read_spec
from edgellm.words import PLAIN, Terms, notice

if TYPE_CHECKING:
    from edgellm.engine.endpoint import Endpoint
    from edgellm.gguf.projector import ProjectorSpec
    from edgellm.plan.speculation import SpecChoice
    from edgellm.plan.split import SplitDevice, SplitPlan


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    spec: ModelSpec
    plan: Plan | None  # None: split across workers (PlannedModel.split)
    alternatives: tuple[Reason, ...] = ()  # the other quants considered, when -m named a folder
    projector: Path | None = None  # the vision projector loaded with it (counted in the plan)


def profile_named(name: str | None) -> DeviceProfile:
    """A built-in profile or profile file when named (--profile), else this machine."""
    if not name:
        return detect_this_machine()
    try:
        return resolve_profile(name)
    except ProfileError as error:
        raise EdgellmError(reason("bad_profile", problem=str(error))) from None


def local_model(name: str) -> tuple[Path, store.StoredModel | None]:
    """What -m names: a file or folder that exists, else the stored model of that name (`edgellm ls`), else the path
    as given (reading it says what is wrong). The one place a model's name is turned into a path."""
    path = Path(name).expanduser()
    if not path.exists():
        stored = store.find(name)
        if stored is not None:
            return stored.path(store.store_dir()), stored
    return path, None


def choose_model(
    flags: Flags, profile: DeviceProfile, report: Report = ignore, cancel: threading.Event | None = None
) -> ModelChoice:
    """The model named by -m (a file, a store name, or a folder of quants to choose from) or -hf (pulled when not
    stored, reporting progress; `cancel` stops the pull) and its plan on `profile`."""
    wishes = flags.wishes()
    if flags.hf_repo:
        stored = stored_or_pulled(
            parse_ref(flags.hf_repo), profile, wishes, flags.offline, report=report, cancel=cancel
        )
        return _planned(stored.path(store.store_dir()), wishes, profile, stored, flags)
    if not flags.model:
        return best_local_model(profile, wishes)
    path, found = local_model(flags.model)
    if found is None and path.is_dir():
        files = store.model_files(path)
        if not files:
            raise ModelFileError(
                f"{path}: is a directory with no .gguf model in it; pass a GGUF file", path, "directory"
            )
        candidates = [
            (parse_quant(file.name) or read_spec(file).file_type or file.stem, read_spec(file)) for file in files
        ]
        from edgellm.bench.results import measured_quality

        measured = measured_quality(
            files={quant: (Path(spec.path).name, spec.file_bytes) for quant, spec in candidates}
        )
        projector_file = projector_path(flags, files[0])
        projector = _projector_of(projector_file, candidates[0][1], files[0])
        try:
            choice = choose_quant(profile, candidates, wishes, measured=measured, projector=projector)
        except PlanError as error:
            raise DoesNotFit(reason("about", subject=str(path), reason=error.reason), str(path)) from None
        return ModelChoice(Path(choice.spec.path), choice.spec, choice.plan, choice.considered, projector_file)
    return _planned(path, wishes, profile, found, flags)


def _projector_of(projector_file: Path | None, spec: ModelSpec, model: Path) -> ProjectorSpec | None:
    """The projector's spec, checked against the model it is loaded with: NoVision naming why it does not belong."""
    from edgellm.engine.contract import projector_mismatch
    from edgellm.gguf.projector import matches, read_projector

    if projector_file is None:
        return None
    projector = read_projector(projector_file)
    why = matches(projector, spec.n_embd, spec.architecture)
    if why:
        raise projector_mismatch(projector_file, model, why)
    return projector


def _planned(
    path: Path,
    wishes: Wishes,
    profile: DeviceProfile,
    stored: store.StoredModel | None = None,
    flags: Flags | None = None,
) -> ModelChoice:
    from edgellm.bench.results import device_measurements

    spec = read_spec(path)
    projector_file = projector_path(flags, path) if flags is not None else None
    projector = _projector_of(projector_file, spec, path)
    if wishes.parallel == "auto":
        from edgellm.bench.results import parallel_measured

        wishes = replace(wishes, parallel_measured=parallel_measured(profile, path.name, spec.file_bytes))
    measured = device_measurements(profile, spec, wishes)  # what bench measured on this device
    try:
        choice = ModelChoice(
            path, spec, plan(profile, spec, wishes, measured=measured, projector=projector), projector=projector_file
        )
    except PlanError as error:
        raise DoesNotFit(error.reason, str(path)) from None
    if stored is not None:
        store.touch(stored)
    return choice


def model_file(flags: Flags) -> Path:
    """The model file -m or -hf names, without planning it for one machine (a split plans it for several): a file,
    a store name, or a stored -hf model."""
    if flags.hf_repo:
        stored = store.find(parse_ref(flags.hf_repo).name)
        if stored is None:
            raise NoModel(reason("split_model_not_stored", name=flags.hf_repo))
        return stored.path(store.store_dir())
    if not flags.model:
        raise NoModel(reason("split_needs_model"))
    path, found = local_model(flags.model)
    if found is None and path.is_dir():
        raise ModelFileError(f"{path}: is a directory; a split plans one GGUF file: pass it", path, "directory")
    return path


def best_local_model(profile: DeviceProfile, wishes: Wishes) -> ModelChoice:
    """With no -m: the most capable model in the store that fits this machine (largest, then best quant)."""
    folder = store.store_dir()
    files = {model.path(folder) for model in store.load_models().values()}
    files |= set(store.model_files(folder)) if folder.is_dir() else set()
    from edgellm.bench.results import device_measurements, load_results

    kept = load_results(profile)  # this device's bench results, read once
    fitting = []
    for path in sorted(files):
        try:
            spec = cached_spec(path)
            fitting.append(
                (spec, plan(profile, spec, wishes, measured=device_measurements(profile, spec, wishes, kept)))
            )
        except (GGUFError, PlanError, OSError):
            continue
    if not fitting:
        raise NoModel(reason("no_model_fits", folder=str(folder)))
    # the most parameters (layers × width², a proxy that ignores the quant), then the best quant
    spec, chosen = max(
        fitting, key=lambda item: (item[0].n_layers * item[0].n_embd ** 2, rank(item[0].file_type or ""))
    )
    return ModelChoice(Path(spec.path), spec, chosen)


@dataclass(frozen=True)
class PlannedModel:
    """A model chosen and planned for this machine (or split across it and RPC workers), not yet loaded."""

    choice: ModelChoice
    profile: DeviceProfile
    params: LoadParams
    split: SplitPlan | None = None  # --rpc: the layers across this machine and the workers
    speculation: SpecChoice | None = None  # how replies are drafted (None: not planned, a split or a server's slots)
    draft: PlannedModel | None = None  # the draft model, planned beside this one

    @property
    def notices(self) -> list[Notice]:
        """What the plan tells the person (a context reduced to fit, a KV cache quantized, ...)."""
        chosen = self.split if self.split is not None else self.choice.plan
        return [notice(said) for said in chosen.notices] if chosen is not None else []

    @property
    def n_ctx(self) -> int:
        return self.params.n_ctx

    @property
    def watched_workers(self) -> tuple[str, ...]:
        """The workers of a split whose side channel answers, so their health can be watched while it runs."""
        if self.split is None:
            return ()
        return tuple(share.device.where for share in self.split.shares if share.device.watched)

    def budget_table(self, terms: Terms = PLAIN) -> str:
        """The memory budget behind the plan, as `plan` and -v show it; its reasons in `terms`."""
        from edgellm.plan import report, split

        if self.split is not None:
            return split.render(self.split, self.choice.spec, terms)
        assert self.choice.plan is not None
        return report.render(self.choice.plan, self.choice.spec, self.profile, terms=terms)


def plan_model(flags: Flags, report: Report = ignore, cancel: threading.Event | None = None) -> PlannedModel:
    """The model the flags name and its plan on this machine (split across the --rpc workers when given), with
    the llama.cpp parameters that carry it out."""
    if flags.rpc:
        return plan_split_model(flags, list(flags.rpc))
    profile = detect_this_machine()
    choice = choose_model(flags, profile, report, cancel)
    assert choice.plan is not None
    params = replace(load_params(choice.path, choice.plan, flags.seed), projector=choice.projector)
    return PlannedModel(choice, profile, params)


def projector_path(flags: Flags, model: Path) -> Path | None:
    """The vision projector loaded with `model`: --mmproj's file (checked: a GGUF holding a vision projector), else the
    one kept with the model (`storage.projectors.projector_for`); none with --no-mmproj."""
    from edgellm.errors import NoVision
    from edgellm.gguf.header import read_header

    if flags.no_mmproj:
        return None
    if not flags.mmproj:
        from edgellm.storage.projectors import projector_for

        return projector_for(model)
    path = Path(flags.mmproj).expanduser()
    try:
        header = read_header(path)
    except GGUFError as error:
        raise ModelFileError(
            f"--mmproj {flags.mmproj}: {error}; pass the model's mmproj GGUF file", path, error.problem
        ) from None
    if header.architecture != "clip" or not header.metadata.get("clip.has_vision_encoder"):
        raise NoVision(
            f"--mmproj {path.name} is not a vision projector (its architecture is {header.architecture}): pass the "
            f"model's mmproj-….gguf file",
            model.name,
            path.name,
            "not a projector",
        )
    return path


def plan_split_model(
    flags: Flags, endpoints: list[Endpoint], profiles: list[str] | tuple[str, ...] = ()
) -> PlannedModel:
    """The model the flags name split across this machine (or the first of `profiles`), the other `profiles` and
    the workers (each checked: WorkerUnreachable). Shared by `plan` and every command that runs with --rpc."""
    from edgellm.plan.split import plan_split, profile_device

    if flags.gpu_layers != "auto":
        raise EdgellmError(reason("split_places_layers"))
    path = model_file(flags)  # the model first: a bad path is said before any worker is asked
    spec = read_spec(path)
    here = profile_named(profiles[0] if profiles else None)
    devices = [profile_device(here, local=not profiles)]
    devices += [profile_device(profile_named(name), local=False) for name in profiles[1:]]
    devices += [worker_device(endpoint) for endpoint in endpoints]
    flash_attn = flash_attention(flags.flash_attn, build_backend(here))
    try:
        split = plan_split(spec, devices, flags.ctx_size, flags.kv, flash_attn)
    except PlanError as error:
        raise DoesNotFit(reason("about", subject=path.name, reason=error.reason), str(path)) from None
    threads = flags.threads or here.cpu.performance_cores
    params = split_load_params(
        path, split, tuple(str(endpoint) for endpoint in endpoints), threads, flash_attn, flags.seed
    )
    return PlannedModel(ModelChoice(path, spec, None), here, params, split)


def worker_device(endpoint: Endpoint) -> SplitDevice:
    """A worker as the split planner sees it: checked (WorkerUnreachable when it cannot be used), named by its
    profile's host name, with the memory it promised (or what it reports, less a margin). `watched` on the device
    says whether it has a side channel to watch while it runs."""
    from edgellm.engine.rpc import check_worker
    from edgellm.engine.side_channel import fetch_profile
    from edgellm.errors import WorkerUnreachable
    from edgellm.plan.split import SplitDevice, worker_budget

    status = check_worker(endpoint)
    if len(status.devices) != 1:
        raise WorkerUnreachable(
            f"the RPC worker at {endpoint} serves {len(status.devices)} devices; edgellm splits "
            f"over one device per worker: start one worker per device",
            str(endpoint),
        )
    document = fetch_profile(endpoint) or {}
    host = (document.get("profile") or {}).get("name")
    return SplitDevice(
        host if isinstance(host, str) and host else "worker",
        worker_budget(status.free_bytes, document.get("memory_cap_bytes")),
        str(endpoint),
        watched=bool(document),
    )
