"""Where an RPC worker listens: HOST:PORT as given on the command line, parsed and checked. Pure but for the name
lookup that tells one worker named twice."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """HOST:PORT with an IPv4 address or a host name (llama.cpp's RPC transport is IPv4 only); ValueError naming what
    is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if ":" in host or host.startswith("["):
        raise ValueError(f"{text!r}: llama.cpp's RPC speaks IPv4 only; give an IPv4 address or a host name")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (a port from 1 to 65535)")
    return Endpoint(host, int(port))


def parse_endpoints(text: str) -> list[Endpoint]:
    """HOST:PORT[,HOST:PORT...], repeats refused (also one worker under two names, once resolved)."""
    found = [parse_endpoint(part) for part in text.split(",") if part.strip()]
    if not found:
        raise ValueError("give at least one HOST:PORT")
    resolved = [(ipv4_of(endpoint.host), endpoint.port) for endpoint in found]
    if len(set(resolved)) != len(resolved):
        raise ValueError("a worker is named twice (a worker serves one client at a time)")
    return found


def ipv4_of(host: str) -> str:
    """The dotted IPv4 address of `host` (llama.cpp's transport takes nothing else); the host itself when it does not
    resolve (the check that follows names it)."""
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host
