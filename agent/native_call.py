"""``/v1/stream``: the native WebSocket protocol, wired to a :class:`~agent.session.Session`.

This is the thin I/O adapter: :class:`~transports.native.NativeProtocol` holds the protocol
logic; here a reader task feeds it what the socket receives and a writer task sends what it
queues. Outgoing messages go through a bounded queue (256 messages): a client that stops
reading holds up its own session, never the server's memory, and is closed after
``send_timeout`` seconds of refusing to read.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.reply import Responder
from agent.session import (
    AgentText,
    CallEnded,
    CallSink,
    Interrupted,
    Models,
    Notice,
    Session,
    SessionEvent,
    SessionSettings,
    TransferRequested,
    TurnLatency,
    UserSpeech,
    UserTranscript,
)
from agent.ws_io import Message, Outbox, Sender, write_messages
from transports.audio import AudioIn
from transports.native import (
    Bye,
    CommitRequest,
    Hello,
    InterruptRequest,
    NativeProtocol,
    PeerError,
    Playback,
    UserText,
)

log = logging.getLogger("voxline.native")


class NativeSink(CallSink):
    """What the session says, in the native protocol."""

    def __init__(self, protocol: NativeProtocol, outgoing: Sender) -> None:
        self.protocol = protocol
        self._outbox = Outbox(protocol, outgoing)

    @property
    def output_rate(self) -> int:
        """The client's rate (known once its hello has arrived)."""
        assert self.protocol.format is not None
        return self.protocol.format.sample_rate

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        self.protocol.send_audio(generation, pcm, self.output_rate)
        await self.flush()

    async def end_audio(self, generation: int) -> None:
        self.protocol.end_audio(generation)
        await self.flush()

    async def clear_audio(self, generation: int) -> None:
        pass  # `interrupted` (sent with the heard text) tells the client to drop its buffer

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
                )
            case AgentText(generation=generation, delta=delta):
                p.send_agent_text(generation, delta)
            case Interrupted(generation=generation, heard_text=heard, played_ms=played_ms):
                p.send_interrupted(
                    generation,
                    played_samples=round(played_ms * self.output_rate / 1000),
                    heard_text=heard,
                )
            case TurnLatency(generation=generation, stages=stages):
                p.send_latency(generation, stages)
            case CallEnded(reason=reason):
                p.close(reason)
            case TransferRequested(target=target):
                p.send_error("transfer_unsupported", f"this transport cannot transfer to {target}")
            case Notice(code=code, message=message):
                p.send_error(code, message)
        await self.flush()

    async def flush(self) -> None:
        await self._outbox.flush()


async def native_call(
    ws: WebSocket,
    models: Models,
    responder: Callable[[], Responder],
    settings: SessionSettings,
    *,
    send_timeout: float = 10.0,
) -> None:
    """Serve one ``/v1/stream`` connection until either side ends it."""
    await ws.accept()
    session_id = uuid.uuid4().hex
    protocol = NativeProtocol(session_id)
    outgoing, pending = anyio.create_memory_object_stream[Message](256)
    sink = NativeSink(protocol, outgoing)
    flush = sink.flush
    session: Session | None = None

    async def run_session(call: Session, scope: anyio.CancelScope) -> None:
        try:
            await call.run()
        finally:
            protocol.close(call.ended or "ended")
            with anyio.move_on_after(send_timeout, shield=True):
                await flush()  # session.ended, queued behind what is left
            scope.cancel()  # stop reading: the call is over

    left = False
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_messages, ws, pending, send_timeout)
            async with anyio.create_task_group() as call:
                done = False
                while not done:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        left = True
                        break
                    if (text := message.get("text")) is not None:
                        events = protocol.receive_text(text)
                    else:
                        events = protocol.receive_bytes(message.get("bytes") or b"")
                    for event in events:
                        match event:
                            case AudioIn(pcm=pcm) if session is not None:
                                await session.push_audio(pcm)
                            case Hello():
                                session = Session(
                                    models, responder(), sink, settings, session_id=session_id
                                )
                                call.start_soon(run_session, session, call.cancel_scope)
                            case UserText(text=typed) if session is not None:
                                session.user_text(typed)
                            case InterruptRequest() if session is not None:
                                session.interrupt()
                            case CommitRequest() if session is not None:
                                await session.commit_turn()
                            case Bye():
                                done = True
                            case (
                                Playback()
                                | PeerError()
                                | AudioIn()
                                | UserText()
                                | InterruptRequest()
                                | CommitRequest()
                            ):
                                pass
                    await flush()
                if session is not None:
                    session.end_input()
            if left:
                tg.cancel_scope.cancel()
            outgoing.close()  # the writer sends what is left, then ends
        if not left:
            ended = session.ended if session is not None else None
            await ws.close(1000, ended or "ended")
    except* (WebSocketDisconnect, TimeoutError, anyio.BrokenResourceError):
        pass  # the client left, or stopped reading: the session is over either way
    finally:
        outgoing.close()
