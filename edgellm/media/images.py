"""An image sent with a message: its bytes, checked and named by content. (Helper A fills in the checks.)"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    """An image a message carries: its bytes (PNG, JPEG, GIF or BMP: what llama.cpp's decoder reads), named by their
    SHA-256 (`digest`), with what a person is shown of it (`name`, the pixel size, the format)."""

    digest: str
    data: bytes
    name: str
    width: int
    height: int
    format: str  # png | jpeg | gif | bmp

    @property
    def size(self) -> int:
        return len(self.data)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
