"""`edgellm worker`: serve this device's CPU (or GPU) to other edgellm processes through llama.cpp's RPC server."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from edgellm.cli.arguments import argument_type
from edgellm.session.flags import positive_int

if TYPE_CHECKING:
    from edgellm.engine.endpoint import Endpoint

NAME = "worker"
HELP = "serve this device's CPU (or GPU) to other edgellm processes (llama.cpp's RPC backend)"
EXPOSE_FLAG = "--expose-unauthenticated"
MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; see " + EXPOSE_FLAG + ")",
    )
    parser.add_argument(
        "--port",
        type=argument_type(positive_int),
        default=50052,
        help="RPC port (default 50052); the profile is served on the next port",
    )
    parser.add_argument(
        "-t",
        "--threads",
        type=argument_type(positive_int),
        metavar="N",
        help="CPU threads (default: physical performance cores)",
    )
    parser.add_argument(
        "--memory",
        type=argument_type(positive_int),
        metavar="MIB",
        help="the most memory (MiB) clients may plan to use here (default: what is free, less edgellm's usual margin)",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="keep received tensors in EDGELLM_HOME/rpc-cache, so a model loads faster next time",
    )
    parser.add_argument(
        EXPOSE_FLAG,
        dest="expose",
        action="store_true",
        help="allow --host other than loopback. The RPC protocol has NO authentication: anyone who "
        "reaches the port can run code on this device's memory. Private networks only",
    )


def main(args: argparse.Namespace) -> int:
    import os
    import signal
    import socket
    import threading

    from edgellm import paths
    from edgellm.engine import rpc
    from edgellm.engine.backends import GPU_KINDS, devices, gpu_memory_free
    from edgellm.engine.endpoint import Endpoint
    from edgellm.engine.side_channel import ProfileServer, profile_document, side_channel
    from edgellm.errors import EdgellmError
    from edgellm.formatting import gib
    from edgellm.hw.detect import detect_this_machine
    from edgellm.plan.planner import GPU_MARGIN, Wishes, ram_margin

    if ":" in args.host:
        raise EdgellmError(
            f"--host {args.host}: llama.cpp's RPC speaks IPv4 only; give an IPv4 address such as 127.0.0.1"
        )
    try:
        address = socket.gethostbyname(args.host)  # llama.cpp's server takes a dotted IPv4 address only
    except OSError:
        raise EdgellmError(f"--host {args.host} does not resolve to an IPv4 address of this machine") from None
    endpoint = Endpoint(address, args.port)
    if not rpc.is_loopback(endpoint.host) and not args.expose:
        raise EdgellmError(
            f"--host {args.host} would let any machine that reaches port {args.port} use this device: "
            f"llama.cpp's RPC protocol has no authentication. Keep 127.0.0.1 and reach it through an SSH "
            f"tunnel of both its ports (ssh -N -L {args.port}:127.0.0.1:{args.port} -L {args.port + 1}:"
            f"127.0.0.1:{args.port + 1} THIS-HOST), or on a private network you trust add {EXPOSE_FLAG}"
        )
    if args.port >= 65535:
        raise EdgellmError(f"--port {args.port}: the profile needs the next port too; use 65534 or less")
    for port in (endpoint.port, endpoint.port + 1):
        probe = socket.socket(socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers do: a restart is not refused
        try:
            probe.bind((endpoint.host, port))
        except OSError as error:
            raise EdgellmError(
                f"cannot listen on {endpoint.host}:{port} ({error.strerror or error}); choose another "
                f"--port (the profile takes the next one)"
            ) from None
        finally:
            probe.close()
    profile = detect_this_machine()
    gpus = [device.name for device in devices() if device.kind in GPU_KINDS and not device.name.startswith("RPC")]
    served = gpus[:1] or ["CPU"]  # one device per worker: the split gives each worker one share
    free = (
        (gpu_memory_free() or 0) // len(gpus) - GPU_MARGIN
        if gpus
        else profile.memory.available_bytes - ram_margin(profile, Wishes())
    )
    if args.memory is not None and args.memory * MIB > max(free or 0, 0):
        raise EdgellmError(
            f"--memory {args.memory} is more than this device can give ({max(free or 0, 0) // MIB} MiB "
            f"free, less the margin kept free); use --memory {max(free or 0, 0) // MIB} or less"
        )
    cap = args.memory * MIB if args.memory is not None else max(free or 0, 0)
    threads = args.threads or profile.cpu.performance_cores
    cache = None
    if args.cache:
        cache = paths.home() / "rpc-cache"
        cache.mkdir(parents=True, exist_ok=True)
    start = rpc.server_function()  # on this thread: a build without RPC is one line, not a thread's traceback
    document = profile_document(profile.to_dict(), cap, served, endpoint)
    try:
        profile_server = ProfileServer(side_channel(endpoint), document)
    except OSError as error:
        raise EdgellmError(
            f"cannot serve the profile on {side_channel(endpoint)} ({error.strerror or error}); choose "
            f"another --port (the profile takes the next one)"
        ) from None
    profile_server.serve_in_background()
    server = threading.Thread(
        target=rpc.serve_forever,
        args=(start, endpoint, str(cache) if cache else None, threads, served),
        name="edgellm-rpc-server",
        daemon=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if not rpc.is_loopback(endpoint.host):
        print(
            f"edgellm: WARNING: serving on {endpoint.host}: llama.cpp's RPC protocol has no authentication; anyone "
            f"who reaches port {endpoint.port} can use this device. Private networks only.",
            file=sys.stderr,
        )
    server.start()
    if not listening(endpoint, server):
        print("edgellm: error: llama.cpp's RPC server did not start (see its message above)", file=sys.stderr)
        sys.stdout.flush()
        os._exit(1)
    print(
        f"edgellm worker: serving {', '.join(served)} ({threads} threads, {gib(cap, 1)} promised) at "
        f"{endpoint}; its profile at http://{side_channel(endpoint)}/profile. Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.5):
        if not server.is_alive():
            print("edgellm: error: llama.cpp's RPC server stopped (see its message above)", file=sys.stderr)
            sys.stdout.flush()
            os._exit(1)
    print("edgellm worker: stopped", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(0)  # llama.cpp's server thread never returns: leave without waiting for it


def listening(endpoint: Endpoint, server: threading.Thread, timeout: float = 30.0) -> bool:
    """Wait until llama.cpp's server accepts connections (True), or its thread has ended or `timeout` passed."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while server.is_alive() and time.monotonic() < deadline:
        try:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False
