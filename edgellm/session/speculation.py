"""The draft model a planned target decodes with: the one -md or --draft-hf names, else (with --spec auto) a smaller
stored model of the same tokenizer; its vocabulary checked as llama.cpp checks it, its plan made in the memory the
target leaves, and the choice (plan.speculation) made from both, as data for `plan`, the model host and the front
ends."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgellm.errors import DoesNotFit, DraftIncompatible, EdgellmError
from edgellm.events import Report, ignore
from edgellm.gguf.header import GGUFError
from edgellm.plan.planner import Plan, PlanError, Wishes, plan, room_beside
from edgellm.plan.speculation import DraftCandidate, SpecChoice, choose, draft_cost_ratio
from edgellm.plan.speed import bytes_per_token
from edgellm.reasons import reason
from edgellm.session.flags import Flags
from edgellm.session.opening import ModelChoice, PlannedModel, local_model, profile_named
from edgellm.storage import store
from edgellm.storage.specs import cached_spec, read_spec

if TYPE_CHECKING:
    from edgellm.engine.contract import LoadParams
    from edgellm.gguf.vocab import VocabFacts
    from edgellm.hw.profile import DeviceProfile
    from edgellm.plan.spec import ModelSpec

DRAFT_UBATCH = 64  # the draft's micro-batch: it decodes a token at a time but the prompt; its logits buffer is
# sized by it (262144 × 512 × 4 bytes = 512 MiB for a Gemma 3 at llama.cpp's 512, 64 MiB at 64)
STORE_DRAFT_SHARE = 0.34  # a stored model drafts for a target only when its file is at most this share of the target's


def draft_path(flags: Flags, report: Report = ignore, cancel: threading.Event | None = None) -> Path | None:
    """The draft model -md (a file or a stored name) or --draft-hf (pulled when not stored) names; None when none."""
    if flags.draft_hf:
        from edgellm.hub.refs import parse_ref
        from edgellm.session.remote import stored_or_pulled

        stored = stored_or_pulled(
            parse_ref(flags.draft_hf), profile_named(None), flags.wishes(), flags.offline, report=report, cancel=cancel
        )
        return stored.path(store.store_dir())
    if flags.model_draft:
        path, _ = local_model(flags.model_draft)
        if not path.is_file():
            raise EdgellmError(f"-md {flags.model_draft}: no such model file or stored model; pass a GGUF file")
        return path
    return None


def plan_speculation(
    flags: Flags,
    target: Path,
    spec: ModelSpec,
    target_plan: Plan,
    profile: DeviceProfile,
    report: Report = ignore,
    cancel: threading.Event | None = None,
) -> tuple[SpecChoice, Plan | None]:
    """How the target's replies are drafted, and the draft model's plan when one is taken. A named draft of another
    vocabulary is refused (DraftIncompatible); one that does not fit beside the target, with --spec draft, too
    (DoesNotFit). A batched target (serve's slots) drafts by n-gram lookup only, while a request decodes alone."""
    if flags.spec == "off":
        return choose("off", []), None
    if target_plan.parallel > 0:
        return SpecChoice("ngram", reason("spec_batched")), None
    if flags.spec == "ngram":
        return choose(flags.spec, []), None
    named = draft_path(flags, report, cancel)
    target_vocab = _vocab(target)
    plans: dict[Path, Plan] = {}
    candidates = []
    for path in [named] if named is not None else _store_drafts(target, spec):
        found = _candidate(path, target, target_vocab, spec, target_plan, profile, flags, named is not None)
        if found is not None:
            candidate, draft_plan = found
            candidates.append(candidate)
            if draft_plan is not None:
                plans[path] = draft_plan
    if named is not None and flags.spec == "draft" and not plans:
        raise DoesNotFit(reason("spec_draft_does_not_fit", draft=named.name), str(named))
    asked = "draft" if named is not None and flags.spec == "auto" else flags.spec
    choice = choose(asked, candidates)
    return choice, plans.get(choice.draft.path) if choice.draft is not None else None


def with_speculation(
    planned: PlannedModel, flags: Flags, report: Report = ignore, cancel: threading.Event | None = None
) -> PlannedModel:
    """`planned` with how its replies are drafted and its draft model planned beside it; a split drafts nothing."""
    choice = planned.choice
    if choice.plan is None:
        return planned
    speculation, draft_plan = plan_speculation(
        flags, choice.path, choice.spec, choice.plan, planned.profile, report, cancel
    )
    draft = None
    if speculation.draft is not None and draft_plan is not None:
        path = speculation.draft.path
        draft_choice = ModelChoice(path, read_spec(path), draft_plan)
        draft = PlannedModel(draft_choice, planned.profile, draft_load_params(planned.params, path, draft_plan))
    return replace(planned, speculation=speculation, draft=draft)


def draft_load_params(target: LoadParams, draft: Path, draft_plan: Plan) -> LoadParams:
    """The draft's llama.cpp parameters: its own plan's placement, the target's context (it holds the same tokens)."""
    from edgellm.plan.params import load_params

    return replace(load_params(draft, draft_plan, target.seed), n_ctx=target.n_ctx)


def _vocab(path: Path) -> VocabFacts:
    from edgellm.gguf.vocab import read_vocab

    return read_vocab(path)


def _candidate(
    path: Path,
    target: Path,
    target_vocab: VocabFacts,
    spec: ModelSpec,
    target_plan: Plan,
    profile: DeviceProfile,
    flags: Flags,
    named: bool,
) -> tuple[DraftCandidate, Plan | None] | None:
    """The draft at `path` checked and planned beside the target; None for a stored model that cannot draft."""
    from edgellm.gguf.vocab import draft_incompatibility

    try:
        why = draft_incompatibility(target_vocab, _vocab(path))
        draft_spec = read_spec(path)
    except (GGUFError, OSError) as error:
        if named:
            raise EdgellmError(f"-md {path}: cannot read the draft model ({error}); pass a GGUF file") from None
        return None
    if why is not None:
        if named:
            raise DraftIncompatible(
                reason("draft_incompatible", draft=path.name, model=target.name, why=why), path, target, why
            )
        return None
    wishes = Wishes(  # the target's context and KV type; its layers placed by the planner (the GPU first)
        ctx=target_plan.n_ctx,
        kv=target_plan.kv,
        flash_attn="on" if target_plan.flash_attn else "off",
        threads=flags.threads,
        n_ubatch=DRAFT_UBATCH,
    )
    try:
        draft_plan: Plan | None = plan(room_beside(profile, [target_plan]), draft_spec, wishes)
    except PlanError:
        draft_plan = None
    fits = draft_plan is not None and draft_plan.fits and draft_plan.n_ctx >= target_plan.n_ctx
    draft_read = sum(bytes_per_token(draft_spec, draft_plan)) if draft_plan is not None else draft_spec.file_bytes
    cost = draft_cost_ratio(draft_read, sum(bytes_per_token(spec, target_plan)))
    memory = draft_plan.needed if draft_plan is not None else draft_spec.file_bytes
    return DraftCandidate(path, path.name, cost, memory, fits), draft_plan if fits else None


def _store_drafts(target: Path, spec: ModelSpec) -> list[Path]:
    """Stored models small enough to draft for the target (their vocabularies are checked after)."""
    folder = store.store_dir()
    found = []
    for model in store.load_models().values():
        path = model.path(folder)
        if path == target or not path.is_file():
            continue
        try:
            if cached_spec(path).file_bytes <= STORE_DRAFT_SHARE * spec.file_bytes:
                found.append(path)
        except (GGUFError, OSError):
            continue
    return found
