"""``/v1/realtime/calls``: OpenAI's WebRTC signalling, so browser apps written for the Realtime
API call Voxline unchanged (the call itself: :mod:`agent.realtime_webrtc`).

=============================================  ==============================================
``POST /v1/realtime/calls``                    the caller's SDP offer, as ``application/sdp``,
                                               or ``multipart/form-data`` with the parts
                                               ``sdp`` and ``session`` (a Realtime session
                                               configuration, JSON) -> ``201`` with the answer
                                               SDP (``application/sdp``) and ``Location:
                                               /v1/realtime/calls/{call_id}``
``POST /v1/realtime/calls/{call_id}/hangup``   end the call (``200``; ``404`` if no such call)
=============================================  ==============================================

The session starts as a ``/v1/realtime`` socket's does (the agent's turn-taking and voice,
no greeting), with the ``session`` a client secret was minted with applied (as on the socket:
ignored, and logged, where it no longer applies), then the offer's own ``session`` (checked as
a ``session.update`` is). The client may change it later with ``session.update`` on the
``oai-events`` data channel.

Errors have OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``): ``bad_offer``
(400: an offer Voxline cannot answer, the message says why), ``invalid_json`` and
``invalid_value`` (400: the ``session`` part, with its ``param``), ``override_not_allowed``
(400: a ``session`` setting instructions or tools with a key that may not,
:mod:`agent.realtime_overrides`), ``body_too_large`` (413), and the admission's refusals of the
WebRTC offers (503 ``not_ready``, ``at_capacity``, ``draining``; 429 ``too_many_sessions``:
:func:`agent.webrtc_routes.admitted`). Access is as for every call: an API key or a client
secret, and a browser's origin allowed (:mod:`agent.auth`).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import msgspec
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agent.auth_asgi import SECRET_SESSION
from agent.grants import Caller, call_settings, caller_of
from agent.models import session_settings
from agent.realtime_call import (
    OUTPUT_RATE,
    RealtimeSink,
    SessionVoices,
    llm_history_of,
    session_voices,
)
from agent.realtime_dialogue import RealtimeDialogue
from agent.realtime_overrides import CODE as OVERRIDE
from agent.realtime_overrides import override_message, protocol_for, spec_override
from agent.realtime_shaping import SessionRateLimits, initial_config
from agent.realtime_webrtc import RealtimeEvents
from agent.responders import LLMResponder
from agent.rest import ApiError, limited_body, served_catalog
from agent.session import Session
from agent.session_decoding import SessionDecoding
from agent.session_events import CallSink
from agent.webrtc_io import AudioTrackOut, DataChannelWriter
from agent.webrtc_routes import admitted, error
from pipeline.errors import ProtocolError
from transports.realtime_events import (
    RealtimeSessionConfig,
    SessionSpec,
    UpdateRejected,
    apply_update,
)
from transports.webrtc import OfferRequest, check_offer

if TYPE_CHECKING:
    from agent.server import ServerState
    from agent.webrtc_call import WebRtcCalls

__all__ = ["CALLS_PATH", "CallOffer", "call_config", "parse_call", "realtime_call_routes"]

log = logging.getLogger("voxline.realtime")

CALLS_PATH = "/v1/realtime/calls"
#: the largest offer taken: the SDP (a few KB) and a session (its tools may be long)
MAX_CALL_BYTES = 256 * 1024
#: what a call id starts with (OpenAI's look like ``rtc_…``)
CALL_PREFIX = "rtc_"

_spec_decoder = msgspec.json.Decoder(SessionSpec)


@dataclasses.dataclass(frozen=True)
class CallOffer:
    offer: OfferRequest
    session: SessionSpec | None


class BadSession(Exception):
    """The offer's ``session`` part is not a session configuration."""

    def __init__(self, code: str, message: str, param: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def parse_call(sdp: str, session: str | bytes | None) -> CallOffer:
    """The offer's parts, checked: :class:`~pipeline.errors.ProtocolError` for the SDP (what
    Voxline cannot answer), :class:`BadSession` for the session."""
    offer = OfferRequest(sdp, check_offer(sdp), whip=True)
    if session is None or not session.strip():
        return CallOffer(offer, None)
    try:
        spec = _spec_decoder.decode(session)
    except msgspec.ValidationError as problem:
        message, _, where = str(problem).partition(" - at `$.")
        param = "session." + where.rstrip("`") if where else "session"
        raise BadSession("invalid_value", message, param) from None
    except msgspec.DecodeError:
        raise BadSession("invalid_json", "the session is not a JSON object", "session") from None
    return CallOffer(offer, spec)


def call_config(
    start: RealtimeSessionConfig,
    minted: SessionSpec | None,
    asked: SessionSpec | None,
    voices: SessionVoices,
) -> RealtimeSessionConfig:
    """``start`` with a client secret's session (where it still applies) and then the offer's
    (:class:`~transports.realtime_events.UpdateRejected` where it does not)."""
    names = frozenset(voices.choices)
    config = start
    if minted is not None:
        try:
            config = apply_update(config, minted, voice_locked=False, voices=names)
        except UpdateRejected as rejected:
            log.warning("a client secret's session does not apply: %s", rejected.message)
    if asked is not None:
        config = apply_update(config, asked, voice_locked=False, voices=names)
    return config


async def _offer_parts(request: Request, body: bytes) -> tuple[str, str | bytes | None]:
    """The SDP and the session of a ``POST /v1/realtime/calls`` (``request``: its ``body``
    read); ``ProtocolError``."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/sdp":
        return _text(body), None
    if media_type != "multipart/form-data":
        raise ProtocolError("send the offer as application/sdp or multipart/form-data")
    form = await request.form()
    parts: dict[str, str | bytes] = {}
    for name in ("sdp", "session"):
        value = form.get(name)
        if isinstance(value, UploadFile):
            parts[name] = await value.read()
        elif value is not None:
            parts[name] = value
    await form.close()
    sdp = parts.get("sdp")
    if sdp is None:
        raise ProtocolError("the form has no sdp part")
    return _text(sdp) if isinstance(sdp, bytes) else sdp, parts.get("session")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the offer is not UTF-8 text") from None


def _too_large() -> ApiError:
    return ApiError(
        413, f"offers are limited to {MAX_CALL_BYTES // 1024} KiB", code="body_too_large"
    )


def realtime_call_routes(server: ServerState, calls: WebRtcCalls) -> list[BaseRoute]:
    """The routes of Realtime calls over WebRTC; ``calls`` must be running."""
    config = server.config

    async def create(request: Request) -> Response:
        try:
            limited = limited_body(request, MAX_CALL_BYTES, _too_large)
            sdp, session = await _offer_parts(limited, await limited.body())
            parsed = parse_call(sdp, session)
        except ApiError as refused:
            return refused.response()
        except ProtocolError as problem:
            return error(400, "bad_offer", str(problem))
        except BadSession as bad:
            return _session_error(bad.code, str(bad), bad.param)
        minted = request.scope.get(SECRET_SESSION)
        minted = minted if isinstance(minted, SessionSpec) else None
        caller = caller_of(request.scope)
        return await admitted(server, lambda ended: answer(parsed, minted, ended, caller), caller)

    async def answer(
        parsed: CallOffer, minted: SessionSpec | None, ended: Callable[[], None], caller: Caller
    ) -> tuple[Response, bool]:
        models = server.models
        assert models is not None
        settings = call_settings(session_settings(config, models.voice), caller)
        catalog = await anyio.to_thread.run_sync(served_catalog)
        voices = session_voices(catalog, config.voice, settings.voice)
        initial = initial_config(settings, voices.default)
        locked = None if caller.grants.overrides or parsed.session is None else parsed.session
        if locked is not None and (param := spec_override(locked, initial)) is not None:
            return _session_error(OVERRIDE, override_message(param), param), False
        try:
            start = call_config(initial, minted, parsed.session, voices)
        except UpdateRejected as rejected:
            return _session_error("invalid_value", rejected.message, rejected.param), False
        dialogue = server.responder()
        realtime = RealtimeDialogue(dialogue) if isinstance(dialogue, LLMResponder) else None
        seed = uuid.uuid4().hex[:12]
        protocol = protocol_for(caller.grants)(
            start,
            id_seed=seed,
            voices=frozenset(voices.choices),
            rate_limits=SessionRateLimits.of(dialogue),
        )
        made: list[RealtimeEvents] = []

        def events(
            session_id: str, track: AudioTrackOut, writer: DataChannelWriter
        ) -> RealtimeEvents:
            def make_sink(sender: RealtimeEvents) -> RealtimeSink:
                llm = llm_history_of(dialogue)
                sink = RealtimeSink(protocol, sender, settings.turns, voices=voices, llm=llm)
                sink.dialogue(realtime)
                return sink

            made.append(RealtimeEvents(protocol, track, writer, make_sink, seed=seed + "w"))
            return made[-1]

        def new_session(session_id: str, sink: CallSink) -> Session:
            turns, answers = made[0].realtime.turns
            call_settings = dataclasses.replace(
                settings, turns=turns, answer_turns=answers, greeting=False
            )
            shared = models.session_models()
            decoding = made[0].realtime.decoding = SessionDecoding(shared.asr, settings.asr)
            heard = protocol.config.transcription  # the offer's or the secret's session
            decoding.set(*((heard.language, heard.prompt) if heard else (None, None)))
            return Session(
                dataclasses.replace(shared, asr=decoding),
                realtime or dialogue,
                sink,
                call_settings,
                session_id=session_id,
            )

        try:
            session_id, sdp = await calls.answer(
                parsed.offer, new_session, ended, events=events, output_rate=OUTPUT_RATE
            )
        except ProtocolError as problem:
            return error(400, "bad_offer", str(problem)), False
        headers = {"Location": f"{CALLS_PATH}/{CALL_PREFIX}{session_id}"}
        return Response(sdp, status_code=201, media_type="application/sdp", headers=headers), True

    async def hang_up(request: Request) -> Response:
        call_id: str = request.path_params["call_id"]
        if call_id.startswith(CALL_PREFIX) and calls.hang_up(call_id.removeprefix(CALL_PREFIX)):
            return Response(status_code=200)
        return error(404, "call_not_found", "no such call (it may have ended already)")

    return [
        Route(CALLS_PATH, create, methods=["POST"]),
        Route(CALLS_PATH + "/{call_id}/hangup", hang_up, methods=["POST"]),
    ]


def _session_error(code: str, message: str, param: str | None) -> Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return JSONResponse(body, status_code=400)
