"""llama.cpp's RPC backend from Python: serve this device to other edgellm processes (a worker), and check a worker
from Python before llama.cpp is pointed at it.

ggml aborts the whole process (GGML_ABORT) when a server it was given cannot be reached, so edgellm speaks the
protocol's first messages itself, with a timeout: the hello (and its version), the device count and each device's
memory. The server side is llama.cpp's own `ggml_backend_rpc_start_server`, found through ggml's backend registry
(it is linked in, or a loaded backend library in a portable build). It never returns: it runs on a thread of its own.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgellm.engine.endpoint import Endpoint
from edgellm.errors import EdgellmError, WorkerUnreachable
from edgellm.reasons import reason

DEFAULT_PORT = 50052
PROTOCOL_MAJOR = 7  # RPC_PROTO_MAJOR_VERSION of the llama.cpp edgellm is built with (ggml/include/ggml-rpc.h)
PROTOCOL_MINOR = 0
CMD_GET_DEVICE_MEMORY, CMD_HELLO, CMD_DEVICE_COUNT = 11, 14, 15  # enum rpc_cmd (ggml-rpc.cpp)
CONN_CAPS_SIZE = 24  # rpc_msg_hello_req: transport capabilities; all zero asks for plain TCP
CHECK_TIMEOUT_S = 5.0


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker said: its protocol version and, per device, (free, total) bytes of memory."""

    endpoint: Endpoint
    version: tuple[int, int, int]
    devices: tuple[tuple[int, int], ...] = field(default=())

    @property
    def free_bytes(self) -> int:
        return sum(free for free, _ in self.devices)


def _exchange(sock: socket.socket, command: int, payload: bytes, reply_size: int) -> bytes:
    sock.sendall(bytes([command]) + struct.pack("<Q", len(payload)) + payload)
    size = struct.unpack("<Q", _receive(sock, 8))[0]
    if size != reply_size:
        raise ConnectionError(f"an answer of {size} bytes where {reply_size} were expected")
    return _receive(sock, reply_size)


def _receive(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the connection was closed")
        data += chunk
    return data


def check_worker(endpoint: Endpoint, timeout: float = CHECK_TIMEOUT_S) -> WorkerStatus:
    """Connect, say hello, ask for the devices and their memory, and close; WorkerUnreachable (one line, with the
    way out) when the worker does not answer in `timeout` seconds or answers wrongly."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            hello = _exchange(sock, CMD_HELLO, bytes(CONN_CAPS_SIZE), 4 + CONN_CAPS_SIZE)
            version = (hello[0], hello[1], hello[2])
            if version[0] != PROTOCOL_MAJOR or version[1] > PROTOCOL_MINOR:
                raise WorkerUnreachable(
                    f"the RPC worker at {endpoint} speaks protocol {'.'.join(map(str, version))}, this edgellm "
                    f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}: run the same edgellm version on both machines",
                    str(endpoint),
                )
            (count,) = struct.unpack("<I", _exchange(sock, CMD_DEVICE_COUNT, b"", 4))
            devices = tuple(
                struct.unpack("<QQ", _exchange(sock, CMD_GET_DEVICE_MEMORY, struct.pack("<I", index), 16))
                for index in range(count)
            )
    except TimeoutError:
        raise WorkerUnreachable(
            reason("worker_silent", endpoint=str(endpoint), timeout=timeout, port=endpoint.port), str(endpoint)
        ) from None
    except (OSError, ConnectionError, struct.error) as error:
        problem = getattr(error, "strerror", None) or str(error)
        raise WorkerUnreachable(
            reason("worker_refused", endpoint=str(endpoint), problem=problem, port=endpoint.port), str(endpoint)
        ) from None
    return WorkerStatus(endpoint, version, devices)


def _registry_function(name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any]:
    """A function of the RPC backend, found through ggml's registry (linked in, or a loaded backend library)."""
    from edgellm.engine import backends

    lib = backends.registry()
    if lib is None:
        raise EdgellmError(
            "this llama.cpp build's backend registry cannot be read; reinstall with `python3 scripts/install.py`"
        )
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise EdgellmError(
            "this llama.cpp build has no RPC backend; reinstall with `python3 scripts/install.py` "
            "(it builds llama.cpp with GGML_RPC=ON)"
        )
    address = lib.ggml_backend_reg_get_proc_address(reg, name.encode())
    if not address:
        raise EdgellmError(
            f"this llama.cpp build's RPC backend has no {name}; reinstall with `python3 scripts/install.py`"
        )
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


def server_function() -> Callable[..., Any]:
    """llama.cpp's `ggml_backend_rpc_start_server` (a EdgellmError, with the way out, when this build has none)."""
    return _registry_function(
        "ggml_backend_rpc_start_server",
        None,
        [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)],
    )


def serve_forever(
    start: Callable[..., Any], endpoint: Endpoint, cache_dir: str | None, threads: int, device_names: list[str]
) -> None:
    """Run llama.cpp's RPC server (`start`, from `server_function`) on `endpoint`, an IPv4 address, for the named
    devices (ggml's names: "CPU", "CUDA0"...). Returns only when the server could not start: call it on a thread of
    its own."""
    from edgellm.engine import backends

    lib = backends.registry()
    assert lib is not None  # server_function, which gave `start`, found it (and it is cached)
    handles = [lib.ggml_backend_dev_by_name(name.encode()) for name in device_names]
    array = (ctypes.c_void_p * len(handles))(*handles)
    start(str(endpoint).encode(), cache_dir.encode() if cache_dir else None, threads, len(handles), array)


def join(endpoints: list[Endpoint]) -> None:
    """Add each worker's devices to llama.cpp's registry, as llama.cpp's `--rpc` does: models loaded afterwards in
    this process count them as GPU devices (layers reach them through n_gpu_layers and tensor_split). Check each
    worker first (`check_worker`): ggml aborts the process on one it cannot reach. There is no leaving: a process
    that joins workers is one that runs with them (a child process)."""
    from edgellm.engine import backends

    lib = backends.registry()
    add = _registry_function("ggml_backend_rpc_add_server", ctypes.c_void_p, [ctypes.c_char_p])
    assert lib is not None  # _registry_function found it (and it is cached)
    for endpoint in endpoints:
        lib.ggml_backend_register(add(str(endpoint).encode()))
