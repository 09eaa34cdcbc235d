"""The vision projector (`mmproj-*.gguf`) kept with a model: the one the store recorded with it when it was pulled or
imported, else one beside a model file the store does not know (a folder of GGUFs, the Hugging Face cache) whose
text embedding width and architecture go with the model's."""

from __future__ import annotations

from pathlib import Path

from edgellm.errors import EdgellmError
from edgellm.gguf.header import GGUFError
from edgellm.gguf.names import is_projector as named_projector
from edgellm.gguf.projector import matches, preference, read_projector
from edgellm.gguf.quants import parse_quant
from edgellm.storage import store


def _same(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except OSError:
        return False


def stored_model(model_path: Path) -> store.StoredModel | None:
    """The store's record of the model file at `model_path`, if it has one."""
    folder = store.store_dir()
    try:
        models = store.load_models().values()
    except EdgellmError:
        return None
    return next((model for model in models if _same(model.path(folder), model_path)), None)


def projector_beside(model_path: Path, n_embd: int, architecture: str) -> Path | None:
    """The `mmproj*.gguf` in the model's folder that goes with a model of width `n_embd` and `architecture`
    (gguf.projector.matches), by precision when several do: F16, then BF16, then Q8_0, then the rest."""
    try:
        candidates = sorted(path for path in model_path.parent.glob("*.gguf") if named_projector(path.name))
    except OSError:
        return None
    fitting = []
    for path in candidates:
        try:
            projector = read_projector(path)
        except (GGUFError, OSError):
            continue
        if not matches(projector, n_embd, architecture):
            fitting.append((preference(projector.file_type or parse_quant(path.name)), path))
    return min(fitting)[1] if fitting else None


def projector_for(model_path: Path) -> Path | None:
    """The projector kept with the model at `model_path`: in the store, the one recorded with it (none recorded with
    a model edgellm downloaded or made: a text model); for a file used in place (imported, another tool's), a
    matching `mmproj*.gguf` beside it (projector_beside); None when there is none or the model cannot be read."""
    from edgellm.storage.specs import cached_spec

    model = stored_model(model_path)
    if model is not None and (model.projector or model.source in store.OWNED):
        return model.projector_path(store.store_dir())
    try:
        spec = cached_spec(model_path)
    except (GGUFError, OSError):
        return None
    return projector_beside(model_path, spec.n_embd, spec.architecture)
