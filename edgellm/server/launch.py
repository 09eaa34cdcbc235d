"""Run the server: bind the socket, serve at once (GET /health says loading), load the model on a thread, and on
SIGTERM or Ctrl-C finish the reply in flight, answer the waiting requests with 503, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import uvicorn

from edgellm.errors import EdgellmError
from edgellm.server.app import create_app
from edgellm.server.config import ServerConfig
from edgellm.server.turns import ServerState
from edgellm.session.opening import PlannedModel
from edgellm.session.served import FOREVER, Entry, ServedModels

API_KEY_ENV = "EDGELLM_API_KEY"
STOPPED_WHILE_LOADING = -1  # serve's answer when stopped mid-load: the caller exits at once (os._exit), since
# interpreter shutdown would race llama.cpp's loading thread


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8080
    queue: int = 32  # requests that may wait while one is generating


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is on this machine only (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}  # IP families: already a str
    except (socket.gaierror, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not api_key and not is_loopback(host):
        raise EdgellmError(
            f"--host {host} would let anyone on the network use the model without a key; set one with "
            f"--api-key KEY or {API_KEY_ENV}, or keep the default --host 127.0.0.1"
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a port in use is one line, before the model loads."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise EdgellmError(
            f"--host {host}: cannot resolve it ({error.strerror}); pass an address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        way_out = "pick another --port, or stop what is using it" if error.errno == 98 else "check --host and --port"
        raise EdgellmError(f"cannot listen on {host}:{port}: {error.strerror}; {way_out}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, told about SIGTERM and Ctrl-C first: the waiting requests get their 503 at once."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None and not self.should_exit:
            self._loop.call_soon_threadsafe(self._on_exit)  # not in the handler: it may interrupt the scheduler
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM start a graceful stop (a second Ctrl-C forces it); unlike uvicorn's own, the signal
        is not raised again afterwards, so a clean stop exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} edgellm serve: {line}", file=sys.stderr, flush=True)


def serve(
    config: ServerConfig,
    listen: Listen,
    models: ServedModels,
    preload: Entry | None = None,
    planned: PlannedModel | None = None,
    log: Callable[[str], None] = say,
) -> int:
    """Serve until SIGTERM or Ctrl-C; 0 after a clean stop. `preload` (serve -m) is loaded at once (`planned`: its
    plan, made already) and kept until a request says otherwise; requests for it wait for its load, and a preload
    that fails stops the server with its error (one line, exit 2)."""
    check_exposure(listen.host, config.api_key)
    sock = bind(listen.host, listen.port)
    state = ServerState(config, models, preloading=preload is not None, log=log)
    failure: list[BaseException] = []

    def stop() -> None:
        if not state.stopping:
            state.stopping = True
            log("stopping: finishing the replies in flight, refusing the waiting requests")
        models.drain()

    server = _Server(
        uvicorn.Config(
            create_app(state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            server_header=False,
        ),
        stop,
    )

    load_over = threading.Event()

    def load_model() -> None:
        assert preload is not None
        try:
            started = time.perf_counter()
            models.acquire(preload, FOREVER, planned=planned).release()
            log(f"model loaded in {time.perf_counter() - started:.1f} s; ready")
        except BaseException as error:
            failure.append(error)
        finally:
            state.preloading = False
            load_over.set()
        if failure:
            server.should_exit = True

    where = f"[{listen.host}]" if ":" in listen.host else listen.host
    log(
        f"listening on http://{where}:{sock.getsockname()[1]}/v1 (OpenAI API), the Ollama API (/api), /health, "
        "/metrics; " + ("API key required" if config.api_key else "no API key: this machine only")
    )
    if preload is not None:
        threading.Thread(target=load_model, name="edgellm-load", daemon=True).start()
    else:
        load_over.set()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        stopped = state.stopping
        state.stopping = True
        models.drain(stop_running=server.force_exit)  # a second Ctrl-C does not wait for the reply
    if not load_over.is_set():  # stopped while llama.cpp loads, which cannot be interrupted: leave without waiting
        log("stopped while the model was loading")
        return STOPPED_WHILE_LOADING
    models.close()
    if failure:
        raise failure[0]
    if stopped:
        log("stopped")
    return 0


def api_key_from(flag: str | None) -> str | None:
    """--api-key, else EDGELLM_API_KEY; an empty key is no key."""
    key = flag if flag is not None else os.environ.get(API_KEY_ENV)
    return key or None
