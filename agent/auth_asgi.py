"""The access rules (:mod:`agent.auth`) in front of every route: an ASGI middleware.

A refused HTTP request gets the REST API's error (OpenAI's shape) with status 401 (and
``WWW-Authenticate: Bearer``) or 403. A refused WebSocket is accepted and at once closed with
4401 or 4403 and a short reason: a browser sees a close code, never the status of a refused
upgrade. Refusals are counted (``voxline_errors{where="auth",kind=<code>}``) and logged with
their path and code, never with what the client sent. A request let in with a client secret
minted with a ``session`` carries it in its scope (:data:`SECRET_SESSION`) to the Realtime
endpoint.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.auth import AccessPolicy, Refusal
from agent.metrics import METRICS
from agent.rest import ApiError

__all__ = ["SECRET_SESSION", "AccessGuard", "close_refused"]

#: the scope key of the Realtime session configuration a client secret was minted with
SECRET_SESSION = "voxline.secret_session"

log = logging.getLogger("voxline.auth")


class AccessGuard:
    """Refuses what :meth:`AccessPolicy.judge` refuses; passes the rest to ``app``."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

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
        if refusal is None:
            secret = self.policy.live_secret(authorization, subprotocols)
            if secret is not None and secret.session is not None:
                scope = {**scope, SECRET_SESSION: secret.session}
            await self.app(scope, receive, send)
            return
        METRICS.error("auth", refusal.code)
        log.info("refused %s: %s", scope["path"], refusal.code)
        if websocket:
            await _close(WebSocket(scope, receive, send), refusal)
        else:
            await _respond(refusal)(scope, receive, send)


def _respond(refusal: Refusal) -> ASGIApp:
    response = ApiError(refusal.status, refusal.message, code=refusal.code).response()
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="voxline"'
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
