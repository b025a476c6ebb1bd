"""The Realtime protocol's test helpers: the openai SDK's own event models, and a protocol
driven through them (every client event sent is an SDK client event; every server event queued
is validated against the SDK model of its type)."""

from __future__ import annotations

import base64
import json
import typing
from typing import Any

import numpy as np
import pytest

from transports.realtime import RealtimeProtocol

realtime_types = pytest.importorskip("openai.types.realtime")


def _models_by_type(union: Any) -> dict[str, Any]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}


SERVER_MODELS = _models_by_type(realtime_types.RealtimeServerEvent)
CLIENT_MODELS = _models_by_type(realtime_types.RealtimeClientEvent)


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


def client(protocol: RealtimeProtocol, event: dict[str, Any]) -> list[Any]:
    """Send ``event`` as the SDK would (it must be a valid SDK client event)."""
    CLIENT_MODELS[event["type"]].model_validate(event)
    return protocol.receive_text(json.dumps(event))


def server(protocol: RealtimeProtocol) -> list[dict[str, Any]]:
    """The queued server events, each validated against the SDK model of its type."""
    events = [json.loads(m) for m in protocol.data_to_send()]
    for event in events:
        SERVER_MODELS[event["type"]].model_validate(event)
        assert event["event_id"].startswith("event_")
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def fresh() -> RealtimeProtocol:
    protocol = RealtimeProtocol(id_seed="t")
    server(protocol)
    return protocol


def append(protocol: RealtimeProtocol, pcm: bytes) -> list[Any]:
    audio = base64.b64encode(pcm).decode()
    return client(protocol, {"type": "input_audio_buffer.append", "audio": audio})
