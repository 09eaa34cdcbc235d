"""Choose n_gpu_layers, context, threads, flash attention, KV type and mmap/mlock for a model on a device.

Pure: device profile + model spec + wishes -> Plan, every choice with its reason (a code and its numbers, worded by
each front end: edgellm.words). Layers go to the GPU while they fit (llama.cpp fills from the last layer); the
context is kept and only reduced, never below 2048, when the user did not ask for one; a q8_0 KV cache is tried
before the context shrinks.

What fits: RAM (a CPU's, or a unified-memory device's) by what must stay resident plus the margin (the resident
figure less the mapped pages the kernel can drop), since Linux and macOS overcommit the address space llama.cpp
reserves and never writes (on Linux the reserved total must still stay within RAM and swap); a discrete GPU by what
is allocated on it. A bench run's measured memory (MemoryCalibration)
scales the estimate when given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from edgellm.gguf.projector import ProjectorSpec
from edgellm.gguf.quants import CPU_CEILING, above_cpu_ceiling, loadable, rank
from edgellm.hw.profile import DeviceProfile, Gpu
from edgellm.plan.estimate import EstimateInputs, GpuRuntime, MemoryEstimate, estimate, gpu_runtime
from edgellm.plan.flash_attn import FlashAttnMeasured
from edgellm.plan.memory_calibration import MemoryCalibration
from edgellm.plan.quality import QualityFigure, divergence_ratio, parameters, prior
from edgellm.plan.repack import build_features
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import Reason, reason
from edgellm.words import say

MIB, GIB = 2**20, 2**30
DEFAULT_CTX = 4096
MIN_AUTO_CTX = 2048
MIN_BITS_PER_WEIGHT = 2.0  # below this no useful quant exists (IQ1_S is about 1.6 and barely coherent)
UBATCH_OPTIONS = (512, 256, 128)  # a smaller micro-batch shrinks the compute buffer (the logits of one batch)
GPU_MARGIN = GIB  # llama.cpp's --fit default
FLASH_ATTN_BACKENDS = ("cpu", "cuda", "metal", "vulkan", "rocm")
ESTIMATE_ERROR_PERCENT = 10  # what benchmarks/bench_estimate.py holds the estimate to where it was measured


class PlanError(ValueError):
    """The wishes cannot be met on this device; `reason` says what was asked, what it needs and the nearest setting
    that fits."""

    def __init__(self, why: Reason) -> None:
        super().__init__(say(why))
        self.reason = why


@dataclass(frozen=True)
class Wishes:
    """What the user asked for; None means 'choose for me'."""

    ctx: int | None = None  # 0: the trained context
    gpu_layers: str | int = "auto"  # auto | all | N
    kv: str | None = None  # f16 | q8_0 | q4_0
    flash_attn: str = "auto"  # auto | on | off
    threads: int | None = None
    ram_margin: int | None = None  # bytes kept free of RAM (default max(512 MiB, 10% of RAM))
    gpu_margin: int | None = None  # bytes kept free on a discrete GPU (default 1 GiB)
    force: bool = False
    n_ubatch: int | None = None  # tokens per micro-batch; None: 512, less when its buffers do not fit
    parallel: int | str = 0  # sequences decoded together (a server): N, "auto", or 0 for one at a time (a chat)
    parallel_measured: tuple[tuple[int, float], ...] = ()  # (sequences, aggregate decode tokens/s) measured on
    # this device (`bench --parallel`), for "auto"
    min_quality: float | None = None  # the largest KL divergence from the original a chosen quant may have


@dataclass(frozen=True)
class Budget:
    """What a device can give: available memory less the margin kept free."""

    device: str
    available: int
    margin: int

    @property
    def usable(self) -> int:
        return self.available - self.margin


@dataclass(frozen=True)
class Plan:
    n_gpu_layers: int
    n_ctx: int
    n_ubatch: int
    n_threads: int
    n_threads_batch: int
    flash_attn: bool
    kv: str
    use_mmap: bool
    use_mlock: bool
    estimate: MemoryEstimate
    ram: Budget
    gpu: Budget | None  # None: no GPU used (none present, or the build cannot drive it)
    unified_memory: bool
    fits: bool
    reasons: dict[str, Reason] = field(default_factory=dict)  # per setting, why it was chosen
    parallel: int = 0  # sequences decoded together, each up to n_ctx; 0: one at a time
    notices: tuple[Reason, ...] = ()  # what was changed to fit, or that it does not
    memory: MemoryCalibration | None = None  # this device's measured memory, applied to the fit
    gpu_runtime: GpuRuntime | None = None  # what is known of the GPU runtime's own memory
    projector: ProjectorSpec | None = None  # the vision projector counted beside the model

    @property
    def resident(self) -> int:
        """What will be resident on all devices, corrected by this device's measurements when there are some."""
        return scaled(self.estimate.resident, self.memory.resident_factor if self.memory else None)

    @property
    def needed(self) -> int:
        """What must stay resident (the resident figure less the mapped pages the kernel can drop), corrected by this
        device's measurements: what RAM is fitted by."""
        return scaled(self.estimate.needed, self.memory.resident_factor if self.memory else None)

    @property
    def allocated(self) -> int:
        """What llama.cpp will allocate on all devices, corrected by this device's measurements when there are some."""
        return scaled(self.estimate.total, self.memory.allocated_factor if self.memory else None)

    @property
    def full_offload(self) -> bool:
        return self.gpu is not None and self.n_gpu_layers > self.estimate_layers

    @property
    def estimate_layers(self) -> int:
        return sum(device.layers for device in self.estimate.devices)


def scaled(value: int, factor: float | None) -> int:
    """A memory figure times a measured correction factor (none: unchanged)."""
    return round(value * factor) if factor else value


def usable_gpu(profile: DeviceProfile) -> tuple[Gpu | None, Reason | None]:
    """The GPU llama.cpp can drive with this build, or why none is used."""
    if not profile.gpus:
        return None, reason("no_gpu")
    gpu = profile.gpus[0]
    build = profile.llama_build
    if build is not None and build.backend != gpu.backend:
        return None, reason("gpu_unusable", gpu=gpu.name, backend=build.backend)
    return gpu, None


def build_backend(profile: DeviceProfile) -> str:
    """The backend this machine's llama.cpp build runs on (cpu when the build is not known)."""
    return profile.llama_build.backend if profile.llama_build else "cpu"


def flash_attention(wish: str, backend: str) -> bool:
    """Whether flash attention is used: on when asked, or (auto) when the backend has its kernels."""
    return wish == "on" or (wish == "auto" and backend in FLASH_ATTN_BACKENDS)


def ram_margin(profile: DeviceProfile, wishes: Wishes) -> int:
    return wishes.ram_margin if wishes.ram_margin is not None else max(512 * MIB, profile.memory.total_bytes // 10)


def metal_working_set(total_ram: int) -> int:
    """Metal's recommendedMaxWorkingSetSize: about 2/3 of RAM up to 36 GB, 3/4 above."""
    return total_ram * 2 // 3 if total_ram <= 36 * GIB else total_ram * 3 // 4


def room_beside(profile: DeviceProfile, plans: list[Plan]) -> DeviceProfile:
    """This device as one more model sees it: its memory less what `plans` (the models loaded beside) take."""
    cpu = gpu = 0
    for other in plans:
        on_cpu, on_gpu = other.estimate.device(False), other.estimate.device(True)
        cpu += on_cpu.needed if on_cpu else 0
        gpu += on_gpu.total if on_gpu else 0
    unified = profile.unified_memory
    memory = replace(profile.memory, available_bytes=max(0, profile.memory.available_bytes - cpu - unified * gpu))
    gpus = tuple(replace(g, memory_free_bytes=max(0, g.memory_free_bytes - gpu)) for g in profile.gpus[:1])
    return replace(profile, memory=memory, gpus=gpus + profile.gpus[1:])


def runtime_of(gpu: Gpu | None) -> GpuRuntime | None:
    """What is known of `gpu`'s runtime memory (None: no GPU used)."""
    return gpu_runtime(gpu.backend, gpu.name, gpu.memory_total_bytes, gpu.unified_memory) if gpu else None


def device_inputs(profile: DeviceProfile, gpu: Gpu | None, settings: EstimateInputs) -> EstimateInputs:
    """`settings` with what the device adds: the GPU's backend and runtime, the build's CPU features (repacking)."""
    build = profile.llama_build
    runtime = runtime_of(gpu)
    return replace(
        settings,
        gpu_backend=gpu.backend if gpu else None,
        gpu_overhead=runtime.overhead if runtime else None,
        cpu_features=build_features(build.cpu_features if build else (), profile.cpu.features),
    )


def plan_inputs(profile: DeviceProfile, found: Plan) -> EstimateInputs:
    """The estimate's inputs behind `found` on `profile`: to estimate it again for a run that differs (a
    measurement's KV cells in use: `filled`)."""
    return device_inputs(
        profile,
        usable_gpu(profile)[0] if found.gpu is not None else None,
        EstimateInputs(
            n_ctx=found.n_ctx,
            n_gpu_layers=found.n_gpu_layers,
            kv=found.kv,
            flash_attn=found.flash_attn,
            n_ubatch=found.n_ubatch,
            parallel=found.parallel,
            projector=found.projector,
        ),
    )


def budgets(profile: DeviceProfile, gpu: Gpu | None, wishes: Wishes) -> tuple[Budget, Budget | None]:
    ram = Budget("RAM", profile.memory.available_bytes, ram_margin(profile, wishes))
    if gpu is None:
        return ram, None
    if gpu.unified_memory:
        cap = metal_working_set(profile.memory.total_bytes) if gpu.backend == "metal" else ram.usable
        return ram, Budget(gpu.name, min(cap, ram.usable), 0)
    margin = wishes.gpu_margin if wishes.gpu_margin is not None else GPU_MARGIN
    return ram, Budget(gpu.name, gpu.memory_free_bytes, margin)


def commit_limit(profile: DeviceProfile) -> int | None:
    """The most private memory llama.cpp may reserve (the mapped file aside): Linux's heuristic overcommit refuses
    more than RAM and swap; macOS reserves freely (None)."""
    if profile.os == "darwin":
        return None
    return profile.memory.total_bytes + profile.memory.swap_total_bytes


def fits(
    est: MemoryEstimate,
    ram: Budget,
    gpu: Budget | None,
    unified: bool,
    memory: MemoryCalibration | None = None,
    reserve_limit: int | None = None,
) -> bool:
    """Whether `est` fits: a discrete GPU by its allocations; RAM (and a unified device's shared RAM) by what must
    stay resident, with the private memory reserved kept within `reserve_limit`; each corrected by `memory` when
    measured."""
    on_gpu = est.device(True)
    on_cpu = est.device(False)
    allocated_factor = memory.allocated_factor if memory else None
    resident_factor = memory.resident_factor if memory else None
    gpu_total = scaled(on_gpu.total, allocated_factor) if on_gpu else 0
    cpu_resident = scaled(on_cpu.needed, resident_factor) if on_cpu else 0
    if gpu is not None and gpu_total > gpu.usable:
        return False
    if reserve_limit is not None and on_cpu and scaled(on_cpu.committed, allocated_factor) > reserve_limit:
        return False
    if unified:
        return gpu_total + cpu_resident <= ram.usable
    return cpu_resident <= ram.usable


def context_options(spec: ModelSpec, wishes: Wishes) -> tuple[list[int], bool]:
    """The contexts to try, largest first, and whether the user fixed it."""
    trained = spec.trained_ctx or DEFAULT_CTX
    if wishes.ctx is not None:
        wanted = trained if wishes.ctx == 0 else wishes.ctx
        if wanted > trained:
            raise PlanError(reason("ctx_above_trained", asked=wanted, trained=trained))
        return [wanted], True
    default = min(DEFAULT_CTX, trained)
    options = [default]
    while options[-1] // 2 >= MIN_AUTO_CTX:
        options.append(options[-1] // 2)
    return options, False


@dataclass(frozen=True)
class Fitter:
    """Everything fixed for one planning run: the device, its budgets and the flash-attention choice."""

    profile: DeviceProfile
    spec: ModelSpec
    wishes: Wishes
    gpu: Gpu | None
    ram: Budget
    gpu_budget: Budget | None
    flash_attn: bool
    ubatch: int = UBATCH_OPTIONS[0]
    memory: MemoryCalibration | None = None
    flash_measured: FlashAttnMeasured | None = None  # the measurement the flash-attention choice followed
    projector: ProjectorSpec | None = None  # a vision projector loaded beside the model

    @property
    def unified(self) -> bool:
        return bool(self.gpu and self.gpu.unified_memory)

    @property
    def runtime(self) -> GpuRuntime | None:
        return runtime_of(self.gpu)

    def estimate(self, n_ctx: int, kv: str, layers: int = 0) -> MemoryEstimate:
        parallel = self.wishes.parallel
        settings = device_inputs(
            self.profile,
            self.gpu,
            EstimateInputs(
                parallel=parallel if isinstance(parallel, int) else 0,
                n_ctx=n_ctx,
                n_gpu_layers=layers,
                kv=kv,
                flash_attn=self.flash_attn,
                n_ubatch=self.ubatch,
                projector=self.projector,
            ),
        )
        return estimate(self.spec, settings, self.gpu.name if self.gpu else "GPU")

    def fits(self, est: MemoryEstimate) -> bool:
        return fits(est, self.ram, self.gpu_budget, self.unified, self.memory, commit_limit(self.profile))

    def most_gpu_layers(self, n_ctx: int, kv: str) -> tuple[int, MemoryEstimate] | None:
        """The largest n_gpu_layers (0..n_layers+1) whose estimate fits; None if not even 0 does."""
        for layers in range(self.spec.n_layers + 1, -1, -1):
            est = self.estimate(n_ctx, kv, layers)
            if self.fits(est):
                return layers, est
        return None

    def attempt(self, n_ctx: int, kv: str) -> tuple[int, MemoryEstimate, bool]:
        """(n_gpu_layers, estimate, fits) for one context and KV type, honouring -ngl."""
        wanted = self.wishes.gpu_layers
        if self.gpu is None:
            est = self.estimate(n_ctx, kv)
            return 0, est, self.fits(est)
        if wanted == "all":
            est = self.estimate(n_ctx, kv, self.spec.n_layers + 1)
            on_cpu = est.device(False)
            resident = scaled(on_cpu.needed, self.memory.resident_factor if self.memory else None) if on_cpu else 0
            return self.spec.n_layers + 1, est, resident <= self.ram.usable
        if isinstance(wanted, int):
            layers = min(wanted, self.spec.n_layers + 1)
            est = self.estimate(n_ctx, kv, layers)
            return layers, est, self.fits(est)
        best = self.most_gpu_layers(n_ctx, kv)
        if best is None:
            return 0, self.estimate(n_ctx, kv), False
        return best[0], best[1], True

    def largest_ctx(self, kv: str, upper: int) -> int | None:
        """The largest context, a multiple of 256 up to `upper`, that fits with the best GPU split."""
        low, high, best = 1, upper // 256, None
        while low <= high:
            middle = (low + high) // 2
            n_ctx = middle * 256
            ok = self.most_gpu_layers(n_ctx, kv) is not None if self.gpu else self.fits(self.estimate(n_ctx, kv))
            if ok:
                best, low = n_ctx, middle + 1
            else:
                high = middle - 1
        return best


PARALLEL_DEFAULT = 4  # llama-server's automatic slot count, when this device has measured nothing
PARALLEL_WORTH = 1.15  # a doubling of the sequences is worth it when it brings this much more aggregate decode


class DeviceMeasured(NamedTuple):
    """What `edgellm bench` measured on this device that a plan takes (None: not measured): `memory`, its memory
    against the estimate, applied to the fit; `flash_attn`, decode with flash attention on and off, of which flash
    attention auto on a CPU takes the faster."""

    memory: MemoryCalibration | None = None
    flash_attn: FlashAttnMeasured | None = None


NOT_MEASURED = DeviceMeasured()


def plan(
    profile: DeviceProfile,
    spec: ModelSpec,
    wishes: Wishes = Wishes(),
    *,
    measured: DeviceMeasured = NOT_MEASURED,
    projector: ProjectorSpec | None = None,
) -> Plan:
    """Choose the settings for `spec` on `profile`, given what this device `measured`, with its vision `projector`
    counted beside it when given; PlanError when the wishes cannot fit (unless force)."""
    if wishes.parallel == "auto":
        return plan_parallel(profile, spec, wishes, measured, projector)
    found = plan_one(profile, spec, wishes, measured, projector)
    if isinstance(wishes.parallel, int) and wishes.parallel > 0:
        found.reasons["parallel"] = reason("parallel_asked", parallel=wishes.parallel, n_ctx=found.n_ctx)
        return replace(found, parallel=wishes.parallel)
    return found


def parallel_worth(measured: tuple[tuple[int, float], ...]) -> tuple[list[int], Reason]:
    """The sequence counts worth decoding together on this device, the most first, and why: from what `bench
    --parallel` measured here (a count is worth it when it decodes PARALLEL_WORTH times the aggregate of the last
    count worth it), else llama-server's default and the halvings below it."""
    found = sorted((count, speed) for count, speed in measured if count >= 1 and speed > 0)
    if not found:
        return [PARALLEL_DEFAULT, 2, 1], reason("parallel_default", parallel=PARALLEL_DEFAULT)
    worth = [found[0]]
    for count, speed in found[1:]:
        if speed >= worth[-1][1] * PARALLEL_WORTH:
            worth.append((count, speed))
    best, base = worth[-1], found[0]
    counts = [count for count, _ in reversed(worth)]
    return counts + ([1] if 1 not in counts else []), reason(
        "parallel_measured",
        parallel=best[0],
        gain=round(best[1] / base[1], 2) if base[1] else 1.0,
        base=base[0],
        tokens_per_s=round(best[1], 1),
        measured=tuple(count for count, _ in found),
    )


def plan_parallel(
    profile: DeviceProfile,
    spec: ModelSpec,
    wishes: Wishes,
    measured: DeviceMeasured = NOT_MEASURED,
    projector: ProjectorSpec | None = None,
) -> Plan:
    """`parallel` auto: the most sequences worth it (`parallel_worth`) that fit with what one sequence would get: its
    context, its KV cache type, its GPU layers."""
    single = plan_one(profile, spec, replace(wishes, parallel=1), measured, projector)
    counts, why = parallel_worth(wishes.parallel_measured)
    for count in counts:
        if count == 1:
            break
        try:
            found = plan_one(profile, spec, replace(wishes, parallel=count, force=False), measured, projector)
        except PlanError:
            continue
        if found.n_ctx >= single.n_ctx and found.kv == single.kv and found.n_gpu_layers >= single.n_gpu_layers:
            if count != counts[0]:  # the count wanted did not fit: say so, and why it was wanted
                why = reason("parallel_fewer", parallel=count, wanted=counts[0], n_ctx=single.n_ctx, why=why)
            found.reasons["parallel"] = why
            return replace(found, parallel=count)
    single.reasons["parallel"] = (
        why if counts[0] == 1 else reason("parallel_memory", wanted=counts[0], n_ctx=single.n_ctx)
    )
    return replace(single, parallel=1)


def plan_one(
    profile: DeviceProfile,
    spec: ModelSpec,
    wishes: Wishes,
    measured: DeviceMeasured = NOT_MEASURED,
    projector: ProjectorSpec | None = None,
) -> Plan:
    """The settings for a fixed number of sequences (`wishes.parallel`, an int), with `projector` counted beside."""
    gpu, no_gpu_reason = usable_gpu(profile)
    backend = gpu.backend if gpu else build_backend(profile)
    flash_attn = flash_attention(wishes.flash_attn, backend)
    followed = None
    if wishes.flash_attn == "auto" and backend == "cpu" and wishes.kv in (None, "f16") and measured.flash_attn:
        flash_attn, followed = measured.flash_attn.faster, measured.flash_attn
    if wishes.kv not in (None, "f16") and not flash_attn:
        raise PlanError(reason("kv_needs_flash_attn", kv=wishes.kv))
    ram, gpu_budget = budgets(profile, gpu, wishes)
    fitter = Fitter(
        profile,
        spec,
        wishes,
        gpu,
        ram,
        gpu_budget,
        flash_attn,
        memory=measured.memory,
        flash_measured=followed,
        projector=projector,
    )
    contexts, ctx_fixed = context_options(spec, wishes)
    kv_types = [wishes.kv] if wishes.kv else (["f16", "q8_0"] if flash_attn else ["f16"])
    ubatches = [wishes.n_ubatch] if wishes.n_ubatch else image_ubatches(projector)
    tried = []
    for n_ctx in contexts:
        for kv in kv_types:
            for ubatch in ubatches:
                sized = replace(fitter, ubatch=ubatch)
                layers, est, ok = sized.attempt(n_ctx, kv)
                tried.append((n_ctx, kv, layers, est))
                if ok:
                    return finish(sized, no_gpu_reason, n_ctx, kv, layers, est, contexts[0], ctx_fixed, True)
    if wishes.force:
        n_ctx, kv, layers, est = tried[0]
        return finish(fitter, no_gpu_reason, n_ctx, kv, layers, est, contexts[0], ctx_fixed, False)
    raise PlanError(nearest_fit(replace(fitter, ubatch=ubatches[-1]), tried[0], kv_types, ctx_fixed))


def image_ubatches(projector: ProjectorSpec | None) -> list[int]:
    """The micro-batch sizes to try: UBATCH_OPTIONS, less those an image's tokens cannot be decoded in whole when
    the projector's image attends to itself (Gemma 3); the smallest that holds them when none does."""
    least = projector.whole_image_batch if projector else 0
    fitting = [ubatch for ubatch in UBATCH_OPTIONS if ubatch >= least]
    return fitting or [-(-least // 256) * 256]


def nearest_fit(
    fitter: Fitter, first_try: tuple[int, str, int, MemoryEstimate], kv_types: list[str], ctx_fixed: bool
) -> Reason:
    """What does not fit (what was asked, what it needs, what the device has) and the nearest setting that does."""
    n_ctx, kv, _layers, est = first_try
    wishes, spec, ram, gpu = fitter.wishes, fitter.spec, fitter.ram, fitter.gpu_budget
    have = ram.usable + (gpu.usable if gpu and not fitter.unified else 0)
    asked = {
        "needed": scaled(est.needed, fitter.memory.resident_factor if fitter.memory else None),
        "n_ctx": n_ctx,
        "kv": kv,
        "device": fitter.profile.name,
        "usable": max(have, 0),
        "gpu_layers": wishes.gpu_layers if isinstance(wishes.gpu_layers, int) else None,
    }
    if isinstance(wishes.gpu_layers, int) and fitter.gpu is not None:
        best = fitter.most_gpu_layers(n_ctx, kv)
        if best is not None:
            return reason("too_big", **asked, fix="gpu_layers", fit_gpu_layers=best[0])
    for candidate in kv_types:
        largest = fitter.largest_ctx(candidate, n_ctx)
        if largest:
            return reason("too_big", **asked, fix="ctx", fit_ctx=largest, fit_kv=candidate, ctx_asked=ctx_fixed)
    weights = spec.weight_bytes
    smallest = fitter.estimate(min(n_ctx, MIN_AUTO_CTX), kv_types[-1])  # the least this model needs beside weights
    room = have - (smallest.needed - smallest_weights(smallest) + sum(d.repacked for d in smallest.devices))
    bpw_now = weights * 8 / max(1, approx_params(spec))
    bpw_fit = bpw_now * room / weights
    if bpw_fit < MIN_BITS_PER_WEIGHT:
        return reason("too_big", **asked, fix="no_quant")
    return reason("too_big", **asked, fix="smaller_quant", weights=weights, bpw_fit=bpw_fit, bpw_now=bpw_now)


def smallest_weights(est: MemoryEstimate) -> int:
    """The weights of an estimate, on all devices (with the CPU's repacked copies)."""
    return sum(device.weights for device in est.devices)


def approx_params(spec: ModelSpec) -> int:
    """A rough parameter count from the shapes (for bits-per-weight hints)."""
    attention = spec.n_embd * (spec.n_head + spec.n_kv_heads_max) * (spec.key_length + spec.value_length)
    per_layer = attention + 3 * spec.n_embd * spec.n_ff
    embeddings = spec.n_vocab * spec.n_embd * (1 if spec.tied_embeddings else 2)
    return per_layer * spec.n_layers + embeddings


def finish(
    fitter: Fitter,
    no_gpu_reason: Reason | None,
    n_ctx: int,
    kv: str,
    layers: int,
    est: MemoryEstimate,
    first_ctx: int,
    ctx_fixed: bool,
    ok: bool,
) -> Plan:
    profile, spec, wishes, gpu = fitter.profile, fitter.spec, fitter.wishes, fitter.gpu
    threads = wishes.threads or profile.cpu.performance_cores
    reasons: dict[str, Reason] = {}
    notices: list[Reason] = []
    if gpu is None:
        reasons["n_gpu_layers"] = no_gpu_reason or reason("no_gpu")
    elif wishes.gpu_layers == "all":
        reasons["n_gpu_layers"] = reason("gpu_all_asked")
    elif isinstance(wishes.gpu_layers, int):
        reasons["n_gpu_layers"] = reason("gpu_layers_asked", layers=wishes.gpu_layers)
    elif layers > spec.n_layers:
        reasons["n_gpu_layers"] = reason("gpu_all_fit", n_layers=spec.n_layers, gpu=gpu.name)
    else:
        reasons["n_gpu_layers"] = (
            reason("gpu_some_fit", layers=max(layers - 1, 0), n_layers=spec.n_layers, gpu=gpu.name)
            if layers
            else reason("gpu_none_fit", gpu=gpu.name)
        )
    trained = spec.trained_ctx or DEFAULT_CTX
    if ctx_fixed:
        reasons["n_ctx"] = reason("ctx_asked", trained=trained)
    elif n_ctx < first_ctx:
        reasons["n_ctx"] = reason("ctx_reduced_to_fit", trained=trained, **{"from": first_ctx})
        notices.append(reason("ctx_reduced", n_ctx=n_ctx))
    else:
        reasons["n_ctx"] = (
            reason("ctx_default", default=DEFAULT_CTX, trained=trained)
            if n_ctx == DEFAULT_CTX
            else reason("ctx_trained", default=DEFAULT_CTX)
        )
    cpu = profile.cpu
    reasons["threads"] = (
        reason("threads_asked")
        if wishes.threads
        else reason(
            "threads_performance_cores", cores=cpu.performance_cores, siblings=cpu.logical_cores > cpu.performance_cores
        )
    )
    reasons["flash_attn"] = flash_attn_reason(fitter, build_backend(profile) if gpu is None else gpu.backend)
    if wishes.kv:
        reasons["kv"] = reason("kv_asked", kv=kv)
    elif kv != "f16":
        reasons["kv"] = reason("kv_quantized_to_fit", kv=kv)
        notices.append(reason("kv_quantized", kv=kv, n_ctx=n_ctx))
    else:
        reasons["kv"] = reason("kv_full")
    reasons["n_ubatch"] = (
        reason("ubatch_default", ubatch=fitter.ubatch)
        if fitter.ubatch == UBATCH_OPTIONS[0]
        else reason("ubatch_reduced_to_fit", ubatch=fitter.ubatch, default=UBATCH_OPTIONS[0])
    )
    if fitter.ubatch != UBATCH_OPTIONS[0] and not wishes.n_ubatch:
        notices.append(reason("ubatch_reduced", ubatch=fitter.ubatch))
    reasons["mmap"] = reason("mmap_on")
    reasons["mlock"] = reason("mlock_off")
    reasons["memory"] = memory_reason(fitter)
    if not ok:
        notices.append(reason("forced"))
    return Plan(
        n_gpu_layers=layers,
        n_ctx=n_ctx,
        n_ubatch=fitter.ubatch,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=fitter.flash_attn,
        kv=kv,
        use_mmap=True,
        use_mlock=False,
        estimate=est,
        ram=fitter.ram,
        gpu=fitter.gpu_budget if gpu else None,
        unified_memory=fitter.unified,
        fits=ok,
        reasons=reasons,
        notices=tuple(notices),
        memory=fitter.memory,
        gpu_runtime=fitter.runtime,
        projector=fitter.projector,
    )


def flash_attn_reason(fitter: Fitter, backend: str) -> Reason:
    """Why flash attention is on or off: asked, measured on this CPU, guessed for this CPU, or the backend's kernels."""
    wish, measured = fitter.wishes.flash_attn, fitter.flash_measured
    if wish == "off":
        return reason("flash_attn_off_asked")
    if measured is not None:
        return reason(
            "flash_attn_measured",
            on=fitter.flash_attn,
            on_tokens_per_s=round(measured.on_tokens_per_s, 1),
            off_tokens_per_s=round(measured.off_tokens_per_s, 1),
            model=measured.model,
        )
    if not fitter.flash_attn:
        return reason("flash_attn_no_kernels")
    if wish == "auto" and backend == "cpu":
        return reason("flash_attn_cpu_guess")
    return reason("flash_attn_on")


def memory_reason(fitter: Fitter) -> Reason:
    """How sure the memory estimate is on this device: measured here by bench (and the correction applied), or not
    yet, with what is known of the GPU runtime's own memory."""
    runtime = fitter.runtime
    memory = fitter.memory
    if memory is not None and memory.models > 0:
        return reason(
            "memory_measured",
            percent=ESTIMATE_ERROR_PERCENT,
            models=memory.models,
            resident_factor=memory.resident_factor,
            allocated_factor=memory.allocated_factor,
        )
    return reason(
        "memory_not_measured",
        runtime=runtime.family if runtime else None,
        runtime_bytes=runtime.overhead if runtime else 0,
        runtime_source=runtime.source if runtime else None,
    )


@dataclass(frozen=True)
class QuantChoice:
    quant: str
    spec: ModelSpec
    plan: Plan
    considered: tuple[Reason, ...]  # one per candidate: what it would need and why it was (not) taken


def quality_of(quant: str, spec: ModelSpec, measured: Mapping[str, QualityFigure]) -> QualityFigure | None:
    """What `quant` of this model gives up: measured for its file when `bench --quality` ran, else the prior."""
    return measured.get(quant.upper()) or prior(quant, parameters(spec))


def choose_quant(
    profile: DeviceProfile,
    candidates: Sequence[tuple[str, ModelSpec | Callable[[], ModelSpec]]],
    wishes: Wishes = Wishes(),
    asked: str | None = None,
    wishes_for: Callable[[ModelSpec, Wishes], Wishes] | None = None,
    measured: Mapping[str, QualityFigure] | None = None,
    projector: ProjectorSpec | None = None,
) -> QuantChoice:
    """The best quant of one model for `profile`: the highest rank whose plan fits, preferring full GPU
    offload over a partial offload one rank higher. Nothing above Q8_0 runs on the CPU unless asked, nothing whose
    KL divergence (`measured` by quant name, else the prior) exceeds `wishes.min_quality`.

    A candidate's spec may be a callable (a remote header to read): only the candidates needed are read.
    `wishes_for` may adjust the wishes per spec (a wider margin for a spec known only by its size). Each line
    considered says what its quant gives up; when a better quant did not fit, a last line says what the choice gives
    up against it (its size saved and its divergence, as a ratio). A vision `projector` is counted beside each.
    """
    measured = measured or {}
    gpu, _ = usable_gpu(profile)
    ordered = sorted((item for item in candidates if loadable(item[0])), key=lambda item: rank(item[0]), reverse=True)
    if asked:
        ordered = [item for item in ordered if item[0].upper() == asked.upper()]
        if not ordered:
            names = ", ".join(sorted({quant for quant, _ in candidates}, key=rank, reverse=True))
            raise PlanError(reason("no_such_quant_file", quant=asked, names=names))
    considered: list[Reason] = []
    fitting: list[tuple[str, ModelSpec, Plan]] = []
    missed: tuple[str, ModelSpec] | None = None  # the lowest-ranked quant that did not fit
    for quant, spec_or_reader in ordered:
        if fitting and (gpu is None or fitting[0][2].full_offload or len(fitting) == 2):
            break  # the choice cannot change any more
        if gpu is None and not asked and above_cpu_ceiling(quant):
            considered.append(reason("quant_above_cpu_ceiling", quant=quant, ceiling=CPU_CEILING))
            continue
        spec = spec_or_reader() if callable(spec_or_reader) else spec_or_reader
        quality = quality_of(quant, spec, measured)
        if not asked and wishes.min_quality is not None and quality is not None and quality.kld > wishes.min_quality:
            considered.append(
                reason("quant_below_quality", quant=quant, quality=quality_words(quality), bound=wishes.min_quality)
            )
            continue
        try:
            found = plan(
                profile,
                spec,
                replace(wishes_for(spec, wishes) if wishes_for else wishes, force=False),
                projector=projector,
            )
        except PlanError as error:
            considered.append(reason("quant_does_not_fit", quant=quant, why=error.reason))
            missed = (quant, spec)  # the last one missed: the nearest above the choice
            continue
        if not asked and above_cpu_ceiling(quant) and not found.full_offload:
            considered.append(reason("quant_would_run_on_cpu", quant=quant, ceiling=CPU_CEILING))
            continue
        fitting.append((quant, spec, found))
        considered.append(
            reason(
                "quant_fits",
                quant=quant,
                total=found.needed,
                full_offload=found.full_offload,
                gpu_layers=found.n_gpu_layers,
                gpu=gpu is not None,
                quality=quality_words(quality),
            )
        )
    if not fitting:
        raise PlanError(reason("no_quant_fits", considered=tuple(considered)))
    best = fitting[0]
    if gpu is not None and not best[2].full_offload and len(fitting) > 1 and fitting[1][2].full_offload:
        considered.append(reason("quant_full_offload_wins", chosen=fitting[1][0], over=best[0]))
        best = fitting[1]
    elif missed is not None and rank(missed[0]) > rank(best[0]):
        considered.append(given_up(best[0], best[1], missed[0], missed[1], measured))
    return QuantChoice(best[0], best[1], best[2], tuple(considered))


def quality_words(quality: QualityFigure | None) -> tuple[float, bool, str, float] | None:
    """A quality figure as a reason carries it: (KL divergence, measured, reference, same-top share or -1)."""
    if quality is None:
        return None
    same = quality.same_top if quality.same_top is not None else -1.0
    return (quality.kld, quality.measured, quality.reference or "", same)


def given_up(
    chosen: str, spec: ModelSpec, over: str, over_spec: ModelSpec, measured: Mapping[str, QualityFigure]
) -> Reason:
    """What choosing `chosen` instead of the better `over` (which did not fit) gives up: bytes saved, divergence."""
    ours, theirs = quality_of(chosen, spec, measured), quality_of(over, over_spec, measured)
    ratio = divergence_ratio(ours, theirs) if ours is not None and theirs is not None else None
    return reason(
        "quant_gives_up",
        chosen=chosen,
        over=over,
        saved=over_spec.file_bytes - spec.file_bytes,
        ratio=ratio if ratio is not None else -1.0,
    )
