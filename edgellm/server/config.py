"""What the command line sets for a server's whole life: the defaults, the key, the limits."""

from __future__ import annotations

from dataclasses import dataclass

from edgellm.engine.contract import GenerationOptions


@dataclass(frozen=True)
class ServerConfig:
    """What the command line sets for the server's whole life."""

    defaults: GenerationOptions  # the flags' sampling; a request overrides what it names
    api_key: str | None = None
    max_body_bytes: int = 4 * 2**20
    cors_origins: tuple[str, ...] = ()
