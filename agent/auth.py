"""Who may use the server: API keys, the browser Origin allowlist, and what is refused.

The decision is a pure function of a request's path, kind and headers
(:meth:`AccessPolicy.judge`, rules A1-A5); :mod:`agent.auth_asgi` applies it in front of every
route, then the key's grants (G1-G3, which count the key's requests and calls).
The rules, in the order they are applied:

====  ==========================================================================================
id    rule
====  ==========================================================================================
A1    ``/health/live``, ``/health/ready``, the demo page ``/`` and ``/static/…`` are open
A2    ``/metrics`` is open when ``server.metrics_public``, otherwise like any other path
O1    a WebSocket upgrade, or any request but GET/HEAD, whose ``Origin`` header is neither the
      server's own origin nor allowed (``server.auth.allowed_origins``) is refused: 403
      ``forbidden_origin``, close code 4403 (clients that are not browsers send no Origin)
T1    ``/v1/telephony/twilio`` with Twilio's auth token configured (``TWILIO_AUTH_TOKEN``):
      ``X-Twilio-Signature`` must be Twilio's signature of the URL it requested
      (:mod:`agent.twilio_signature`), and is all it needs (Twilio sends no API key): 403
      ``invalid_twilio_signature``, close code 4403
A3    no API key configured: authentication is off (``voxline serve`` allows that on loopback
      only, or with ``--insecure``: :func:`exposure_problem`)
A4    otherwise ``Authorization: Bearer <key>`` (or, on a WebSocket, the subprotocol
      ``openai-insecure-api-key.<key>``) must hold one of the keys: 401 ``missing_api_key`` or
      ``invalid_api_key``, close code 4401
A5    ... or a client secret (:mod:`agent.client_secrets`) that has not expired (401
      ``expired_client_secret``), on a path that opens calls (403 ``secret_not_allowed``)
G1    the key's grants (:mod:`agent.grants`; a secret's: its minting key's) name the path's
      endpoint: 403 ``endpoint_not_allowed``, close code 4403
G2    the key has a request left this minute (``requests_per_minute``): 429
      ``rate_limit_exceeded`` with ``Retry-After``, close code 4429
G3    a call socket or WebRTC offer: the key has fewer than ``max_sessions`` calls open: 429
      ``too_many_sessions``, close code 4429
====  ==========================================================================================

The server's own origin is the request's ``Host``. Without keys that is trusted only when the
host is an IP address or ``localhost``: a page on a domain that rebinds its DNS to this
machine sends its own name as ``Host`` and ``Origin``, and must not pass for the server's page.

Keys come from ``VOXLINE_API_KEYS`` (comma-separated) and ``server.auth.keys_file`` (one per
line, ``#`` starts a comment; after the key, its grants as ``name=value`` words:
:mod:`agent.grants`). They are kept as SHA-256 digests and compared with
:func:`hmac.compare_digest`, every key every time, so neither a key's length nor which key
matched shows in the time taken. No key, nor any part of one, is ever logged or echoed: errors
name a key by its position. Once a request passes, :meth:`AccessPolicy.caller` says which key
it came with and that key's grants; the guard applies them (:mod:`agent.auth_asgi`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.client_secrets import PREFIX as SECRET_PREFIX
from agent.client_secrets import ClientSecret, ClientSecrets, opens_calls, presented_secret
from agent.config.schema import AuthConfig
from agent.grants import FULL, UNKEYED, Grants, parse_grants
from agent.twilio_signature import signed_url, valid_signature
from pipeline.errors import ConfigError

__all__ = [
    "ENV_VAR",
    "FORBIDDEN",
    "MIN_KEY_CHARS",
    "NOT_GRANTED",
    "TOO_MANY",
    "TOO_MANY_SESSIONS",
    "UNAUTHORIZED",
    "AccessPolicy",
    "ApiKeys",
    "Refusal",
    "exposure_problem",
    "is_loopback",
    "load_keys",
    "rate_limited",
]

#: the environment variable of API keys (comma-separated)
ENV_VAR = "VOXLINE_API_KEYS"
#: the shortest key accepted: shorter ones can be guessed
MIN_KEY_CHARS = 16
#: WebSocket close codes: 4000 + the HTTP status (docs/protocol.md)
UNAUTHORIZED = 4401
FORBIDDEN = 4403
TOO_MANY = 4429

#: RFC 6750's ``b64token``: what may follow ``Bearer``
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Twilio's media streams (rule T1)
TWILIO_PATH = "/v1/telephony/twilio"
_OPEN_PATHS = frozenset({"/", "/health/live", "/health/ready"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ApiKeys:
    """A list of API keys, each with its grants (a bare key: every grant), held as digests;
    :meth:`find` takes the same time whichever matches."""

    def __init__(self, keys: Iterable[str | tuple[str, Grants]] = ()) -> None:
        entries = [(key, FULL) if isinstance(key, str) else key for key in keys]
        self._digests = tuple(_digest(key) for key, _ in entries)
        #: each key's grants, by its position
        self.grants = tuple(grants for _, grants in entries)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys)"  # never the keys

    def check(self, presented: str) -> bool:
        """Whether ``presented`` is one of the keys (every key is compared, always)."""
        return self.find(presented) is not None

    def find(self, presented: str) -> int | None:
        """The position of ``presented`` among the keys (its first, if listed twice); every key
        is compared, always."""
        digest = _digest(presented)
        found = None
        for index, key in enumerate(self._digests):
            if hmac.compare_digest(key, digest) and found is None:
                found = index
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def load_keys(auth: AuthConfig, environ: Mapping[str, str]) -> ApiKeys:
    """The keys of ``environ[ENV_VAR]`` (every grant) and of ``auth.keys_file`` (each line: a
    key, then its grants as ``name=value`` words, :func:`agent.grants.parse_grants`).

    An unset or blank variable gives none; a keys file that cannot be read or holds no key, a
    key that is too short or not a bearer token, or a grant that is not one, is a
    :class:`ConfigError` naming where.
    """
    keys: list[str | tuple[str, Grants]] = []
    for index, key in enumerate(environ.get(ENV_VAR, "").split(","), start=1):
        if key.strip():
            keys.append(_valid(key.strip(), ENV_VAR, f"key {index}"))
    if auth.keys_file is not None:
        where = "$.server.auth.keys_file"
        try:
            text = Path(auth.keys_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(where, f"cannot read {auth.keys_file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(where, f"{auth.keys_file} is not UTF-8 text") from None
        found = 0
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split("#", 1)[0].split()
            if words:
                which = f"line {number} of {auth.keys_file}"
                try:
                    grants = parse_grants(words[1:])
                except ValueError as problem:
                    raise ConfigError(where, f"{which}: {problem}") from None
                keys.append((_valid(words[0], where, which), grants))
                found += 1
        if not found:
            raise ConfigError(where, f"{auth.keys_file} holds no key")
    return ApiKeys(keys)


def _valid(key: str, where: str, which: str) -> str:
    if not _TOKEN.fullmatch(key):
        raise ConfigError(where, f"{which}: a key may hold letters, digits and -._~+/ only")
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(where, f"{which}: a key must be at least {MIN_KEY_CHARS} characters")
    if key.startswith(SECRET_PREFIX):
        raise ConfigError(where, f"{which}: {SECRET_PREFIX!r} starts client secrets, not keys")
    return key


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere, or "" (every interface)


def exposure_problem(host: str, keys: ApiKeys, *, insecure: bool) -> str | None:
    """Why serving on ``host`` with ``keys`` is refused (``None``: it is not)."""
    if keys or insecure or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host or 'every interface'} without an API key: anyone who can "
        f"reach it could use every endpoint. Set {ENV_VAR} (comma-separated keys) or "
        "server.auth.keys_file, or pass --insecure to serve without authentication."
    )


@dataclass(frozen=True)
class Refusal:
    """A request refused: its HTTP status, WebSocket close code, error code and message."""

    status: int
    close_code: int
    code: str
    message: str
    #: seconds until the request may be made again (a 429's ``Retry-After``)
    retry_after: int | None = None


MISSING_KEY = Refusal(
    401, UNAUTHORIZED, "missing_api_key", "an API key is required: send Authorization: Bearer"
)
INVALID_KEY = Refusal(401, UNAUTHORIZED, "invalid_api_key", "the API key is not valid")
FOREIGN_ORIGIN = Refusal(403, FORBIDDEN, "forbidden_origin", "this origin may not call the server")
EXPIRED_SECRET = Refusal(
    401, UNAUTHORIZED, "expired_client_secret", "the client secret has expired: mint another"
)
BAD_TWILIO_SIGNATURE = Refusal(
    403, FORBIDDEN, "invalid_twilio_signature", "the request is not signed by Twilio"
)
SECRET_HERE = Refusal(
    403, FORBIDDEN, "secret_not_allowed", "a client secret opens calls only: use an API key"
)
NOT_GRANTED = Refusal(
    403, FORBIDDEN, "endpoint_not_allowed", "this API key may not use this endpoint"
)
#: a key at its ``max_sessions`` (G3): ``Retry-After`` 1 s, as the server's own ``at_capacity``
#: 503 says (a call's end cannot be foreseen)
TOO_MANY_SESSIONS = Refusal(
    429, TOO_MANY, "too_many_sessions", "this API key has as many calls open as it may", 1
)


def rate_limited(seconds: int) -> Refusal:
    """A request over its key's ``requests_per_minute``: one may go in ``seconds``."""
    message = f"rate limit exceeded for this API key: try again in {seconds} s"
    return Refusal(429, TOO_MANY, "rate_limit_exceeded", message, retry_after=seconds)


class AccessPolicy:
    """The rules of the module doc, for one server's keys and settings."""

    def __init__(
        self,
        keys: ApiKeys,
        auth: AuthConfig,
        *,
        metrics_public: bool,
        secrets: ClientSecrets | None = None,
        twilio_token: str | None = None,
        twilio_url: str | None = None,
    ) -> None:
        self.keys = keys
        self.twilio_token = twilio_token or None
        self.twilio_url = twilio_url
        self.secrets = secrets if secrets is not None else ClientSecrets()
        self.metrics_public = metrics_public
        self._any_origin = "*" in auth.allowed_origins
        self._origins = [
            _origin(entry, pattern=True) for entry in auth.allowed_origins if entry != "*"
        ]

    @property
    def enabled(self) -> bool:
        """Whether API keys are required (A3)."""
        return bool(self.keys)

    def judge(
        self,
        path: str,
        *,
        websocket: bool,
        method: str = "GET",
        authorization: str | None = None,
        origin: str | None = None,
        host: str | None = None,
        subprotocols: list[str] | None = None,
        query: str = "",
        twilio_signature: str | None = None,
    ) -> Refusal | None:
        """The refusal of this request (``None``: it may go on); header values as received,
        ``subprotocols`` as a WebSocket client offered them, ``query`` the raw query string."""
        if self.is_open(path):  # A1, A2
            return None
        browser_call = websocket or method.upper() not in _SAFE_METHODS
        if origin is not None and browser_call and not self._origin_allowed(origin, host):
            return FOREIGN_ORIGIN  # O1
        if path == TWILIO_PATH and self.twilio_token is not None:  # T1
            url = signed_url(self.twilio_url, host, path, query)
            if valid_signature(self.twilio_token, url, twilio_signature):
                return None
            return BAD_TWILIO_SIGNATURE
        if not self.enabled:  # A3
            return None
        key = self.token(authorization, subprotocols)  # A4
        if key is None:
            return MISSING_KEY
        if self.keys.check(key):
            return None
        secret = self.secrets.find(key)  # A5
        if secret is None:
            return INVALID_KEY
        if self.secrets.expired(secret):
            return EXPIRED_SECRET
        return None if opens_calls(path) else SECRET_HERE

    def is_open(self, path: str) -> bool:
        """Whether ``path`` is open to anyone (A1, A2): no key, no grant, no limit."""
        if path in _OPEN_PATHS or path.startswith("/static/"):  # A1
            return True
        return path == "/metrics" and self.metrics_public  # A2

    def caller(
        self, authorization: str | None, subprotocols: list[str] | None
    ) -> tuple[int | None, Grants]:
        """The key (its position) a request that :meth:`judge` let in came with, and its
        grants: a client secret's are its minting key's; without a key, every grant when
        authentication is off, :data:`~agent.grants.UNKEYED` when it is on (Twilio's)."""
        if not self.enabled:
            return None, FULL
        token = self.token(authorization, subprotocols)
        index = None if token is None else self.keys.find(token)
        if index is not None:
            return index, self.keys.grants[index]
        secret = self.live_secret(authorization, subprotocols)
        if secret is not None:
            return secret.key, secret.grants
        return None, UNKEYED

    def token(self, authorization: str | None, subprotocols: list[str] | None) -> str | None:
        """What the client presented: a bearer token, or a browser's subprotocol token."""
        return _bearer(authorization) or presented_secret(subprotocols)

    def live_secret(
        self, authorization: str | None, subprotocols: list[str] | None
    ) -> ClientSecret | None:
        """The unexpired client secret a request presents (``None``: it presents none)."""
        token = self.token(authorization, subprotocols)
        secret = None if token is None else self.secrets.find(token)
        return None if secret is None or self.secrets.expired(secret) else secret

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        if self._any_origin:
            return True
        try:
            theirs = _origin(origin)
        except ValueError:
            return False  # "null" (a file, a sandboxed frame), or garbage
        if any(
            allowed[0] == theirs[0] and allowed[1] == theirs[1] and allowed[2] in (None, theirs[2])
            for allowed in self._origins
        ):
            return True
        own = _host(host)
        if own is None or own[0] != theirs[1]:
            return False
        # a Host without a port: the default port of the page's scheme (a TLS proxy in front
        # may have turned an https request into an http one)
        if (own[1] or _DEFAULT_PORTS[theirs[0]]) != theirs[2]:
            return False
        return self.enabled or own[0] == "localhost" or _is_address(own[0])


def _bearer(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (``None``: no such header)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _origin(text: str, *, pattern: bool = False) -> tuple[str, str, int | None]:
    """``scheme://host[:port]`` as (scheme, host, port); a ``pattern``'s port may be ``:*``
    (``None``)."""
    scheme, sep, rest = text.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
        raise ValueError(f"not an origin: {text!r}")
    host, port = _split_port(rest)
    if port == "*" and pattern:
        return scheme, host, None
    return scheme, host, int(port) if port else _DEFAULT_PORTS[scheme]


def _host(header: str | None) -> tuple[str, int | None] | None:
    """The ``Host`` header as (host, port); port ``None`` if it names none."""
    if not header:
        return None
    host, port = _split_port(header.strip().lower())
    if not port:
        return host, None
    return (host, int(port)) if port.isdigit() else None


def _split_port(netloc: str) -> tuple[str, str]:
    if netloc.startswith("["):  # [::1]:8000
        host, _, rest = netloc.partition("]")
        return host + "]", rest.removeprefix(":")
    host, _, port = netloc.partition(":")
    return host, port


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
