"""Realtime transcription sessions against the real server process (``/v1/realtime
?intent=transcription``): the official ``openai`` SDK as the client (``extra_query`` carries
the intent), espeak-ng speech streamed at real-time pace, every server event validated against
the SDK's model of its type; a plain ``websockets`` client for the beta API's update."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequestParam as Session

from agent.realtime_transcription import TranscriptionSink
from agent.session_decoding import SessionDecoding
from agent.session_events import UserSpeech, UserTranscript, UserTurn, UserTurnStarted
from agent.turns import TurnConfig
from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest
from pipeline.executor import ModelExecutor
from tests.audio import espeak, silence
from tests.server import RunningServer, running_server
from tests.test_realtime_endpoint import RATE, stream
from tests.transports.realtime_support import SERVER_MODELS
from transports.realtime_transcription import TranscriptionProtocol

INTENT = {"intent": "transcription"}
#: what Whisper base hears best of espeak-ng's French (at 120 words a minute)
FRENCH = "Bonjour, je voudrais réserver une table pour deux personnes ce soir."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop; the client's loop does not matter: run once."""
    return ("asyncio", {})


class Events:
    """Everything the server sent, in order, each event validated against the SDK."""

    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            event: dict[str, Any] = json.loads(await self.connection.recv_bytes())
            SERVER_MODELS[event["type"]].model_validate(event)
            self.seen.append(event)
            if event["type"] == kind:
                return event

    async def settled(self) -> None:
        """Everything the server sent so far has been read (a session.update's answer
        comes after it)."""
        await self.connection.session.update(session={"type": "transcription"})
        await self.until("session.updated")

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["type"] == kind]

    def responses(self) -> list[str]:
        return [e["type"] for e in self.seen if e["type"].startswith(("response.", "output_"))]


def client(server: RunningServer) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")


@pytest.mark.anyio
async def test_the_sdk_gets_live_captions_and_never_a_response(server: RunningServer) -> None:
    speech = espeak("Please send the quarterly report to the finance team before Friday.", RATE)
    with anyio.fail_after(60):
        async with client(server).realtime.connect(extra_query=INTENT) as connection:
            events = Events(connection)
            created = await events.until("session.created")
            assert created["session"]["type"] == "transcription"
            assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"

            # What Voxline cannot do is an error naming the field; the session goes on.
            languages: Session = {
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "whisper-1", "languages": ["fr"]}}},
            }
            await connection.session.update(session=languages, event_id="u1")
            error = await events.until("error")
            assert error["error"]["param"] == "session.audio.input.transcription.languages"
            assert error["error"]["event_id"] == "u1"
            await connection.response.create()
            error = await events.until("error")
            assert error["error"]["param"] == "type"

            english: Session = {
                "type": "transcription",
                "audio": {
                    "input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"}}
                },
            }
            await connection.session.update(session=english)
            updated = await events.until("session.updated")
            assert updated["session"]["audio"]["input"]["transcription"] == {
                "model": "gpt-4o-transcribe",
                "language": "en",
                "prompt": None,
            }

            await stream(
                connection, np.concatenate([silence(0.3, RATE), speech, silence(1.2, RATE)])
            )
            completed = await events.until("conversation.item.input_audio_transcription.completed")
            await events.until("conversation.item.done")
            await events.settled()

    started = events.of("input_audio_buffer.speech_started")[0]  # again after a pause
    [committed] = events.of("input_audio_buffer.committed")
    [added] = events.of("conversation.item.added")
    assert events.of("input_audio_buffer.speech_stopped")
    assert started["item_id"] == committed["item_id"] == added["item"]["id"] == completed["item_id"]
    assert added["item"]["role"] == "user"
    heard = completed["transcript"].lower()
    assert "quarterly report" in heard, heard
    assert "finance" in heard, heard
    assert completed["usage"]["seconds"] > 2
    deltas = events.of("conversation.item.input_audio_transcription.delta")
    assert deltas, "the caption grows while the caller speaks"
    assert {d["item_id"] for d in deltas} == {completed["item_id"]}
    kinds = [e["type"] for e in events.seen]
    last_stop = len(kinds) - 1 - kinds[::-1].index("input_audio_buffer.speech_stopped")
    assert kinds.index("conversation.item.input_audio_transcription.delta") < last_stop, (
        "the first caption came while the caller was still speaking"
    )
    assert not events.responses(), events.responses()


@pytest.mark.anyio
async def test_a_manual_commit_in_french_with_a_prompt(server: RunningServer) -> None:
    """turn_detection null: the client commits; no speech events. ``language`` and
    ``prompt`` reach the decoder: French speech comes back as French text."""
    speech = espeak(FRENCH, RATE, voice="fr", wpm=120)
    french: Session = {
        "type": "transcription",
        "audio": {
            "input": {
                "transcription": {
                    "model": "whisper-1",
                    "language": "fr",
                    "prompt": "Au restaurant.",
                },
                "turn_detection": None,
            }
        },
    }
    with anyio.fail_after(60):
        async with client(server).realtime.connect(extra_query=INTENT) as connection:
            events = Events(connection)
            await events.until("session.created")
            await connection.session.update(session=french)
            updated = await events.until("session.updated")
            assert updated["session"]["audio"]["input"]["turn_detection"] is None
            await stream(connection, speech)  # no trailing silence: the commit ends it
            await connection.input_audio_buffer.commit()
            committed = await events.until("input_audio_buffer.committed")
            completed = await events.until("conversation.item.input_audio_transcription.completed")
            await events.settled()
    assert completed["item_id"] == committed["item_id"]
    heard = completed["transcript"].lower()
    assert "table" in heard, events.seen
    assert "personnes" in heard, heard
    assert not events.of("input_audio_buffer.speech_started")
    assert not events.responses()


@pytest.mark.anyio
async def test_the_beta_update_is_answered_in_kind(server: RunningServer) -> None:
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}/v1/realtime?intent=transcription") as ws:
            assert json.loads(await ws.recv())["session"]["type"] == "transcription"
            session: dict[str, Any] = {
                "input_audio_transcription": {"model": "whisper-1", "language": "de"}
            }
            await ws.send(json.dumps({"type": "transcription_session.update", "session": session}))
            updated = json.loads(await ws.recv())
            assert updated["type"] == "transcription_session.updated"
            assert updated["session"]["input_audio_transcription"]["language"] == "de"
            session = {"turn_detection": {"type": "server_vad", "create_response": True}}
            await ws.send(json.dumps({"type": "transcription_session.update", "session": session}))
            error = json.loads(await ws.recv())
            assert error["error"]["param"] == "session.turn_detection.create_response"


class Recording:
    """The real ASR executor, with the requests it was given."""

    def __init__(self, runner: ModelExecutor[DecodeRequest, Decoded]) -> None:
        self.runner = runner
        self.requests: list[DecodeRequest] = []

    async def run(self, request: DecodeRequest, /, *, priority: int = 0) -> Decoded:
        self.requests.append(request)
        return await self.runner.run(request, priority=priority)


@pytest.mark.anyio
async def test_the_sessions_language_prompt_and_keywords_reach_each_decode(
    asr_runner: ModelExecutor[DecodeRequest, Decoded],
) -> None:
    base = DecodeOptions(language="en", initial_prompt="the agent's", hotwords="agent")
    recording = Recording(asr_runner)
    decoding = SessionDecoding(recording, base)
    decoding.set("fr", "Au restaurant.", ("Voxline",))
    pcm = espeak(FRENCH, 16000, voice="fr", wpm=120)
    audio = pcm.astype(np.float32) / np.float32(32768)
    with anyio.fail_after(60):
        decoded = await decoding.run(DecodeRequest(audio=audio, final=True, options=base))
        translate = DecodeOptions(language="fr", task="translate")  # not the stage's own: as is
        await decoding.run(DecodeRequest(audio=audio, final=True, options=translate))
    first, second = (r.options for r in recording.requests)
    assert (first.language, first.initial_prompt, first.hotwords) == (
        "fr",
        "Au restaurant.",
        "Voxline",
    )
    assert second is translate
    assert decoded.language == "fr"
    assert "table" in decoded.text.lower(), decoded.text
    decoding.set(None, None)  # unset: the agent's again
    assert decoding.options == base


@pytest.mark.anyio
async def test_captions_are_append_only_and_the_final_text_completes_the_item() -> None:
    """Deltas carry the stable text as it extends; a partial that revises what was sent
    sends nothing (a delta cannot take text back); ``completed`` has the final text. A reply
    the session would play goes nowhere."""
    protocol = TranscriptionProtocol(id_seed="t")
    send, receive = anyio.create_memory_object_stream[str | bytes](100)
    with send, receive, anyio.fail_after(10):
        sink = TranscriptionSink(protocol, send, TurnConfig())
        for event in (
            UserSpeech(started=True, sample=16000),
            UserTurnStarted(16000),
            UserTranscript("I want", final=False, utterance=1, stable="I want"),
            UserTranscript("I want to go", final=False, utterance=1, stable="I want to go"),
            UserTranscript("I want to go home", final=False, utterance=1, stable="I want to go"),
            UserTranscript("I wanted to go home.", final=True, utterance=1),  # revised
            UserSpeech(started=False, sample=48000),
            UserTurn("I wanted to go home.", 16000, 48000),
        ):
            await sink.send_event(event)
        await sink.send_audio(1, b"\0\0" * 480)
        await sink.end_audio(1)
        sent = []
        while True:
            try:
                sent.append(json.loads(receive.receive_nowait()))
            except anyio.WouldBlock:
                break
    for event in sent:
        SERVER_MODELS[event["type"]].model_validate(event)
    deltas = [e["delta"] for e in sent if e["type"].endswith("transcription.delta")]
    assert deltas == ["I want", " to go"]
    [completed] = [e for e in sent if e["type"].endswith("transcription.completed")]
    assert completed["transcript"] == "I wanted to go home."
    assert [e["type"] for e in sent] == [
        "session.created",
        "input_audio_buffer.speech_started",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
    ]
