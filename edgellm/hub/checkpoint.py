"""Bring a transformers checkpoint from the Hub for conversion: only the files a conversion reads.

The weights (safetensors), config.json and the tokenizer files at the top of the repo, fetched as pull fetches
GGUFs (resumable `.part` files, sha256 checked for LFS files, free disk checked first, progress as events) into
EDGELLM_HOME/checkpoints/owner/repo/.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from edgellm import paths
from edgellm.errors import NoSuchQuant
from edgellm.events import Notice, Report, ignore
from edgellm.formatting import gib
from edgellm.hub import client
from edgellm.hub.download import check_disk, check_inside, fetch_all, remaining_bytes
from edgellm.hub.files import RemoteFile

NEEDED = (
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
)


def checkpoint_dir(repo: str) -> Path:
    return paths.home() / "checkpoints" / repo


def conversion_files(files: list[RemoteFile]) -> list[RemoteFile]:
    """The files of a repo listing a conversion reads: top-level config and tokenizer files, and the weights
    the reader will open (model.safetensors, else model-*.safetensors shards, else any top-level safetensors:
    a repo that also ships consolidated.safetensors is not fetched twice)."""
    top = [f for f in files if "/" not in f.path]
    weights = [f for f in top if f.path.endswith(".safetensors")]
    preferences: tuple[Callable[[RemoteFile], bool], ...] = (
        lambda f: f.path == "model.safetensors",
        lambda f: f.path.startswith("model-"),
    )
    for prefer in preferences:
        if any(prefer(f) for f in weights):
            weights = [f for f in weights if prefer(f)]
            break
    return [f for f in top if f.path in NEEDED] + weights


def fetch_checkpoint(repo: str, report: Report = ignore, cancel: threading.Event | None = None) -> Path:
    """The checkpoint folder of `repo`, downloaded (or completed) now; typed errors for a repo with no weights.
    Setting `cancel` stops it with Cancelled, the partial file kept for the next fetch."""
    commit, files = client.list_files(repo)
    wanted = conversion_files(files)
    if not any(f.path.endswith(".safetensors") for f in wanted) or not any(f.path == "config.json" for f in wanted):
        has_gguf = any(f.path.lower().endswith(".gguf") for f in files)
        raise NoSuchQuant(
            f"{repo} has no transformers checkpoint (config.json and safetensors weights) to convert"
            + (f"; it holds GGUF files: `edgellm pull {repo}` downloads one" if has_gguf else ""),
            repo,
            None,
            [],
        )
    folder = checkpoint_dir(repo)
    targets = [(file, folder / file.path) for file in wanted]
    check_inside(folder, targets, repo)
    present = {dest for file, dest in targets if dest.is_file() and dest.stat().st_size == file.size}
    check_disk(folder, remaining_bytes([(file, dest) for file, dest in targets if dest not in present]))
    total = sum(file.size for file in wanted)
    report(Notice(f"fetching {repo} ({gib(total)} in {len(wanted)} files) to convert it"))
    fetch_all(repo, commit, targets, present, report, cancel)
    return folder
