"""The model opener: from the common flags to a checked model file, its plan on this machine, and a loaded model.

Shared by every front end that loads a model: run, plan, chat (the TUI and the server next). It returns the
choice, the plan, the load settings and the notices as data, and reports download progress as events;
each front end decides how to show them.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm.storage import home, store
from edgellm.engine.generate import GenerationOptions, Sampling
from edgellm.engine.llama_log import LlamaLog
from edgellm.engine.local import LoadedModel, LoadSettings, load
from edgellm.errors import DoesNotFit, ModelFileError, NoModel, UserError
from edgellm.events import Notice, Report, ignore
from edgellm.gguf.header import GGUFError
from edgellm.hub.files import opens_a_model
from edgellm.hub.pull import resolve as stored_or_pulled
from edgellm.hub.refs import parse_ref
from edgellm.hw.builtin import resolve_profile
from edgellm.hw.detect import detect_this_machine
from edgellm.hw.profile import DeviceProfile, ProfileError
from edgellm.session.flags import ModelSettings, load_config, resolve
from edgellm.plan.planner import Plan, PlanError, Wishes, choose_quant, plan
from edgellm.plan.spec import ModelSpec, load_spec
from edgellm.gguf.quants import parse_quant, rank

if TYPE_CHECKING:
    from edgellm.session.history import History
    from edgellm.session.chat import ChatSession
    from edgellm.engine.rpc import Endpoint
    from edgellm.engine.split import SplitModel
    from edgellm.plan.split import SplitPlan

MIB = 2**20


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    spec: ModelSpec
    plan: Plan | None  # None: split across workers (PlannedModel.split)
    alternatives: tuple[str, ...] = ()  # lines on the other quants considered, when -m named a folder


def settings_from(args: argparse.Namespace) -> ModelSettings:
    """The common flags, with config.toml filling what the command line left out."""
    return resolve(args, load_config(home.config_path()))


def wishes_from(settings: ModelSettings) -> Wishes:
    return Wishes(
        ctx=settings.ctx_size, gpu_layers=settings.gpu_layers, kv=settings.kv, flash_attn=settings.flash_attn,
        threads=settings.threads, force=settings.force,
        ram_margin=None if settings.ram_margin is None else settings.ram_margin * MIB,
        gpu_margin=None if settings.gpu_margin is None else settings.gpu_margin * MIB,
    )


def profile_named(name: str | None) -> DeviceProfile:
    """A built-in profile or profile file when named (--profile), else this machine."""
    if not name:
        return detect_this_machine()

    try:
        return resolve_profile(name)
    except ProfileError as error:
        raise UserError(f"--profile: {error}") from None


def read_spec(path: Path) -> ModelSpec:
    try:
        return load_spec(path, home.home() / "cache" / "specs")
    except GGUFError as error:
        raise ModelFileError(f"{path}: {error}; {WAYS_OUT[error.problem]}", path, error.problem) from None
    except OSError as error:
        raise ModelFileError(f"{path}: {error.strerror or error}; check the path (-m takes a .gguf file)", path,
                             "unreadable") from None


def model_files(folder: Path) -> list[Path]:
    """The models in a folder: one path per model (the first shard of a split one), projectors left out."""
    return [path for path in sorted(folder.glob("**/*.gguf")) if opens_a_model(path.name)]


def choose_model(settings: ModelSettings, profile: DeviceProfile, report: Report = ignore,
                 cancel: threading.Event | None = None) -> ModelChoice:
    """The model named by -m (a file, or a folder of quants to choose from) or -hf (pulled when not stored,
    reporting progress; `cancel` stops the pull) and its plan on `profile`."""
    wishes = wishes_from(settings)
    if settings.hf_repo:
        stored = stored_or_pulled(parse_ref(settings.hf_repo), profile, wishes, settings.offline, report=report,
                                  cancel=cancel)
        return _planned(stored.path(store.store_dir()), wishes, profile, stored)
    if not settings.model:
        return best_local_model(profile, wishes)
    path = Path(settings.model).expanduser()
    if not path.exists():
        stored = store.find(settings.model)
        if stored is not None:
            return _planned(stored.path(store.store_dir()), wishes, profile, stored)
    if path.is_dir():
        files = model_files(path)
        if not files:
            raise ModelFileError(f"{path}: is a directory with no .gguf model in it; pass a GGUF file", path,
                                 "directory")
        candidates = [(parse_quant(file.name) or read_spec(file).file_type or file.stem, read_spec(file))
                      for file in files]
        try:
            choice = choose_quant(profile, candidates, wishes)
        except PlanError as error:
            raise DoesNotFit(f"{path}: {error}", str(path)) from None
        return ModelChoice(Path(choice.spec.path), choice.spec, choice.plan, choice.considered)
    return _planned(path, wishes, profile)


def _planned(path: Path, wishes: Wishes, profile: DeviceProfile, stored: "store.StoredModel | None" = None) -> ModelChoice:
    spec = read_spec(path)
    try:
        choice = ModelChoice(path, spec, plan(profile, spec, wishes))
    except PlanError as error:
        raise DoesNotFit(str(error), str(path)) from None
    if stored is not None:
        store.touch(stored)
    return choice


def model_file(settings: ModelSettings) -> Path:
    """The model file -m or -hf names, without planning it for one machine (a split plans it for several): a file,
    a store name, or a stored -hf model; a UserError with the way out otherwise."""
    if settings.hf_repo:
        stored = store.find(parse_ref(settings.hf_repo).name)
        if stored is None:
            raise NoModel(f"{settings.hf_repo} is not stored; pull it first (edgellm pull {settings.hf_repo} "
                          f"--dry-run shows what would be fetched)")
        return stored.path(store.store_dir())
    if not settings.model:
        raise NoModel("name the model to split: -m PATH/TO/MODEL.gguf, a store name, or -hf REPO")
    path = Path(settings.model).expanduser()
    if not path.exists():
        stored = store.find(settings.model)
        if stored is not None:
            return stored.path(store.store_dir())
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory; a split plans one GGUF file: pass it", path, "directory")
    return path


def best_local_model(profile: DeviceProfile, wishes: Wishes) -> ModelChoice:
    """With no -m: the most capable model in the store that fits this machine (largest, then best quant)."""
    folder = store.store_dir()
    paths = {model.path(folder) for model in store.load_models().values()}
    paths |= set(model_files(folder)) if folder.is_dir() else set()
    fitting = []
    for path in sorted(paths):
        try:
            spec = load_spec(path, home.home() / "cache" / "specs")
            fitting.append((spec, plan(profile, spec, wishes)))
        except (GGUFError, PlanError, OSError):
            continue
    if not fitting:
        raise NoModel(f"no model given, and no model in {folder} fits this machine: `edgellm recommend` suggests "
                        f"some and `edgellm pull owner/repo` fetches one; or pass -m PATH/TO/MODEL.gguf")
    # the most parameters (layers × width², a proxy that ignores the quant), then the best quant
    spec, chosen = max(fitting, key=lambda item: (item[0].n_layers * item[0].n_embd ** 2, rank(item[0].file_type or "")))
    return ModelChoice(Path(spec.path), spec, chosen)


@dataclass(frozen=True)
class PlannedModel:
    """A model chosen and planned for this machine (or split across it and RPC workers), not yet loaded."""

    choice: ModelChoice
    profile: DeviceProfile
    load_settings: LoadSettings
    split: SplitPlan | None = None  # --rpc: the layers across this machine and the workers

    @property
    def notices(self) -> list[Notice]:
        """What the plan tells the person (a context reduced to fit, a KV cache quantized, ...)."""
        plan = self.split if self.split is not None else self.choice.plan
        return [Notice(text) for text in plan.notices]

    @property
    def n_ctx(self) -> int:
        return self.load_settings.n_ctx

    def budget_table(self) -> str:
        """The memory budget behind the plan, as `plan` and -v show it."""
        from edgellm.plan import report, split

        if self.split is not None:
            return split.render(self.split, self.choice.spec)
        return report.render(self.choice.plan, self.choice.spec, self.profile)


def plan_model(settings: ModelSettings, report: Report = ignore,
               cancel: threading.Event | None = None) -> PlannedModel:
    """The model the flags name and its plan on this machine (split across the --rpc workers when given), with
    the llama.cpp settings that carry it out."""
    if settings.rpc:
        return plan_split_model(settings, list(settings.rpc))
    profile = detect_this_machine()
    choice = choose_model(settings, profile, report, cancel)
    return PlannedModel(choice, profile, LoadSettings.from_plan(choice.path, choice.plan, settings.seed))


def plan_split_model(settings: ModelSettings, endpoints: list["Endpoint"], profiles: list[str] = ()) -> PlannedModel:
    """The model the flags name split across this machine (or the first of `profiles`), the other `profiles` and
    the workers (each checked: WorkerUnreachable). Shared by `plan` and every command that runs with --rpc."""
    from edgellm.plan.planner import FLASH_ATTN_BACKENDS
    from edgellm.plan.split import plan_split, profile_device
    from edgellm.engine.side_channel import worker_device

    if settings.gpu_layers != "auto":
        raise UserError("a split places the layers itself (`edgellm plan --rpc` shows where): drop -ngl (or "
                        "gpu_layers in config.toml)")
    path = model_file(settings)  # the model first: a bad path is said before any worker is asked
    spec = read_spec(path)
    here = profile_named(profiles[0] if profiles else None)
    devices = [profile_device(here, local=not profiles)]
    devices += [profile_device(profile_named(name), local=False) for name in profiles[1:]]
    devices += [worker_device(endpoint) for endpoint in endpoints]
    backend = here.llama_build.backend if here.llama_build else "cpu"
    flash_attn = settings.flash_attn == "on" or (settings.flash_attn == "auto" and backend in FLASH_ATTN_BACKENDS)
    try:
        split = plan_split(spec, devices, settings.ctx_size, settings.kv, flash_attn)
    except PlanError as error:
        raise DoesNotFit(f"{path.name}: {error}", str(path)) from None
    threads = settings.threads or here.cpu.performance_cores
    load_settings = LoadSettings(path=path, n_ctx=split.n_ctx, n_threads=threads, n_threads_batch=threads,
                                 n_gpu_layers=split.n_gpu_layers, flash_attn=flash_attn, kv=split.kv,
                                 seed=settings.seed, rpc_servers=tuple(str(endpoint) for endpoint in endpoints),
                                 tensor_split=split.tensor_split, output_here=True)
    return PlannedModel(ModelChoice(path, spec, None), here, load_settings, split)


def open_model(planned: PlannedModel, settings: ModelSettings, full_screen: bool = False,
               cancel: threading.Event | None = None) -> "LoadedModel | SplitModel":
    """Load the planned model (split: in a watched child process that joins the workers, which `cancel` set ends
    with a KeyboardInterrupt); llama.cpp's log goes to EDGELLM_HOME/logs (and stderr with -v, unless a full-screen
    UI owns the terminal)."""
    echo = settings.verbose and not full_screen
    log = LlamaLog(home.log_path(), echo=echo)
    if planned.split is not None:
        from edgellm.engine.split import SplitModel

        watched = tuple(share.device.where for share in planned.split.shares if share.device.watched)
        return SplitModel.open(planned.load_settings, watched, log, keep_terminal=full_screen, cancel=cancel)
    return load(planned.load_settings, log, keep_terminal=full_screen)


def chat_session(planned: PlannedModel, loaded: LoadedModel, settings: ModelSettings, history: "History | None",
                 show_reasoning: bool = True) -> "ChatSession":
    """The chat session every chat front end drives: the loaded model, its template, the flags' options."""
    from edgellm.session.completion import ChatModel
    from edgellm.session.chat import ChatSession

    return ChatSession(ChatModel.for_model(loaded, planned.choice.spec.architecture), history,
                       model_name=str(planned.choice.path), options=generation_options(settings, chat=True),
                       system_prompt=settings.system_prompt, show_reasoning=show_reasoning)


def generation_options(settings: ModelSettings, chat: bool = False) -> GenerationOptions:
    """The per-call options the flags ask for. The loop guard is on in chat unless --ignore-eos or -n is given."""
    sampling = Sampling(settings.temp, settings.top_k, settings.top_p, settings.min_p, settings.repeat_penalty)
    return GenerationOptions(sampling=sampling, max_tokens=settings.n_predict, ignore_eos=settings.ignore_eos,
                             seed=settings.seed,
                             loop_guard=chat and not settings.ignore_eos and settings.n_predict < 0)


WAYS_OUT = {
    "missing": "check the path (-m takes a .gguf file or a store name: `edgellm ls`)",
    "directory": "pass the .gguf file inside it",
    "truncated": "the file is incomplete: download or copy it again",
    "incomplete": "the file is incomplete: download or copy it again",
    "permission": "make the file readable by this user",
    "split": "keep every part of a split model together",
    "not-gguf": "pass a GGUF model file (convert other formats to GGUF first)",
    "corrupt": "pass a GGUF model file (convert other formats to GGUF first)",
}
