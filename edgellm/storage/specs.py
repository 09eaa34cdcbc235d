"""Model specs read from GGUF files: every shard's header, summed into the planner's ModelSpec, cached under
EDGELLM_HOME/cache/specs by the file's path, size and time."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgellm import paths
from edgellm.errors import ModelFileError
from edgellm.gguf.header import GGUFError, GGUFHeader, read_header
from edgellm.gguf.names import SHARD_RE
from edgellm.plan.spec import SPEC_VERSION, ModelSpec, model_spec
from edgellm.storage import disk


def cached_spec(path: Path) -> ModelSpec:
    """The spec of the model file at `path`, cached under EDGELLM_HOME; GGUFError if the file is bad."""
    return load_spec(path, paths.home() / "cache" / "specs")


def read_spec(path: Path) -> ModelSpec:
    """The spec of the model file at `path` (cached); ModelFileError naming what is wrong with the file."""
    try:
        return cached_spec(path)
    except GGUFError as error:
        raise ModelFileError(f"{path}: {error}", path, error.problem, way_out=f"model_{error.problem}") from None
    except OSError as error:
        raise ModelFileError(
            f"{path}: {error.strerror or error}", path, "unreadable", way_out="model_unreadable"
        ) from None


def shard_paths(path: Path, header: GGUFHeader) -> list[Path]:
    """All shards of a split model given its first shard (`-00001-of-00003.gguf`), checked to exist."""
    count = header.metadata.get("split.count")
    if not isinstance(count, int) or count <= 1:
        return [path]
    found = SHARD_RE.search(path.name)
    if not found or int(found.group(1)) != 1:
        raise GGUFError(
            f"is shard {header.metadata.get('split.no', 0) + 1} of a {count}-part model; "
            "pass the first part (-00001-of-...)",
            "shards",
        )
    stem = path.name[: found.start()]
    shards = [path.with_name(f"{stem}-{index:05d}-of-{count:05d}.gguf") for index in range(1, count + 1)]
    missing = [p.name for p in shards if not p.exists()]
    if missing:
        raise GGUFError(f"is part of a split model but {', '.join(missing)} is missing beside it", "shards")
    return shards


def _cache_file(cache_dir: Path, path: Path) -> Path:
    return cache_dir / (hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20] + ".json")


def load_spec(path: Path, cache_dir: Path | None = None) -> ModelSpec:
    """Read (or take from the cache) the spec of the model at `path`; GGUFError if the file is bad."""
    path = Path(path)
    if not path.is_file():
        read_header(path)  # raises the GGUFError that names the problem (missing, a directory...)
    stat = path.stat()
    key = {"version": SPEC_VERSION, "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cached = _cache_file(cache_dir, path) if cache_dir else None
    if cached and cached.exists():
        try:
            data = json.loads(cached.read_text())
            if data.get("key") == key:
                fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["spec"].items()}
                return ModelSpec(**fields)
        except (ValueError, TypeError, KeyError):
            pass
    first = read_header(path)
    headers = [first] + [read_header(shard) for shard in shard_paths(path, first)[1:]]
    spec = model_spec(headers)
    if cached:
        _keep(cached, {"key": key, "spec": spec.to_dict()})
    return spec


def _keep(cached: Path, data: dict[str, Any]) -> None:
    """Write the cache entry whole or not at all; a full or read-only disk skips it (said once)."""
    partial = cached.with_suffix(".tmp")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(data))
        partial.replace(cached)
    except OSError as error:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        if not disk.lost("the model spec cache", cached.parent, error):
            raise
