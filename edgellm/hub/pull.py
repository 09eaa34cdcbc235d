"""Bring a quant of a Hub repo into the store: resumable, verified, reusing what the store or the Hugging Face cache
already holds. Which quant to bring is the session layer's choice (session.remote)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edgellm.events import Report
from edgellm.gguf.quants import rank
from edgellm.hub.download import PART, check_disk, check_inside, fetch_all, remaining_bytes
from edgellm.hub.files import QuantFiles
from edgellm.storage import store


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
    if existing and existing.commit == commit and all((store.store_dir() / f).exists() for f in existing.files):
        return existing
    folder = store.store_dir() / repo
    cached = [store.hf_cache_blob(repo, f.sha256, f.size) for f in group.files]
    if all(cached) and cached[0] != folder / group.first.path:
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
        store.add(model)
        return model
    targets = [(file, folder / file.path) for file in group.files]
    check_inside(store.store_dir(), targets, repo)
    recorded = dict(zip(existing.files, existing.sha256)) if existing and existing.source == "pull" else {}
    current = {
        dest
        for file, dest in targets
        if dest.exists() and recorded.get(str(dest.relative_to(store.store_dir()))) == file.sha256
    }
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
        files=[str(dest.relative_to(store.store_dir())) for _, dest in targets],
        size=group.size,
        sha256=[f.sha256 for f in group.files],
        commit=commit,
        source="pull",
        added=time.time(),
    )
    store.add(model)
    return model


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
