"""``/v1/stream``: the native WebSocket protocol, wired to a :class:`~agent.session.Session`.

The thin adapter over :class:`~transports.native.NativeProtocol` (which holds the protocol
logic), served by the WebSocket call loop (:func:`agent.ws_io.serve_call`): the session starts
with the client's ``hello`` and the client's ``bye`` ends its side; ``session.ended`` is the
last message.

Transfers: a client whose ``hello`` says ``"transfer": true`` gets ``transfer`` events and
answers each with ``transfer.result`` (the session's
:meth:`~agent.session.Session.transfer_result`); for any other client a transfer fails at
once (``unsupported``) and the agent says so. Digits the agent keys are a ``dtmf`` event
(``digits``) for the client to play or pass on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
from starlette.websockets import WebSocket

from agent.reply import Responder
from agent.room_calls import RoomCall, RoomService, join_room
from agent.rooms import RoomError
from agent.session import Models, Session, SessionSettings
from agent.session_control import CallControls
from agent.session_events import (
    AgentText,
    CallEnded,
    DigitsRequested,
    Interrupted,
    MarkReached,
    Notice,
    SessionEvent,
    TransferRequested,
    TurnLatency,
    UserSpeech,
    UserTranscript,
    UserTurn,
)
from agent.ws_io import Sender, WsCall, WsTransport, serve_call
from agent.ws_sink import ProtocolSink
from pipeline.events import AudioFrame
from transports.errors import LANGUAGE_WITHOUT_ROOM
from transports.native import (
    Bye,
    CommitRequest,
    Hello,
    InterruptRequest,
    Keys,
    NativeEvent,
    NativeProtocol,
    PeerError,
    Playback,
    TransferOutcome,
    UserText,
)

log = logging.getLogger("voxline.native")


class NativeSink(ProtocolSink[NativeProtocol]):
    """What the session says, in the native protocol."""

    #: the call's session, once it has started (a transfer's refusal goes back to it)
    session: CallControls | None = None
    #: digits go to the client as ``dtmf`` events (agent.session_events.DigitSink)
    keys_digits = True

    @property
    def output_rate(self) -> int:
        """The client's rate (known once its hello has arrived)."""
        assert self.protocol.format is not None
        return self.protocol.format.sample_rate

    async def clear_audio(self, generation: int) -> int | None:
        """The client's last ``playback`` report of ``generation`` (``None``: none came).

        `interrupted` (sent with the heard text) tells the client to drop its buffer.
        """
        return self.protocol.played(generation)

    async def send_event(self, event: SessionEvent) -> None:
        p = self.protocol
        match event:
            case UserSpeech(started=True, sample=sample):
                p.send_speech_started(sample)
            case UserSpeech(sample=sample):
                p.send_speech_stopped(sample)
            case UserTranscript():
                p.send_transcript(
                    event.utterance,
                    event.text,
                    final=event.final,
                    stable=event.stable,
                    unstable=event.unstable,
                    language=event.language,
                )
            case UserTurn(text=text, start=start, end=end, rule=rule, keypad=keypad):
                p.send_turn_ended(text, start, end, rule=rule, keypad=keypad)
            case AgentText(generation=generation, delta=delta):
                p.send_agent_text(generation, delta)
            case Interrupted(generation=generation, heard_text=heard, played_ms=ms, rule=rule):
                p.send_interrupted(
                    generation,
                    played_samples=round(ms * self.output_rate / 1000),
                    heard_text=heard,
                    rule=rule,
                )
            case MarkReached(generation=generation, name=name, at_ms=at_ms):
                p.send_mark(generation, name, at_ms)
            case TurnLatency(generation=generation, stages=stages):
                p.send_latency(generation, stages)
            case CallEnded(reason=reason):
                p.close(reason)
            case TransferRequested(target=target) if p.transfers:
                p.send_transfer(target)
            case TransferRequested() if self.session is not None:
                await self.session.transfer_result(False, "unsupported")
            case DigitsRequested(digits=digits):
                p.send_dtmf(digits)
            case Notice(code=code, message=message, rule=rule):
                p.send_error(code, message, rule=rule)
        await self.flush()


async def native_call(
    ws: WebSocket,
    models: Models,
    responder: Callable[[], Responder],
    settings: SessionSettings,
    *,
    send_timeout: float = 10.0,
    open_timeout: float | None = None,
    rooms: RoomService | None = None,
) -> None:
    """Serve one ``/v1/stream`` connection until either side ends it (``open_timeout``: the
    seconds the client has to send its ``hello``). ``?room=ID&language=xx`` joins a two-party
    room of an interpreter agent (``rooms``; :mod:`agent.rooms`)."""
    session_id = uuid.uuid4().hex
    protocol = NativeProtocol(session_id)
    room_id, language = ws.query_params.get("room"), ws.query_params.get("language")
    joined: list[RoomCall] = []

    def transport(outgoing: Sender) -> WsTransport[NativeEvent]:
        sink = NativeSink(protocol, outgoing)

        async def handle(event: NativeEvent, call: WsCall) -> bool:
            session = call.session
            match event:
                case AudioFrame(pcm=pcm) if session is not None:
                    await session.push_audio(pcm)
                case Hello() if room_id is None and language is not None:
                    protocol.send_error("bad_room", LANGUAGE_WITHOUT_ROOM)
                    protocol.close("refused")
                    return False
                case Hello() if room_id is not None:
                    try:
                        room = join_room(rooms, room_id, language, settings)
                    except RoomError as error:
                        protocol.send_error(error.code, str(error))
                        protocol.close("refused")
                        return False
                    joined.append(room)
                    started = sink.session = room.start(sink, session_id)
                    call.start(started)
                case Hello():
                    started = Session(models, responder(), sink, settings, session_id=session_id)
                    sink.session = started
                    call.start(started)
                case UserText(text=typed) if session is not None:
                    await session.user_text(typed)
                case InterruptRequest() if session is not None:
                    await session.interrupt()
                case CommitRequest() if session is not None:
                    await session.commit_turn()
                case TransferOutcome(ok=ok, reason=reason) if session is not None:
                    await session.transfer_result(ok, reason)
                case Keys(digits=digits) if session is not None:
                    for digit in digits:  # checked by the protocol
                        await session.dtmf(digit)
                case Bye():
                    return False
                case Playback():
                    pass  # the protocol keeps the position; clear_audio reports it at barge-in
                case (
                    PeerError()
                    | AudioFrame()
                    | UserText()
                    | InterruptRequest()
                    | CommitRequest()
                    | TransferOutcome()
                    | Keys()
                ):
                    pass
            return True

        def ended(session: Session) -> None:
            protocol.close(session.ended or "ended")  # session.ended is the last message

        def expired(seconds: float) -> None:
            protocol.send_error("hello_timeout", f"no hello within {seconds:g} s")

        def over() -> None:
            sink.session = None

        return WsTransport(protocol, sink.flush, handle, ended=ended, expired=expired, over=over)

    # a browser that offers a client secret as a subprotocol offers "voxline" beside it, and
    # must be answered with one it offered (agent/client_secrets.py)
    offered = ws.scope.get("subprotocols") or []
    try:
        await serve_call(
            ws,
            transport,
            send_timeout=send_timeout,
            open_timeout=open_timeout,
            subprotocol="voxline" if "voxline" in offered else None,
        )
    finally:
        if joined and rooms is not None:
            with anyio.CancelScope(shield=True):  # the other member hears the room close
                await rooms.leave(joined[0])
