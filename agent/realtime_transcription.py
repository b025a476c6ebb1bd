"""``/v1/realtime?intent=transcription``: Realtime transcription sessions, wired to a
:class:`~agent.session.Session` that never answers.

The thin adapter over :class:`~transports.realtime_transcription.TranscriptionProtocol`. The
call is an ordinary session (VAD, streaming ASR, turn-taking) with no dialogue and no speech:
its responder says nothing (:class:`Silent`), ``answer_turns`` and the greeting are off and
barge-in with them, so no reply is ever made and nothing is synthesised. Its input side is the
realtime one: :class:`~agent.realtime_call.RealtimeSink` on the protocol's
:attr:`~transports.realtime_transcription.TranscriptionProtocol.input` turns the session's
events into ``speech_started``/``stopped``, ``committed`` + the user item, the transcription
``delta`` events (the stable extension of each partial: append-only; a revised partial sends
nothing, and ``completed`` carries the final text) and ``completed``; the client's commit,
clear and turn detection are applied there too.

``language``, ``prompt`` and ``keywords`` reach every decode
(:class:`~agent.session_decoding.SessionDecoding`, in front of the shared ASR executor): language
``None`` is the agent's ASR language; the prompt and the keywords replace the agent's
``initial_prompt`` and ``hotwords`` while they are set. Every accepted model name
(:func:`accepted_models`) is served by the profile's Whisper.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Literal

import msgspec
from starlette.websockets import WebSocket

from agent.realtime_call import RealtimeSink
from agent.reply import ReplyPart, Responder
from agent.session import Models, Session, SessionSettings
from agent.session_decoding import SessionDecoding
from agent.session_events import SessionEvent
from agent.turns import TurnConfig
from agent.ws_io import Outbox, Sender, WsCall, WsTransport, serve_call
from transports.realtime_caps import MAX_MESSAGE_BYTES
from transports.realtime_transcription import (
    TranscriptionChanged,
    TranscriptionEvent,
    TranscriptionProtocol,
    default_detection,
)
from transports.realtime_transcription_events import OPENAI_TRANSCRIPTION_MODELS

__all__ = [
    "Silent",
    "TranscriptionSink",
    "accepted_models",
    "transcription_call",
]

log = logging.getLogger("voxline.realtime")


def accepted_models(asr_model: str) -> tuple[str, ...]:
    """The ``transcription.model`` names a session may take: ``voxline``, the profile's ASR
    model (``base``, ``large-v3``, ...) and OpenAI's; all of them are the profile's Whisper."""
    return tuple(dict.fromkeys(("voxline", asr_model, *OPENAI_TRANSCRIPTION_MODELS)))


class Silent:
    """A :class:`~agent.reply.Responder` that never says anything (it is never asked: the
    session answers no turn and does not greet)."""

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        return
        yield

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        return
        yield

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        return
        yield

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        pass


class _Queue:
    """A :class:`~agent.ws_io.Sender` that puts the input side's messages in the protocol's
    one ordered queue (it never waits)."""

    def __init__(self, protocol: TranscriptionProtocol) -> None:
        self.protocol = protocol

    async def send(self, item: str | bytes, /) -> None:
        assert isinstance(item, str)
        self.protocol.queue(item)


class TranscriptionSink:
    """The session's events as transcription server events (the realtime sink's input side);
    no reply ever plays, so the audio side is empty."""

    def __init__(self, protocol: TranscriptionProtocol, outgoing: Sender, base: TurnConfig) -> None:
        self.protocol = protocol
        # nothing is ever said, so no idle prompt; captions go on through any silence (a
        # meeting's pause): no idle hang-up either, only the agent's max_call_ms
        captions = msgspec.structs.replace(base, idle_timeout_ms=0)
        self.realtime = RealtimeSink(protocol.input, _Queue(protocol), captions)
        self._outbox = Outbox(protocol, outgoing)

    @property
    def output_rate(self) -> int:
        return self.realtime.output_rate

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        pass  # no replies in a transcription session

    async def end_audio(self, generation: int) -> None:
        pass

    async def clear_audio(self, generation: int) -> int | None:
        return None

    async def send_event(self, event: SessionEvent) -> None:
        await self.realtime.send_event(event)
        await self.flush()

    async def handle(self, event: TranscriptionEvent, decoding: SessionDecoding) -> None:
        if isinstance(event, TranscriptionChanged):
            decoding.set(event.language, event.prompt, event.keywords)
        else:
            await self.realtime.handle(event)

    async def flush(self) -> None:
        await self.realtime.flush()
        await self._outbox.flush()


async def transcription_call(
    ws: WebSocket,
    models: Models,
    responder: Callable[[], Responder],
    settings: SessionSettings,
    *,
    send_timeout: float = 10.0,
    open_timeout: float | None = None,
    asr_model: str = "base",
) -> None:
    """Serve one transcription connection until the client closes it (the agent's dialogue,
    ``responder``, is not used)."""
    session_id = uuid.uuid4().hex
    protocol = TranscriptionProtocol(
        models=accepted_models(asr_model),
        detection=default_detection(settings.turns.end_of_turn_silence_ms),
        id_seed=session_id[:12],
    )

    def transport(outgoing: Sender) -> WsTransport[TranscriptionEvent]:
        sink = TranscriptionSink(protocol, outgoing, settings.turns)
        decoding = SessionDecoding(models.asr, settings.asr)
        turns, answer = sink.realtime.turns
        assert not answer  # the input side never creates responses
        call_settings = dataclasses.replace(
            settings, turns=turns, answer_turns=False, greeting=False, translation=None
        )
        session_models = dataclasses.replace(models, asr=decoding)
        session = sink.realtime.session = Session(
            session_models, Silent(), sink, call_settings, session_id=session_id
        )

        async def opened(call: WsCall) -> None:
            call.start(session)  # with the connection; session.created goes out first

        async def handle(event: TranscriptionEvent, call: WsCall) -> bool:
            await sink.handle(event, decoding)
            return True  # the client closes the socket

        def ended(_: Session) -> None:
            protocol.close()

        def over() -> None:
            sink.realtime.session = None

        return WsTransport(protocol, sink.flush, handle, ended=ended, opened=opened, over=over)

    offered = ws.scope.get("subprotocols") or []
    await serve_call(
        ws,
        transport,
        send_timeout=send_timeout,
        open_timeout=open_timeout,
        subprotocol="realtime" if "realtime" in offered else None,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )
