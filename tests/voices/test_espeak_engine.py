"""The espeak-ng engine end to end: the real espeak-ng, real Whisper, real process failures.

Tests that need a process to be caught mid-request run espeak-ng through a small wrapper script
(the real binary, ``exec``-ed) that stops itself (SIGSTOP) before it starts while a marker file
exists: the test then acts on a process it knows is still running, with no race and no sleep.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import unicodedata
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import anyio
import anyio.abc
import httpx
import numpy as np
import pytest
from anyio import wait_all_tasks_blocked

from agent.cli import main
from agent.config import parse_config
from agent.models import tts_engine
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder, to_model_audio
from pipeline.errors import ConfigError, ExecutorClosed, ModelError, Overloaded
from pipeline.media import decode_audio, wav_header
from tests.server import running_server
from voices.catalog import create_engine, load_catalog
from voices.engine import Prosody, SpeechChunk, SpeechPlan, SpeechSegment, Style, heard_until
from voices.espeak_engine import (
    EspeakEngine,
    char_timings,
    espeak_settings,
    parse_wav,
    voice_names,
)

pytestmark = pytest.mark.anyio

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


async def collect(chunks: AsyncGenerator[SpeechChunk, None]) -> list[SpeechChunk]:
    async with aclosing(chunks):
        return [chunk async for chunk in chunks]


def samples(chunks: list[SpeechChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2")


def catalog_engine(name: str) -> EspeakEngine:
    engine = create_engine(load_catalog().get(name))
    assert isinstance(engine, EspeakEngine)
    engine.start()
    return engine


def wrapper(folder: Path) -> Path:
    """espeak-ng behind a script that stops itself first while ``<script>.stop`` exists."""
    assert ESPEAK is not None
    script = folder / "espeak"
    script.write_text(
        f'#!/bin/sh\nif [ -e "$0.stop" ]; then kill -STOP $$; fi\nexec {ESPEAK} "$@"\n'
    )
    script.chmod(0o755)
    return script


async def until_running(engine: EspeakEngine) -> anyio.abc.Process:
    while not engine.processes:
        await wait_all_tasks_blocked()
    (process,) = engine.processes
    return process


def reaped(process: anyio.abc.Process) -> bool:
    """The process has exited and been waited for (no zombie is left)."""
    if process.returncode is None:
        return False
    try:
        os.waitpid(process.pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def heard(decoder: WhisperDecoder, chunks: list[SpeechChunk], language: str) -> list[str]:
    audio = to_model_audio(samples(chunks), chunks[0].sample_rate)
    options = DecodeOptions(language=language, beam_size=5, word_timestamps=False)
    decoded = decoder.decode(DecodeRequest(audio, final=True, options=options))
    return words(decoded.text)


def words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFC", text.lower())
    return re.findall(r"\w+", folded)


# -- speech in other languages, heard back by Whisper ---------------------------------------------


@needs_espeak
@pytest.mark.slow
@pytest.mark.parametrize(
    ("voice", "language", "text", "content"),
    [
        (
            "espeak-es",
            "es",
            "Buenos días. Quiero reservar una mesa para cuatro personas esta noche.",
            "buenos días quiero reservar mesa cuatro personas noche",
        ),
        (
            "espeak-fr",
            "fr",
            "Merci beaucoup, bonne journée. Je voudrais un café, s'il vous plaît.",
            "merci beaucoup bonne journée café plaît",
        ),
    ],
)
async def test_a_sentence_is_heard_back_in_its_language(
    whisper_decoder: WhisperDecoder, voice: str, language: str, text: str, content: str
) -> None:
    engine = catalog_engine(voice)
    with anyio.fail_after(120):
        chunks = await collect(engine.synthesize(text))
        recognised = await anyio.to_thread.run_sync(heard, whisper_decoder, chunks, language)
    assert engine.sample_rate == 22050
    assert {c.sample_rate for c in chunks} == {22050}
    expected = words(content)
    missing = [word for word in expected if word not in recognised]
    assert len(missing) <= len(expected) // 6, (recognised, missing)


@needs_espeak
async def test_a_faster_rate_gives_shorter_audio() -> None:
    engine = catalog_engine("espeak-es")
    text = "Quiero reservar una mesa para cuatro personas esta noche."
    with anyio.fail_after(30):
        normal = await collect(engine.synthesize(text, Prosody(rate=1.0)))
        fast = await collect(engine.synthesize(text, Prosody(rate=1.5)))
        excited = await collect(
            engine.synthesize(SpeechPlan((SpeechSegment(text, style=Style("excited")),)))
        )
    assert len(samples(fast)) < len(samples(excited)) < len(samples(normal))


# -- word timings ---------------------------------------------------------------------------------


@needs_espeak
async def test_word_timings_tile_the_samples_and_say_what_was_heard() -> None:
    engine = catalog_engine("espeak-es")
    plan = SpeechPlan(
        (
            SpeechSegment("Hola, buenos días. ", marks=("start",)),
            SpeechSegment("¿Cómo está usted? ", pause_ms=200, marks=("second",)),
            SpeechSegment("Adiós.", prosody=Prosody(rate=1.3)),
            SpeechSegment("", marks=("end",)),
        )
    )
    text = plan.text
    with anyio.fail_after(30):
        chunks = await collect(engine.synthesize(plan))
    position = text_end = 0
    spoken: list[str] = []
    for chunk in chunks:
        assert chunk.sample_offset == position
        assert chunk.text_start >= text_end
        position = chunk.end_offset
        text_end = chunk.text_end
        if not chunk.words:
            continue
        assert chunk.words[0].sample_start == chunk.sample_offset
        assert chunk.words[-1].sample_end == chunk.end_offset
        for before, after in itertools.pairwise(chunk.words):
            assert before.sample_end == after.sample_start
            assert before.text_end < after.text_start
        spoken.extend(text[w.text_start : w.text_end] for w in chunk.words)
    assert spoken == text.split()
    assert [c.marks for c in chunks if c.marks] == [("start",), ("second",), ("end",)]
    pause = next(c for c in chunks if not c.words and c.pcm)
    assert pause.num_samples == 200 * 22050 // 1000
    everything = [w for c in chunks for w in c.words]
    first_sentence = chunks[0].end_offset
    assert text[: heard_until(everything, first_sentence)] == "Hola, buenos días."
    assert heard_until(everything, position) == len(text)


def test_characters_share_the_samples() -> None:
    timings = char_timings([(0, 2), (3, 9)], 100, 800)
    assert [(w.sample_start, w.sample_end) for w in timings] == [(100, 300), (300, 900)]
    assert char_timings([], 0, 50) == ()


def test_prosody_and_styles_map_to_espeak_options() -> None:
    assert espeak_settings(Prosody(), None).argv("es") == ["-v", "es", "-s", "175", "-p", "50",
                                                           "-a", "100"]  # fmt: skip
    fast = espeak_settings(Prosody(rate=2.0, pitch=2.0, volume=3.0), None)
    assert (fast.wpm, fast.pitch, fast.amplitude) == (350, 99, 200)
    slow = espeak_settings(Prosody(rate=0.25, pitch=0.8, volume=0.5), None)
    assert (slow.wpm, slow.pitch, slow.amplitude) == (80, 26, 50)
    whisper = espeak_settings(Prosody(), Style("whisper"))
    assert whisper.argv("es")[:2] == ["-v", "es+whisper"]
    assert whisper.argv("en-us+f3")[:2] == ["-v", "en-us+f3"]


def test_wav_parsing_takes_the_data_to_the_end() -> None:
    header = wav_header(22050)  # a stream of unknown length, as espeak-ng writes to a pipe
    assert parse_wav(header + b"\x01\x00\x02\x00\x03") == (22050, b"\x01\x00\x02\x00")
    eight_bit = header.replace(b"\x10\x00data", b"\x08\x00data")
    for broken, reason in ((b"", "not a WAV"), (b"RIFF....WAVE", "no data"), (eight_bit, "PCM16")):
        with pytest.raises(ValueError, match=reason):
            parse_wav(broken)


def test_voice_names_come_from_the_listing() -> None:
    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  en-gb-x-rp      --/M      English_(Received_Pronunciation) gmw/en-GB-x-rp"
        "       (en-gb 4)(en 5)\n"
        " 5  es              --/M      Spanish_(Spain)    roa/es\n"
    )
    assert voice_names(listing) >= {"en-gb-x-rp", "gmw/en-gb-x-rp", "en-gb", "en", "es", "roa/es"}


# -- processes: cancellation, failures, admission, start-up ---------------------------------------


@needs_espeak
async def test_cancelling_mid_request_kills_and_reaps_the_process(tmp_path: Path) -> None:
    with EspeakEngine("es", executable=str(wrapper(tmp_path))) as engine:
        (tmp_path / "espeak.stop").touch()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(collect, engine.synthesize("Hola. Buenos días."))
                process = await until_running(engine)
                group.cancel_scope.cancel()
        assert process.returncode == -signal.SIGKILL
        assert reaped(process)
        assert engine.processes == ()
        stats = engine.statistics()
        assert (stats.killed, stats.cancelled, stats.in_flight) == (1, 1, 0)


@needs_espeak
async def test_a_process_that_dies_fails_that_request_only(tmp_path: Path) -> None:
    with EspeakEngine("es", executable=str(wrapper(tmp_path))) as engine:
        stop = tmp_path / "espeak.stop"
        stop.touch()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:

                async def doomed() -> None:
                    with pytest.raises(ModelError, match="espeak-ng failed"):
                        await collect(engine.synthesize("Hola."))

                group.start_soon(doomed)
                process = await until_running(engine)
                os.kill(process.pid, signal.SIGKILL)
            stop.unlink()
            chunks = await collect(engine.synthesize("Hola."))
        assert reaped(process)
        assert len(samples(chunks)) > 0
        stats = engine.statistics()
        assert (stats.requests_failed, stats.requests_done) == (1, 1)


@needs_espeak
async def test_a_full_queue_refuses_new_requests(tmp_path: Path) -> None:
    engine = EspeakEngine("es", executable=str(wrapper(tmp_path)), max_processes=1, max_queue=0)
    with engine:
        (tmp_path / "espeak.stop").touch()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(collect, engine.synthesize("Hola."))
                await until_running(engine)
                with pytest.raises(Overloaded):
                    await collect(engine.synthesize("Adiós."))
                group.cancel_scope.cancel()
        assert engine.statistics().rejected == 1


@needs_espeak
async def test_closing_the_engine_kills_running_processes(tmp_path: Path) -> None:
    engine = EspeakEngine("es", executable=str(wrapper(tmp_path)))
    engine.start()
    (tmp_path / "espeak.stop").touch()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def closed() -> None:
                with pytest.raises(ExecutorClosed):
                    await collect(engine.synthesize("Hola."))

            group.start_soon(closed)
            process = await until_running(engine)
            engine.close()
    assert reaped(process)
    with pytest.raises(ExecutorClosed):
        await collect(engine.synthesize("Hola."))


@needs_espeak
async def test_text_is_read_as_plain_text() -> None:
    engine = catalog_engine("espeak-en")
    text = "-v xx <speak>[[a]] --help"
    with anyio.fail_after(30):
        chunks = await collect(engine.synthesize(text))
    assert len(samples(chunks)) > 22050 // 2
    assert [text[w.text_start : w.text_end] for c in chunks for w in c.words] == text.split()


@needs_espeak
def test_an_unknown_voice_fails_at_start() -> None:
    with pytest.raises(ModelError, match="espeak-ng has no voice 'xx-nowhere'"):
        EspeakEngine("xx-nowhere").start()


def test_a_missing_binary_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="install espeak-ng"):
        EspeakEngine("es", executable=str(tmp_path / "espeak-ng")).start()


def espeak_agent(voice: str) -> str:
    """The default agent file, speaking with espeak-ng voice ``voice``."""
    text = (CONFIGS_DIR / "default.yaml").read_text()
    assert "tts: {engine: piper}" in text
    assert "name: joe" in text
    text = text.replace("tts: {engine: piper}", "tts: {engine: espeak}")
    return text.replace("name: joe", f"name: {voice}")


# -- the catalog and configs ----------------------------------------------------------------------


def test_the_catalog_lists_the_espeak_voices_with_their_languages() -> None:
    catalog = load_catalog()
    languages = {i.name: i.language for i in catalog.listing() if i.engine == "espeak"}
    assert languages == {
        "espeak-de": "de-DE", "espeak-en": "en-US", "espeak-es": "es-ES",
        "espeak-fr": "fr-FR", "espeak-it": "it-IT", "espeak-pt": "pt-PT",
    }  # fmt: skip
    assert all("fallback" in i.description for i in catalog.listing() if i.engine == "espeak")


def test_voices_are_found_by_language() -> None:
    catalog = load_catalog()
    assert [v.name for v in catalog.for_language("es")] == ["espeak-es"]
    assert [v.name for v in catalog.for_language("ES-es")] == ["espeak-es"]
    english = [v.name for v in catalog.for_language("en")]
    assert english[0] == "joe"
    assert english[-1] == "espeak-en"
    with pytest.raises(ConfigError) as info:
        catalog.for_language("zz", where="$.dialogue.translate.target")
    assert info.value.path == "$.dialogue.translate.target"
    assert "no voice speaks 'zz'" in info.value.reason
    with pytest.raises(ConfigError, match="not a language code"):
        catalog.for_language("español")


def test_espeak_voice_files_are_checked(tmp_path: Path) -> None:
    voice = "engine: espeak\nmodel: {model}\nlanguage: es-ES\n"
    (tmp_path / "good.yaml").write_text(voice.format(model="roa/es+f3"))
    assert load_catalog(tmp_path).get("good").model == "roa/es+f3"
    (tmp_path / "bad.yaml").write_text(voice.format(model="'-v es'"))
    with pytest.raises(ConfigError) as info:
        load_catalog(tmp_path)
    assert info.value.path == "bad.yaml $.model"
    (tmp_path / "bad.yaml").write_text(voice.format(model="es") + "speaker: 1\n")
    with pytest.raises(ConfigError, match="an espeak voice has no such key"):
        load_catalog(tmp_path)


@needs_espeak
def test_an_agent_speaks_with_an_espeak_voice(tmp_path: Path) -> None:
    text = espeak_agent("espeak-es")
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    assert main(["check", str(path)]) == 0
    config = parse_config(text.encode(), ".yaml")
    with tts_engine(config) as engine:
        assert isinstance(engine, EspeakEngine)
        assert engine.voice == "es"
    with pytest.raises(ConfigError, match="'espeak-es' is a espeak voice"):
        parse_config(text.replace("engine: espeak", "engine: piper").encode(), ".yaml")


@needs_espeak
@pytest.mark.slow
def test_a_server_with_an_espeak_voice_lists_it_and_speaks_spanish(
    tmp_path: Path, whisper_decoder: WhisperDecoder
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(espeak_agent("espeak-es"))
    with running_server(str(path)) as server:
        voices = httpx.get(f"{server.http}/v1/voices", timeout=30).json()["data"]
        body = {"model": "tts-1", "voice": "espeak-es", "response_format": "wav",
                "input": "Buenos días. Quiero reservar una mesa para cuatro personas."}  # fmt: skip
        response = httpx.post(f"{server.http}/v1/audio/speech", json=body, timeout=60)
    listed = {v["name"]: v for v in voices}
    assert listed["espeak-es"]["language"] == "es-ES"
    assert listed["espeak-es"]["available"]
    assert listed["espeak-fr"]["language"] == "fr-FR"
    assert response.status_code == 200, response.text
    audio = to_model_audio(decode_audio(response.content, 16000), 16000)
    options = DecodeOptions(language="es", beam_size=5, word_timestamps=False)
    decoded = whisper_decoder.decode(DecodeRequest(audio, final=True, options=options))
    recognised = words(decoded.text)
    expected = words("buenos días quiero reservar mesa cuatro personas")
    assert len([w for w in expected if w not in recognised]) <= 1, recognised
