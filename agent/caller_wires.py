"""What a simulated caller (:mod:`agent.caller`) says and hears, per protocol.

A :class:`Wire` is the protocol half of a caller: the endpoint and the audio rate, the messages
that open and close a call, how a frame of audio is sent, and how each message received is
turned into the caller's records (:meth:`~agent.caller.Caller.heard_audio`,
:meth:`~agent.caller.Caller.heard_event`, its replies). Message shapes are those of
docs/protocol.md, built server-side by transports/native.py and transports/realtime*.py.

=========================  =============================  =======================================
record                     native ``/v1/stream``          ``/v1/realtime``
=========================  =============================  =======================================
session open               ``session.started``            ``session.created``
a reply starts             ``audio.start``                ``response.created`` (numbered 1, 2, …)
reply audio                binary frames                  ``response.output_audio.delta``
reply text                 ``agent.text``                 ``response.output_audio_transcript.delta``
reply over                 ``audio.end``                  ``response.done``
reply interrupted          ``interrupted``                ``response.done``, status ``cancelled``
stop playing (barge-in)    ``interrupted``                ``input_audio_buffer.speech_started``
server latency breakdown   ``turn.latency``               (none)
call over                  ``session.ended``              (the socket closes)
=========================  =============================  =======================================
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.events import PIPELINE_RATE

if TYPE_CHECKING:
    from agent.caller import Caller

__all__ = ["NATIVE_RATE", "REALTIME_RATE", "NativeWire", "RealtimeWire", "Wire"]

NATIVE_RATE = PIPELINE_RATE  # what the pipeline runs at: nothing to resample
REALTIME_RATE = 24000  # `audio/pcm` in the Realtime API


class Wire(Protocol):
    path: str
    rate: int
    greets: bool  # the server may speak first (a greeting) once the session is open

    def opening(self) -> list[str]: ...

    def closing(self) -> list[str]: ...

    def audio(self, chunk: bytes) -> str | bytes: ...

    def receive(self, caller: Caller, message: str | bytes, now: float) -> None: ...


class NativeWire:
    """``/v1/stream``: PCM16 at 16 kHz in binary frames, JSON events in text frames."""

    path = "/v1/stream"
    rate = NATIVE_RATE
    greets = True

    def opening(self) -> list[str]:
        return [json.dumps({"type": "hello", "sample_rate": self.rate})]

    def closing(self) -> list[str]:
        return [json.dumps({"type": "bye"})]

    def audio(self, chunk: bytes) -> bytes:
        return chunk

    def receive(self, caller: Caller, message: str | bytes, now: float) -> None:
        if isinstance(message, bytes):
            caller.heard_audio(message, now)
            return
        event: dict[str, Any] = json.loads(message)
        caller.heard_event(event, now)
        match event["type"]:
            case "session.started":
                caller.started = True
            case "audio.start":
                caller.current = event["generation"]
                caller.reply(caller.current)
            case "audio.end":
                caller.reply(event["generation"]).ended = now
            case "agent.text":
                caller.reply(event["generation"]).text += event["delta"]
            case "interrupted":
                reply = caller.reply(event["generation"])
                reply.interrupted, reply.interruption = now, event
                caller.stop_playing()
            case "turn.latency":
                caller.reply(event["generation"]).latency = event["latency_ms"]
            case "session.ended":
                caller.closed = True


class RealtimeWire:
    """``/v1/realtime``: JSON events only, audio as base64 PCM16 at 24 kHz, server VAD."""

    path = "/v1/realtime"
    rate = REALTIME_RATE
    greets = False  # a Realtime session waits for the client (response.create) to speak first

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}  # response id -> generation

    def opening(self) -> list[str]:
        return []  # the server speaks first (session.created); its defaults suit a caller

    def closing(self) -> list[str]:
        return []

    def audio(self, chunk: bytes) -> str:
        encoded = base64.b64encode(chunk).decode()
        return json.dumps({"type": "input_audio_buffer.append", "audio": encoded})

    def receive(self, caller: Caller, message: str | bytes, now: float) -> None:
        if isinstance(message, bytes):
            return  # the protocol has no binary frames
        event: dict[str, Any] = json.loads(message)
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            generation = self._generations.get(event.get("response_id", ""))
            if generation is not None:
                caller.current = generation
                caller.heard_audio(base64.b64decode(event["delta"]), now)
            return  # not kept among the events: it is the audio
        caller.heard_event(event, now)
        match kind:
            case "session.created":
                caller.started = True
            case "response.created":
                generation = len(self._generations) + 1
                self._generations[event["response"]["id"]] = generation
                caller.reply(generation)
            case "response.output_audio_transcript.delta":
                generation = self._generations.get(event.get("response_id", ""))
                if generation is not None:
                    caller.reply(generation).text += event["delta"]
            case "response.done":
                response = event["response"]
                generation = self._generations.get(response["id"])
                if generation is not None:
                    reply = caller.reply(generation)
                    reply.ended = now
                    if response.get("status") == "cancelled":
                        reply.interrupted, reply.interruption = now, event
            case "input_audio_buffer.speech_started":
                caller.stop_playing()
