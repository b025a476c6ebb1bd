"""Fuzz target for the Realtime paths the agent adds around the protocol: a client whose key may
not override the agent's instructions or tools (:class:`~agent.realtime_overrides.
LockedProtocol`, which reads some events before the protocol does), and the WebRTC data
channel's reader (agent/realtime_webrtc.py), which reads each message's ``type`` first and
commits the track's audio itself on ``input_audio_buffer.commit``.

The contract is the protocol's: peer input never raises, bad messages come back as
:class:`~transports.errors.PeerError` events, and every text frame queued is a JSON object.
"""

from __future__ import annotations

import json

from agent.realtime_overrides import LockedProtocol
from agent.realtime_webrtc import COMMIT
from agent.realtime_webrtc import _kind as data_channel_kind
from bench.fuzz.seeds import json_fields
from bench.fuzz.target import Target, check_json_frames, kind, split_frames, wire_text
from bench.fuzz.wire import realtime_seeds
from transports.errors import PeerError
from transports.realtime_inbound import CommitRequested, RealtimeEvent

__all__ = ["TARGETS"]


def realtime_locked(data: bytes) -> list[str]:
    """Frames as a locked WebSocket client sends them; a text frame that starts with ``~``
    comes on the WebRTC data channel instead."""
    protocol = LockedProtocol(id_seed="f")
    kinds: list[str] = []
    for frame in split_frames(data):
        text = wire_text(frame)
        events: list[RealtimeEvent]
        if frame[:1] == b"\x00":
            events = protocol.receive_bytes(frame[1:])
        elif text is None:
            events = protocol.receive_text(frame)
        elif text[:1] == "~" and data_channel_kind(text[1:]) == COMMIT:
            events = [CommitRequested(protocol.commit_input())]
        else:
            events = protocol.receive_text(text.removeprefix("~"))
        kinds += [kind("PeerError", e.code) for e in events if isinstance(e, PeerError)]
        check_json_frames(protocol.data_to_send())
    return kinds


def locked_seeds() -> list[bytes]:
    update = {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}
    return [
        json.dumps(update).encode(),
        b'~{"type":"input_audio_buffer.commit"}\n~{"type":"response.create"}',
        b'~{"type":5}\n~{"type":"input_audio_buffer.commit","x":' + b"[" * 5000 + b"]" * 5000,
        *json_fields("response.create", "response"),
        *realtime_seeds(),
    ]


TARGETS = (
    Target(
        "realtime_locked",
        "LockedProtocol and the data channel's reader: PeerError events, JSON replies",
        realtime_locked,
        locked_seeds,
    ),
)
