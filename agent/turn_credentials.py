"""Short-lived TURN credentials: the TURN REST API scheme (draft-uberti-behave-turn-rest-00).

A TURN server configured with a shared secret (coturn: ``use-auth-secret`` and
``static-auth-secret``) accepts any username of the form ``<expiry>:<user>`` (``expiry`` in Unix
seconds) whose password is ``base64(HMAC-SHA1(secret, username))``, until that expiry. Voxline
holds the secret (``server.webrtc.ice_servers[].secret_env`` names the environment variable)
and hands each ``GET /v1/webrtc/config`` a fresh pair valid for ``server.webrtc.turn_ttl_s``,
so a credential a page leaks is worth little, and nothing static is given out. Its own peer
connections get a fresh pair per call too. A server given ``username`` and ``credential``
instead keeps them (static credentials, as before); STUN servers need neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.config.schema import WebRtcConfig
from pipeline.errors import ConfigError

__all__ = ["TURN_USER", "IceServer", "IceServers", "turn_credential"]

#: the ``user`` part of each username (the draft leaves it to the application)
TURN_USER = "voxline"


def turn_credential(secret: bytes, username: str) -> str:
    """The password of ``username``: ``base64(HMAC-SHA1(secret, username))``."""
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class IceServer:
    """One ``RTCIceServer``, with the credentials to use now."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, object]:
        entry: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry


class IceServers:
    """The configured ICE servers; their shared secrets are read from ``environ`` now (a
    variable that is unset or empty is a :class:`ConfigError`)."""

    def __init__(
        self,
        config: WebRtcConfig,
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = config.turn_ttl_s
        self.clock = clock
        self._servers: list[tuple[IceServer, bytes | None]] = []
        for n, server in enumerate(config.ice_servers):
            secret = None
            if server.secret_env is not None:
                value = environ.get(server.secret_env, "")
                if not value:
                    where = f"$.server.webrtc.ice_servers[{n}].secret_env"
                    raise ConfigError(where, f"${server.secret_env} is not set")
                secret = value.encode("utf-8")
            static = IceServer(tuple(server.urls), server.username, server.credential)
            self._servers.append((static, secret))

    def fresh(self) -> list[IceServer]:
        """The servers, each with a shared secret given a new username and credential that
        expire ``turn_ttl_s`` from now."""
        username = f"{int(self.clock()) + self.ttl_s}:{TURN_USER}"
        return [
            server
            if secret is None
            else IceServer(server.urls, username, turn_credential(secret, username))
            for server, secret in self._servers
        ]
