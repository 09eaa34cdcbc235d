"""A Hub model chosen for a machine: its repo listed, the quant that fits best planned from the files' headers (or the
one asked for), and brought into the store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edgellm.errors import DoesNotFit, EdgellmError, NoSuchQuant, OfflineMode
from edgellm.events import Notice, Report
from edgellm.formatting import gib
from edgellm.hub import client
from edgellm.hub.files import QuantFiles, choosable, group_quants
from edgellm.hub.pull import best_stored, download, local_copy, remote_projector
from edgellm.hub.refs import ModelRef
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.planner import Plan, PlanError, Wishes, choose_quant, plan, ram_margin
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import Reason, reason
from edgellm.storage import store
from edgellm.words import notice

SIZE_ONLY_MARGIN = 0.25  # without a readable header, keep this share of the file size free as well
SIZE_ONLY = "unknown (sized from the file)"


@dataclass(frozen=True)
class RemoteChoice:
    ref: ModelRef
    commit: str
    group: QuantFiles
    spec: ModelSpec | None  # None until planned (a forced quant is planned from the downloaded file)
    plan: Plan | None
    considered: tuple[Reason, ...]
    warning: Reason | None = None  # a forced quant that does not fit

    @property
    def name(self) -> str:
        return f"{self.ref.repo}:{self.group.quant}"


def size_only_spec(repo: str, group: QuantFiles, gguf: dict[str, Any]) -> ModelSpec:
    """A coarse spec for a file whose header cannot be read: its size as one block of weights, and what the
    repo's GGUF metadata on the Hub says (architecture, trained context, chat template)."""
    size = group.size
    context = gguf.get("context_length")
    return ModelSpec(
        path=f"{repo}/{group.first.path}",
        architecture=SIZE_ONLY,
        n_layers=1,
        layer_bytes=(size,),
        token_embd_bytes=0,
        output_bytes=0,
        tied_embeddings=True,
        n_embd=1,
        n_ff=1,
        n_head=1,
        n_head_kv=(1,),
        key_length=1,
        value_length=1,
        swa_layers=(False,),
        sliding_window=0,
        trained_ctx=context if isinstance(context, int) else 0,
        n_vocab=1,
        file_type=group.quant,
        has_chat_template=bool(gguf.get("chat_template")),
        file_bytes=size,
        n_tensors=len(group.files),
    )


def spec_reader(repo: str, group: QuantFiles, commit: str, fallbacks: list[Reason]) -> Callable[[], ModelSpec]:
    def read() -> ModelSpec:
        local = local_copy(repo, group)
        if local is not None:  # in the store or the Hugging Face cache already: read the header here
            from edgellm.gguf.header import read_header
            from edgellm.plan.spec import model_spec

            return replace(model_spec([read_header(path) for path in local]), file_type=group.quant)
        try:
            return client.remote_spec(repo, group, commit)
        except EdgellmError as error:
            fallbacks.append(reason("quant_header_unreadable", quant=group.quant, error=str(error)))
            return size_only_spec(repo, group, client.gguf_metadata(repo))

    return read


def choose_remote(ref: ModelRef, profile: DeviceProfile, wishes: Wishes, plan_forced: bool = True) -> RemoteChoice:
    """List the repo, then ask the planner which quant fits `profile` best (or plan the one asked for;
    with plan_forced=False that waits for `plan_forced_quant` on the downloaded file, saving a header read)."""
    commit, files = client.list_files(ref.repo)
    groups = group_quants(files)
    if not groups:
        raise NoSuchQuant(
            f"{ref.repo} has no GGUF model files; pick a GGUF repo (its name often ends in -GGUF)",
            ref.repo,
            ref.quant,
            [],
        )
    fallbacks: list[Reason] = []
    if ref.quant:
        matching = [g for g in groups if g.quant == ref.quant]
        if not matching:
            names = ", ".join(g.quant for g in groups)
            raise NoSuchQuant(
                f"{ref.repo} has no {ref.quant} file; it has {names}", ref.repo, ref.quant, [g.quant for g in groups]
            )
        if not matching[0].loadable:
            raise NoSuchQuant(
                f"{ref.repo}: {ref.quant} files no longer load in llama.cpp; take Q4_0, which it "
                f"repacks for this CPU as it loads",
                ref.repo,
                ref.quant,
                [g.quant for g in groups],
            )
        choice = RemoteChoice(ref, commit, matching[0], None, None, ())
        if not plan_forced:
            return choice
        return plan_forced_quant(
            choice, spec_reader(ref.repo, choice.group, commit, fallbacks)(), profile, wishes, fallbacks
        )
    by_quant: dict[str, QuantFiles] = {}
    for group in choosable(groups):  # several files of one quant (folders of other sizes): the first, as planned
        by_quant.setdefault(group.quant, group)
    if not by_quant:
        raise NoSuchQuant(
            f"{ref.repo} has no quant edgellm can choose on its own (it has "
            f"{', '.join(g.quant for g in groups)}); name one: {ref.repo}:QUANT",
            ref.repo,
            None,
            [g.quant for g in groups],
        )
    from edgellm.bench.results import measured_quality

    readers = [(quant, spec_reader(ref.repo, group, commit, fallbacks)) for quant, group in by_quant.items()]
    with_projector = next((group for group in by_quant.values() if group.projector is not None), None)
    try:
        chosen = choose_quant(
            profile,
            readers,
            wishes,
            wishes_for=lambda spec, base: _wider(base, spec, profile),
            measured=measured_quality(repo=ref.repo),
            projector=remote_projector(ref.repo, with_projector, commit) if with_projector is not None else None,
        )
    except PlanError as error:
        smallest = min(by_quant.values(), key=lambda g: g.size)
        raise DoesNotFit(
            reason(
                "about",
                subject=ref.repo,
                reason=reason("smallest_file", reason=error.reason, quant=smallest.quant, size=smallest.size),
            ),
            ref.repo,
        ) from None
    return RemoteChoice(
        ref, commit, by_quant[chosen.quant], chosen.spec, chosen.plan, chosen.considered + tuple(fallbacks)
    )


def plan_forced_quant(
    choice: RemoteChoice,
    spec: ModelSpec,
    profile: DeviceProfile,
    wishes: Wishes,
    fallbacks: list[Reason] | tuple[Reason, ...] = (),
) -> RemoteChoice:
    """Plan the quant the user named (given what this device measured: bench results' `device_measurements`); when it
    does not fit, plan it anyway and say so."""
    from edgellm.bench.results import device_measurements

    wider = _wider(wishes, spec, profile)
    measured = device_measurements(profile, spec, wider)
    projector = remote_projector(choice.ref.repo, choice.group, choice.commit)
    try:
        chosen, warning = plan(profile, spec, wider, measured=measured, projector=projector), None
    except PlanError as error:
        chosen = plan(profile, spec, replace(wider, force=True), measured=measured, projector=projector)
        warning = reason("forced_quant_does_not_fit", quant=choice.ref.quant, device=profile.name, reason=error.reason)
    return replace(choice, spec=spec, plan=chosen, considered=tuple(fallbacks), warning=warning)


def _wider(wishes: Wishes, spec: ModelSpec, profile: DeviceProfile) -> Wishes:
    """A spec known only by its file size plans with a quarter of that size kept free besides the margin."""
    if spec.architecture != SIZE_ONLY:
        return wishes
    return replace(wishes, ram_margin=ram_margin(profile, wishes) + int(spec.file_bytes * SIZE_ONLY_MARGIN))


def pull(choice: RemoteChoice, report: Report, *, cancel: threading.Event | None = None) -> store.StoredModel:
    """Bring the chosen quant into the store (see hub.pull.download); `cancel` stops it, keeping what came."""
    return download(choice.ref.repo, choice.commit, choice.group, report, cancel=cancel)


def stored_or_pulled(
    ref: ModelRef,
    profile: DeviceProfile,
    wishes: Wishes,
    offline: bool,
    *,
    report: Report,
    cancel: threading.Event | None = None,
) -> store.StoredModel:
    """A -hf reference as a stored model: from the store when it is there, else pulled (unless offline),
    with the pull's notices and progress sent to `report`; `cancel` stops the pull (see download)."""
    stored = store.find(ref.name) if ref.quant else best_stored(ref.repo)
    if stored is not None:
        return stored
    if offline or client.offline():
        raise OfflineMode(reason("offline_not_stored", name=ref.name, way_out=True))
    choice = choose_remote(ref, profile, wishes, plan_forced=False)
    if choice.warning:
        report(notice(choice.warning, "warning"))
    projector = choice.group.projector
    size = choice.group.size + (projector.size if projector is not None else 0)
    report(Notice(f"pulling {choice.name} ({gib(size)}{', with its vision projector' if projector else ''})"))
    return pull(choice, report, cancel=cancel)
