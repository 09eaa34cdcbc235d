"""A local stand-in for the Hugging Face Hub on 127.0.0.1, speaking what the real huggingface_hub client uses.

Two servers: the Hub (model info, tree listing with sizes and LFS oids, HEAD/GET on resolve with
X-Repo-Commit, ETag and X-Linked-* headers, 404/401 with X-Error-Code) and a "CDN" on a second port that
resolve redirects LFS files to, with Range requests. Faults can be injected per file: drop the connection
after some bytes, flip a byte, or throttle. Every request is logged for the tests to check.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

CHUNK = 1 << 20


@dataclass
class Faults:
    drop_after: int | None = None  # close the connection at this offset of the file...
    drops_left: int = 0  # ...on this many GETs that reach it
    corrupt_left: int = 0  # flip the middle byte of the file on this many GETs that send it
    bytes_per_s: int | None = None  # throttle


@dataclass
class FakeRepo:
    files: dict[str, Path]  # path in repo -> file on disk
    gated: bool = False
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    gguf: dict | None = None  # what model_info(expand=["gguf"]) returns
    faults: dict[str, Faults] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def digest(self, path: str) -> str:
        if path not in self.sha256:
            hasher = hashlib.sha256()
            with open(self.files[path], "rb") as handle:
                while chunk := handle.read(CHUNK):
                    hasher.update(chunk)
            self.sha256[path] = hasher.hexdigest()
        return self.sha256[path]


class FakeHub:
    def __init__(self, token: str = "hf_test_token_123") -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.token = token
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.served: dict[str, int] = {}  # sha256 -> body bytes sent by the CDN
        self.transfers: list[tuple[str, str | None, int]] = []  # (path, Range header, body bytes sent)
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(self._hub))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(self._cdn))
        for server in (self.hub, self.cdn):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    def close(self) -> None:
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()

    def add(self, repo_id: str, repo: FakeRepo) -> FakeRepo:
        self.repos[repo_id] = repo
        return repo

    def gets(self, fragment: str) -> list[tuple[str, str, str | None]]:
        return [entry for entry in self.log if entry[0] == "GET" and fragment in entry[1]]

    # handlers

    def _handler(self, route):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                hub.log.append(("GET", self.path, self.headers.get("Range")))
                try:
                    route(self, head=False)
                except (ConnectionError, BrokenPipeError):
                    self.close_connection = True  # the client went away (killed, or gave up): not our error

            def do_HEAD(self) -> None:
                hub.log.append(("HEAD", self.path, self.headers.get("Range")))
                route(self, head=True)

        return Handler

    def _reply(
        self, handler, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _error(self, handler, status: int, code: str, message: str, head: bool) -> None:
        body = json.dumps({"error": message}).encode()
        self._reply(
            handler,
            status,
            body,
            {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"},
            head,
        )

    def _authorized(self, handler, repo: FakeRepo) -> bool:
        return not repo.gated or handler.headers.get("Authorization") == f"Bearer {self.token}"

    def _hub(self, handler, head: bool) -> None:
        url = urlparse(handler.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            return self._api(handler, parts[2] + "/" + parts[3], parts[4:], parse_qs(url.query), head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(handler, parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), head)
        self._error(handler, 404, "RepoNotFound", "Repository not found", head)

    def _api(self, handler, repo_id: str, rest: list[str], query: dict, head: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(handler, 404, "RepoNotFound", f"Repository {repo_id} not found", head)
        if not self._authorized(handler, repo):
            return self._error(handler, 401, "GatedRepo", f"Access to model {repo_id} is restricted", head)
        if not rest or rest[0] == "revision":
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "tags": ["gguf"],
                "siblings": [{"rfilename": path} for path in sorted(repo.files)],
            }
            if repo.gguf is not None and "gguf" in query.get("expand", []) + query.get("expand[]", []):
                info["gguf"] = repo.gguf
            return self._reply(handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
        if rest[0] == "tree":
            prefix = "/".join(rest[2:])
            entries, folders = [], set()
            for path in sorted(repo.files):
                if prefix and not path.startswith(prefix + "/"):
                    continue
                folders.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
                size = repo.files[path].stat().st_size
                entry = {"type": "file", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": size, "path": path}
                if path.endswith(".gguf"):
                    entry["lfs"] = {"oid": repo.digest(path), "size": size, "pointerSize": 134}
                entries.append(entry)
            entries += [
                {"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                for f in sorted(folders)
            ]
            return self._reply(handler, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head)
        self._error(handler, 404, "EntryNotFound", "not found", head)

    def _resolve(self, handler, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(handler, 404, "RepoNotFound", f"Repository {repo_id} not found", head)
        if not self._authorized(handler, repo):
            return self._error(handler, 401, "GatedRepo", f"Access to model {repo_id} is restricted", head)
        if path not in repo.files:
            return self._error(handler, 404, "EntryNotFound", f"{path} does not exist", head)
        size = repo.files[path].stat().st_size
        common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if path.endswith(".gguf"):  # LFS: redirect to the CDN, the metadata on the redirect itself
            digest = repo.digest(path)
            cdn = f"http://127.0.0.1:{self.cdn.server_address[1]}/blob/{repo_id}/{digest}?path={path}"
            return self._reply(
                handler,
                302,
                b"",
                {
                    **common,
                    "Location": cdn,
                    "X-Linked-Size": str(size),
                    "X-Linked-Etag": f'"{digest}"',
                    "ETag": f'"{digest[:16]}"',
                },
                head,
            )
        etag = hashlib.sha1(repo.files[path].read_bytes()).hexdigest()
        self._send_file(handler, repo, path, {**common, "ETag": f'"{etag}"'}, head)

    def _cdn(self, handler, head: bool) -> None:
        url = urlparse(handler.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        path = parse_qs(url.query).get("path", [""])[0]
        repo = self.repos.get("/".join(parts[1:3])) if len(parts) == 4 else None
        if repo is None or path not in repo.files:
            return self._reply(handler, 404, b"no such blob", head=head)
        self._send_file(handler, repo, path, {"ETag": f'"{parts[3]}"'}, head)

    def _send_file(self, handler, repo: FakeRepo, path: str, headers: dict[str, str], head: bool) -> None:
        file = repo.files[path]
        size = file.stat().st_size
        start, end = 0, size - 1
        status = 200
        wanted = handler.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start = int(first) if first else max(0, size - int(last))
            end = min(int(last), size - 1) if (last and first) else size - 1
            if start >= size:
                return self._reply(handler, 416, b"", {"Content-Range": f"bytes */{size}"}, head)
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
        length = end - start + 1
        handler.send_response(status)
        for key, value in {**headers, "Accept-Ranges": "bytes", "Content-Length": str(length)}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if head:
            return
        faults = repo.faults.get(path, Faults())
        # faults strike the bytes they are placed at: a short ranged read of the header passes them by
        drop = faults.drop_after if faults.drops_left > 0 and start < (faults.drop_after or 0) <= end else None
        flip = size // 2 if faults.corrupt_left > 0 and start <= size // 2 <= end else None
        corrupt = flip is not None
        if drop is not None:
            faults.drops_left -= 1
        if corrupt:
            faults.corrupt_left -= 1
        sent = 0
        digest = repo.digest(path)
        try:
            with open(file, "rb") as source:
                source.seek(start)
                if drop is None and not corrupt and faults.bytes_per_s is None:
                    handler.connection.sendfile(source, start, length)
                    sent = length
                else:
                    began = time.monotonic()
                    while sent < length:
                        chunk = source.read(min(CHUNK if faults.bytes_per_s is None else 65536, length - sent))
                        at = flip - start - sent if corrupt else -1
                        if 0 <= at < len(chunk):
                            chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                        if drop is not None and start + sent + len(chunk) > drop:
                            chunk = chunk[: max(0, drop - start - sent)]
                            handler.wfile.write(chunk)
                            sent += len(chunk)
                            handler.wfile.flush()
                            handler.close_connection = True
                            handler.connection.shutdown(2)
                            break
                        handler.wfile.write(chunk)
                        sent += len(chunk)
                        if faults.bytes_per_s:
                            ahead = sent / faults.bytes_per_s - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)

        finally:
            self.served[digest] = self.served.get(digest, 0) + sent
            self.transfers.append((path, wanted, sent))


def sparse_model(path: Path, shape, quant: str) -> Path:
    """A GGUF whose header describes a model of `shape` at `quant`, its tensor data a sparse hole of zeros:
    the size and shapes of a multi-GB model, planned from a Range-read header, costing no disk."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quant_shape_to_byte_shape

    from edgellm.convert.tinymodel import add_shape

    qtype = GGMLQuantizationType[quant]
    head_dim = shape.head_dim or shape.n_embd // shape.n_head
    writer = GGUFWriter(str(path), shape.architecture)
    add_shape(writer, shape, f"sparse {shape.architecture}", {"Q8_0": 7, "Q6_K": 18, "Q4_K": 15, "Q2_K": 10}[quant])
    writer.add_token_list([f"t{i}" for i in range(shape.n_vocab)])

    def tensor(name: str, rows: int, cols: int, kind=qtype) -> None:
        byte_shape = quant_shape_to_byte_shape((rows, cols), kind)
        writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1], raw_dtype=kind)

    q, kv = head_dim * shape.n_head, head_dim * shape.n_head_kv
    tensor("token_embd.weight", shape.n_vocab, shape.n_embd)
    tensor("output_norm.weight", 1, shape.n_embd, GGMLQuantizationType.F32)
    if not shape.tied:
        tensor("output.weight", shape.n_vocab, shape.n_embd)
    for layer in range(shape.n_layers):
        for name, rows, cols in (
            ("attn_q", q, shape.n_embd),
            ("attn_k", kv, shape.n_embd),
            ("attn_v", kv, shape.n_embd),
            ("attn_output", shape.n_embd, q),
            ("ffn_gate", shape.n_ff, shape.n_embd),
            ("ffn_up", shape.n_ff, shape.n_embd),
            ("ffn_down", shape.n_embd, shape.n_ff),
        ):
            tensor(f"blk.{layer}.{name}.weight", rows, cols)
        tensor(f"blk.{layer}.attn_norm.weight", 1, shape.n_embd, GGMLQuantizationType.F32)
        tensor(f"blk.{layer}.ffn_norm.weight", 1, shape.n_embd, GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = sum(info.nbytes + (-info.nbytes) % 32 for tensors in writer.tensors for info in tensors.values())
    writer.fout[0].flush()
    header_end = writer.fout[0].tell()
    writer.fout[0].close()
    data_start = -(-header_end // 32) * 32
    os.truncate(path, data_start + total)
    return path


def point_hub_at(server: FakeHub, monkeypatch, tmp_path: Path) -> FakeHub:
    """huggingface_hub (and edgellm) talk to `server`, with a private HF_HOME and no token or offline switch."""
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return server
