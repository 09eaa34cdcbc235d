"""The local model store (EDGELLM_HOME/models) and the GGUF files other tools already keep.

Store names are `owner/repo:QUANT`, with the file stem as a short alias. A manifest records what edgellm
downloaded (and may delete) and what it was pointed at in place (`import`, the Hugging Face cache), which
`rm` never deletes. GGUFs in the Hugging Face cache, LM Studio's folder and llama.cpp's cache are found and
used where they are.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgellm import paths
from edgellm.errors import EdgellmError
from edgellm.gguf.names import SHARD_RE, opens_a_model
from edgellm.gguf.quants import parse_quant
from edgellm.storage import disk

MANIFEST_VERSION = 1


OWNED = ("pull", "convert", "quantize")  # sources whose files edgellm wrote, and so may delete


@dataclass
class StoredModel:
    name: str  # owner/repo:QUANT
    repo: str
    quant: str
    files: list[str]  # relative to the store, or absolute for files used in place
    size: int
    sha256: list[str | None] = field(default_factory=list)
    commit: str | None = None
    source: str = "pull"  # pull, convert, quantize: edgellm owns the files; import / hf-cache: used in place
    added: float = 0.0
    last_used: float | None = None
    projector: str | None = None  # the vision projector (mmproj) kept with it: relative to the store, or absolute;
    # None for a text model (and in manifests written before projectors were kept)

    @property
    def alias(self) -> str:
        first = Path(self.files[0]).name
        shard = SHARD_RE.search(first)
        return first[: shard.start()] if shard else first.removesuffix(".gguf")

    def path(self, store: Path) -> Path:
        """The file llama.cpp opens: the first (or only) shard."""
        return store / self.files[0]

    def projector_path(self, store: Path) -> Path | None:
        """The projector llama.cpp's libmtmd loads beside the model, if one is kept with it."""
        return store / self.projector if self.projector else None


def model_files(folder: Path) -> list[Path]:
    """The models in a folder: one path per model (the first shard of a split one), projectors left out."""
    return [path for path in sorted(folder.glob("**/*.gguf")) if opens_a_model(path.name)]


def store_dir() -> Path:
    return paths.models_dir()


def _manifest_path() -> Path:
    return store_dir() / "manifest.json"


def load_models() -> dict[str, StoredModel]:
    path = _manifest_path()
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(StoredModel)}
        return {
            name: StoredModel(**{k: v for k, v in entry.items() if k in known})
            for name, entry in data.get("models", {}).items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise EdgellmError(f"{path} is damaged ({error}); move it aside and pull or import the models again") from None


def save_models(models: dict[str, StoredModel]) -> None:
    """Write the manifest through a temporary file of its own, renamed into place when complete."""
    path = _manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(
                {
                    "version": MANIFEST_VERSION,
                    "models": {name: asdict(model) for name, model in sorted(models.items())},
                },
                out,
                indent=2,
            )
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:  # a full disk midway: the old manifest stays, no half-written one is left
        Path(partial).unlink(missing_ok=True)
        raise


@contextmanager
def editing() -> Iterator[dict[str, StoredModel]]:
    """The manifest to change and save, one process at a time (pulls finishing together lose nothing)."""
    lock_path = store_dir() / ".manifest.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        models = load_models()
        yield models
        save_models(models)


def add(model: StoredModel) -> None:
    model.added = model.added or time.time()
    with editing() as models:
        models[model.name] = model


def find(name: str, strict: bool = False) -> StoredModel | None:
    """A stored model by `owner/repo:QUANT`, by alias, or by `owner/repo` (its best stored quant; with
    strict, only when one is stored), else a GGUF another tool keeps. Two models of one alias are an error."""
    models = load_models()
    if name in models:
        return models[name]
    wanted = name.lower()
    exact = [m for m in models.values() if m.name.lower() == wanted or m.alias.lower() == wanted]
    if len(exact) > 1:
        raise EdgellmError(f"{name!r} names {len(exact)} stored models: use one of {', '.join(m.name for m in exact)}")
    if exact:
        return exact[0]
    of_repo = [m for m in models.values() if m.repo.lower() == wanted]
    if len(of_repo) > 1 and strict:
        raise EdgellmError(
            f"{name!r} has {len(of_repo)} quants stored: use one of {', '.join(m.name for m in of_repo)}"
        )
    if of_repo:
        from edgellm.gguf.quants import rank

        return max(of_repo, key=lambda m: rank(m.quant))
    return None if strict else find_external(wanted)


def find_external(wanted: str) -> StoredModel | None:
    """A GGUF another tool keeps (`edgellm ls --all`), by name or file stem: used in place, not recorded."""
    for found in scan_external():
        stem = found.path.name.removesuffix(".gguf").lower()
        if found.name.lower() == wanted or stem == wanted:
            repo, _, quant = found.name.rpartition(":")
            return StoredModel(
                name=found.name, repo=repo, quant=quant, files=[str(found.path)], size=found.size, source=found.source
            )
    return None


def touch(model: StoredModel) -> None:
    """Record that the model was used now; on a full or read-only disk, go on without (said once)."""
    if model.name not in load_models():
        return  # a file another tool keeps: nothing recorded
    try:
        with editing() as models:
            if model.name in models:
                models[model.name].last_used = time.time()
    except OSError as error:
        if not disk.lost("the store's record of when each model was last used", store_dir(), error):
            raise


def remove(name: str) -> tuple[StoredModel, bool]:
    """Forget a model; delete its files only if edgellm downloaded them and no other name (a copy) names them.
    Returns (model, files deleted)."""
    model = find(name, strict=True)
    if model is None:
        hint = " (it belongs to another tool; delete it there)" if find_external(name.lower()) else ""
        raise EdgellmError(f"no model {name!r} in the store{hint}: `edgellm ls` lists them")
    with editing() as models:
        models.pop(model.name, None)
        shared = any(set(other.files) & set(model.files) for other in models.values())
        projector_shared = any(other.projector == model.projector for other in models.values())
    store = store_dir()
    deleted = model.source in OWNED and not shared  # not another tool's file, nor one another name still names
    owned = list(model.files) if deleted else []
    if model.projector and not Path(model.projector).is_absolute() and not projector_shared:
        owned.append(model.projector)  # a projector in the store is edgellm's download, whatever the model's source
    for relative in owned:
        for path in (store / relative, store / (relative + ".part"), store / (relative + ".part.lock")):
            path.unlink(missing_ok=True)
        folder = (store / relative).parent
        while folder != store and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return model, deleted


def copy(model: StoredModel, name: str) -> StoredModel:
    """Another name for a stored model (Ollama's copy): the same files, which `remove` deletes (when edgellm owns
    them) only with the last name that names them; `name` is `name:tag`."""
    repo, _, tag = name.rpartition(":")
    if not repo or not tag:
        raise EdgellmError(f"{name!r} is not a model name: use name:tag")
    if name == model.name:
        raise EdgellmError(f"{name} is the model's own name: pick another")
    found = StoredModel(
        name,
        repo,
        model.quant,
        list(model.files),
        model.size,
        list(model.sha256),
        model.commit,
        model.source,
        projector=model.projector,
    )
    with editing() as models:
        if name in models and models[name].files != model.files:
            raise EdgellmError(f"{name} names another model already: `edgellm rm {name}` first, or pick another name")
        found.added = time.time()
        models[name] = found
    return found


def import_path(path: Path, name: str | None = None) -> StoredModel:
    """Use a GGUF where it is (never copied); it gets a store name (`name`, else local/STEM:QUANT) and an alias. A
    projector beside it is found where it is too (storage.projectors.projector_for)."""
    from edgellm.gguf.header import GGUFError, read_header
    from edgellm.storage.specs import load_spec, shard_paths

    path = path.expanduser().resolve()
    try:
        spec = load_spec(path)
        shards = shard_paths(path, read_header(path))
    except GGUFError as error:
        raise EdgellmError(f"{path}: {error}; pass a GGUF model file") from None
    quant = spec.file_type or parse_quant(path.name) or "unknown"
    stem = path.name.removesuffix(".gguf")
    name = name or f"local/{stem}:{quant}"
    model = StoredModel(
        name=name,
        repo=name.rpartition(":")[0] or name,
        quant=quant,
        files=[str(shard) for shard in shards],
        size=spec.file_bytes,
        source="import",
    )
    add(model)
    return model


# GGUF files kept by other tools


def external_roots() -> list[tuple[str, Path]]:
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hf_cache = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    llama_cache = Path(os.environ.get("LLAMA_CACHE", Path.home() / ".cache" / "llama.cpp"))
    return [
        ("hf-cache", hf_cache),
        ("lm-studio", Path.home() / ".lmstudio" / "models"),
        ("lm-studio", Path.home() / ".cache" / "lm-studio" / "models"),
        ("llama.cpp", llama_cache),
    ]


@dataclass(frozen=True)
class FoundModel:
    name: str
    source: str
    path: Path
    size: int


def scan_external() -> list[FoundModel]:
    """GGUF models in the Hugging Face cache, LM Studio's models folder and llama.cpp's cache."""
    found = []
    for source, root in external_roots():
        if not root.is_dir():
            continue
        for path in sorted(root.glob("**/*.gguf")):
            if not opens_a_model(path.name) or not path.is_file():
                continue
            repo = _repo_of(source, root, path)
            quant = parse_quant(path.name) or "unknown"
            found.append(FoundModel(f"{repo}:{quant}", source, path, path.stat().st_size))
    return found


def _repo_of(source: str, root: Path, path: Path) -> str:
    relative = path.relative_to(root).parts
    if source == "hf-cache" and relative[0].startswith("models--"):
        return relative[0].removeprefix("models--").replace("--", "/", 1)
    if source == "lm-studio" and len(relative) >= 3:
        return f"{relative[0]}/{relative[1]}"
    return f"local/{path.name.removesuffix('.gguf')}"


def hf_cache_blob(repo: str, sha256: str | None, size: int) -> Path | None:
    """The Hugging Face cache's copy of an LFS file (its blobs are named by sha256), if it is whole."""
    if not sha256:
        return None
    for source, root in external_roots():
        if source != "hf-cache":
            continue
        blob = root / f"models--{repo.replace('/', '--')}" / "blobs" / sha256
        if blob.is_file() and blob.stat().st_size == size:
            return blob
    return None


@dataclass(frozen=True)
class PausedDownload:
    """A pull that stopped part-way: the next pull of `name` resumes it."""

    name: str  # owner/repo:QUANT
    path: Path  # the partial file
    done: int  # bytes already here


def paused_downloads() -> list[PausedDownload]:
    """The partial files of pulls that stopped (cancelled, interrupted, a lost connection), oldest first."""
    folder = store_dir()
    if not folder.is_dir():
        return []
    found = []
    for part in folder.glob("*/*/**/*.gguf.part"):
        relative = part.relative_to(folder).parts
        quant = parse_quant(part.name.removesuffix(".part"))
        if quant is None or relative[0] == "local":
            continue
        found.append(
            (part.stat().st_mtime, PausedDownload(f"{relative[0]}/{relative[1]}:{quant}", part, part.stat().st_size))
        )
    return [paused for _, paused in sorted(found, key=lambda item: item[0])]
