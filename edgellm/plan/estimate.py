"""How much memory llama.cpp will allocate for a model and settings, per device. Pure functions.

The terms follow llama.cpp's own buffers, calibrated against its verbose log on CPU
(model, KV, compute and output buffer sizes) for the test model and synthetic llama, qwen2 and
gemma3 shapes: weights are the tensor bytes (a repacked CPU copy replaces the mapped pages it
came from, so it is counted once); the KV cache holds n_ctx cells (padded to 256) on full-attention
layers and window + n_ubatch cells on sliding-window layers; the compute buffer is the larger of
the output phase (the logits of one micro-batch: n_vocab × n_ubatch × 4 bytes) and the attention
phase (without flash attention, the n_kv × n_ubatch × n_head score matrix).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgellm.engine.contract import HOST_BATCH, HOST_CONTEXT
from edgellm.plan.spec import ModelSpec

MIB = 2**20
CTX_PAD = 256
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}  # bytes per element, ggml block sizes
CPU_OVERHEAD = 4 * MIB  # ggml contexts, tensor metadata, graph
# Driver-side memory outside llama.cpp's buffers: the CUDA/ROCm context and BLAS workspaces. Measured for CUDA on
# one H200 (CUDA 13, driver 580): 531 MiB once loaded and 610-705 MiB after the first batch, more than assumed here;
# a consumer card's context is smaller (fewer SMs), and the planner's 1 GiB GPU margin covers the difference until
# such cards are measured.
GPU_RUNTIME_OVERHEAD = {"cuda": 384 * MIB, "rocm": 384 * MIB, "vulkan": 256 * MIB, "metal": 32 * MIB}


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

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


@dataclass(frozen=True)
class MemoryEstimate:
    devices: tuple[DeviceEstimate, ...]
    kv_cells_full: int
    kv_cells_swa: int

    @property
    def total(self) -> int:
        return sum(device.total for device in self.devices)

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


def gpu_layer_range(spec: ModelSpec, n_gpu_layers: int) -> range:
    """The repeating layers llama.cpp puts on the GPU: the last n_gpu_layers - 1. llama.cpp counts the output as
    layer n_layers and offloads from the top, so the output goes first (llama-model.cpp: i_gpu_start)."""
    first = max(spec.n_layers + 1 - n_gpu_layers, 0)
    return range(first, spec.n_layers)


def output_offloaded(n_gpu_layers: int) -> bool:
    """Whether llama.cpp puts the output layer on the GPU: as soon as one layer is offloaded."""
    return n_gpu_layers >= 1


def estimate(spec: ModelSpec, settings: EstimateInputs, gpu_name: str = "GPU") -> MemoryEstimate:
    """Memory per device for `spec` under `settings`; a device with nothing on it is left out."""
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
        if is_gpu:
            weights += output_weights if has_output else 0
        else:
            weights += spec.token_embd_bytes + (spec.output_bytes if has_output else 0)
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
        overhead = GPU_RUNTIME_OVERHEAD.get(settings.gpu_backend or "", 0) if is_gpu else CPU_OVERHEAD + output_buffer
        notes.setdefault("weights", describe_weights(spec, layers, has_output, is_gpu))
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
        notes["overhead"] = (
            "GPU runtime context and workspaces"
            if is_gpu
            else f"llama.cpp contexts and the {output_buffer // MIB or '<1'} MiB logits buffer"
        )
        return DeviceEstimate(
            gpu_name if is_gpu else "CPU", is_gpu, weights, kv_cache, compute, overhead, len(layers), notes
        )

    devices = tuple(d for d in (device(True), device(False)) if d is not None)
    return MemoryEstimate(devices, full_cells, swa_cells)


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
