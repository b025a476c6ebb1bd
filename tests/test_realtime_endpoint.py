"""``/v1/realtime`` against the real server process: the official ``openai`` SDK as the client.

The SDK streams espeak-ng speech as base64 PCM16 at 24 kHz in real time, as an app would, and
holds a spoken exchange; the reply audio is checked by transcribing it. A plain ``websockets``
client sends what the SDK would never send (bad JSON, binary frames, oversized messages).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, resample, silence
from tests.server import RunningServer, running_server

RATE = 24000
CHUNK = RATE // 25  # 40 ms


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


class Events:
    """Everything the server sent, in order."""

    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self.connection = connection
        self.seen: list[Any] = []
        self.speaking = anyio.Event()  # the first reply audio came

    async def until(self, kind: str) -> Any:
        while True:
            event = await self.connection.recv()
            self.seen.append(event)
            if event.type == "response.output_audio.delta":
                self.speaking.set()
            if event.type == kind:
                return event

    def of(self, kind: str, response: str | None = None) -> list[Any]:
        return [
            e
            for e in self.seen
            if e.type == kind and response in (None, getattr(e, "response_id", None))
        ]

    def audio(self, response: str) -> bytes:
        deltas = self.of("response.output_audio.delta", response)
        return b"".join(base64.b64decode(e.delta) for e in deltas)


async def stream(connection: AsyncRealtimeConnection, pcm: np.ndarray[Any, Any]) -> None:
    """Append audio in 40 ms chunks at real-time pace."""
    data = pcm.astype("<i2").tobytes()
    start = time.perf_counter()
    for index, offset in enumerate(range(0, len(data), CHUNK * 2)):
        chunk = base64.b64encode(data[offset : offset + CHUNK * 2]).decode()
        await connection.input_audio_buffer.append(audio=chunk)
        await anyio.sleep(max(0.0, start + (index + 1) * 0.04 - time.perf_counter()))


def transcribe(decoder: WhisperDecoder, pcm24: bytes) -> str:
    samples = resample(np.frombuffer(pcm24, dtype="<i2"), RATE, 16000)
    audio = samples.astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


@pytest.mark.anyio
async def test_the_openai_sdk_holds_a_spoken_conversation(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:
            events = Events(connection)
            created = await events.until("session.created")
            assert created.session.audio.output.format.type == "audio/pcm"
            await connection.session.update(
                session={
                    "type": "realtime",
                    "instructions": "Be brief.",
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}
                        }
                    },
                }
            )
            updated = await events.until("session.updated")
            assert updated.session.instructions == "Be brief."
            assert updated.session.audio.input.turn_detection.silence_duration_ms == 500

            # An event the API does not have: an error event, and the call goes on.
            await connection.send_raw(json.dumps({"type": "no.such.event", "event_id": "e1"}))
            error = await events.until("error")
            assert (error.error.param, error.error.event_id) == ("type", "e1")

            # A question, answered; the caller talks over the answer (barge-in: it is cancelled,
            # and the caller says how much of it played), and that turn is answered in full.
            async def talk() -> None:
                await stream(
                    connection,
                    np.concatenate([espeak("What can you do?", RATE), silence(0.6, RATE)]),
                )
                await events.speaking.wait()
                speech = espeak("I would like to leave a message please.", RATE)
                await stream(
                    connection, np.concatenate([silence(0.5, RATE), speech, silence(1.0, RATE)])
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(talk)
                cut = await events.until("response.done")
                assert cut.response.status == "cancelled"
                assert cut.response.status_details.reason == "turn_detected"
                sent_ms = len(events.audio(cut.response.id)) // 2 * 1000 // RATE
                played_ms = sent_ms // 2  # the client had played half of what came
                item_id = cut.response.output[0].id
                await connection.conversation.item.truncate(
                    item_id=item_id, content_index=0, audio_end_ms=played_ms
                )
                truncated = await events.until("conversation.item.truncated")
                assert (truncated.item_id, truncated.audio_end_ms) == (item_id, played_ms)
                done = await events.until("response.done")
            assert done.response.status == "completed"
            for kind in (
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "response.created",
            ):
                assert len(events.of(kind)) == 2, kind
            assert events.of("conversation.item.input_audio_transcription.delta")
            heard = [
                e.transcript.lower()
                for e in events.of("conversation.item.input_audio_transcription.completed")
            ]
            assert "what can you do" in heard[0]
            assert "leave a message" in heard[1]
            deltas = events.of("response.output_audio_transcript.delta", done.response.id)
            said = "".join(e.delta for e in deltas)
            assert "who is the message from" in said.lower()
            assert "message" in transcribe(whisper_decoder, events.audio(done.response.id))

            # A response asked for with nothing to answer (the greeting), cancelled at once.
            await connection.response.create()
            await events.until("response.output_audio.delta")
            await connection.response.cancel()
            cancelled = await events.until("response.done")
            assert cancelled.response.status == "cancelled"
            assert cancelled.response.status_details.reason == "client_cancelled"


@pytest.mark.anyio
async def test_bad_input_gets_error_events_and_the_session_goes_on(server: RunningServer) -> None:
    bad: list[tuple[str | bytes, str]] = [
        ("{not json", "invalid_json"),
        (b"\x00\x01", "invalid_message"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "!!"}), "invalid_value"),
        (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
        (json.dumps({"type": "response.cancel"}), "response_cancel_not_active"),
        (json.dumps({"type": "conversation.item.truncate", "item_id": "x"}), "item_not_found"),
        (json.dumps({"type": "session.update", "session": {"type": "x"}}), "invalid_value"),
        ("x" * (5 << 20), "message_too_large"),
    ]
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}/v1/realtime", max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            for message, code in bad:
                await ws.send(message)
                event = json.loads(await ws.recv())
                assert (event["type"], event["error"]["code"]) == ("error", code), message[:40]
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            assert json.loads(await ws.recv())["type"] == "session.updated"
