"""The interpreter (``dialogue.engine: translate``): caller speech in one language, the
translation spoken back, on a real server with the embedded models.

French, German and Spanish espeak-ng speech goes to the shipped ``configs/interpreter.yaml``
(the language detected per utterance, Whisper's translate task into English, Joe's voice); the
English audio that comes back is transcribed by the embedded Whisper and must hold the
sentence's content words. The sentences are ones the embedded Whisper base hears and
translates reliably from espeak-ng at 120 words a minute (many others it does not: see
BENCHMARKS.md for the quality figures).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import numpy as np
import pytest
import websockets

from agent.config import load_config
from agent.models import session_settings
from agent.reply import ReplyVoice
from agent.translator import TranslatorResponder
from pipeline.asr.decoder import WhisperDecoder
from pipeline.asr.events import Transcript
from pipeline.errors import ConfigError
from tests.audio import espeak, silence
from tests.server import ROOT, RunningServer, running_server
from tests.test_server import RATE, Call, heard

#: (espeak-ng voice, sentence, a word its English translation has)
SENTENCES = [
    ("fr", "Je voudrais un café, s'il vous plaît.", "coffee"),
    ("de", "Ich brauche einen Arzt, bitte.", "doctor"),
    ("es", "¿Dónde está la estación?", "station"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server("configs/interpreter.yaml") as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.mark.anyio
async def test_french_german_and_spanish_speech_is_spoken_back_in_english(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    replies: list[tuple[dict[str, Any], str, str]] = []
    with anyio.fail_after(180):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            for voice, sentence, _ in SENTENCES:
                speech = np.concatenate([espeak(sentence, voice=voice, wpm=120), silence(1.5)])
                seen = len(call.events)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call.stream, speech)
                    end = await call.receive_until(lambda e: e["type"] == "audio.end")
                events = call.events[seen:]
                final = next(e for e in events if e["type"] == "transcript.final")
                text = "".join(e["delta"] for e in events if e["type"] == "agent.text")
                replies.append(
                    (final, text, heard(whisper_decoder, bytes(call.audio[end["generation"]])))
                )
            await ws.send(json.dumps({"type": "bye"}))
    for (voice, sentence, word), (final, text, spoken) in zip(SENTENCES, replies, strict=True):
        assert final["language"] == voice, (sentence, final)
        assert word in text.lower(), (sentence, final["text"], text)
        assert word in spoken, (sentence, text, spoken)


def transcript(utterance: int, text: str, translation: str, language: str = "fr") -> Transcript:
    return Transcript(
        session_id="s",
        utterance=utterance,
        is_final=True,
        text=text,
        language=language,
        translation=translation,
    )


async def reply(responder: TranslatorResponder, turn: str) -> str:
    return "".join([part.text async for part in responder.respond(turn, generation=1)])  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_a_turn_is_spoken_as_the_translations_of_its_own_finals() -> None:
    responder = TranslatorResponder(load_config(ROOT / "configs" / "interpreter.yaml"))
    responder.transcribed(transcript(0, "Euh.", "Uh."))  # dropped by turn-taking: no turn
    responder.transcribed(transcript(1, "Bonjour.", "Hello."))
    responder.transcribed(transcript(2, "Un café, s'il vous plaît.", "A coffee, please."))
    assert await reply(responder, "Bonjour. Un café, s'il vous plaît.") == (
        "Hello. A coffee, please."
    )
    responder.transcribed(transcript(3, "Merci.", "Thank you."))
    assert await reply(responder, "Merci.") == "Thank you."
    assert responder.source == "fr"


def test_an_interpreter_translating_with_whisper_waits_for_its_finals() -> None:
    # only a final carries Whisper's translation: a turn ended on a late final's partial
    # had nothing to say (seen under load)
    config = load_config(ROOT / "configs" / "interpreter.yaml")
    assert config.turns.partial_fallback
    assert not session_settings(config, ReplyVoice()).turns.partial_fallback
    assert session_settings(
        load_config(ROOT / "configs" / "default.yaml"), ReplyVoice()
    ).turns.partial_fallback


def interpreter(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = msgspec.yaml.decode(
        (ROOT / "configs" / "interpreter.yaml").read_bytes()
    )
    for path, value in changes.items():
        *parents, key = path.split("__")
        section = config
        for name in parents:
            section = section.setdefault(name, {})
        section[key] = value
    return config


@pytest.mark.parametrize(
    ("changes", "where", "reason"),
    [
        ({"dialogue__translate__target": "es"}, "$.dialogue.translate.target", "English only"),
        ({"dialogue__translate__target": "xx"}, "$.dialogue.translate.target", "unknown"),
        ({"dialogue__translate__engine": "llm"}, "$.profile.llm", "needs an LLM"),
        (
            {
                "dialogue__translate__engine": "llm",
                "dialogue__translate__target": "es",
                "profile__llm": {"model": "qwen"},
            },
            "$.voice.name",
            "'joe' speaks en-US, not the target language 'es'",
        ),
    ],
)
def test_a_translation_the_agent_cannot_make_is_refused_naming_the_key(
    tmp_path: Any, changes: dict[str, Any], where: str, reason: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(msgspec.yaml.encode(interpreter(**changes)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == where
    assert reason in str(caught.value)
