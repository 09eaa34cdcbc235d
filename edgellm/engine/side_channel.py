"""The side channel of an RPC worker: its device profile and the memory it promises, over HTTP beside the RPC port.

llama.cpp's RPC protocol carries no device profile (a CPU worker reports its free memory as its total), so a worker
also answers `GET /profile` on the next port (RPC port + 1) with the `edgellm hw --json` document of its machine and
the memory cap it keeps (`edgellm worker --memory`). A client that finds no side channel plans with what RPC reports.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgellm import __version__
from edgellm.engine.endpoint import Endpoint

SCHEMA = "edgellm.worker/1"


def side_channel(endpoint: Endpoint) -> Endpoint:
    """Where a worker's profile is served: the RPC port + 1, on the same host."""
    return Endpoint(endpoint.host, endpoint.port + 1)


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P with P and P + 1 free on `host`: room for a worker and its side channel (tests, benchmarks)."""
    while True:
        with socket.socket() as first:
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            if port >= 65534:
                continue
            with socket.socket() as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
            return port


def profile_document(
    profile: dict[str, Any], memory_cap: int | None, devices: list[str], endpoint: Endpoint
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "edgellm": __version__,
        "rpc": str(endpoint),
        "devices": devices,
        "memory_cap_bytes": memory_cap,
        "profile": profile,
    }


class ProfileServer(ThreadingHTTPServer):
    """Answers GET /profile with one JSON document, and nothing else."""

    daemon_threads = True

    def __init__(self, endpoint: Endpoint, document: dict[str, Any]) -> None:
        self.body = json.dumps(document).encode()
        super().__init__((endpoint.host, endpoint.port), _Handler)

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="edgellm-worker-profile", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: ProfileServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/profile":
            self.send_error(404, "only /profile is served here")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the worker's terminal is llama.cpp's
        pass


def fetch_profile(endpoint: Endpoint, timeout: float = 5.0) -> dict[str, Any] | None:
    """The worker's side-channel document, or None when it has none (a plain llama.cpp rpc-server) or it is bad."""
    import urllib.request

    where = side_channel(endpoint)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy
    try:
        with direct.open(f"http://{where}/profile", timeout=timeout) as answer:
            document = json.loads(answer.read(1 << 20))
    except (OSError, ValueError, http.client.HTTPException):  # refused, cut off mid-answer, not HTTP
        return None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        return None
    cap = document.get("memory_cap_bytes")
    if not (cap is None or (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0)):
        return None
    if not isinstance(document.get("profile", {}), dict):
        return None
    return document
