"""What a GGUF file's name says: the shard of a split model it is, whether it is a projector (mmproj). Pure."""

from __future__ import annotations

import re

SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)  # llama.cpp's gguf-split naming


def is_projector(path: str) -> bool:
    """A multimodal projector (mmproj-*.gguf), which no model loads on its own."""
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def opens_a_model(name: str) -> bool:
    """A file llama.cpp is pointed at: a GGUF that is no projector, and the first shard of a split model."""
    shard = SHARD_RE.search(name)
    return name.lower().endswith(".gguf") and not is_projector(name) and not (shard and int(shard.group(1)) != 1)
