"""The interpreter served like any agent: on the OpenAI Realtime endpoint (the official SDK)
(German espeak-ng speech in) and on a Twilio media stream (French, over 8 kHz μ-law), English
out.

The native protocol, WebRTC and SIP have their own interpreter tests (test_translation.py,
test_translation_webrtc.py, test_translation_sip.py); the agent and the sentences are the ones
test_translation.py uses, so what differs here is only the transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI

from pipeline.asr.decoder import WhisperDecoder
from tests.audio import espeak, silence
from tests.server import RunningServer, running_server
from tests.test_realtime_endpoint import RATE as REALTIME_RATE
from tests.test_realtime_endpoint import Events, stream, transcribe
from tests.test_twilio_endpoint import RATE as PHONE_RATE
from tests.test_twilio_endpoint import FakeTwilio, start_message

SENTENCE = ("de", "Ich brauche einen Arzt, bitte.", "doctor")
PHONE_SENTENCE = ("fr", "Je voudrais un café, s'il vous plaît.", "coffee")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server("configs/interpreter.yaml") as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.mark.anyio
async def test_the_realtime_endpoint_speaks_the_translation(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    voice, sentence, word = SENTENCE
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    with anyio.fail_after(120):
        async with client.realtime.connect(model="voxline") as connection:
            events = Events(connection)
            await events.until("session.created")
            speech = espeak(sentence, REALTIME_RATE, voice=voice, wpm=120)
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    stream, connection, np.concatenate([speech, silence(1.5, REALTIME_RATE)])
                )
                done = await events.until("response.done")
                tg.cancel_scope.cancel()
    assert done.response.status == "completed"
    [item] = done.response.output
    text = item.content[0].transcript or ""
    assert word in text.lower(), text
    assert word in transcribe(whisper_decoder, events.audio(done.response.id)), text
    said = [
        e.transcript for e in events.of("conversation.item.input_audio_transcription.completed")
    ]
    assert any("arzt" in text.lower() for text in said), said


@pytest.mark.anyio
async def test_a_twilio_stream_hears_the_translation_and_the_record_keeps_both_sides(
    server: RunningServer,
) -> None:
    """The caller speaks French over the greeting (a barge-in: the greeting is cleared) and
    hears the English; a phone has no text channel, so the words are read from the call's
    record once the call has ended."""
    # French: over 8 kHz μ-law, the embedded Whisper base hears espeak-ng's German badly
    # ("Ich rufe einen Art"), its French café well
    voice, sentence, word = PHONE_SENTENCE
    before = len([line for line in server.log if " recorded" in line])
    with anyio.fail_after(120):
        async with websockets.connect(f"{server.ws}/v1/telephony/twilio") as ws:
            twilio = FakeTwilio(ws)
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0"}))
            await ws.send(start_message())
            async with anyio.create_task_group() as tg:
                tg.start_soon(twilio.send_media)
                tg.start_soon(twilio.receive)
                await twilio.heard_a_second.wait()  # of the greeting
                speech = espeak(sentence, PHONE_RATE, voice=voice, wpm=120)
                twilio.say(np.concatenate([speech, silence(1.5, PHONE_RATE)]))
                await twilio.cleared.wait()
                assert twilio.clear_at is not None
                # a second of the translation after the clear: it is being spoken
                await twilio.audio_past(twilio.clear_at + PHONE_RATE)
                sid = json.loads(start_message())["streamSid"]
                await ws.send(json.dumps({"event": "stop", "streamSid": sid}))
                await twilio.closed.wait()
                tg.cancel_scope.cancel()
        recorded = await anyio.to_thread.run_sync(new_log_line, server, " recorded", before)
        call_id = recorded.split("call ", 1)[1].split()[0]
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
        record = (await http.get(f"/v1/calls/{call_id}")).json()
    assert record["transport"] == "twilio"
    caller = [line for line in record["lines"] if line["speaker"] == "caller"]
    agent = [line for line in record["lines"] if line["speaker"] == "agent"]
    assert caller, record["lines"]
    assert any(word in line["text"].lower() for line in agent), agent


def new_log_line(server: RunningServer, text: str, before: int, timeout: float = 60) -> str:
    """The first line holding ``text`` after the ``before`` such lines the server had printed
    (blocks: run it in a thread)."""

    def found() -> list[str]:
        return [line for line in server.log if text in line]

    with server.printed:
        server.printed.wait_for(lambda: len(found()) > before, timeout)
        lines = found()
    if len(lines) <= before:
        raise TimeoutError(f"the server did not print {text!r}")
    return lines[before]
