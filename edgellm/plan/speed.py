"""Estimated decode speed: generating a token reads every weight once, so tokens/s ≈ efficiency × bandwidth ÷
bytes read per token, summed over the devices the layers sit on (the field notes' rule of thumb, 0.4-0.5)."""

from __future__ import annotations

from edgellm.hw.bandwidth import DEFAULT_GPU, system_bandwidth
from edgellm.hw.profile import DeviceProfile
from edgellm.plan.estimate import gpu_layer_range
from edgellm.plan.planner import Plan
from edgellm.plan.spec import ModelSpec

EFFICIENCY = 0.45


def bytes_per_token(spec: ModelSpec, plan: Plan) -> tuple[int, int]:
    """(bytes read from RAM, bytes read from GPU memory) per generated token. The input embedding is a
    lookup of one row; the output (the tied embedding, when tied) is read whole."""
    on_gpu = set(gpu_layer_range(spec, plan.n_gpu_layers)) if plan.gpu else set()
    output = spec.output_bytes + (spec.token_embd_bytes if spec.tied_embeddings else 0)
    output_on_gpu = plan.gpu is not None and plan.n_gpu_layers > spec.n_layers
    gpu = sum(spec.layer_bytes[layer] for layer in on_gpu) + (output if output_on_gpu else 0)
    cpu = sum(b for layer, b in enumerate(spec.layer_bytes) if layer not in on_gpu) + (0 if output_on_gpu else output)
    return cpu, gpu


def decode_tokens_per_s(spec: ModelSpec, plan: Plan, profile: DeviceProfile) -> float:
    cpu_bytes, gpu_bytes = bytes_per_token(spec, plan)
    ram = profile.memory.bandwidth_bytes_per_s or system_bandwidth(
        profile.cpu.arch, profile.board.model if profile.board else None,
        profile.board.module if profile.board else None, profile.cpu.model)
    gpu = profile.gpus[0].bandwidth_bytes_per_s if profile.gpus else None
    seconds = cpu_bytes / (EFFICIENCY * ram) + gpu_bytes / (EFFICIENCY * (gpu or DEFAULT_GPU))
    return 1 / seconds if seconds > 0 else float("inf")
