"""SIP URIs (RFC 3261 §19.1) as far as placing a call needs: where to send the INVITE.

:func:`parse_target` reads ``sip:user@host[:port][;params]`` (``sip:host`` too; the user part
may be a number) and returns a :class:`Target`, or a :class:`UriError` saying what is wrong;
``sips:`` and ``tel:`` are refused (no TLS here, no number routing). The host may be a name:
resolving it is the adapter's.

The transport is the URI's ``transport`` parameter when it has one (RFC 3263 §4.1): ``udp``
or ``tcp``; any other (``tls``, ``sctp``, ``ws``) is refused. Without one it is UDP (§4.1's
choice for a numeric host or a given port; names get no NAPTR/SRV lookups here).
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["DEFAULT_PORT", "TRANSPORTS", "Target", "UriError", "parse_target"]

DEFAULT_PORT = 5060
_URI = re.compile(
    r"^sip:(?:(?P<user>[^@;?\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<rest>[;?].*)?$"
)


#: the ``transport`` parameters a call can be placed with
TRANSPORTS = ("udp", "tcp")
_TRANSPORT = re.compile(r";transport=([^;?]*)", re.IGNORECASE)


class Target(msgspec.Struct, frozen=True):
    uri: str  # as given: the Request-URI and To
    user: str
    host: str
    port: int
    transport: str = "udp"  # lower case, one of TRANSPORTS


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
    params = (match.group("rest") or "").partition("?")[0]
    found = _TRANSPORT.search(params)
    transport = found.group(1).lower() if found else "udp"
    if transport not in TRANSPORTS:
        return UriError(f"transport={transport[:20]} is not supported (use udp or tcp)")
    host = match.group("host").strip("[]")
    return Target(uri, match.group("user") or "", host, port, transport)
