"""HTTP for browser calls: signalling, the hang-up resource, and the demo page.

=========================================  ==================================================
``GET /``                                  the demo page (``agent/static/``: plain HTML, CSS
                                           and JavaScript, no build step)
``GET /static/…``                          its script and style sheet
``GET /v1/webrtc/config``                  the agents and voices to pick from (an agent's
                                           dialogue ``engine``), the ICE servers the browser
                                           should use (TURN credentials made afresh for each
                                           request where a secret is configured:
                                           :mod:`agent.turn_credentials`), and an
                                           interpreter's ``rooms``
``POST /v1/webrtc/offer``                  JSON ``{"type": "offer", "sdp", "agent"?,
                                           "voice"?, "room"?, "language"?}`` -> ``200
                                           {"type": "answer", "sdp", "session_id"}``; or WHIP
                                           style: an ``application/sdp`` body (``?room=ID&
                                           language=xx``) -> ``201`` with the answer SDP and
                                           ``Location: /v1/webrtc/sessions/{id}``
``DELETE /v1/webrtc/sessions/{id}``        hang up (``204``; ``404`` if no such call)
=========================================  ==================================================

Errors have the REST API's shape, ``{"error": {"message", "type", "param", "code"}}``, with
codes ``bad_offer`` (400: the message says what the offer lacks), ``unknown_agent`` and
``unknown_voice`` (404), ``offer_too_large`` (413), ``not_ready`` (503: models still loading),
``at_capacity`` (503: ``server.max_sessions``), ``overloaded`` (503: speech recognition
is behind, ``server.max_asr_wait_ms``), ``draining`` (503: the server is going away,
:mod:`agent.drain`) and ``too_many_sessions`` (429: the key's ``max_sessions``,
:mod:`agent.grants`). An offer with a ``room`` joins it as the native protocol's
``?room=`` does (:mod:`agent.room_calls`), refused with the room's codes (:data:`ROOM_STATUS`;
400 unless listed there), and leaves it when the call ends. Like every route but the page,
these are behind the access rules (:mod:`agent.auth`): an API key where keys are configured
(401), and an offer from a page of a foreign origin is refused (403 ``forbidden_origin``).
Offers are not trickled: the browser gathers its candidates first (no STUN by default, so that
is quick) and the answer holds the server's.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.admission import REFUSALS
from agent.auth import TOO_MANY_SESSIONS
from agent.auth_asgi import refused
from agent.config import AgentConfig
from agent.grants import Caller, call_settings, caller_of
from agent.metrics import METRICS
from agent.models import session_settings
from agent.room_calls import RoomCall, join_room
from agent.rooms import RoomError
from agent.session import Session
from agent.session_events import CallSink
from agent.turn_credentials import IceServers
from agent.webrtc_call import WebRtcCalls
from pipeline.errors import ConfigError, ProtocolError
from transports.webrtc import MAX_OFFER_BYTES, parse_offer
from voices.catalog import load_catalog

if TYPE_CHECKING:
    from agent.server import ServerState

STATIC = Path(__file__).resolve().parent / "static"


#: the HTTP status of a refused room join, by its code (the others are 400)
ROOM_STATUS = {"room_full": 409, "too_many_rooms": 503}


def error(status: int, code: str, message: str) -> JSONResponse:
    """An error in the REST API's shape (OpenAI's)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def admitted(
    server: ServerState,
    answer: Callable[[Callable[[], None]], Awaitable[tuple[Response, bool]]],
    caller: Caller | None = None,
) -> Response:
    """An offer's answer, if the server takes a call now (503 otherwise) and ``caller``'s key
    has fewer than its ``max_sessions`` calls open (429 ``too_many_sessions`` otherwise):
    ``answer(ended)`` returns the response and whether a call started; that call then holds a
    session slot (and its key's place) until it runs ``ended``."""
    if (refusal := server.refusal()) is not None:
        return error(503, refusal, f"{REFUSALS[refusal]}; try again later")
    claim = (caller or Caller()).claim()
    if claim is None:
        METRICS.error("auth", TOO_MANY_SESSIONS.code)
        return refused(TOO_MANY_SESSIONS)
    # the slot is taken before anything is awaited, so offers racing for the last one
    # cannot overshoot the limit; it is given back unless a call now holds it
    server.sessions += 1
    held = False

    def ended() -> None:
        server.sessions -= 1
        claim.release()

    try:
        response, held = await answer(ended)
    finally:
        if not held:
            server.sessions -= 1
            claim.release()
    return response


def webrtc_routes(server: ServerState, calls: WebRtcCalls) -> list[BaseRoute]:
    """The routes of browser calls; ``calls`` must be running (:meth:`WebRtcCalls.run`)."""
    config = server.config
    options: dict[str, Any] = {}
    ice = IceServers(config.server.webrtc, os.environ)  # the TURN secrets read now

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def client_config(request: Request) -> JSONResponse:
        # TURN credentials made afresh for each request (agent/turn_credentials.py)
        ice_servers = [entry.to_json() for entry in ice.fresh()]
        if options:
            return JSONResponse({**options, "ice_servers": ice_servers})
        found = _options(config)
        rooms = server.rooms
        if rooms is not None:
            found["rooms"] = {"languages": rooms.joinable()}
        if rooms is not None or server.ready.is_set():  # an interpreter's rooms: once loaded
            options.update(found)
        return JSONResponse({**found, "ice_servers": ice_servers})

    async def offer(request: Request) -> Response:
        caller = caller_of(request.scope)
        return await admitted(server, lambda ended: answer(request, ended), caller)

    async def answer(request: Request, ended: Callable[[], None]) -> tuple[Response, bool]:
        """The offer's answer, and whether a call started (it then holds the slot)."""
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > MAX_OFFER_BYTES:
                message = f"offers are limited to {MAX_OFFER_BYTES} B"
                return error(413, "offer_too_large", message), False
        try:
            content_type = request.headers.get("content-type", "")
            parsed = parse_offer(content_type, bytes(body), request.query_params)
        except ProtocolError as problem:
            return error(400, "bad_offer", str(problem)), False
        if parsed.agent not in (None, config.name):
            return error(
                404, "unknown_agent", f"this server answers as {config.name!r} only"
            ), False
        if parsed.voice not in (None, config.voice.name):
            message = f"this agent speaks as {config.voice.name!r} only"
            return error(404, "unknown_voice", message), False
        models = server.models
        assert models is not None
        settings = call_settings(session_settings(config, models.voice), caller_of(request.scope))
        room: RoomCall | None = None
        if parsed.room is not None:
            try:
                room = join_room(server.rooms, parsed.room, parsed.language, settings)
            except RoomError as refused:
                status = ROOM_STATUS.get(refused.code, 400)
                return error(status, refused.code, str(refused)), False

        def new_session(session_id: str, sink: CallSink) -> Session:
            if room is not None:
                return room.start(sink, session_id)
            return Session(
                models.session_models(), server.responder(), sink, settings, session_id=session_id
            )

        async def leave() -> None:  # the room's seat, when the call is over
            if room is not None and server.rooms is not None:
                await server.rooms.leave(room)

        started = False
        try:
            release = leave if room is not None else None
            session_id, sdp = await calls.answer(parsed, new_session, ended, release=release)
            started = True
        except ProtocolError as problem:
            return error(400, "bad_offer", str(problem)), False
        finally:
            if not started:
                with anyio.CancelScope(shield=True):
                    await leave()
        if parsed.whip:
            location = f"/v1/webrtc/sessions/{session_id}"
            headers = {"Location": location}
            return Response(
                sdp, status_code=201, media_type="application/sdp", headers=headers
            ), True
        return JSONResponse({"type": "answer", "sdp": sdp, "session_id": session_id}), True

    async def hang_up(request: Request) -> Response:
        if calls.hang_up(request.path_params["session_id"]):
            return Response(status_code=204)
        return error(404, "unknown_session", "no such call (it may have ended already)")

    return [
        Route("/", page),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/v1/webrtc/config", client_config),
        Route("/v1/webrtc/offer", offer, methods=["POST"]),
        Route("/v1/webrtc/sessions/{session_id}", hang_up, methods=["DELETE"]),
    ]


def _options(config: AgentConfig) -> dict[str, Any]:
    """The pickers' choices: the agent this server runs and the voice it speaks with
    (``rooms``: the client config adds an interpreter's)."""
    voice: dict[str, Any] = {"name": config.voice.name, "language": "", "description": ""}
    try:
        info = load_catalog().get(config.voice.name).info()
    except ConfigError:
        pass  # the config check already refused unknown voices; show the name alone
    else:
        voice.update(language=info.language, description=info.description)
    return {
        "agents": [
            {
                "name": config.name,
                "description": config.description,
                "engine": config.dialogue.engine,
            }
        ],
        "rooms": None,
        "voices": [voice],
    }
