"""From the common flags to a checked model file and a plan of llama.cpp settings for this machine.

Shared by every command that loads a model: run, plan, chat (and serve later).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm import home, store
from edgellm.errors import UserError
from edgellm.gguf_header import GGUFError
from edgellm.hw.profile import DeviceProfile
from edgellm.options import ModelSettings, load_config, resolve
from edgellm.plan.planner import Plan, PlanError, Wishes, choose_quant, plan
from edgellm.hub.files import opens_a_model
from edgellm.plan.spec import ModelSpec, load_spec
from edgellm.quants import parse_quant

if TYPE_CHECKING:
    from edgellm.engine.model import LoadSettings

MIB = 2**20


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    spec: ModelSpec
    plan: Plan
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
        return this_machine()
    from edgellm.hw.builtin import resolve_profile
    from edgellm.hw.profile import ProfileError

    try:
        return resolve_profile(name)
    except ProfileError as error:
        raise UserError(f"--profile: {error}") from None


def this_machine() -> DeviceProfile:
    from edgellm.commands.hw import detect_this_machine

    return detect_this_machine()


def read_spec(path: Path) -> ModelSpec:
    try:
        return load_spec(path, home.home() / "cache" / "specs")
    except GGUFError as error:
        raise UserError(f"{path}: {error}; {way_out(error)}") from None
    except OSError as error:
        raise UserError(f"{path}: {error.strerror or error}; check the path (-m takes a .gguf file)") from None


def model_files(folder: Path) -> list[Path]:
    """The models in a folder: one path per model (the first shard of a split one), projectors left out."""
    return [path for path in sorted(folder.glob("**/*.gguf")) if opens_a_model(path.name)]


def choose_model(settings: ModelSettings, profile: DeviceProfile) -> ModelChoice:
    """The model named by -m (a file, or a folder of quants to choose from) and its plan on `profile`."""
    wishes = wishes_from(settings)
    if settings.hf_repo:
        from edgellm.hub.pull import resolve
        from edgellm.hub.refs import parse_ref

        stored = resolve(parse_ref(settings.hf_repo), profile, wishes, settings.offline)
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
            raise UserError(f"{path}: is a directory with no .gguf model in it; pass a GGUF file")
        candidates = [(parse_quant(file.name) or read_spec(file).file_type or file.stem, read_spec(file))
                      for file in files]
        try:
            choice = choose_quant(profile, candidates, wishes)
        except PlanError as error:
            raise UserError(f"{path}: {error}") from None
        return ModelChoice(Path(choice.spec.path), choice.spec, choice.plan, choice.considered)
    return _planned(path, wishes, profile)


def _planned(path: Path, wishes: Wishes, profile: DeviceProfile, stored: "store.StoredModel | None" = None) -> ModelChoice:
    spec = read_spec(path)
    try:
        choice = ModelChoice(path, spec, plan(profile, spec, wishes))
    except PlanError as error:
        raise UserError(str(error)) from None
    if stored is not None:
        store.touch(stored)
    return choice


def best_local_model(profile: DeviceProfile, wishes: Wishes) -> ModelChoice:
    """With no -m: the most capable model in the store that fits this machine (largest, then best quant)."""
    from edgellm.quants import rank

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
        raise UserError(f"no model given, and no model in {folder} fits this machine: `edgellm recommend` suggests "
                        f"some and `edgellm pull owner/repo` fetches one; or pass -m PATH/TO/MODEL.gguf")
    # the most parameters (layers × width², a proxy that ignores the quant), then the best quant
    spec, chosen = max(fitting, key=lambda item: (item[0].n_layers * item[0].n_embd ** 2, rank(item[0].file_type or "")))
    return ModelChoice(Path(spec.path), spec, chosen)


def planned_model(settings: ModelSettings) -> tuple[ModelChoice, "LoadSettings"]:
    """The model and its plan on this machine, told to the user (the budget table with -v, notices always),
    and the llama.cpp settings that carry the plan out."""
    import sys

    from edgellm.engine.model import LoadSettings

    profile = this_machine()
    choice = choose_model(settings, profile)
    plan_ = choice.plan
    if settings.verbose:
        from edgellm.plan import report

        print(report.render(plan_, choice.spec, profile), file=sys.stderr)
    for notice in plan_.notices:
        print(f"edgellm: note: {notice}", file=sys.stderr)
    return choice, LoadSettings(
        path=choice.path, n_ctx=plan_.n_ctx, n_threads=plan_.n_threads, n_threads_batch=plan_.n_threads_batch,
        n_gpu_layers=plan_.n_gpu_layers, flash_attn=plan_.flash_attn, kv=plan_.kv, seed=settings.seed,
        n_batch=plan_.n_ubatch, use_mmap=plan_.use_mmap, use_mlock=plan_.use_mlock)


def way_out(error: GGUFError) -> str:
    text = str(error)
    if text.startswith("no such file"):
        return "check the path (-m takes a .gguf file or a store name: `edgellm ls`)"
    if text.startswith("is a directory"):
        return "pass the .gguf file inside it"
    if text.startswith("truncated"):
        return "the file is incomplete: download or copy it again"
    if text.startswith("permission"):
        return "make the file readable by this user"
    if "split model" in text or "shard" in text:
        return "keep every part of a split model together"
    return "pass a GGUF model file (convert other formats to GGUF first)"
