"""The image store (EDGELLM_HOME/images): every image a conversation holds, kept as a file named by its content, so a
resumed conversation still has its images and an image sent twice is kept once.

Layout: <root>/<first two hex digits of the SHA-256>/<sha256>.<format>. A file is written under a temporary name in
its folder and renamed when complete, so the store never holds part of an image; a file already there is never
rewritten. Reading one back checks its bytes against its name.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from edgellm import paths
from edgellm.errors import ImageRefused
from edgellm.media.images import FORMATS, Image, digest_of, read_image

DIGEST = re.compile(r"[0-9a-f]{64}")
NO_LIMIT = 2**62  # a stored image passed the pixel limit when it was put; reading it back applies none


class ImageStore:
    """Images by digest, under `root` (default: paths.images_dir())."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else paths.images_dir()

    def put(self, image: Image) -> Path:
        """Keep `image` (once: an image already kept is not written again); its file's path. OSError when the disk
        refuses the write (nothing partial is left behind)."""
        target = self.root / image.digest[:2] / f"{image.digest}.{image.format}"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{image.digest[:8]}-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(image.data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return target

    def path(self, digest: str) -> Path | None:
        """The file keeping the image named `digest`; None when there is none (or `digest` is not a SHA-256)."""
        if not DIGEST.fullmatch(digest):
            return None
        folder = self.root / digest[:2]
        for kind in FORMATS:
            candidate = folder / f"{digest}.{kind}"
            if candidate.is_file():
                return candidate
        return None

    def get(self, digest: str, name: str | None = None) -> Image | None:
        """The image named `digest` (carrying `name`, default its file's name); None when the store does not hold
        it. ImageRefused (problem "unreadable") when its file cannot be read or no longer matches its digest."""
        found = self.path(digest)
        if found is None:
            return None
        try:
            data = found.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ImageRefused(
                f"{found} cannot be read ({error.strerror or error}): check its permissions",
                source=str(found),
                problem="unreadable",
            ) from None
        if digest_of(data) != digest:
            raise ImageRefused(
                f"{found} is damaged (its bytes no longer match its name): delete it and send the image again",
                source=str(found),
                problem="unreadable",
            )
        return read_image(data, name or found.name, max_pixels=NO_LIMIT)
