"""The access rules (:mod:`agent.auth`) in front of every route: an ASGI middleware.

A refused HTTP request gets the REST API's error (OpenAI's shape) with status 401 (and
``WWW-Authenticate: Bearer``) or 403. A refused WebSocket is accepted and at once closed with
4401 or 4403 and a short reason: a browser sees a close code, never the status of a refused
upgrade. Refusals are counted (``voxline_errors{where="auth",kind=<code>}``) and logged with
their path and code, never with what the client sent. A request let in with a client secret
minted with a ``session`` carries it in its scope (:data:`SECRET_SESSION`) to the Realtime
endpoint.

Then the key's grants (rules G1-G3 of :mod:`agent.auth`): the endpoint, the key's requests
this minute (a 429 carries ``Retry-After`` and OpenAI's ``rate_limit_exceeded``; a WebSocket
is closed with 4429 and the wait in its reason), and its open calls: a WebSocket holds a place
in its key's ``max_sessions`` from its upgrade to its close (a WebRTC offer from its answer to
the call's end: :func:`agent.webrtc_routes.admitted`). The request's
:class:`~agent.grants.Caller` goes on in its scope (:data:`agent.grants.CALLER`).
"""

from __future__ import annotations

import contextlib
import logging

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.auth import NOT_GRANTED, TOO_MANY_SESSIONS, AccessPolicy, Refusal, rate_limited
from agent.grants import CALLER, Caller, Claim, KeySessions, endpoint_of
from agent.metrics import METRICS
from agent.rate_limit import RateLimits
from agent.rest import ApiError

__all__ = ["SECRET_SESSION", "AccessGuard", "close_refused", "refused"]

#: the scope key of the Realtime session configuration a client secret was minted with
SECRET_SESSION = "voxline.secret_session"

log = logging.getLogger("voxline.auth")

#: what a request that is no call holds among its key's calls: nothing
NO_CLAIM = Claim(lambda: None)


class AccessGuard:
    """Refuses what :meth:`AccessPolicy.judge` refuses; passes the rest to ``app``."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy, rates: RateLimits | None = None) -> None:
        self.app = app
        self.policy = policy
        self.rates = rates if rates is not None else RateLimits()
        self.sessions = KeySessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        websocket = scope["type"] == "websocket"
        authorization = headers.get("authorization")
        subprotocols = scope.get("subprotocols") if websocket else None
        refusal = self.policy.judge(
            scope["path"],
            websocket=websocket,
            method=scope.get("method", "GET"),
            authorization=authorization,
            origin=headers.get("origin"),
            host=headers.get("host"),
            subprotocols=subprotocols,
            query=scope.get("query_string", b"").decode("latin-1"),
            twilio_signature=headers.get("x-twilio-signature"),
        )
        if refusal is None and self.policy.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if refusal is None:
            key, grants = self.policy.caller(authorization, subprotocols)
            caller = Caller(key, grants, self.sessions)
            refusal = self._granted(scope["path"], caller)
            # a call socket holds a place among its key's calls while it is open (G3)
            claim = None if refusal is not None else caller.claim() if websocket else NO_CLAIM
            if claim is not None:
                scope = {**scope, CALLER: caller}
                secret = self.policy.live_secret(authorization, subprotocols)
                if secret is not None and secret.session is not None:
                    scope[SECRET_SESSION] = secret.session
                try:
                    await self.app(scope, receive, send)
                finally:
                    claim.release()
                return
            refusal = refusal or TOO_MANY_SESSIONS
        METRICS.error("auth", refusal.code)
        log.info("refused %s: %s", scope["path"], refusal.code)
        if websocket:
            await _close(WebSocket(scope, receive, send), refusal)
        else:
            await refused(refusal)(scope, receive, send)

    def _granted(self, path: str, caller: Caller) -> Refusal | None:
        """Rules G1 and G2 for a request of ``caller`` (``None``: it may go on)."""
        grants = caller.grants
        endpoint = endpoint_of(path)
        if endpoint is not None and endpoint not in grants.endpoints:
            return NOT_GRANTED  # G1
        if caller.key is not None and grants.requests_per_minute is not None:
            wait = self.rates.take(caller.key, grants.requests_per_minute)  # G2
            if wait:
                return rate_limited(wait)
        return None


def refused(refusal: Refusal) -> Response:
    """``refusal`` as a REST response (every endpoint's, the guard's and the routes' own)."""
    kind = "requests" if refusal.status == 429 else "invalid_request_error"  # OpenAI's 429
    response = ApiError(refusal.status, refusal.message, code=refusal.code, kind=kind).response()
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="voxline"'
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


async def _close(ws: WebSocket, refusal: Refusal) -> None:
    await close_refused(ws, refusal.close_code, refusal.message)


async def close_refused(ws: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with ``code`` (the protocol's own subprotocol is taken, so that a
    browser sees the close and not a failed handshake)."""
    offered = ws.scope.get("subprotocols") or []
    chosen = next((p for p in ("realtime", "voxline") if p in offered), None)
    with contextlib.suppress(WebSocketDisconnect):
        await ws.accept(subprotocol=chosen)
        await ws.close(code, reason)
