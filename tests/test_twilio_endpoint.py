"""``/v1/telephony/twilio`` against the real server process, with a client that acts as Twilio.

The client sends Twilio's JSON messages, with μ-law 8 kHz media in 20 ms frames at real-time
pace, plays what it receives at real-time pace (in its head), echoes each mark once the audio
before it has played, and on ``clear`` drops its buffer and echoes the marks still pending at
once, as Twilio does.
"""

from __future__ import annotations

import base64
import json
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import pytest
import websockets

from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, resample, silence
from tests.server import RunningServer, running_server
from transports.g711 import pcm16_to_ulaw, ulaw_to_pcm16

RATE = 8000
FRAME = RATE // 50  # 20 ms: one byte a sample
SID = "MZ0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


def start_message() -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": SID,
            "start": {
                "accountSid": "AC0123",
                "streamSid": SID,
                "callSid": "CA0123",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"agent": "default"},
            },
        }
    )


class FakeTwilio:
    """Twilio's side of a media stream: a microphone, and a phone that plays what comes."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.mic: deque[bytes] = deque()  # μ-law frames to send before silence
        self.received: list[dict[str, Any]] = []
        self.audio = bytearray()  # all μ-law received
        self.clear_at: int | None = None  # len(audio) when the first clear came
        self.cleared = anyio.Event()
        self.closed = anyio.Event()
        self.heard_a_second = anyio.Event()
        self._media = anyio.Event()  # set (and replaced) at each media message
        self.echoed: list[str] = []
        self._playing_until = 0.0  # when what is buffered has played
        self._marks: deque[tuple[float, str]] = deque()
        self._timestamp = 0

    def say(self, pcm8k: np.ndarray[Any, Any]) -> None:
        data = pcm16_to_ulaw(pcm8k.astype("<i2").tobytes())
        self.mic.extend(data[i : i + FRAME] for i in range(0, len(data), FRAME))

    async def send_media(self) -> None:
        """20 ms of microphone every 20 ms, and the marks whose audio has played."""
        start = time.perf_counter()
        quiet = b"\xff" * FRAME
        for n in range(1_000_000):
            payload = self.mic.popleft() if self.mic else quiet
            media = {"track": "inbound", "timestamp": str(self._timestamp), "payload": ""}
            media["payload"] = base64.b64encode(payload).decode()
            try:
                await self.ws.send(json.dumps({"event": "media", "streamSid": SID, "media": media}))
                await self.echo_marks(time.perf_counter())
            except websockets.ConnectionClosed:
                return
            self._timestamp += 20
            await anyio.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))

    async def echo_marks(self, now: float) -> None:
        while self._marks and self._marks[0][0] <= now:
            _, name = self._marks.popleft()
            self.echoed.append(name)
            await self.ws.send(
                json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": name}})
            )

    async def receive(self) -> None:
        """Until the server closes the stream."""
        try:
            await self._receive()
        finally:
            self.closed.set()

    async def _receive(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            self.received.append(message)
            assert message["streamSid"] == SID
            now = time.perf_counter()
            match message["event"]:
                case "media":
                    payload = base64.b64decode(message["media"]["payload"])
                    self.audio.extend(payload)
                    if len(self.audio) >= RATE:
                        self.heard_a_second.set()
                    self._media.set()
                    self._media = anyio.Event()
                    self._playing_until = max(now, self._playing_until) + len(payload) / RATE
                case "mark":
                    due = max(now, self._playing_until)
                    self._marks.append((due, message["mark"]["name"]))
                case "clear":
                    self._playing_until = now
                    self._marks = deque((now, name) for _, name in self._marks)
                    await self.echo_marks(now)
                    if self.clear_at is None:
                        self.clear_at = len(self.audio)
                    self.cleared.set()

    async def audio_past(self, size: int) -> None:
        """Until more than ``size`` bytes of audio have come."""
        while len(self.audio) <= size:
            await self._media.wait()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["event"] == kind]


def transcribe(decoder: WhisperDecoder, mulaw: bytes) -> str:
    pcm = np.frombuffer(ulaw_to_pcm16(mulaw), dtype="<i2")
    audio = resample(pcm, RATE, 16000).astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


@pytest.mark.anyio
async def test_a_phone_call_barges_in_with_a_clear_and_gets_an_answer(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(45):
        async with websockets.connect(f"{server.ws}/v1/telephony/twilio") as ws:
            twilio = FakeTwilio(ws)
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0"}))
            await ws.send(start_message())
            async with anyio.create_task_group() as tg:
                tg.start_soon(twilio.send_media)
                tg.start_soon(twilio.receive)
                await twilio.heard_a_second.wait()  # of the greeting
                # The caller talks over the greeting and says goodbye: the bot stops (clear),
                # answers, and hangs up (the server closes the stream).
                twilio.say(
                    np.concatenate([espeak("Goodbye, thank you.", RATE), silence(1.0, RATE)])
                )
                await twilio.cleared.wait()
                await twilio.closed.wait()
                tg.cancel_scope.cancel()
    assert ws.close_code == 1000
    assert twilio.events("clear")
    marks = [m["mark"]["name"] for m in twilio.events("mark")]
    assert twilio.echoed
    assert set(twilio.echoed) <= set(marks)
    assert len(set(twilio.echoed)) == len(twilio.echoed)
    assert twilio.clear_at is not None
    greeting = transcribe(whisper_decoder, bytes(twilio.audio[: twilio.clear_at]))
    assert "this is" in greeting
    answer = transcribe(whisper_decoder, bytes(twilio.audio[twilio.clear_at :]))
    assert "goodbye" in answer or "bye" in answer


@pytest.mark.anyio
async def test_bad_messages_are_ignored_and_the_stream_goes_on(server: RunningServer) -> None:
    quiet = base64.b64encode(b"\xff" * FRAME).decode()
    media = json.dumps({"event": "media", "streamSid": SID, "media": {"payload": quiet}})
    bad: list[str | bytes] = [
        media,  # before start
        "{not json",
        json.dumps({"event": "no.such.event"}),
        b"\x00\x01",
        json.dumps({"event": "media", "media": {"payload": "!!"}}),
        "x" * (100 << 10),
    ]
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}/v1/telephony/twilio") as ws:
            for message in bad:
                await ws.send(message)
            await ws.send(start_message())
            for message in bad[2:]:
                await ws.send(message)
            await ws.send(media)
            reply = json.loads(await ws.recv())  # the greeting: the stream is up
            assert reply["event"] == "media"
            await ws.send(json.dumps({"event": "stop", "streamSid": SID}))
            with pytest.raises(websockets.ConnectionClosedOK):
                while True:
                    await ws.recv()
    log = "".join(server.log)
    for code in ("not_started", "bad_json", "unknown_event", "unexpected_binary", "bad_audio"):
        assert code in log
    assert "message_too_large" in log
