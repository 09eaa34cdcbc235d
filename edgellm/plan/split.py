"""Split a model's layers across this machine and RPC workers (llama.cpp's RPC backend). Pure.

llama.cpp keeps the input embedding and the first layers on the machine that runs it and puts the last
`n_gpu_layers` on the GPU-type devices, which RPC workers are, shared by `tensor_split` in device order. It counts
the output as one more layer after the last, offloaded first, so `n_gpu_layers` is the workers' layers + 1 and the
last worker holding layers counts it in its `tensor_split`; but edgellm keeps the output's weights on this machine
(engine.model.OUTPUT_WEIGHTS), so the logits of the vocabulary never cross the network, only a hidden state does.
edgellm gives each device a number of layers in proportion to the memory it can give (this machine's usable RAM; a
worker's promise, or what it reports) after what it holds whatever its share (here: the embedding, the output and
the logits), so every device fills alike, and keeps the context and KV type as the single-device planner would: the
default context, a q8_0 cache before a smaller context, never below 2048 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgellm.formatting import size
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.estimate import CPU_OVERHEAD, compute_bytes, kv_cells, kv_layer_bytes, padded_ctx
from edgellm.plan.planner import DEFAULT_CTX, GPU_MARGIN, MIN_AUTO_CTX, PlanError, Wishes, ram_margin, usable_gpu
from edgellm.plan.spec import ModelSpec
from edgellm.reasons import Reason, reason
from edgellm.words import PLAIN, Terms, say


@dataclass(frozen=True)
class SplitDevice:
    """A device that can hold layers: this machine (first) or a worker, with the bytes it can give."""

    name: str
    budget: int
    where: str = ""  # HOST:PORT of a worker; "" for this machine or a profile
    watched: bool = False  # a worker whose side channel answers, so its health can be looked at while it runs


@dataclass(frozen=True)
class Share:
    """What one device holds under a split, with the memory it takes."""

    device: SplitDevice
    first_layer: int
    layers: int
    output: bool  # holds the output layer's weights (this machine)
    weights: int
    kv_cache: int
    compute: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.device.budget


@dataclass(frozen=True)
class SplitPlan:
    shares: tuple[Share, ...]  # this machine first, then the workers in --rpc order
    n_ctx: int
    kv: str
    n_gpu_layers: int  # layers on the workers and the output (0: everything here)
    tensor_split: tuple[int, ...]  # per worker, the layers it holds (the output counted on the last that holds any)
    notices: tuple[Reason, ...] = ()

    @property
    def fits(self) -> bool:
        return all(share.fits for share in self.shares)

    @property
    def total(self) -> int:
        return sum(share.total for share in self.shares)

    @property
    def layers_on_workers(self) -> int:
        return sum(share.layers for share in self.shares[1:])

    @property
    def workers(self) -> int:
        return len(self.shares) - 1


def profile_device(profile: DeviceProfile, local: bool) -> SplitDevice:
    """What a machine of `profile` can give: a worker's discrete GPU (its free memory less 1 GiB) when its build can
    drive one, else its available RAM less edgellm's margin. This machine runs its layers on the CPU."""
    gpu, _ = usable_gpu(profile)
    if gpu is not None and not gpu.unified_memory and not local:
        return SplitDevice(f"{profile.name} ({gpu.name})", gpu.memory_free_bytes - GPU_MARGIN)
    return SplitDevice(
        profile.name + (" (this machine)" if local else ""),
        profile.memory.available_bytes - ram_margin(profile, Wishes()),
    )


def worker_budget(reported_free: int, promised: int | None) -> int:
    """A worker's budget: what it promised (`edgellm worker --memory`), never more than it reports free; without a
    promise (a plain llama.cpp rpc-server), what it reports less edgellm's margin (a CPU worker reports all its RAM)."""
    if promised is not None:
        return min(promised, reported_free)
    return reported_free - max(512 * 2**20, reported_free // 10)


def layer_counts(n_layers: int, budgets: list[int]) -> list[int]:
    """`n_layers` shared in proportion to `budgets` (largest remainders); a device with no budget gets none."""
    usable = [max(budget, 0) for budget in budgets]
    whole = sum(usable)
    if whole == 0:
        return [n_layers] + [0] * (len(budgets) - 1)
    exact = [n_layers * budget / whole for budget in usable]
    counts = [int(value) for value in exact]
    for index in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[: n_layers - sum(counts)]:
        counts[index] += 1
    return counts


def room_counts(
    spec: ModelSpec, devices: list[SplitDevice], n_ctx: int, kv: str, flash_attn: bool, n_ubatch: int
) -> list[int]:
    """Layers per device in proportion to the room each has for layers: its budget less what it holds whatever its
    share (this machine: the embedding, the output and the logits)."""
    fixed = [share.total for share in shares(spec, devices, [0] * len(devices), n_ctx, kv, flash_attn, n_ubatch)]
    return layer_counts(spec.n_layers, [device.budget - cost for device, cost in zip(devices, fixed)])


def shares(
    spec: ModelSpec, devices: list[SplitDevice], counts: list[int], n_ctx: int, kv: str, flash_attn: bool, n_ubatch: int
) -> tuple[Share, ...]:
    """The memory each device takes holding `counts[i]` consecutive layers (this machine first, with the embedding,
    the output and the logits)."""
    n_ubatch = min(n_ubatch, padded_ctx(n_ctx))
    full_cells, swa_cells = kv_cells(spec, n_ctx, n_ubatch)
    found, first = [], 0
    for index, (device, count) in enumerate(zip(devices, counts)):
        layers = range(first, first + count)
        first += count
        here = index == 0
        cells = [swa_cells if spec.swa_layers[layer] else full_cells for layer in layers]
        weights = sum(spec.layer_bytes[layer] for layer in layers)
        if here:
            weights += spec.token_embd_bytes + spec.output_bytes  # a tied output is the embedding itself
        kv_cache = sum(kv_layer_bytes(spec, layer, cell, kv) for layer, cell in zip(layers, cells))
        compute = (
            compute_bytes(spec, n_ubatch, max(cells, default=0), flash_attn, here, bool(count)) if count or here else 0
        )
        overhead = CPU_OVERHEAD + (spec.n_vocab * 4 if here else 0)  # the logits buffer
        found.append(Share(device, layers.start, count, here, weights, kv_cache, compute, overhead))
    return tuple(found)


def plan_split(
    spec: ModelSpec,
    devices: list[SplitDevice],
    ctx: int | None = None,
    kv: str | None = None,
    flash_attn: bool = True,
    n_ubatch: int = 512,
) -> SplitPlan:
    """Share the layers across `devices` (this machine first) in proportion to their budgets, at the largest context
    (from the default down to 2048, or `ctx` as asked) and the cheapest KV type (f16, then q8_0) that fit every
    device; PlanError saying what the devices lack when nothing fits."""
    if len(devices) < 2:
        raise PlanError(reason("split_needs_worker"))
    trained = spec.trained_ctx or DEFAULT_CTX
    if ctx is not None and ctx > trained:
        raise PlanError(reason("ctx_above_trained", asked=ctx, trained=trained))
    contexts = [ctx or trained] if ctx is not None else [min(DEFAULT_CTX, trained)]
    while ctx is None and contexts[-1] // 2 >= MIN_AUTO_CTX:
        contexts.append(contexts[-1] // 2)
    kv_types = [kv] if kv else (["f16", "q8_0"] if flash_attn else ["f16"])
    first = None
    for n_ctx in contexts:
        for kv_type in kv_types:
            counts = room_counts(spec, devices, n_ctx, kv_type, flash_attn, n_ubatch)
            found = shares(spec, devices, counts, n_ctx, kv_type, flash_attn, n_ubatch)
            notices = []
            if n_ctx < contexts[0]:
                notices.append(reason("ctx_reduced", n_ctx=n_ctx, split=True))
            if kv_type != kv_types[0]:
                notices.append(reason("kv_quantized", kv=kv_type, n_ctx=n_ctx))
            candidate = SplitPlan(found, n_ctx, kv_type, remote_layers(counts), tensor_split(counts), tuple(notices))
            first = first or candidate
            if candidate.fits:
                return candidate
    assert first is not None
    short = tuple(
        (share.device.name, share.total, max(share.device.budget, 0)) for share in first.shares if not share.fits
    )
    raise PlanError(reason("split_too_big", n_ctx=first.n_ctx, short=short))


def remote_layers(counts: list[int]) -> int:
    """n_gpu_layers for llama.cpp: the layers on the workers and the output, which llama.cpp counts as one more
    (edgellm keeps its weights here all the same); none: 0."""
    offloaded = sum(counts[1:])
    return offloaded + 1 if offloaded else 0


def tensor_split(counts: list[int]) -> tuple[int, ...]:
    """llama.cpp's tensor_split for the workers: their layer counts, the last that holds any also counting the output
    (llama.cpp shares n_gpu_layers items, the output being the last item, whose weights edgellm keeps here)."""
    split = list(counts[1:])
    holders = [i for i, count in enumerate(split) if count]
    if holders:
        split[holders[-1]] += 1
    return tuple(split)


def render(plan: SplitPlan, spec: ModelSpec, terms: Terms = PLAIN) -> str:
    """The split as a table: per device, the layers, weights, KV cache, activations and total against its budget;
    its notices in `terms`."""
    lines = [
        f"Split of {spec.n_layers} layers across {len(plan.shares)} devices (n_ctx {plan.n_ctx}, KV {plan.kv}):",
        "",
        f"  {'device':<34} {'layers':>9} {'weights':>9} {'KV cache':>9} {'activ.':>9} {'total':>9} {'of':>9}",
    ]
    for share in plan.shares:
        layers = (f"{share.first_layer}-{share.first_layer + share.layers - 1}" if share.layers else "none") + (
            "+out" if share.output else ""
        )
        name = share.device.name + (f" ({share.device.where})" if share.device.where else "")
        lines.append(
            f"  {name[:34]:<34} {layers:>9} {size(share.weights):>9} {size(share.kv_cache):>9} "
            f"{size(share.compute):>9} {size(share.total):>9} {size(max(share.device.budget, 0)):>9}"
            + ("" if share.fits else "  DOES NOT FIT")
        )
    lines += [
        "",
        f"  all devices {size(plan.total)}; llama.cpp: n_gpu_layers {plan.n_gpu_layers}, tensor_split "
        + ",".join(map(str, plan.tensor_split)),
    ]
    lines += [f"note: {say(notice, terms)}" for notice in plan.notices]
    return "\n".join(lines)


def to_dict(plan: SplitPlan, terms: Terms = PLAIN) -> dict[str, Any]:
    return {
        "fits": plan.fits,
        "n_ctx": plan.n_ctx,
        "kv": plan.kv,
        "n_gpu_layers": plan.n_gpu_layers,
        "tensor_split": list(plan.tensor_split),
        "total_bytes": plan.total,
        "notices": [say(notice, terms) for notice in plan.notices],
        "devices": [
            {
                "device": share.device.name,
                "endpoint": share.device.where or None,
                "budget_bytes": share.device.budget,
                "first_layer": share.first_layer,
                "layers": share.layers,
                "output": share.output,
                "weights_bytes": share.weights,
                "kv_cache_bytes": share.kv_cache,
                "compute_bytes": share.compute,
                "overhead_bytes": share.overhead,
                "total_bytes": share.total,
                "fits": share.fits,
            }
            for share in plan.shares
        ],
    }
