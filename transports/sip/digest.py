"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616), the client side.

A registrar or proxy answers a request with 401 (``WWW-Authenticate``) or 407
(``Proxy-Authenticate``); the request is sent again, with a new CSeq and branch, carrying
``Authorization`` or ``Proxy-Authorization``. :func:`parse_challenge` reads one challenge
(None: not a Digest one, or one with an algorithm or qop we cannot answer);
:func:`pick_challenge` takes the strongest of a response's; :func:`authorization` writes the
answer. Nothing here raises on peer input, reads a clock or draws randomness: the client
nonce is passed in.

============================  =================================================================
challenge                     answer
============================  =================================================================
algorithm MD5 (or none),      ``response = H(H(A1):nonce:H(A2))``, A1 = user:realm:password,
no qop                        A2 = method:uri (RFC 2069 compatibility)
qop="auth" (or a list with    ``response = H(H(A1):nonce:nc:cnonce:auth:H(A2))`` with the
it)                           client nonce and nonce count 00000001
qop="auth-int" only           as auth, A2 = method:uri:H(body)
algorithm ``...-sess``        A1 = H(user:realm:password):nonce:cnonce
algorithm SHA-256(-sess)      the same with SHA-256 for H (RFC 7616)
anything else (SHA-512-256,   not answered: the request fails with its 401/407
unknown schemes)
============================  =================================================================
"""

from __future__ import annotations

import hashlib
import re

import msgspec

__all__ = [
    "Challenge",
    "Credentials",
    "authorization",
    "parse_challenge",
    "pick_challenge",
]

_HASHES = {"MD5": "md5", "SHA-256": "sha256"}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')


class Credentials(msgspec.Struct, frozen=True):
    """Who we are to a registrar or proxy (the password never goes into a log line)."""

    user: str
    password: str = msgspec.field(default="")

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password=...)"


class Challenge(msgspec.Struct, frozen=True):
    realm: str
    nonce: str
    algorithm: str = "MD5"  # as the challenge spells it (``MD5-sess``, ``SHA-256``)
    qop: str = ""  # "auth", "auth-int" or "" (none offered)
    opaque: str | None = None
    proxy: bool = False  # from a 407: the answer is Proxy-Authorization
    stale: bool = False

    @property
    def header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge | None:
    """One ``WWW-Authenticate``/``Proxy-Authenticate`` value, or None when we cannot answer
    it (not Digest, no realm or nonce, an algorithm or qop we lack)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params = {name.lower(): _unquote(raw) for name, raw in _PARAM.findall(rest)}
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper().removesuffix("-SESS") not in _HASHES or "realm" not in params:
        return None
    offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    if offered and "auth" not in offered and "auth-int" not in offered:
        return None
    qop = "auth" if "auth" in offered else ("auth-int" if offered else "")
    if "nonce" not in params:
        return None
    return Challenge(
        params["realm"],
        params["nonce"],
        algorithm,
        qop,
        params.get("opaque"),
        proxy,
        params.get("stale", "").lower() == "true",
    )


def pick_challenge(values: list[str], *, proxy: bool = False) -> Challenge | None:
    """The strongest challenge of a response's we can answer (SHA-256 before MD5)."""
    found = [c for c in (parse_challenge(v, proxy=proxy) for v in values) if c is not None]
    found.sort(key=lambda c: c.algorithm.upper().startswith("MD5"))
    return found[0] if found else None


def authorization(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The ``Authorization`` (or ``Proxy-Authorization``) value answering ``challenge``."""
    algorithm = challenge.algorithm.upper()
    name = _HASHES[algorithm.removesuffix("-SESS")]

    def h(text: str | bytes) -> str:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return hashlib.new(name, data).hexdigest()

    ha1 = h(f"{credentials.user}:{challenge.realm}:{credentials.password}")
    if algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}" + (f":{h(body)}" if challenge.qop == "auth-int" else "")
    count = f"{nc:08x}"
    if challenge.qop:
        response = h(f"{ha1}:{challenge.nonce}:{count}:{cnonce}:{challenge.qop}:{h(a2)}")
    else:
        response = h(f"{ha1}:{challenge.nonce}:{h(a2)}")
    fields = [
        f'username="{_quote(credentials.user)}"',
        f'realm="{_quote(challenge.realm)}"',
        f'nonce="{_quote(challenge.nonce)}"',
        f'uri="{_quote(uri)}"',
        f'response="{response}"',
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.qop:
        fields += [f'cnonce="{_quote(cnonce)}"', f"qop={challenge.qop}", f"nc={count}"]
    if challenge.opaque is not None:
        fields.append(f'opaque="{_quote(challenge.opaque)}"')
    return "Digest " + ", ".join(fields)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
