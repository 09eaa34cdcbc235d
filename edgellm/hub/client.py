"""Talking to the Hub through the real huggingface_hub client: listings, metadata, ranged header reads.

HF_ENDPOINT (a mirror, or the tests' local Hub) is read at each call, not once at import. The token comes
from HF_TOKEN or `hf auth login` through huggingface_hub itself, and is never printed or logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgellm.errors import EdgellmError, GatedRepo, HubError, HubUnreachable, OfflineMode, RepoNotFound
from edgellm.gguf.header import GGUFError, GGUFHeader, parse
from edgellm.hub.files import QuantFiles, RemoteFile, leaves_the_repo
from edgellm.plan.spec import ModelSpec, model_spec
from edgellm.reasons import reason

HEADER_FIRST_READ = 4 * 2**20
HEADER_MAX_READ = 128 * 2**20


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@contextmanager
def hub_errors(repo: str) -> Iterator[None]:
    """Turn huggingface_hub's and the network's errors into typed one-line errors that name the way out."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError:
        raise GatedRepo(
            f"{repo} is gated: accept its licence on the Hub, then set HF_TOKEN or run "
            f"`hf auth login` with a token that may read it",
            repo,
        ) from None
    except RepositoryNotFoundError:
        raise RepoNotFound(
            f"{repo} was not found on the Hub (or it is private: set HF_TOKEN); check the name", repo
        ) from None
    except (RevisionNotFoundError, EntryNotFoundError) as error:
        raise HubError(f"{repo}: {str(error).splitlines()[0]}", repo) from None
    except OfflineModeIsEnabled:
        raise OfflineMode(reason("offline_not_stored", name=repo)) from None
    except HfHubHTTPError as error:
        raise HubError(f"{repo}: the Hub answered {str(error).splitlines()[0]}; try again later", repo) from None
    except OSError as error:  # connection refused, DNS, timeouts (httpx errors are OSErrors or wrap them)
        raise unreachable(repo, error) from None
    except Exception as error:  # the HTTP library's transport errors
        if type(error).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            raise unreachable(repo, error) from None
        raise


def unreachable(repo: str, error: Exception) -> HubUnreachable:
    """The error for a network failure on the way to the Hub: worth a retry, or offline mode."""
    return HubUnreachable(reason("hub_unreachable", repo=repo, endpoint=endpoint(), error=str(error)), repo, endpoint())


def list_files(repo: str, revision: str | None = None) -> tuple[str, list[RemoteFile]]:
    """The commit the listing is at, and every file with its size and LFS sha256."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint())
    with hub_errors(repo):
        info = api.model_info(repo, revision=revision)
        tree = api.list_repo_tree(repo, recursive=True, revision=info.sha)
        files = [
            RemoteFile(item.path, item.size, item.lfs.sha256 if item.lfs else None)
            for item in tree
            if isinstance(item, RepoFile)
        ]
    escaping = [file.path for file in files if leaves_the_repo(file.path)]
    if escaping:
        raise HubError(
            f"{repo}: the Hub's listing names a file outside the repo's folder ({escaping[0]!r}); "
            f"refused: nothing was downloaded",
            repo,
        )
    assert info.sha is not None  # the Hub's model info always names its commit (the tree above was read at it)
    return info.sha, files


def gguf_metadata(repo: str) -> dict[str, Any]:
    """What the Hub says of the repo's GGUF files (architecture, context length, parameters), or {}."""
    from huggingface_hub import HfApi

    try:
        with hub_errors(repo):
            return HfApi(endpoint=endpoint()).model_info(repo, expand=["gguf"]).gguf or {}
    except EdgellmError:
        return {}


def file_url(repo: str, path: str, commit: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo, path, revision=commit, endpoint=endpoint())


@contextmanager
def open_file(url: str, start: int = 0, end: int | None = None) -> Iterator[Any]:
    """A streamed GET of a Hub file from byte `start` (to `end`, inclusive): HEAD for its real location (a CDN
    after a redirect), the token sent only to the Hub itself, as huggingface_hub does."""
    from huggingface_hub import get_hf_file_metadata, get_session

    # public API, but huggingface_hub.utils computes its __all__: mypy sees no explicit re-export where
    # no_implicit_reexport (strict) applies to this module, and nothing to ignore where it does not
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined, unused-ignore]

    meta = get_hf_file_metadata(url, endpoint=endpoint())
    headers = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
    if _same_host(meta.location, endpoint()):
        headers.update(build_hf_headers())
    with get_session().stream("GET", meta.location, headers=headers, follow_redirects=True, timeout=60) as response:
        response.raise_for_status()
        yield response


def read_range(url: str, start: int, end: int) -> bytes:
    """Bytes start..end (inclusive) of a Hub file."""
    wanted = end - start + 1
    data = bytearray()
    with open_file(url, start, end) as response:
        for chunk in response.iter_bytes():  # a server that ignores Range sends it all: stop when we have enough
            data += chunk
            if len(data) >= wanted:
                break
    return bytes(data[:wanted])


def _same_host(url: str, base: str) -> bool:
    from urllib.parse import urlparse

    return urlparse(url).netloc == urlparse(base).netloc


def remote_header(repo: str, file: RemoteFile, commit: str) -> GGUFHeader:
    """The GGUF header of a Hub file, read with Range requests that grow until the header is whole."""
    url = file_url(repo, file.path, commit)
    size = HEADER_FIRST_READ
    with hub_errors(repo):
        while True:
            data = read_range(url, 0, min(size, file.size) - 1)
            try:
                return parse(data, Path(file.path), file.size)
            except GGUFError as error:
                if error.problem != "truncated" or len(data) >= file.size or size >= HEADER_MAX_READ:
                    raise EdgellmError(f"{repo}/{file.path}: {error}") from None
                size = min(size * 4, HEADER_MAX_READ)


def remote_spec(repo: str, group: QuantFiles, commit: str) -> ModelSpec:
    """The spec of a remote quant from the headers of its shards (no tensor data fetched)."""
    headers = [remote_header(repo, file, commit) for file in group.files]
    spec = model_spec(headers)
    from dataclasses import replace

    return replace(spec, path=f"{repo}/{group.first.path}", file_type=group.quant)
