"""Which files of a repo are models, and of which quant: pure functions over a listing."""

from __future__ import annotations

from dataclasses import dataclass

from edgellm.plan.spec import SHARD_RE
from edgellm.quants import parse_quant, rank


@dataclass(frozen=True)
class RemoteFile:
    path: str  # in the repo, with any folder
    size: int
    sha256: str | None = None  # the LFS oid; None for files stored without LFS


@dataclass(frozen=True)
class QuantFiles:
    """One downloadable model: a quant and its file, or every shard of a split one, in order."""

    quant: str
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def first(self) -> RemoteFile:
        return self.files[0]


def is_projector(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def opens_a_model(name: str) -> bool:
    """A file llama.cpp is pointed at: a GGUF that is no projector, and the first part of a split model."""
    shard = SHARD_RE.search(name)
    return name.lower().endswith(".gguf") and not is_projector(name) and not (shard and int(shard.group(1)) != 1)


def group_quants(files: list[RemoteFile]) -> list[QuantFiles]:
    """The models in a listing, best quant first: GGUF files by quant, shards grouped, projectors left out.

    A split model counts only when every shard is listed; a quant is named by its file name, else by its folder.
    """
    groups: dict[tuple[str, str], list[RemoteFile]] = {}
    expected: dict[tuple[str, str], int] = {}
    for file in files:
        if not file.path.lower().endswith(".gguf") or is_projector(file.path):
            continue
        name = file.path.rsplit("/", 1)[-1]
        quant = parse_quant(name) or parse_quant(file.path)
        if quant is None:
            continue
        shard = SHARD_RE.search(name)
        stem = file.path[: shard.start()] if shard else file.path
        key = (quant, stem)
        groups.setdefault(key, []).append(file)
        expected[key] = int(shard.group(2)) if shard else 1
    models = []
    for key, members in groups.items():
        members.sort(key=lambda f: f.path)
        if len(members) == expected[key]:
            models.append(QuantFiles(key[0], tuple(members)))
    return sorted(models, key=lambda m: (-rank(m.quant), m.size))
