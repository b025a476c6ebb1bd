"""SIP URIs (RFC 3261 §19.1) as far as placing a call needs: where to send the INVITE.

:func:`parse_target` reads ``sip:user@host[:port][;params]`` (``sip:host`` too; the user part
may be a number) and returns a :class:`Target`, or a :class:`UriError` saying what is wrong;
``sips:`` and ``tel:`` are refused (no TLS here, no number routing). The host may be a name:
resolving it is the adapter's.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["DEFAULT_PORT", "Target", "UriError", "parse_target"]

DEFAULT_PORT = 5060
_URI = re.compile(
    r"^sip:(?:(?P<user>[^@;?\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<rest>[;?].*)?$"
)


class Target(msgspec.Struct, frozen=True):
    uri: str  # as given: the Request-URI and To
    user: str
    host: str
    port: int


class UriError(msgspec.Struct, frozen=True):
    reason: str


def parse_target(text: str) -> Target | UriError:
    """Where ``text`` (a ``sip:`` URI) says to send a request."""
    uri = text.strip()
    if uri.lower().startswith(("sips:", "tel:")):
        return UriError(f"{uri.split(':')[0]}: URIs are not supported (use sip:)")
    match = _URI.match(uri)
    if match is None:
        return UriError(f"not a SIP URI: {uri[:80]!r} (expected sip:user@host[:port])")
    port = int(match.group("port") or DEFAULT_PORT)
    if not 0 < port < 65_536:
        return UriError(f"port {port} is out of range")
    return Target(uri, match.group("user") or "", match.group("host").strip("[]"), port)
