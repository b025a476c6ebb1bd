"""The LLM translation engine and two-party rooms, on real servers: an English caller heard in
Spanish by an interpreter whose target is Spanish; and an English caller and a Spanish caller
on the native protocol (``/v1/stream?room=...&language=...``), each hearing the other in their
own language. The local llama.cpp model (Qwen2.5 0.5B) translates; Joe (English) and the
espeak-ng Spanish voice speak; what each caller hears is transcribed back by the embedded
Whisper told the language.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np
import pytest
import websockets

from agent.dialogue.llm_local import LlamaServer
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder
from tests.audio import espeak, silence
from tests.llm_server import llama_server
from tests.server import ROOT, RunningServer, running_server
from tests.test_server import RATE, Call


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    server = llama_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llama: LlamaServer) -> Iterator[RunningServer]:
    """The interpreter with the LLM engine, English (Joe) and Spanish (espeak-es) voices."""
    config = msgspec.yaml.decode((ROOT / "configs" / "interpreter.yaml").read_bytes())
    config["profile"]["llm"] = {"base_url": llama.base_url, "model": "qwen2.5-0.5b"}
    config["voice"]["languages"] = {"es": "espeak-es"}
    config["dialogue"]["translate"] = {"engine": "llm", "target": "en"}
    path: Path = tmp_path_factory.mktemp("rooms") / "interpreter-llm.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    with running_server(str(path)) as running:
        yield running


@pytest.fixture(scope="module")
def spanish(
    tmp_path_factory: pytest.TempPathFactory, llama: LlamaServer
) -> Iterator[RunningServer]:
    """An interpreter from English into Spanish: the LLM engine, the espeak-ng Spanish voice."""
    config = msgspec.yaml.decode((ROOT / "configs" / "interpreter.yaml").read_bytes())
    config["profile"]["asr"]["language"] = "en"
    config["profile"]["llm"] = {"base_url": llama.base_url, "model": "qwen2.5-0.5b"}
    config["profile"]["tts"] = {"engine": "espeak"}
    config["voice"] = {"name": "espeak-es"}
    config["greeting"] = {"text": "Hola."}
    config["dialogue"]["translate"] = {"engine": "llm", "target": "es"}
    path: Path = tmp_path_factory.mktemp("spanish") / "interpreter-es.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    with running_server(str(path)) as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def heard(decoder: WhisperDecoder, pcm: bytes, language: str) -> str:
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768)
    options = DecodeOptions(language=language)
    return decoder.decode(DecodeRequest(audio=audio, final=True, options=options)).text.lower()


async def joined(ws: websockets.ClientConnection) -> Call:
    call = Call(ws)
    await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
    await call.receive_until(lambda e: e["type"] == "session.started")
    return call


async def says(speaker: Call, listener: Call, speech: np.ndarray[Any, Any]) -> tuple[str, bytes]:
    """``speaker`` says ``speech``; what ``listener`` is told (text) and hears (audio)."""
    seen = len(listener.events)
    async with anyio.create_task_group() as tg:
        tg.start_soon(speaker.stream, np.concatenate([speech, silence(1.5)]))
        end = await listener.receive_until(lambda e: e["type"] == "audio.end")
    text = "".join(e["delta"] for e in listener.events[seen:] if e["type"] == "agent.text")
    return text, bytes(listener.audio[end["generation"]])


@pytest.mark.anyio
async def test_english_speech_is_spoken_back_in_spanish_by_the_llm_engine(
    spanish: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(120):
        async with websockets.connect(f"{spanish.ws}/v1/stream") as ws:
            call = await joined(ws)
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            seen = len(call.events)
            async with anyio.create_task_group() as tg:
                speech = espeak("I would like a coffee, please.", wpm=140)
                tg.start_soon(call.stream, np.concatenate([speech, silence(1.5)]))
                end = await call.receive_until(lambda e: e["type"] == "audio.end")
            await ws.send(json.dumps({"type": "bye"}))
    events = call.events[seen:]
    final = next(e for e in events if e["type"] == "transcript.final")
    text = "".join(e["delta"] for e in events if e["type"] == "agent.text")
    assert "coffee" in final["text"].lower()
    assert final["language"] == "en"
    assert "café" in text.lower(), text
    assert "café" in heard(whisper_decoder, bytes(call.audio[end["generation"]]), "es"), text


@pytest.mark.anyio
async def test_two_callers_hear_each_other_translated_and_the_room_closes_with_one(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    room = f"{server.ws}/v1/stream?room=desk-1"
    with anyio.fail_after(240):
        async with (
            websockets.connect(f"{room}&language=en") as english_ws,
            websockets.connect(f"{room}&language=es") as spanish_ws,
        ):
            english, spanish = await joined(english_ws), await joined(spanish_ws)
            async with anyio.create_task_group() as tg:  # the English caller keeps listening
                tg.start_soon(english.receive_until, lambda e: False)
                to_spanish, spanish_audio = await says(
                    english, spanish, espeak("Where is the train station?", wpm=140)
                )
                tg.cancel_scope.cancel()
            async with anyio.create_task_group() as tg:
                tg.start_soon(spanish.receive_until, lambda e: False)
                to_english, english_audio = await says(
                    spanish, english, espeak("¿Dónde está la estación?", voice="es", wpm=120)
                )
                tg.cancel_scope.cancel()
            await english_ws.send(json.dumps({"type": "bye"}))
            closed = await spanish.receive_until(lambda e: e["type"] == "session.ended")
    assert "estación" in to_spanish.lower(), to_spanish
    assert "estación" in heard(whisper_decoder, spanish_audio, "es"), to_spanish
    assert "station" in to_english.lower(), to_english
    assert "station" in heard(whisper_decoder, english_audio, "en"), to_english
    spanish_finals = [e for e in spanish.events if e["type"] == "transcript.final"]
    assert spanish_finals
    assert spanish_finals[0]["language"] == "es"
    assert closed["reason"] == "room_closed"
    assert spanish_ws.close_code == 1000


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("room=desk-2&language=xx", "unknown_language"),
        ("room=desk-2&language=fr", "no_voice"),
        ("room=not%20a%20room&language=en", "bad_room"),
        ("language=en", "bad_room"),  # a language is for a room only
    ],
)
async def test_a_join_that_cannot_be_served_gets_a_clear_error(
    server: RunningServer, query: str, code: str
) -> None:
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}/v1/stream?{query}") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            error = await call.receive_until(lambda e: e["type"] == "error")
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await call.receive()
    assert error["code"] == code, error


@pytest.mark.anyio
async def test_a_third_caller_finds_the_room_full(server: RunningServer) -> None:
    room = f"{server.ws}/v1/stream?room=desk-3"
    with anyio.fail_after(30):
        async with (
            websockets.connect(f"{room}&language=en") as first,
            websockets.connect(f"{room}&language=es") as second,
        ):
            await joined(first)
            await joined(second)
            async with websockets.connect(f"{room}&language=en") as third:
                await third.send(json.dumps({"type": "hello", "sample_rate": RATE}))
                error = await Call(third).receive_until(lambda e: e["type"] == "error")
    assert error["code"] == "room_full"
    assert "desk-3" in error["message"]
