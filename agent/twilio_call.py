"""``/v1/telephony/twilio``: Twilio Media Streams, wired to a :class:`~agent.session.Session`.

The thin adapter over :class:`~transports.twilio.TwilioProtocol` (which holds the protocol
logic), served by the WebSocket call loop (:func:`agent.ws_io.serve_call`). The call starts
with Twilio's ``start`` message and ends with ``stop`` (or the socket closing); replies go
out as 8 kHz μ-law ``media`` with ``mark`` messages, and a barge-in sends ``clear``. What the
caller heard of an interrupted reply is the last mark Twilio echoed for it (at most one mark
interval early), never more than was sent. Twilio has no error message: bad input is logged
and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.websockets import WebSocket

from agent.reply import Responder
from agent.session import Models, Session, SessionSettings
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

log = logging.getLogger("voxline.twilio")


class TwilioSink(ProtocolSink[TwilioProtocol]):
    """What the session says, as Twilio media, marks and clears."""

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
            case TransferRequested(target=target):
                log.warning("twilio media streams cannot transfer (to %s)", target)
            case Notice(code=code, message=message) if not code.startswith("ignored."):
                log.warning("twilio call %s: %s: %s", self.protocol.stream_sid, code, message)
            case MarkReached():
                pass  # an SSML mark: a phone line has no client to tell (Twilio's marks are ours)
            case _:
                pass  # the caller hears the call; there is no one to tell the rest


async def twilio_call(
    ws: WebSocket,
    models: Models,
    responder: Callable[[], Responder],
    settings: SessionSettings,
    *,
    send_timeout: float = 10.0,
    open_timeout: float | None = None,
) -> None:
    """Serve one Twilio media stream until either side ends it (``open_timeout``: the seconds
    Twilio has to send ``start``)."""
    protocol = TwilioProtocol()

    def transport(outgoing: Sender) -> WsTransport[TwilioEvent]:
        sink = TwilioSink(protocol, outgoing)

        async def handle(event: TwilioEvent, call: WsCall) -> bool:
            match event:
                case AudioFrame(pcm=pcm) if call.session is not None:
                    await call.session.push_audio(pcm)
                case StreamStarted(stream_sid=sid, call_sid=call_sid):
                    log.info("twilio stream %s (call %s) started", sid, call_sid)
                    call.start(Session(models, responder(), sink, settings))
                case StreamStopped():
                    return False
                case Dtmf(digit=digit):
                    log.info("twilio stream %s: DTMF %s", protocol.stream_sid, digit)
                case PeerError(code=code, message=text):
                    log.warning("twilio stream: %s: %s", code, text)
                case _:
                    pass  # connected, played (the marks are the protocol's)
            return True

        return WsTransport(protocol, sink.flush, handle)

    await serve_call(ws, transport, send_timeout=send_timeout, open_timeout=open_timeout)
