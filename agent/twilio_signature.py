"""Twilio's request signature (``X-Twilio-Signature``), checked on its media-stream sockets.

Twilio signs every request it makes with the account's auth token: the signature is the
Base64 of HMAC-SHA1 over the URL it requested (scheme, host, path and query, as Twilio saw
them) followed by each POST parameter's name and value in name order (a WebSocket upgrade has
none). Behind a proxy the URL this server sees differs from Twilio's, so the URL is
``server.twilio.public_url`` (``wss://voice.example.com``, with the prefix a proxy mounts
this server under, if any) + the path and query; without it ``wss://`` + the ``Host`` header
(Twilio connects to media streams over TLS only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["TOKEN_ENV", "signature", "signed_url", "valid_signature"]

#: the environment variable of the account's auth token
TOKEN_ENV = "TWILIO_AUTH_TOKEN"


def signature(token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The signature Twilio sends for a request to ``url`` with form ``params``."""
    fields = params or {}
    data = url + "".join(name + fields[name] for name in sorted(fields))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_signature(token: str, url: str, presented: str | None) -> bool:
    """Whether ``presented`` is Twilio's signature of a parameterless request to ``url``."""
    if not presented:
        return False
    return hmac.compare_digest(signature(token, url).encode(), presented.strip().encode())


def signed_url(public_url: str | None, host: str | None, path: str, query: str) -> str:
    """The URL Twilio requested (see the module doc)."""
    base = public_url.rstrip("/") if public_url else f"wss://{host or ''}"
    return f"{base}{path}?{query}" if query else f"{base}{path}"
