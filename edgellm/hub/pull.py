"""Bring a quant of a Hub repo into the store, with the vision projector that goes with it: resumable, verified,
reusing what the store or the Hugging Face cache already holds. Which quant to bring is the session layer's choice
(session.remote)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edgellm.events import Notice, Report
from edgellm.gguf.header import GGUFError
from edgellm.gguf.projector import ProjectorSpec, matches, projector_spec, read_projector
from edgellm.gguf.quants import rank
from edgellm.hub.download import PART, check_disk, check_inside, fetch_all, remaining_bytes
from edgellm.hub.files import QuantFiles, RemoteFile
from edgellm.storage import store

PROJECTOR_LEFT_OUT = "{path} left out: {why}; the model runs on text alone"


def local_copy(repo: str, group: QuantFiles) -> list[Path] | None:
    """Whole local copies of a quant's files (the store's, or the Hugging Face cache's blobs), if any."""
    folder = store.store_dir() / repo
    in_store = [folder / file.path for file in group.files]
    if all(path.is_file() and path.stat().st_size == file.size for path, file in zip(in_store, group.files)):
        return in_store
    cached = [store.hf_cache_blob(repo, file.sha256, file.size) for file in group.files]
    return [cached[0]] if len(group.files) == 1 and cached[0] is not None else None


def download(
    repo: str, commit: str, group: QuantFiles, report: Report, *, cancel: threading.Event | None = None
) -> store.StoredModel:
    """Bring a quant's files at `commit` into the store (resuming, verified), reporting progress; reuse what the store
    or the Hugging Face cache already holds instead of downloading it again. Setting `cancel` (from another thread)
    stops it with Cancelled, keeping the partial file that the next download resumes."""
    name = f"{repo}:{group.quant}"
    existing = store.find(name)
    if (
        existing
        and existing.commit == commit
        and all((store.store_dir() / f).exists() for f in existing.files)
        and (group.projector is None or existing.projector is not None)
    ):
        return existing
    folder = store.store_dir() / repo
    projector = group.projector
    projector_cached = store.hf_cache_blob(repo, projector.sha256, projector.size) if projector else None
    projector_target = [(projector, folder / projector.path)] if projector and not projector_cached else []
    projector_place = projector_cached or (folder / projector.path if projector else None)
    cached = [store.hf_cache_blob(repo, f.sha256, f.size) for f in group.files]
    if all(cached) and cached[0] != folder / group.first.path:
        if projector_target:  # the model is in the cache, its projector not: into the store
            check_inside(store.store_dir(), projector_target, repo)
            fetch_all(repo, commit, projector_target, present(existing, projector_target), report, cancel)
        model = store.StoredModel(
            name=name,
            repo=repo,
            quant=group.quant,
            files=[str(path) for path in cached if path is not None],
            size=group.size,
            sha256=[f.sha256 for f in group.files],
            commit=commit,
            source="hf-cache",
        )
        model.projector = keep_projector(model, projector, projector_place, report)
        store.add(model)
        return model
    targets = [(file, folder / file.path) for file in group.files] + projector_target
    check_inside(store.store_dir(), targets, repo)
    recorded = dict(zip(existing.files, existing.sha256)) if existing and existing.source == "pull" else {}
    current = {
        dest
        for file, dest in targets
        if dest.exists() and recorded.get(str(dest.relative_to(store.store_dir()))) == file.sha256
    } | present(existing, projector_target)
    clean_orphans(folder, {dest for _, dest in targets})
    check_disk(folder, remaining_bytes([(f, d) for f, d in targets if d not in current]))
    fetch_all(
        repo,
        commit,
        targets,
        current,
        report,
        cancel,
        cancelled="download stopped; download it again to resume where it stopped",
    )
    model = store.StoredModel(
        name=name,
        repo=repo,
        quant=group.quant,
        files=[str(folder.relative_to(store.store_dir()) / file.path) for file in group.files],
        size=group.size,
        sha256=[f.sha256 for f in group.files],
        commit=commit,
        source="pull",
        added=time.time(),
    )
    model.projector = keep_projector(model, projector, projector_place, report)
    store.add(model)
    return model


def present(existing: store.StoredModel | None, projector_target: list[tuple[RemoteFile, Path]]) -> set[Path]:
    """The projector's place when the last pull of this model kept it there whole: nothing to fetch again."""
    folder = store.store_dir()
    return {
        dest
        for file, dest in projector_target
        if existing is not None
        and existing.projector == str(dest.relative_to(folder))
        and dest.is_file()
        and dest.stat().st_size == file.size
    }


def keep_projector(model: store.StoredModel, file: RemoteFile | None, path: Path | None, report: Report) -> str | None:
    """The projector to record with `model` (relative to the store when it is in it), once its header says it goes
    with the model (gguf.projector.matches); one that does not is said, deleted from the store, and left out."""
    if file is None or path is None:
        return None
    from edgellm.storage.specs import cached_spec

    try:
        spec = cached_spec(model.path(store.store_dir()))
        why = matches(read_projector(path), spec.n_embd, spec.architecture)
    except (GGUFError, OSError) as error:
        why = str(error)
    folder = store.store_dir()
    if why:
        report(Notice(PROJECTOR_LEFT_OUT.format(path=file.path, why=why)))
        if path.is_relative_to(folder):
            path.unlink(missing_ok=True)
        return None
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def remote_projector(repo: str, group: QuantFiles, commit: str) -> ProjectorSpec | None:
    """The spec of the projector `group` pulls with it, from its header on the Hub (Range requests; a projector's
    header is small: no vocabulary), for planning before the download; None for a text model, or when the header
    cannot be read or is no projector's."""
    if group.projector is None:
        return None
    from edgellm.errors import EdgellmError
    from edgellm.gguf.header import read_header
    from edgellm.hub.client import remote_header

    projector = group.projector
    local = store.store_dir() / repo / projector.path
    cached = store.hf_cache_blob(repo, projector.sha256, projector.size)
    try:
        if local.is_file() and local.stat().st_size == projector.size:
            return projector_spec(read_header(local))  # a stored copy: nothing asked of the Hub
        if cached is not None:
            return projector_spec(read_header(cached))
        return projector_spec(remote_header(repo, projector, commit))
    except (EdgellmError, GGUFError):
        return None


def clean_orphans(folder: Path, wanted: set[Path]) -> None:
    """Remove partial files in the repo's folder that no download of this pull will resume."""
    import fcntl

    if not folder.is_dir():
        return
    for part in folder.glob(f"**/*{PART}"):
        if part.with_name(part.name[: -len(PART)]) in wanted:
            continue
        with open(part.with_name(part.name + ".lock"), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process is downloading it
            part.unlink(missing_ok=True)  # removed while holding its lock


def best_stored(repo: str) -> store.StoredModel | None:
    """The best quant of `repo` in the store, if any."""
    stored = [m for m in store.load_models().values() if m.repo.lower() == repo.lower()]
    return max(stored, key=lambda m: rank(m.quant)) if stored else None
