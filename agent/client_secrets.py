"""Short-lived client secrets: what a browser holds instead of an API key.

A backend that holds a key mints a secret with ``POST /v1/realtime/client_secrets`` (OpenAI's
shape: ``{"expires_after": {"anchor": "created_at", "seconds": 10..7200}, "session": {...}}``
answered with ``{"value": "ek_…", "expires_at": <unix seconds>, "session": {...}}``) and hands
it to the page. Until it expires the secret opens calls, as many as its key allows (the
secret has its minting key's grants, :mod:`agent.grants`, and counts against its limits), and
nothing else: ``/v1/realtime``, ``/v1/stream`` and the WebRTC routes (``/v1/webrtc/…``,
``/v1/realtime/calls…``), never the REST API and never another secret (rule A5 of
:mod:`agent.auth`). A call opened before the expiry runs on after it.

A browser cannot set headers on a WebSocket: it offers the secret as the subprotocol
``openai-insecure-api-key.<secret>`` beside ``realtime`` (or ``voxline`` on ``/v1/stream``),
as OpenAI's browser clients do; ``fetch`` sends ``Authorization: Bearer <secret>``.

The ``session`` given at minting is checked as a Realtime ``session.update`` would be and
becomes the starting configuration of every ``/v1/realtime`` session the secret opens (the
client may still change it, as OpenAI's API allows).

:class:`ClientSecrets` is the store, in this process's memory, sans-I/O (the clock is
injected): secrets are kept as SHA-256 digests, at most :data:`MAX_LIVE` at once (minting more
is refused: 429), expired ones kept until the store needs the room so that a late client is
told "expired" rather than "invalid". Replicas behind a load balancer each know their own
secrets: mint on the replica that will take the call (sticky routing), or give browsers keys
of their own.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.grants import FULL, Grants
from transports.realtime_events import SessionSpec

__all__ = [
    "DEFAULT_TTL_S",
    "MAX_LIVE",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "PREFIX",
    "SUBPROTOCOL_PREFIX",
    "ClientSecret",
    "ClientSecrets",
    "Minted",
    "StoreFull",
    "opens_calls",
    "presented_secret",
]

MIN_TTL_S = 10
MAX_TTL_S = 7200
DEFAULT_TTL_S = 600
#: secrets held at once (each a digest, an expiry and its session: a few hundred bytes)
MAX_LIVE = 10_000
#: what every secret starts with (an API key never may: :func:`agent.auth.load_keys`)
PREFIX = "ek_"
#: the WebSocket subprotocol that carries a secret (or a key) from a browser
SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
#: the paths a secret opens: calls, not the REST API
_CALL_PATHS = frozenset({"/v1/realtime", "/v1/realtime/calls", "/v1/stream"})
_CALL_PREFIXES = ("/v1/webrtc/", "/v1/realtime/calls/")


def opens_calls(path: str) -> bool:
    """Whether a client secret may be used on ``path``."""
    return path in _CALL_PATHS or path.startswith(_CALL_PREFIXES)


def presented_secret(subprotocols: list[str] | None) -> str | None:
    """The token a browser offered as a WebSocket subprotocol (``None``: none)."""
    for offered in subprotocols or ():
        if offered.startswith(SUBPROTOCOL_PREFIX) and len(offered) > len(SUBPROTOCOL_PREFIX):
            return offered[len(SUBPROTOCOL_PREFIX) :]
    return None


class StoreFull(Exception):
    """:data:`MAX_LIVE` secrets are live: no more until some expire."""


@dataclass(frozen=True, slots=True)
class ClientSecret:
    expires_at: float
    #: the starting configuration of the Realtime sessions it opens (``None``: the agent's)
    session: SessionSpec | None
    #: the key that minted it (its position; ``None``: none, authentication is off) and that
    #: key's grants, which are the secret's
    key: int | None = None
    grants: Grants = FULL


@dataclass(frozen=True, slots=True)
class Minted:
    value: str
    expires_at: int


class ClientSecrets:
    """The live client secrets of one server (see the module doc)."""

    def __init__(self, clock: Callable[[], float] = time.time, *, max_live: int = MAX_LIVE) -> None:
        self.clock = clock
        self.max_live = max_live
        self._held: dict[bytes, ClientSecret] = {}

    def __len__(self) -> int:
        return len(self._held)

    def mint(
        self,
        ttl_s: int,
        session: SessionSpec | None = None,
        *,
        key: int | None = None,
        grants: Grants = FULL,
    ) -> Minted:
        """A new secret valid for ``ttl_s`` seconds (clamped to 10 s-2 h by the caller's
        validation; checked here too), with the grants of ``key``, which mints it. Raises
        :class:`StoreFull`."""
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"a client secret lives {MIN_TTL_S}-{MAX_TTL_S} s, not {ttl_s}")
        now = self.clock()
        if len(self._held) >= self.max_live:
            self._held = {d: s for d, s in self._held.items() if s.expires_at > now}
            if len(self._held) >= self.max_live:
                raise StoreFull(f"{self.max_live} client secrets are live")
        value = PREFIX + secrets.token_urlsafe(32)
        expires_at = int(now) + ttl_s
        self._held[_digest(value)] = ClientSecret(float(expires_at), session, key, grants)
        return Minted(value, expires_at)

    def find(self, value: str) -> ClientSecret | None:
        """The secret ``value`` names, expired or not (``None``: no such secret)."""
        if not value.startswith(PREFIX):
            return None
        return self._held.get(_digest(value))

    def expired(self, secret: ClientSecret) -> bool:
        return secret.expires_at <= self.clock()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()
