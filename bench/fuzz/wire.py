"""Fuzz targets for what arrives on a socket: the native, Realtime and Twilio protocols, and
the WebRTC offer.

An input is a sequence of WebSocket frames (split at newlines): a frame that starts with NUL,
or that is not valid UTF-8, goes in as a binary frame, any other as a text frame. The
protocols' contract ("their error"): peer input never raises; a bad message comes back as a
:class:`~transports.errors.PeerError` event, and every text frame the protocol queues in
answer is a JSON object. The harness plays a minimal session: it answers a ``hello``/``start``
with a little audio and every ``response.create`` with a response, so the messages that refer
to audio already sent (playback reports, marks, truncation) meet real state.
"""

from __future__ import annotations

import base64
import json

from bench.fuzz.seeds import json_fields, json_values, text_values
from bench.fuzz.target import Target, check_json_frames, kind, split_frames, wire_text
from transports.errors import PeerError
from transports.native import Hello, NativeProtocol
from transports.realtime import RealtimeProtocol
from transports.realtime_inbound import ResponseRequested
from transports.realtime_transcription import TranscriptionProtocol
from transports.twilio import StreamStarted, TwilioProtocol

__all__ = ["TARGETS"]

_PCM = bytes(640)  # 20 ms of 16 kHz silence


def _peer_errors(events: object) -> list[str]:
    assert isinstance(events, list)
    return [kind("PeerError", event.code) for event in events if isinstance(event, PeerError)]


def _lines(*messages: object) -> bytes:
    return b"\n".join(json.dumps(m).encode() for m in messages)


# -- native (/v1/stream) ----------------------------------------------------------------------

_HELLO = {"type": "hello", "sample_rate": 16000, "encoding": "pcm16"}


def native(data: bytes) -> list[str]:
    protocol = NativeProtocol("fuzz", max_frame_bytes=4096, max_text_chars=64 * 1024)
    kinds: list[str] = []
    for frame in split_frames(data):
        text = wire_text(frame)
        if text is None:
            events = protocol.receive_bytes(frame[1:] if frame[:1] == b"\x00" else frame)
        else:
            events = protocol.receive_text(text)
        kinds += _peer_errors(events)
        if any(isinstance(event, Hello) for event in events):  # a reply the client can report on
            protocol.send_audio(1, _PCM, 16000)
            protocol.end_audio(1)
        check_json_frames(protocol.data_to_send())
    return kinds


def native_seeds() -> list[bytes]:
    hello = json.dumps(_HELLO).encode()
    return [
        _lines(
            _HELLO,
            {"type": "text", "text": "hello"},
            {"type": "playback", "generation": 1, "samples": 160},
            {"type": "dtmf", "digits": "12#"},
            {"type": "interrupt"},
            {"type": "commit"},
            {"type": "transfer.result", "ok": True},
            {"type": "bye", "reason": "done"},
        ),
        hello + b"\n\x00" + bytes(320) + b"\n\x00\x01",
        _lines({**_HELLO, "encoding": "mulaw", "sample_rate": 8000, "transfer": True}),
        *(hello + b"\n" + value for value in json_values()),
        *(hello + b"\n" + value for value in json_fields("text", "text")),
        *(hello + b"\n" + value for value in json_fields("playback", "samples")),
        *json_fields("hello", "sample_rate"),
        *text_values(),
    ]


# -- Realtime (/v1/realtime) ------------------------------------------------------------------


def realtime(data: bytes) -> list[str]:
    protocol = RealtimeProtocol(id_seed="f")
    kinds: list[str] = []
    generation = 0
    for frame in split_frames(data):
        text = wire_text(frame)
        events = protocol.receive_bytes(frame[1:]) if frame[:1] == b"\x00" else None
        if events is None:
            events = protocol.receive_text(frame if text is None else text)
        kinds += _peer_errors(events)
        for event in events:
            if isinstance(event, ResponseRequested):
                generation += 1
                protocol.start_response(generation, event.params)
                protocol.send_text(generation, "Hi")
                protocol.send_audio(generation, _PCM, 16000)
        check_json_frames(protocol.data_to_send())
    for active in range(1, generation + 1):
        protocol.end_response(active)
    check_json_frames(protocol.data_to_send())
    return kinds


def _append(pcm: bytes) -> dict[str, str]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}


def realtime_seeds() -> list[bytes]:
    session = {
        "type": "realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
            "output": {"voice": "joe", "speed": 1.2},
        },
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    }
    message = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    return [
        _lines(
            {"type": "session.update", "event_id": "e1", "session": session},
            _append(bytes(960)),
            {"type": "input_audio_buffer.commit"},
            {"type": "conversation.item.create", "item": message},
            {"type": "response.create", "response": {"output_modalities": ["text"]}},
            {
                "type": "conversation.item.truncate",
                "item_id": "x",
                "content_index": 0,
                "audio_end_ms": 10,
            },
            {"type": "response.cancel"},
            {"type": "output_audio_buffer.clear"},
            {"type": "conversation.item.retrieve", "item_id": "x"},
            {"type": "conversation.item.delete", "item_id": "x"},
            {"type": "input_audio_buffer.clear"},
        ),
        _lines({"type": "response.create"}, {"type": "response.create"}),
        *json_values(),
        *json_fields("session.update", "session"),
        *json_fields("input_audio_buffer.append", "audio"),
        *json_fields("conversation.item.create", "item"),
        *text_values(),
    ]


def transcription(data: bytes) -> list[str]:
    protocol = TranscriptionProtocol(id_seed="f")
    kinds: list[str] = []
    for frame in split_frames(data):
        text = wire_text(frame)
        if frame[:1] == b"\x00":
            events = protocol.receive_bytes(frame[1:])
        else:
            events = protocol.receive_text(frame if text is None else text)
        kinds += _peer_errors(events)
        check_json_frames(protocol.data_to_send())
        check_json_frames(protocol.input.data_to_send())
    return kinds


def transcription_seeds() -> list[bytes]:
    session = {
        "type": "transcription",
        "audio": {"input": {"transcription": {"model": "voxline", "language": "en"}}},
    }
    return [
        _lines(
            {"type": "session.update", "session": session},
            {"type": "transcription_session.update", "session": {"input_audio_format": "pcm16"}},
            _append(bytes(960)),
            {"type": "input_audio_buffer.commit"},
        ),
        *json_fields("session.update", "session"),
        *json_fields("transcription_session.update", "session"),
        *json_values(),
    ]


# -- Twilio media streams ---------------------------------------------------------------------


def twilio(data: bytes) -> list[str]:
    protocol = TwilioProtocol()
    kinds: list[str] = []
    for frame in split_frames(data):
        text = wire_text(frame)
        events = protocol.receive_bytes(frame) if text is None else protocol.receive_text(text)
        kinds += _peer_errors(events)
        if any(isinstance(event, StreamStarted) for event in events):
            protocol.send_audio(1, _PCM * 20, 16000)  # marks for the fuzzed ones to meet
            protocol.end_audio(1)
        check_json_frames(protocol.data_to_send())
    return kinds


def twilio_seeds() -> list[bytes]:
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {
            "streamSid": "MZ1",
            "accountSid": "AC1",
            "callSid": "CA1",
            "tracks": ["inbound"],
            "customParameters": {"agent": "default"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    media = {
        "event": "media",
        "streamSid": "MZ1",
        "media": {
            "track": "inbound",
            "chunk": "2",
            "timestamp": "20",
            "payload": base64.b64encode(bytes(160)).decode(),
        },
    }
    return [
        _lines(
            {"event": "connected", "protocol": "Call", "version": "1.0.0"},
            start,
            media,
            {"event": "mark", "streamSid": "MZ1", "mark": {"name": "1:1"}},
            {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "5"}},
            {"event": "stop", "streamSid": "MZ1", "stop": {"callSid": "CA1"}},
        ),
        *(_lines(start) + b"\n" + value for value in json_fields("media", "media", "event")),
        *json_fields("start", "start", "event"),
        *json_values(),
    ]


TARGETS = (
    Target("native", "NativeProtocol: PeerError events, JSON replies", native, native_seeds),
    Target(
        "realtime", "RealtimeProtocol: PeerError events, JSON replies", realtime, realtime_seeds
    ),
    Target(
        "realtime_transcription",
        "TranscriptionProtocol: PeerError events, JSON replies",
        transcription,
        transcription_seeds,
    ),
    Target("twilio", "TwilioProtocol: PeerError events, JSON replies", twilio, twilio_seeds),
)
