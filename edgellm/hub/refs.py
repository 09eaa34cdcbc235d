"""Model references as llama.cpp spells them: `owner/repo[:QUANT]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgellm.errors import EdgellmError
from edgellm.gguf.quants import normalize

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class ModelRef:
    repo: str
    quant: str | None = None  # normalized upper case; None: let edgellm choose

    @property
    def name(self) -> str:
        return f"{self.repo}:{self.quant}" if self.quant else self.repo

    def __str__(self) -> str:
        return self.name


def parse_ref(text: str) -> ModelRef:
    """'bartowski/Llama-3.2-1B-Instruct-GGUF:q4_k_m' -> ModelRef(repo, 'Q4_K_M'); EdgellmError when malformed."""
    repo, _, quant = text.strip().partition(":")
    if not _REPO_RE.match(repo) or ".." in repo:
        raise EdgellmError(
            f"{text!r} is not a Hugging Face model reference: use owner/repo or owner/repo:QUANT "
            f"(for example bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M)"
        )
    if quant and not re.fullmatch(r"[A-Za-z0-9_-]+", quant):
        raise EdgellmError(f"{quant!r} is not a quant name: use one like Q4_K_M, Q8_0 or IQ4_XS")
    return ModelRef(repo, normalize(quant) if quant else None)
