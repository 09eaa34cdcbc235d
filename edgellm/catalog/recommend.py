"""Which catalog models suit a machine: for each, the best quant that fits and decodes fast enough."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgellm.catalog.curated import BITS_PER_WEIGHT, OFFERED, CatalogModel, load_catalog
from edgellm.errors import EdgellmError, HubUnreachable
from edgellm.gguf.quants import rank
from edgellm.hub.client import list_files
from edgellm.hub.files import group_quants
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.planner import PlanError, Wishes, choose_quant, plan, quality_of, quality_words
from edgellm.plan.quality import QualityFigure
from edgellm.plan.speed import Measured, Sample, estimate_speed
from edgellm.words import quality_text

GOOD_QUANT = "Q4_K_S"  # below it (3- and 2-bit) the loss is noticeable: rank those after every 4-bit pick


@dataclass(frozen=True)
class Pick:
    name: str
    repo: str
    quant: str
    size: int
    tokens_per_s: float
    where: str  # GPU, CPU, or GPU+CPU
    n_gpu_layers: int
    n_ctx: int
    params_b: float
    licence: str
    sizes_from: str  # hub | estimated
    calibrated: bool = False  # the estimate was scaled by this device's benchmarks
    measured_tokens_per_s: float | None = None  # what `edgellm bench` measured for this repo and quant here
    draft: str = ""  # a draft model's repo for speculative decoding with it (--draft-hf), when the catalog has one
    kld: float | None = None  # what the quant gives up: its KL divergence from the original (measured, else prior)
    kld_measured: bool = False  # measured by `edgellm bench --quality` for this repo and quant
    quality: str = ""  # the same in words: "KLD 0.031 vs Q8_0, 92% same top token, measured" or "KLD ~0.073 (...)"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens_per_s"] = round(self.tokens_per_s, 1)
        if self.measured_tokens_per_s is not None:
            data["measured_tokens_per_s"] = round(self.measured_tokens_per_s, 1)
        data["pull"] = f"edgellm pull {self.repo}:{self.quant}"
        if self.draft:
            data["chat"] = f"edgellm chat -hf {self.repo}:{self.quant} --draft-hf {self.draft}:{DRAFT_QUANT}"
        return data


DRAFT_QUANT = "Q8_0"  # a draft is small: its quant costs little memory, and a sharper draft is accepted more


@dataclass
class Recommendation:
    picks: list[Pick]
    left_out: list[str] = field(default_factory=list)
    online: bool = True
    unreachable: bool = False  # the Hub was asked and did not answer


def quant_sizes(entry: CatalogModel, online: bool) -> tuple[dict[str, int], str]:
    """The quants of a catalog model with their sizes, and where the sizes come from: "hub" (its listing),
    "estimated" (offline, or the repo is gone), or "unreachable" (estimated: the Hub did not answer)."""
    if online:
        try:
            _, files = list_files(entry.repo)
            groups = group_quants(files)
            if groups:
                return {group.quant: group.size for group in groups}, "hub"
        except HubUnreachable:
            return {quant: entry.estimated_size(quant) for quant in OFFERED}, "unreachable"
        except EdgellmError:  # the repo is gone or private: estimated
            pass
    return {quant: entry.estimated_size(quant) for quant in OFFERED}, "estimated"


def recommend(
    profile: DeviceProfile,
    min_speed: float,
    online: bool,
    samples: list[Sample] | None = None,
    measured: dict[tuple[str, str], Measured] | None = None,
    wishes: Wishes = Wishes(),
    qualities: dict[tuple[str, str], QualityFigure] | None = None,
) -> Recommendation:
    """Per catalog model, the quant the planner would choose among those fast enough; then the models
    ranked by quality: 4-bit and better before the 3- and 2-bit quants, then by parameter count.
    `samples` (this device's benchmarks) calibrate the speed estimates; `measured` speeds, by (repo, QUANT), are
    shown beside them, with the quality `bench --quality` measured (by repo and QUANT; else the published prior);
    `wishes` are config.toml's (its margins and --min-quality) or the flags'."""
    measured, qualities = measured or {}, qualities or {}
    result = Recommendation([], online=online)
    for entry in load_catalog():
        sizes, source = quant_sizes(entry, result.online)
        if source == "unreachable":
            result.online, result.unreachable = False, True  # estimate the rest rather than wait on each
        fast, reason = [], "no quant fits"
        for quant in sorted(sizes, key=rank, reverse=True):
            if quant not in BITS_PER_WEIGHT:
                continue
            spec = entry.spec(quant, sizes[quant])
            try:
                speed = estimate_speed(spec, plan(profile, spec, wishes), profile, samples).tokens_per_s
            except PlanError:
                continue
            if speed >= min_speed:
                fast.append((quant, spec))
            else:
                reason = f"too slow: about {speed:.1f} tokens/s at {quant}"
        ours = {quant: figure for (repo, quant), figure in qualities.items() if repo == entry.repo}
        try:
            choice = choose_quant(profile, fast, wishes, measured=ours)
        except PlanError as error:
            skipped = [item for item in error.reason.get("considered", ()) if item.code == "quant_below_quality"]
            if skipped and len(skipped) == len(fast):
                reason = f"every quant fast enough is above the quality bound {wishes.min_quality:g} (--min-quality)"
            result.left_out.append(f"{entry.name}: {reason}")
            continue
        chosen = choice.plan
        where = "GPU" if chosen.full_offload else ("GPU+CPU" if chosen.gpu and chosen.n_gpu_layers else "CPU")
        estimated = estimate_speed(choice.spec, chosen, profile, samples)
        found = measured.get((entry.repo, choice.quant.upper()))
        quality = quality_of(choice.quant, choice.spec, ours)
        result.picks.append(
            Pick(
                entry.name,
                entry.repo,
                choice.quant,
                sizes[choice.quant],
                estimated.tokens_per_s,
                where,
                chosen.n_gpu_layers,
                chosen.n_ctx,
                entry.params,
                entry.licence,
                "hub" if source == "hub" else "estimated",
                estimated.calibration is not None,
                found.tokens_per_s if found else None,
                entry.draft,
                quality.kld if quality else None,
                bool(quality and quality.measured),
                quality_text(quality_words(quality)),
            )
        )
    result.picks.sort(
        key=lambda pick: (rank(pick.quant) >= rank(GOOD_QUANT), pick.params_b, rank(pick.quant)), reverse=True
    )
    return result
