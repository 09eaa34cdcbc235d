"""Which files of a repo are models, and of which quant, and which vision projector (mmproj) goes with each: pure
functions over a listing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgellm.gguf import quants
from edgellm.gguf.names import SHARD_RE, is_projector
from edgellm.gguf.projector import preference
from edgellm.gguf.quants import normalize, parse_quant, rank


@dataclass(frozen=True)
class RemoteFile:
    path: str  # in the repo, with any folder
    size: int
    sha256: str | None = None  # the LFS oid; None for files stored without LFS


def leaves_the_repo(path: str) -> bool:
    """Whether a file name from a listing would land outside the repo's folder: absolute, `..`, a backslash or
    drive, an empty or control-character part. Such a name is refused, never joined to a local path."""
    parts = path.split("/")
    return (
        not path
        or path.startswith("/")
        or "\\" in path
        or ":" in parts[0]
        or any(part in ("", ".", "..") for part in parts)
        or any(not c.isprintable() for c in path)
    )


@dataclass(frozen=True)
class QuantFiles:
    """One downloadable model: a quant and its file, or every shard of a split one, in order."""

    quant: str
    files: tuple[RemoteFile, ...]
    projector: RemoteFile | None = None  # the vision projector pulled with it (matching_projector); None: text only

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    @property
    def first(self) -> RemoteFile:
        return self.files[0]

    @property
    def known(self) -> bool:
        """Whether the quant was read from the file names; an unknown one is named after its file instead."""
        return rank(self.quant) > 0

    @property
    def loadable(self) -> bool:
        """False for a quant this llama.cpp refuses (Q4_0_4_4…): listed, but never to be pulled."""
        return quants.loadable(self.quant)


def unknown_quant(name: str) -> str:
    """The name of a GGUF whose quant its file name does not say: its stem, spelled so that `repo:NAME` picks it."""
    shard = SHARD_RE.search(name)
    stem = name[: shard.start()] if shard else name[: -len(".gguf")]
    return normalize(re.sub(r"[^A-Za-z0-9_-]+", "_", stem)) or "UNKNOWN"


def name_stem(path: str) -> str:
    """What a GGUF's name says of the model, for matching a projector to it: the name less its folder, `.gguf`, shard
    suffix, quant, `mmproj` and `model`, lower case, parts joined by `-`: 'mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf'
    and 'Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf' both give 'qwen2-5-vl-3b-instruct'; 'mmproj-F16.gguf' gives ''."""
    base = path.rsplit("/", 1)[-1]
    shard = SHARD_RE.search(base)
    base = (base[: shard.start()] if shard else base.removesuffix(".gguf").removesuffix(".GGUF")).lower()
    quant = parse_quant(base)
    if quant:
        spellings = (quant.lower(), {"f16": "fp16", "f32": "fp32"}.get(quant.lower(), ""))
        at, spelling = max((base.rfind(word), word) for word in spellings if word)
        if at >= 0:
            base = base[:at] + " " + base[at + len(spelling) :]
    parts = [part for part in re.split(r"[-_. ]+", base) if part and part not in ("mmproj", "model", "gguf", "ud")]
    return "-".join(parts)


FULL_PRECISION = ("F32", "BF16", "F16")


def matching_projector(model_path: str, quant: str, projectors: list[RemoteFile]) -> RemoteFile | None:
    """The projector of `projectors` (a repo's mmproj files) that goes with the model file `model_path` of `quant`:
    the one named as the model is (else one named for no model in particular, as `mmproj-F16.gguf`; else the
    repo's only projector name), in the model's own precision when it is a full-precision one, else F16 over BF16
    over Q8_0 over the rest, the smaller first."""
    if not projectors:
        return None
    stem = name_stem(model_path)
    stems = {name_stem(file.path) for file in projectors}

    def fit(file: RemoteFile) -> int | None:
        other = name_stem(file.path)
        if other == stem:
            return 0
        if not other:
            return 1
        if len(stems) == 1 or stem.startswith(other) or other.startswith(stem):
            return 2
        return None

    ranked = []
    for file in projectors:
        how = fit(file)
        if how is not None:
            precision = parse_quant(file.path.rsplit("/", 1)[-1])
            same = quant in FULL_PRECISION and precision == quant
            ranked.append(((how, not same, preference(precision), file.size), file))
    return min(ranked, key=lambda item: item[0])[1] if ranked else None


def group_quants(files: list[RemoteFile]) -> list[QuantFiles]:
    """The models in a listing, best quant first: GGUF files by quant, shards grouped, projectors left out of the
    models and each model given the one that goes with it (`matching_projector`).

    A split model counts only when every shard is listed; a quant is named by its file name, else by its folder,
    else (unknown, ranked last) by `unknown_quant`.
    """
    projectors = [file for file in files if file.path.lower().endswith(".gguf") and is_projector(file.path)]
    groups: dict[tuple[str, str], list[RemoteFile]] = {}
    expected: dict[tuple[str, str], int] = {}
    for file in files:
        name = file.path.rsplit("/", 1)[-1]
        if not name.lower().endswith(".gguf") or is_projector(name):
            continue
        quant = parse_quant(name) or parse_quant(file.path)
        if quant is None:
            if "imatrix" in name.lower():
                continue  # importance-matrix data for quantizing, no model
            quant = unknown_quant(name)
        shard = SHARD_RE.search(name)
        stem = file.path[: -len(shard.group(0))] if shard else file.path
        key = (quant, stem)
        groups.setdefault(key, []).append(file)
        expected[key] = int(shard.group(2)) if shard else 1
    models = []
    for key, members in groups.items():
        members.sort(key=lambda f: f.path)
        if len(members) == expected[key]:
            models.append(QuantFiles(key[0], tuple(members), matching_projector(members[0].path, key[0], projectors)))
    return sorted(models, key=lambda m: (-rank(m.quant), m.size))


def choosable(groups: list[QuantFiles]) -> list[QuantFiles]:
    """The groups edgellm may pick on its own: known quants that this llama.cpp loads."""
    return [group for group in groups if group.known and group.loadable]
