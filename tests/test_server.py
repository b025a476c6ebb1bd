"""The real server process and a real `websockets` client: a spoken call over /v1/stream.

The client streams espeak-ng speech in 20 ms frames at real-time pace, as a phone or a browser
would, and records everything the server sends. The reply audio is checked by transcribing it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import websockets

from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, silence
from tests.server import RunningServer, running_server

RATE = 16000
FRAME = RATE // 50  # 20 ms


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


def test_health_endpoints_answer(server: RunningServer) -> None:
    assert httpx.get(f"{server.http}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{server.http}/health/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


class Call:
    """A client: everything received, split into events and audio per generation."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.audio: dict[int, bytearray] = {}
        #: the generation whose audio is arriving
        self.generation = 0

    async def receive_until(self, done: Any) -> dict[str, Any]:
        while True:
            event = await self.receive()
            if event is not None and done(event):
                return event

    async def receive_audio(self, generation: int, size: int) -> None:
        """Until ``size`` bytes of ``generation``'s audio have arrived."""
        while len(self.audio.get(generation, b"")) < size:
            await self.receive()

    async def receive(self) -> dict[str, Any] | None:
        """One message: the event, or ``None`` for audio."""
        message = await self.ws.recv()
        if isinstance(message, bytes):
            self.audio.setdefault(self.generation, bytearray()).extend(message)
            return None
        event: dict[str, Any] = json.loads(message)
        self.events.append(event)
        if event["type"] == "audio.start":
            self.generation = event["generation"]
        return event

    async def stream(self, pcm: np.ndarray[Any, Any]) -> None:
        """Send audio in 20 ms frames at real-time pace."""
        data = pcm.astype("<i2").tobytes()
        start = time.perf_counter()
        for index, offset in enumerate(range(0, len(data), FRAME * 2)):
            await self.ws.send(data[offset : offset + FRAME * 2])
            await anyio.sleep(max(0.0, start + (index + 1) * 0.02 - time.perf_counter()))


def heard(decoder: WhisperDecoder, pcm: bytes) -> str:
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


@pytest.mark.anyio
async def test_a_spoken_call_gets_transcripts_and_a_spoken_answer(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(90):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            started = await call.receive_until(lambda e: e["type"] == "session.started")
            assert started["session_id"]
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            async with anyio.create_task_group() as tg:
                speech = np.concatenate([espeak("What can you do?"), silence(1.5)])
                tg.start_soon(call.stream, speech)
                latency = await call.receive_until(lambda e: e["type"] == "turn.latency")
                end = await call.receive_until(lambda e: e["type"] == "audio.end")
            await ws.send(json.dumps({"type": "bye"}))
    types = [e["type"] for e in call.events]
    assert "speech.started" in types
    finals = [e["text"].lower() for e in call.events if e["type"] == "transcript.final"]
    assert any("what can you do" in text for text in finals)
    agent = "".join(e["delta"] for e in call.events if e["type"] == "agent.text")
    assert "take a message" in agent  # the default agent's `help` reply
    assert latency["latency_ms"]["total"] > 0
    reply = heard(whisper_decoder, bytes(call.audio[end["generation"]]))
    assert "message" in reply


@pytest.mark.anyio
async def test_a_commit_ends_the_turn_without_trailing_silence(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    """Push-to-talk: speech, then ``commit`` and no more audio at all."""
    with anyio.fail_after(90):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            await call.stream(espeak("What can you do?"))
            await ws.send(json.dumps({"type": "commit"}))
            final = await call.receive_until(lambda e: e["type"] == "transcript.final")
            end = await call.receive_until(lambda e: e["type"] == "audio.end")
            await ws.send(json.dumps({"type": "bye"}))
    assert "what can you do" in final["text"].lower()
    assert "message" in heard(whisper_decoder, bytes(call.audio[end["generation"]]))


@pytest.mark.anyio
async def test_bad_messages_get_errors_and_the_call_goes_on(server: RunningServer) -> None:
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(b"\x00\x00")
            assert (await call.receive_until(lambda e: True))["code"] == "hello_required"
            await ws.send("{not json")
            assert (await call.receive_until(lambda e: True))["type"] == "error"
            await ws.send(json.dumps({"type": "hello", "sample_rate": 1000}))
            assert (await call.receive_until(lambda e: True))["code"] == "bad_hello"
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "session.started")
            await ws.send(b"\x00")  # odd byte count
            await call.receive_until(lambda e: e["type"] == "error")
            await ws.send(json.dumps({"type": "no.such.thing"}))
            error = await call.receive_until(lambda e: e["type"] == "error")
            assert error["code"] == "unknown_type"
            await ws.send(json.dumps({"type": "bye"}))


@pytest.mark.anyio
async def test_a_barge_in_keeps_what_the_client_reported_it_played(
    server: RunningServer,
) -> None:
    """The client plays the greeting late (its own buffer): it reports 0.8 s played when it has
    received 1.5 s, then talks over it. The heard text is the reported 0.8 s, not what was sent.
    """
    reported = round(0.8 * RATE)
    with anyio.fail_after(60):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "session.started")
            async with anyio.create_task_group() as tg:
                speech = [silence(2.0), espeak("What can you do?"), silence(1.5)]
                tg.start_soon(call.stream, np.concatenate(speech))
                start = await call.receive_until(lambda e: e["type"] == "audio.start")
                greeting = start["generation"]
                await call.receive_audio(greeting, 2 * round(1.5 * RATE))
                playback = {"type": "playback", "generation": greeting, "samples": reported}
                await ws.send(json.dumps(playback))
                interrupted = await call.receive_until(lambda e: e["type"] == "interrupted")
                sent = len(call.audio[greeting]) // 2
                tg.cancel_scope.cancel()
            await ws.send(json.dumps({"type": "bye"}))
    assert interrupted["generation"] == greeting
    assert interrupted["played_ms"] == 800
    said = "".join(
        e["delta"] for e in call.events if e["type"] == "agent.text" and e["generation"] == greeting
    )
    heard = interrupted["heard_text"]
    assert sent > 2 * reported  # the server's estimate would have kept more
    assert heard
    assert said.startswith(heard)
    assert len(heard) < len(said)
    assert "message" not in heard  # "Hi, this is Voxline. You can leave a message, ..."


async def wait_for_no_sessions(server: RunningServer) -> None:
    """Poll readiness until the server has closed every session (bounded by the caller)."""
    async with httpx.AsyncClient() as client:
        # another process's state: nothing to wait on but its answers
        while (await client.get(f"{server.http}/health/ready")).json()["sessions"]:  # noqa: ASYNC110
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_a_client_that_vanishes_mid_reply_leaves_nothing_behind(
    server: RunningServer,
) -> None:
    with anyio.fail_after(60):
        ws = await websockets.connect(f"{server.ws}/v1/stream")
        call = Call(ws)
        await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
        await call.receive_until(lambda e: e["type"] == "audio.start")  # the greeting plays
        ws.transport.abort()  # no close frame: the connection just drops
        await wait_for_no_sessions(server)
        # the server goes on serving calls
        async with websockets.connect(f"{server.ws}/v1/stream") as again:
            second = Call(again)
            await again.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await second.receive_until(lambda e: e["type"] == "audio.end")
            await again.send(json.dumps({"type": "bye"}))
        await wait_for_no_sessions(server)
    assert server.process.poll() is None
