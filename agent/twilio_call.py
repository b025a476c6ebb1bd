"""``/v1/telephony/twilio``: Twilio Media Streams, wired to a :class:`~agent.session.Session`.

The thin adapter over :class:`~transports.twilio.TwilioProtocol` (which holds the protocol
logic), served by the WebSocket call loop (:func:`agent.ws_io.serve_call`). The call starts
with Twilio's ``start`` message and ends with ``stop`` (or the socket closing); replies go
out as 8 kHz μ-law ``media`` with ``mark`` messages, and a barge-in sends ``clear``. What the
caller heard of an interrupted reply is the last mark Twilio echoed for it (at most one mark
interval early), never more than was sent. A ``dtmf`` message is a key the caller pressed
(:meth:`~agent.session_control.CallControls.dtmf`). Twilio has no error message: bad input is
logged and ignored.

Call actions. A transfer updates the call through Twilio's REST API with ``<Dial>``
(:mod:`transports.twilio_rest`; ``server.twilio.api_base_url``, the account
``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` from the environment, the call SID from
``start``). A 2xx: Twilio dials the target and stops the stream, and the call ends
``transferred``. A refusal (4xx/5xx), no answer within ``server.twilio.api_timeout_s``, no
connection, or no credentials: the transfer failed, and the agent says so. The request is made
in the session's outbox (the announcing reply has played; reply audio does not wait for it).
The sink keys no digits (the session fails them, ``unsupported``): a stream takes only
``media``, ``mark`` and ``clear``, and a REST update with ``<Play digits>`` would replace the
TwiML that runs the stream, ending the agent's side of the call.
A hang-up closes the stream's WebSocket, which is how a media stream ends its side: the call
then goes on with the TwiML after ``<Connect><Stream>`` (``<Hangup/>``, or its end).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from starlette.websockets import WebSocket

from agent.config.schema import TwilioConfig
from agent.reply import Responder
from agent.session import Models, Session, SessionSettings
from agent.session_control import CallControls
from agent.session_events import (
    CallEnded,
    MarkReached,
    Notice,
    SessionEvent,
    TransferRequested,
)
from agent.ws_io import Sender, WsCall, WsTransport, serve_call
from agent.ws_sink import ProtocolSink
from pipeline.events import AudioFrame
from transports.twilio import (
    TWILIO_FORMAT,
    Dtmf,
    PeerError,
    StreamStarted,
    StreamStopped,
    TwilioEvent,
    TwilioProtocol,
)
from transports.twilio_rest import DialRequest, dial_outcome, dial_request

log = logging.getLogger("voxline.twilio")


class TwilioSink(ProtocolSink[TwilioProtocol]):
    """What the session says, as Twilio media, marks and clears; a transfer, as a REST call."""

    #: the call's session and Twilio's id of the call, once the stream has started
    session: CallControls | None = None
    call_sid = ""
    api = TwilioConfig()

    @property
    def output_rate(self) -> int:
        return TWILIO_FORMAT.sample_rate

    async def clear_audio(self, generation: int) -> int:
        played = self.protocol.interrupt(generation)
        await self.flush()
        return played

    async def send_event(self, event: SessionEvent) -> None:
        match event:
            case CallEnded(reason=reason):
                log.info("twilio call %s ended: %s", self.protocol.stream_sid, reason)
            case TransferRequested(target=target) if self.session is not None:
                reason = await self.transfer(target)
                await self.session.transfer_result(not reason, reason)
            case Notice(code=code, message=message) if not code.startswith("ignored."):
                log.warning("twilio call %s: %s: %s", self.protocol.stream_sid, code, message)
            case MarkReached():
                pass  # an SSML mark: a phone line has no client to tell (Twilio's marks are ours)
            case _:
                pass  # the caller hears the call; there is no one to tell the rest

    async def transfer(self, target: str) -> str:
        """Redirect the call to ``target`` with Twilio's REST API: ``""`` when Twilio took it,
        else why not."""
        account, token = (
            os.environ.get("TWILIO_ACCOUNT_SID", ""),
            os.environ.get("TWILIO_AUTH_TOKEN", ""),
        )
        request = dial_request(self.api.api_base_url, account, token, self.call_sid, target)
        if not isinstance(request, DialRequest):
            log.warning("twilio call %s: no transfer: %s", self.call_sid, request)
            return request
        try:
            async with httpx.AsyncClient(timeout=self.api.api_timeout_s) as client:
                response = await client.post(
                    request.url, headers=request.headers, content=request.body
                )
        except httpx.TimeoutException:
            reason = "timeout"
        except httpx.HTTPError as error:
            reason = f"unreachable ({type(error).__name__})"
        else:
            reason = dial_outcome(response.status_code)
        log.info("twilio call %s: transfer %s", self.call_sid, reason or "accepted")
        return reason


async def twilio_call(
    ws: WebSocket,
    models: Models,
    responder: Callable[[], Responder],
    settings: SessionSettings,
    *,
    send_timeout: float = 10.0,
    open_timeout: float | None = None,
    api: TwilioConfig | None = None,
) -> None:
    """Serve one Twilio media stream until either side ends it (``open_timeout``: the seconds
    Twilio has to send ``start``; ``api``: how to reach Twilio's REST API for a transfer)."""
    protocol = TwilioProtocol()

    def transport(outgoing: Sender) -> WsTransport[TwilioEvent]:
        sink = TwilioSink(protocol, outgoing)
        if api is not None:
            sink.api = api

        async def handle(event: TwilioEvent, call: WsCall) -> bool:
            match event:
                case AudioFrame(pcm=pcm) if call.session is not None:
                    await call.session.push_audio(pcm)
                case StreamStarted(stream_sid=sid, call_sid=call_sid):
                    log.info("twilio stream %s (call %s) started", sid, call_sid)
                    session = sink.session = Session(models, responder(), sink, settings)
                    sink.call_sid = call_sid
                    call.start(session)
                case StreamStopped():
                    return False
                case Dtmf(digit=digit) if call.session is not None:
                    await call.session.dtmf(digit)  # checked by the protocol
                case PeerError(code=code, message=text):
                    log.warning("twilio stream: %s: %s", code, text)
                case _:
                    pass  # connected, played (the marks are the protocol's)
            return True

        def over() -> None:
            sink.session = None

        return WsTransport(protocol, sink.flush, handle, over=over)

    await serve_call(ws, transport, send_timeout=send_timeout, open_timeout=open_timeout)


def twilio_calls(api: TwilioConfig) -> Callable[..., Coroutine[Any, Any, None]]:
    """:func:`twilio_call` with the agent file's ``server.twilio`` (the server's adapter)."""

    async def adapter(
        ws: WebSocket,
        models: Models,
        responder: Callable[[], Responder],
        settings: SessionSettings,
        *,
        send_timeout: float = 10.0,
        open_timeout: float | None = None,
    ) -> None:
        await twilio_call(
            ws,
            models,
            responder,
            settings,
            send_timeout=send_timeout,
            open_timeout=open_timeout,
            api=api,
        )

    return adapter
