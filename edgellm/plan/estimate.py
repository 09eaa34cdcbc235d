"""How much memory llama.cpp will take for a model and settings, per device: what it allocates, and what of that will
be resident. Pure functions.

Allocated: llama.cpp's own buffers, calibrated against its verbose log on CPU (model, KV, compute and output buffer
sizes) for the test model and synthetic llama, qwen2 and gemma3 shapes: weights are the tensor bytes (the mapped
file's span), and beside them the copies ggml's CPU backend repacks (plan.repack: a repacked weight is held twice,
its file pages stay mapped); the KV cache holds n_ctx cells (padded to 256) on full-attention layers and window +
n_ubatch cells on sliding-window layers; the compute buffer is the larger of the output phase (the logits of one
micro-batch: n_vocab × n_ubatch × 4 bytes) and the attention phase (without flash attention, the n_kv × n_ubatch ×
n_head score matrix).

Resident: what those buffers will hold in RAM once a full micro-batch has run. On a discrete GPU every allocation is
real. On a CPU (and for the CPU's share of a unified-memory device) a buffer is address space until written, and
Linux and macOS overcommit it: the mapped file is populated at load (llama.cpp maps it with MAP_POPULATE) and the
KV cache and output buffer are cleared at creation, so those are resident in full; the compute buffer is written
only where the graph of the batch runs: a micro-batch's activations for all its rows, but the logits only for the
rows whose output is asked (one per sequence in a chat, not n_ubatch); and the process holds the vocabulary and
ggml's contexts beside (PROCESS_OVERHEAD, per vocabulary token).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgellm.engine.contract import HOST_BATCH, HOST_CONTEXT
from edgellm.gguf.projector import ProjectorSpec
from edgellm.plan.repack import repacked
from edgellm.plan.spec import OUTPUT_LAYER, ModelSpec

MIB = 2**20
CTX_PAD = 256
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # bytes per element, ggml block sizes
CPU_OVERHEAD = 4 * MIB  # ggml contexts, tensor metadata, graph
PROCESS_OVERHEAD = 11 * MIB  # resident beside the buffers: ggml's contexts and graphs, threads' stacks (measured)
VOCAB_BYTES_PER_TOKEN = 160  # resident per vocabulary token: llama.cpp's token table, maps and sampler arrays


@dataclass(frozen=True)
class GpuRuntime:
    """Driver-side memory outside llama.cpp's buffers on one kind of GPU: the runtime's context, kernels and BLAS
    workspaces, after the first batch; and where the figure comes from."""

    family: str
    overhead: int
    source: str


# Per GPU family, what is known. The CUDA context grows with the SM count (llama.cpp pull request 23604: 555 MiB on
# an RTX PRO 6000 Blackwell, 107 MiB on an RTX 4060 Ti, before any kernel runs), and the first batch adds cuBLAS's
# workspaces and the loaded kernels (on an H200, 531 MiB once loaded became 610-705 MiB).
GPU_RUNTIMES = {
    "cuda-datacenter": GpuRuntime(
        "cuda-datacenter", 705 * MIB, "measured on an H200 (CUDA 13, driver 580): 610-705 MiB after the first batch"
    ),
    "cuda-large": GpuRuntime(
        "cuda-large",
        512 * MIB,
        "published: the CUDA context alone is about 330 MiB on a 24 GB card and 555 MiB on an RTX PRO 6000; "
        "the first batch's workspaces come on top",
    ),
    "cuda-small": GpuRuntime(
        "cuda-small",
        256 * MIB,
        "published: the CUDA context alone is 107 MiB on an RTX 4060 Ti; the first batch's workspaces come on top",
    ),
    "cuda-jetson": GpuRuntime(
        "cuda-jetson",
        256 * MIB,
        "assumed: a Jetson's 8-16 SMs make a context the size of a small card's, taken from the shared RAM",
    ),
    "rocm": GpuRuntime("rocm", 384 * MIB, "assumed, as for a CUDA card"),
    "vulkan": GpuRuntime("vulkan", 256 * MIB, "assumed"),
    "metal": GpuRuntime("metal", 32 * MIB, "assumed: Metal's command queues and pipelines"),
}
DATACENTER_NAMES = ("H100", "H200", "H800", "GH200", "B100", "B200", "GB200", "A100", "A800", "L40", "RTX PRO 6000")


def gpu_runtime(backend: str, name: str, memory_total: int, unified: bool) -> GpuRuntime:
    """What is known of the runtime overhead of one GPU: by its backend, and for CUDA by its family (a data-centre
    card, a large or small consumer card, a Jetson's shared memory)."""
    if backend != "cuda":
        return GPU_RUNTIMES.get(backend, GpuRuntime(backend, 256 * MIB, "assumed"))
    if unified:
        return GPU_RUNTIMES["cuda-jetson"]
    if any(part.lower() in name.lower() for part in DATACENTER_NAMES) or memory_total > 40 * 2**30:
        return GPU_RUNTIMES["cuda-datacenter"]
    return GPU_RUNTIMES["cuda-large" if memory_total >= 16 * 2**30 else "cuda-small"]


GPU_RUNTIME_OVERHEAD = {"cuda": 384 * MIB, "rocm": 384 * MIB, "vulkan": 256 * MIB, "metal": 32 * MIB}  # the
# backend's default when the GPU's family is not given (EstimateInputs.gpu_overhead)


@dataclass(frozen=True)
class EstimateInputs:
    n_ctx: int
    n_gpu_layers: int = 0  # 0..n_layers+1, counted as llama.cpp counts them: the output layer first, then the last
    # repeating layers (n_gpu_layers=1: the output alone; n_layers+1: everything)
    kv: str = "f16"
    flash_attn: bool = True
    n_ubatch: int = 512
    n_seq: int = 1
    parallel: int = 0  # the batched engine's sequences, each up to n_ctx, in one pool (and the token-sized context
    # of the model it runs on); 0: one sequence in llama-cpp-python's own context
    gpu_backend: str | None = None  # cuda, rocm, metal, vulkan
    gpu_overhead: int | None = None  # the GPU runtime's own memory (gpu_runtime); None: the backend's default
    cpu_features: frozenset[str] = frozenset()  # the llama.cpp build's CPU features (repack.build_features): which
    # weights its CPU backend repacks; empty: none counted
    n_outputs: int = 1  # logits rows a prompt's micro-batch asks for per sequence (1: a chat's next token)
    filled: int | None = None  # KV cells in use when the resident figure is taken (the attention of a batch spans
    # them); None: the whole context, as a long conversation reaches
    projector: ProjectorSpec | None = None  # a vision projector loaded beside the model (libmtmd): its weights and
    # the compute buffer of one image's encoding, on the GPU when any layer is offloaded, else on the CPU


@dataclass(frozen=True)
class DeviceEstimate:
    device: str  # "CPU" or the GPU's name
    is_gpu: bool
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    layers: int  # repeating layers held here
    notes: dict[str, str] = field(default_factory=dict)  # one line per row: what the number is made of
    repacked: int = 0  # bytes of `weights` that are the CPU backend's repacked copies (held beside the mapped file)
    resident_compute: int | None = None  # what of the compute buffer a full micro-batch writes; None: all of it
    resident_overhead: int | None = None  # what of the overhead is resident; None: all of it
    projector_weights: int = 0  # bytes of `weights` that are the vision projector's (read into memory, not mapped)
    projector_compute: int = 0  # bytes of `compute` that encode one image

    @property
    def total(self) -> int:
        """What llama.cpp allocates here (and the runtime beside it)."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    def resident_part(self, key: str) -> int:
        """One row (weights, kv_cache, compute, overhead) as it will be resident."""
        if key == "compute" and self.resident_compute is not None:
            return self.resident_compute
        if key == "overhead" and self.resident_overhead is not None:
            return self.resident_overhead
        value: int = getattr(self, key)
        return value

    @property
    def resident(self) -> int:
        """What will be resident here once a full micro-batch has run: on a GPU, every allocation."""
        return sum(self.resident_part(key) for key in ("weights", "kv_cache", "compute", "overhead"))

    @property
    def reclaimable(self) -> int:
        """What of `resident` the kernel can drop when memory is short: the mapped file's pages that the repacked
        copies were read from (clean, and read again only row by row, for a tied embedding's lookups)."""
        return self.repacked

    @property
    def needed(self) -> int:
        """What must stay resident here: the figure RAM is fitted by."""
        return self.resident - self.reclaimable

    @property
    def committed(self) -> int:
        """What of `total` is private memory the kernel commits (all of it but the mapped file): what Linux's
        overcommit bounds."""
        return self.total if self.is_gpu else self.total - (self.weights - self.repacked - self.projector_weights)


@dataclass(frozen=True)
class MemoryEstimate:
    devices: tuple[DeviceEstimate, ...]
    kv_cells_full: int
    kv_cells_swa: int

    @property
    def total(self) -> int:
        return sum(device.total for device in self.devices)

    @property
    def resident(self) -> int:
        return sum(device.resident for device in self.devices)

    @property
    def needed(self) -> int:
        return sum(device.needed for device in self.devices)

    def device(self, is_gpu: bool) -> DeviceEstimate | None:
        return next((d for d in self.devices if d.is_gpu == is_gpu), None)


def padded_ctx(n_ctx: int) -> int:
    return -(-n_ctx // CTX_PAD) * CTX_PAD


def kv_cells(spec: ModelSpec, n_ctx: int, n_ubatch: int, n_seq: int = 1) -> tuple[int, int]:
    """(cells of a full-attention layer, cells of a sliding-window layer)."""
    full = padded_ctx(n_ctx)
    if not spec.sliding_window:
        return full, full
    return full, min(full, padded_ctx(spec.sliding_window * n_seq + n_ubatch))


def kv_layer_bytes(spec: ModelSpec, layer: int, cells: int, kv: str) -> int:
    elements = cells * spec.n_head_kv[layer] * (spec.key_length + spec.value_length)
    return int(elements * KV_BYTES[kv])


def compute_bytes(spec: ModelSpec, n_ubatch: int, n_kv: int, flash_attn: bool, logits: bool, layers: bool) -> int:
    """The compute buffer of one device: the peak of the phases of the graph that run there."""
    per_token = 0
    if logits:
        per_token = max(per_token, spec.n_vocab + 2 * spec.n_embd)
    if layers:
        q_size = spec.n_head * spec.key_length
        kv_size = spec.n_kv_heads_max * (spec.key_length + spec.value_length)
        attention = spec.n_ff + spec.n_embd + q_size + kv_size
        if not flash_attn:
            attention += n_kv * (spec.n_head + 1)  # the f32 score matrix, and its mask
        else:
            attention += n_kv // 2  # the mask, cast to f16 where the attention runs
        per_token = max(per_token, attention)
    if not per_token:
        per_token = 2 * spec.n_embd  # a device holding only the input embedding
    return n_ubatch * 4 * per_token


def resident_compute_bytes(
    spec: ModelSpec, n_ubatch: int, n_kv: int, flash_attn: bool, logits_rows: int, logits: bool, layers: bool
) -> int:
    """What of a CPU's compute buffer a full micro-batch writes: the layers' activations for all its rows (the
    attention over the `n_kv` cells in use, or the feed-forward's gate, up and product beside the residual stream,
    whichever is larger), the logits only for the `logits_rows` whose output is asked (the buffer is reserved for the
    whole batch's)."""
    feed_forward = n_ubatch * 4 * (3 * spec.n_ff + 2 * spec.n_embd)
    activations = max(compute_bytes(spec, n_ubatch, n_kv, flash_attn, False, layers), feed_forward) if layers else 0
    output = compute_bytes(spec, min(logits_rows, n_ubatch), 0, flash_attn, True, False) if logits else 0
    return max(activations, output)


def repacked_bytes(spec: ModelSpec, layers: set[int] | list[int], output: bool, features: frozenset[str]) -> int:
    """The bytes ggml's CPU backend repacks for the repeating `layers` (and the output, when `output`) held on the
    CPU, on a build with `features`."""
    if not features:
        return 0
    wanted = set(layers) | ({OUTPUT_LAYER} if output else set())
    return sum(
        n_bytes for layer, kind, rows, n_bytes in spec.matrices if layer in wanted and repacked(kind, rows, features)
    )


def gpu_layer_range(spec: ModelSpec, n_gpu_layers: int) -> range:
    """The repeating layers llama.cpp puts on the GPU: the last n_gpu_layers - 1. llama.cpp counts the output as
    layer n_layers and offloads from the top, so the output goes first (llama-model.cpp: i_gpu_start)."""
    first = max(spec.n_layers + 1 - n_gpu_layers, 0)
    return range(first, spec.n_layers)


def output_offloaded(n_gpu_layers: int) -> bool:
    """Whether llama.cpp puts the output layer on the GPU: as soon as one layer is offloaded."""
    return n_gpu_layers >= 1


def projector_on_gpu(settings: EstimateInputs) -> bool:
    """Whether the vision projector runs on the GPU: libmtmd puts it there when the model uses the GPU at all."""
    return bool(settings.gpu_backend) and settings.n_gpu_layers > 0


def estimate(spec: ModelSpec, settings: EstimateInputs, gpu_name: str = "GPU") -> MemoryEstimate:
    """Memory per device for `spec` under `settings` (and its vision projector's, when given); a device with nothing
    on it is left out."""
    streams = max(1, settings.parallel)  # the batched engine gives each sequence a KV stream of its own
    n_seq = max(settings.n_seq, settings.parallel)
    n_ubatch = max(min(settings.n_ubatch, padded_ctx(settings.n_ctx)), settings.parallel)
    stream_full, stream_swa = kv_cells(spec, settings.n_ctx, n_ubatch, 1 if settings.parallel else settings.n_seq)
    full_cells, swa_cells = stream_full * streams, stream_swa * streams
    on_gpu = set(gpu_layer_range(spec, settings.n_gpu_layers)) if settings.gpu_backend else set()
    output_on_gpu = bool(settings.gpu_backend) and output_offloaded(settings.n_gpu_layers)
    output_weights = spec.output_bytes + (spec.token_embd_bytes if spec.tied_embeddings else 0)

    def device(is_gpu: bool) -> DeviceEstimate | None:
        layers = [layer for layer in range(spec.n_layers) if (layer in on_gpu) == is_gpu]
        has_output = output_on_gpu == is_gpu
        if is_gpu and not layers and not has_output:
            return None
        weights = sum(spec.layer_bytes[layer] for layer in layers)
        notes = {}
        repack = 0
        if is_gpu:
            weights += output_weights if has_output else 0
        else:
            weights += spec.token_embd_bytes + (spec.output_bytes if has_output else 0)
            repack = repacked_bytes(spec, layers, has_output, settings.cpu_features)
            weights += repack
            if output_on_gpu and spec.tied_embeddings:
                notes["weights"] = (
                    describe_weights(spec, layers, False, False) + " (the GPU holds its own copy for the tied output)"
                )
        cells = [swa_cells if spec.swa_layers[layer] else full_cells for layer in layers]
        kv_cache = sum(kv_layer_bytes(spec, layer, cell, settings.kv) for layer, cell in zip(layers, cells))
        n_kv = max((stream_swa if spec.swa_layers[layer] else stream_full for layer in layers), default=0)
        compute = compute_bytes(spec, n_ubatch, n_kv, settings.flash_attn, has_output, bool(layers))
        output_buffer = spec.n_vocab * 4 * n_seq if not is_gpu else 0
        logits_only = has_output and compute == n_ubatch * 4 * (spec.n_vocab + 2 * spec.n_embd)
        if settings.parallel > 0:  # the model's own context beside the batched engine's: token-sized
            host_full, host_swa = kv_cells(spec, HOST_CONTEXT, HOST_BATCH)
            host_cells = [host_swa if spec.swa_layers[layer] else host_full for layer in layers]
            kv_cache += sum(kv_layer_bytes(spec, layer, cell, settings.kv) for layer, cell in zip(layers, host_cells))
            compute += compute_bytes(
                spec, HOST_BATCH, max(host_cells, default=0), settings.flash_attn, has_output, bool(layers)
            )
            output_buffer += spec.n_vocab * 4 if not is_gpu else 0
        gpu_overhead = (
            settings.gpu_overhead
            if settings.gpu_overhead is not None
            else GPU_RUNTIME_OVERHEAD.get(settings.gpu_backend or "", 0)
        )
        overhead = gpu_overhead if is_gpu else CPU_OVERHEAD + output_buffer
        resident_compute = resident_overhead = None
        if not is_gpu:
            rows = settings.n_outputs * n_seq
            spanned = n_kv if settings.filled is None else min(n_kv, padded_ctx(max(settings.filled, 1)))
            resident_compute = resident_compute_bytes(
                spec, n_ubatch, spanned, settings.flash_attn, rows, has_output, bool(layers)
            )
            if settings.parallel > 0:
                resident_compute += resident_compute_bytes(
                    spec, HOST_BATCH, max(host_cells, default=0), settings.flash_attn, 1, has_output, bool(layers)
                )
            resident_overhead = PROCESS_OVERHEAD + VOCAB_BYTES_PER_TOKEN * spec.n_vocab + output_buffer
        notes.setdefault("weights", describe_weights(spec, layers, has_output, is_gpu))
        projector = settings.projector if projector_on_gpu(settings) == is_gpu else None
        projector_weights = projector.weights_bytes if projector else 0
        projector_encode = projector.encode_bytes() if projector else 0
        projector_compute = projector_encode + projector.working_bytes() if projector else 0
        if projector is not None:  # weights read into memory; the buffer an image's encoding writes in full
            weights += projector_weights
            compute += projector_compute
            if resident_compute is not None:
                resident_compute += projector_compute
        if repack:
            notes["weights"] += (
                f", and {repack / MIB:.0f} MiB the CPU backend repacks beside the mapped file (whose pages it read"
                " the kernel can drop)"
            )
        notes["kv_cache"] = describe_kv(spec, layers, full_cells, swa_cells, settings.kv) + (
            f", {settings.parallel} sequences of up to {settings.n_ctx} tokens, each in its own stream"
            if settings.parallel > 0
            else ""
        )
        notes["compute"] = (
            f"logits of a {n_ubatch}-token batch: {spec.n_vocab} × {n_ubatch} × 4 bytes"
            if logits_only
            else f"activations of a {n_ubatch}-token batch"
            + ("" if settings.flash_attn else f" with {n_kv}-cell attention scores")
        ) + (f", and of the model's own {HOST_BATCH}-token context" if settings.parallel > 0 else "")
        if not is_gpu and logits_only and layers:
            notes["compute"] += f"; written: the batch's activations and {rows} row{'s' if rows > 1 else ''} of logits"
        if projector is not None:
            notes["weights"] += f", the vision projector ({describe_bytes(projector_weights)})"
            notes["compute"] += (
                f"; encoding one image: {describe_bytes(projector_encode)} ({projector.patches} patches); libmtmd "
                f"and the image's pixels: {describe_bytes(projector.working_bytes())}"
            )
        notes["overhead"] = (
            "GPU runtime context and workspaces"
            if is_gpu
            else f"llama.cpp contexts and the {output_buffer // MIB or '<1'} MiB logits buffer"
            + "; resident beside: the vocabulary's tables, ggml's graphs"
        )
        return DeviceEstimate(
            gpu_name if is_gpu else "CPU",
            is_gpu,
            weights,
            kv_cache,
            compute,
            overhead,
            len(layers),
            notes,
            repack,
            resident_compute,
            resident_overhead,
            projector_weights,
            projector_compute,
        )

    devices = tuple(d for d in (device(True), device(False)) if d is not None)
    return MemoryEstimate(devices, full_cells, swa_cells)


def describe_bytes(n_bytes: int) -> str:
    """A size in MiB, as the notes give them (<1 MiB for less)."""
    return f"{n_bytes / MIB:.0f} MiB" if n_bytes >= MIB else "<1 MiB"


def describe_weights(spec: ModelSpec, layers: list[int], has_output: bool, is_gpu: bool) -> str:
    parts = [f"{len(layers)} of {spec.n_layers} layers"]
    if not is_gpu:
        parts.append("token embedding")
    if has_output:
        parts.append("output (tied to the embedding)" if spec.tied_embeddings else "output")
    return ", ".join(parts)


def describe_kv(spec: ModelSpec, layers: list[int], full_cells: int, swa_cells: int, kv: str) -> str:
    swa = sum(1 for layer in layers if spec.swa_layers[layer])
    full = len(layers) - swa
    heads = sorted({spec.n_head_kv[layer] for layer in layers}) or [spec.n_kv_heads_max]
    parts = []
    if full:
        parts.append(f"{full} layers × {full_cells} cells")
    if swa:
        parts.append(f"{swa} sliding-window layers × {swa_cells} cells")
    head_text = "/".join(map(str, heads))
    if not parts:
        return "no layers here"
    return " + ".join(parts) + f", {head_text} KV heads × {spec.key_length}+{spec.value_length}, {kv}"
