"""From the common flags to a checked model file and fully resolved llama.cpp settings.

Shared by every command that loads a model (run now; plan, chat, serve later).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from edgellm import home
from edgellm.errors import UserError
from edgellm.gguf_header import GGUFError, GGUFHeader, read_header
from edgellm.options import ModelSettings, load_config, resolve

DEFAULT_CTX = 4096


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    header: GGUFHeader

    @property
    def trained_ctx(self) -> int | None:
        value = self.header.arch_value("context_length")
        return value if isinstance(value, int) and value > 0 else None

    @property
    def n_layers(self) -> int:
        value = self.header.arch_value("block_count")
        return value if isinstance(value, int) else 0


def settings_from(args: argparse.Namespace) -> ModelSettings:
    """The common flags, with config.toml filling what the command line left out."""
    return resolve(args, load_config(home.config_path()))


def choose_model(settings: ModelSettings) -> ModelChoice:
    """The model file named by -m, checked (header, tensor data inside the file) before llama.cpp sees it."""
    if settings.hf_repo:
        raise UserError("-hf (models from the Hugging Face Hub) is not available in this version yet; "
                        "download the .gguf file and pass it with -m PATH")
    if not settings.model:
        raise UserError("no model given: pass -m PATH/TO/MODEL.gguf")
    path = Path(settings.model).expanduser()
    try:
        header = read_header(path)
    except GGUFError as error:
        raise UserError(f"{path}: {error}; {way_out(error)}") from None
    return ModelChoice(path, header)


def way_out(error: GGUFError) -> str:
    text = str(error)
    if text.startswith("no such file"):
        return "check the path (-m takes a .gguf file)"
    if text.startswith("is a directory"):
        return "pass the .gguf file inside it"
    if text.startswith("truncated"):
        return "the file is incomplete: download or copy it again"
    if text.startswith("permission"):
        return "make the file readable by this user"
    return "pass a GGUF model file (convert other formats to GGUF first)"


def context_size(settings: ModelSettings, model: ModelChoice) -> int:
    """-c as given (0: the trained context), else 4096 or the trained context if smaller."""
    trained = model.trained_ctx
    if settings.ctx_size is None:
        return min(DEFAULT_CTX, trained) if trained else DEFAULT_CTX
    if settings.ctx_size == 0:
        return trained or DEFAULT_CTX
    if trained and settings.ctx_size > trained:
        raise UserError(f"-c {settings.ctx_size} is above the model's trained context of {trained} tokens; "
                        f"use -c {trained} or less")
    return settings.ctx_size


def thread_count(settings: ModelSettings) -> int:
    """-t as given, else the physical performance cores (llama.cpp is slower on SMT siblings and E-cores)."""
    if settings.threads is not None:
        return settings.threads
    from edgellm.hw.detect import detect_cpu, sysctl_values
    from edgellm.hw.probes import LiveProbe

    probe = LiveProbe()
    return detect_cpu(probe, sysctl_values(probe)).performance_cores


def gpu_layer_count(settings: ModelSettings, model: ModelChoice, build_backend: str | None) -> int:
    """-ngl as a number for llama.cpp: all -> -1; auto -> everything on a GPU build, 0 on a CPU build."""
    value = settings.gpu_layers
    if value == "all":
        return -1
    if value == "auto":
        return -1 if build_backend not in (None, "cpu") else 0
    return min(int(value), model.n_layers + 1)


def flash_attention(settings: ModelSettings) -> bool:
    """-fa auto means on: every backend edgellm builds (CPU, CUDA, Metal, Vulkan) has the kernels."""
    if settings.kv != "f16" and settings.flash_attn == "off":
        raise UserError(f"--kv {settings.kv} (a quantized V cache) needs flash attention: use -fa on or auto, "
                        f"or --kv f16")
    return settings.flash_attn != "off"
