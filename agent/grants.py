"""What each API key may do: its grants, and the per-key limits they set.

A key's grants (:class:`Grants`) come from its line of ``server.auth.keys_file``: the key, then
``name=value`` words (docs/config.md, "Grants"):

=========================  ==========================================  ======================
grant                      what it allows                              without it
=========================  ==========================================  ======================
``endpoints``              the endpoints it may use, comma-separated   all of them
                           (:data:`ENDPOINTS`; :func:`endpoint_of`)
``overrides``              ``yes``/``no``: a Realtime client may       ``yes``
                           replace the agent's ``instructions`` and
                           ``tools`` (:mod:`agent.realtime_overrides`)
``max_sessions``           calls (and call sockets) open at once       ``server.max_sessions``
``requests_per_minute``    REST requests and call starts a minute      unlimited
                           (:mod:`agent.rate_limit`): then 429 and
                           ``Retry-After``
``unlimited_calls``        ``yes``/``no``: its calls may run without   ``yes``
                           end when the agent's ``turns.max_call_ms``
                           is 0
=========================  ==========================================  ======================

A key without grants (a line holding only the key, or ``VOXLINE_API_KEYS``) has them all, as
every key had before grants existed. A client secret has the grants of the key that minted it
and counts against that key's limits. A request let in without a key has all grants when
authentication is off (loopback, ``--insecure``); with it on (Twilio's media streams, signed
by Twilio and carrying no key; SIP calls, let in by ``server.sip.allowed_networks``:
:class:`~agent.sip_server.ServerAdmission`) its calls are never unlimited: a ``max_call_ms`` of
0 becomes :data:`UNKEYED_MAX_CALL_MS` (:func:`call_settings`). A SIP call placed with ``POST
/v1/calls`` is the placing key's (:mod:`agent.calls_route`): its session is made under that
key's grants, and it holds one of that key's ``max_sessions`` (a :class:`Claim`) until it ends.

The access guard (:mod:`agent.auth_asgi`) puts the request's :class:`Caller` in its scope
(:data:`CALLER`); call routes read it with :func:`caller_of`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from agent.turn_types import TurnConfig

if TYPE_CHECKING:
    from agent.session_control import SessionSettings

__all__ = [
    "CALLER",
    "ENDPOINTS",
    "FULL",
    "UNKEYED",
    "UNKEYED_MAX_CALL_MS",
    "Caller",
    "Claim",
    "Grants",
    "KeySessions",
    "call_settings",
    "caller_of",
    "endpoint_of",
    "parse_grants",
]

#: the endpoints a key may be granted (``endpoints=``)
ENDPOINTS = frozenset({"realtime", "stream", "twilio", "webrtc", "rest", "metrics", "calls"})
#: the longest call of a caller without a key while authentication is on, when the agent's
#: ``turns.max_call_ms`` is 0 (unlimited): the default ``max_call_ms``
UNKEYED_MAX_CALL_MS = TurnConfig().max_call_ms
#: the ASGI scope key of the request's :class:`Caller`
CALLER = "voxline.caller"


@dataclass(frozen=True, slots=True)
class Grants:
    """What a key may do (the module's table); the defaults are everything."""

    endpoints: frozenset[str] = ENDPOINTS
    overrides: bool = True
    #: ``None``: only the server's own limit
    max_sessions: int | None = None
    #: ``None``: unlimited
    requests_per_minute: int | None = None
    unlimited_calls: bool = True


#: every grant: a key without grants, or every caller when authentication is off
FULL = Grants()
#: a caller let in without a key while authentication is on (Twilio's signed media streams)
UNKEYED = Grants(unlimited_calls=False)

_BOOLEANS = {"yes": True, "true": True, "no": False, "false": False}
_NAMES = ("endpoints", "overrides", "max_sessions", "requests_per_minute", "unlimited_calls")


def parse_grants(words: list[str]) -> Grants:
    """The grants of ``name=value`` words (a keys file line after its key); raises
    :class:`ValueError` saying which word is wrong and why."""
    changes: dict[str, Any] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or name not in _NAMES:
            raise ValueError(f"{name!r} is not a grant (grants: {', '.join(_NAMES)})")
        if name in changes:
            raise ValueError(f"{name} is given twice")
        changes[name] = _value(name, value)
    return dataclasses.replace(FULL, **changes)


def _value(name: str, value: str) -> object:
    if name == "endpoints":
        named = frozenset(part for part in value.split(",") if part)
        unknown = sorted(named - ENDPOINTS)
        if unknown or not named:
            which = f"unknown endpoint {unknown[0]!r}" if unknown else "no endpoint"
            raise ValueError(f"endpoints: {which} (endpoints: {', '.join(sorted(ENDPOINTS))})")
        return named
    if name in ("overrides", "unlimited_calls"):
        if value.lower() not in _BOOLEANS:
            raise ValueError(f"{name}: yes or no, not {value!r}")
        return _BOOLEANS[value.lower()]
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise ValueError(f"{name}: a whole number 1-1000000, not {value!r}")
    return int(value)


def endpoint_of(path: str) -> str | None:
    """The endpoint (an ``endpoints`` grant) ``path`` belongs to; ``None``: minting a client
    secret, which any key may (the secret has the key's own grants)."""
    if path == "/v1/realtime/client_secrets":
        return None
    if path == "/v1/realtime" or path.startswith("/v1/realtime/"):
        return "realtime"  # the socket, and its WebRTC calls
    if path == "/v1/stream":
        return "stream"
    if path.startswith("/v1/telephony/"):
        return "twilio"
    if path.startswith("/v1/webrtc/"):
        return "webrtc"
    if path == "/metrics":
        return "metrics"
    if path == "/v1/calls" or path.startswith("/v1/calls/"):
        return "calls"
    return "rest"


class Claim:
    """One call's place in its key's ``max_sessions``; :meth:`release` gives it back (once)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class KeySessions:
    """The calls open with each key (keys by position: the server's own, so a bounded few)."""

    def __init__(self) -> None:
        self._open: dict[int, int] = {}

    def open(self, key: int) -> int:
        return self._open.get(key, 0)

    def claim(self, key: int | None, grants: Grants) -> Claim | None:
        """A place for one more call of ``key`` (``None``: it has ``max_sessions`` open)."""
        if key is None or grants.max_sessions is None:
            return Claim(lambda: None)
        if self._open.get(key, 0) >= grants.max_sessions:
            return None
        self._open[key] = self._open.get(key, 0) + 1

        def release() -> None:
            left = self._open[key] - 1
            if left:
                self._open[key] = left
            else:
                del self._open[key]

        return Claim(release)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: the key it was let in with (its position among the server's
    keys, a client secret's minting key; ``None``: no key) and what that key may do."""

    key: int | None = None
    grants: Grants = FULL
    sessions: KeySessions = field(default_factory=KeySessions, compare=False)

    def claim(self) -> Claim | None:
        """A place for one more call (``None``: the key has ``max_sessions`` calls open)."""
        return self.sessions.claim(self.key, self.grants)


def caller_of(scope: MutableMapping[str, Any]) -> Caller:
    """The caller the access guard let in (a request that did not pass it: every grant)."""
    caller = scope.get(CALLER)
    return caller if isinstance(caller, Caller) else Caller()


def call_settings(settings: SessionSettings, caller: Caller) -> SessionSettings:
    """``settings`` for a call of ``caller``: an unlimited call (``max_call_ms`` 0) only if its
    grants allow one, otherwise :data:`UNKEYED_MAX_CALL_MS`."""
    if settings.turns.max_call_ms or caller.grants.unlimited_calls:
        return settings
    turns = msgspec.structs.replace(settings.turns, max_call_ms=UNKEYED_MAX_CALL_MS)
    return dataclasses.replace(settings, turns=turns)
