"""The real server process: health checks and the placeholder call over a real WebSocket."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx
import pytest
import websockets

from tests.server import RunningServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


def test_health_endpoints_answer(server: RunningServer) -> None:
    assert httpx.get(f"{server.http}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{server.http}/health/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


@pytest.mark.anyio
async def test_a_call_hears_a_tone_at_its_own_rate(server: RunningServer) -> None:
    with anyio.fail_after(20):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            await ws.send(json.dumps({"type": "hello", "sample_rate": 8000}))
            started = json.loads(await ws.recv())
            assert started["type"] == "session.started"
            await ws.send(b"\x00\x01" * 160)
            audio = [await ws.recv() for _ in range(5)]
    assert all(isinstance(a, bytes) and len(a) == 320 for a in audio)  # 20 ms at 8 kHz


@pytest.mark.anyio
async def test_bad_messages_get_errors_and_the_call_goes_on(server: RunningServer) -> None:
    with anyio.fail_after(20):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            await ws.send(b"\x00\x00")
            assert json.loads(await ws.recv())["code"] == "audio_before_hello"
            await ws.send("{not json")
            assert json.loads(await ws.recv())["code"] == "bad_hello"
            await ws.send(json.dumps({"type": "hello", "sample_rate": 1000}))
            assert json.loads(await ws.recv())["code"] == "bad_hello"
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            assert json.loads(await ws.recv())["type"] == "session.started"
            await ws.send(b"\x00")  # odd byte count
            while isinstance(message := await ws.recv(), bytes):
                pass
            assert json.loads(message)["code"] == "bad_audio"
