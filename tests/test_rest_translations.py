"""``POST /v1/audio/translations`` on a real `voxline serve` process, through the `openai` SDK.

French, German and Spanish espeak-ng speech comes back as English text holding the sentence's
content words, in every response format; the language is detected once per file; bad requests
get OpenAI's error shape. The sentences are those the embedded Whisper base (int8, CPU)
translated with the checked words at every espeak-ng rate tried (140 to 180 words a minute);
many plainer ones it does not (espeak-ng French is often heard as Thai).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.audio import espeak, silence, write_wav
from tests.server import RunningServer, running_server

# The SDK marks translations deprecated (OpenAI plans to retire its endpoint); ours stays.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")

#: (espeak-ng voice, sentence, English words the translation holds)
SPOKEN = (
    (
        "fr",
        "Bonjour. Je voudrais un café et un croissant, s'il vous plaît. Merci beaucoup.",
        ("coffee",),
    ),
    ("de", "Wir gehen morgen mit den Kindern an den Strand.", ("children",)),
    ("es", "Mañana vamos a la playa con los niños.", ("beach",)),
)
GERMAN = SPOKEN[1]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def speech_wav(voice: str, sentence: str) -> tuple[str, bytes]:
    pcm = np.concatenate([silence(0.4), espeak(sentence, voice=voice), silence(0.4)])
    return f"{voice}.wav", write_wav(pcm, 16000)


def assert_holds(text: str, words: tuple[str, ...]) -> None:
    for word in words:
        assert word in text.lower(), text


@pytest.mark.parametrize(
    ("voice", "sentence", "words"), SPOKEN, ids=[voice for voice, _, _ in SPOKEN]
)
def test_speech_in_another_language_comes_back_in_english(
    client: openai.OpenAI, voice: str, sentence: str, words: tuple[str, ...]
) -> None:
    result = client.audio.translations.create(model="whisper-1", file=speech_wav(voice, sentence))
    assert_holds(result.text, words)


def test_text_srt_and_vtt(client: openai.OpenAI) -> None:
    voice, sentence, words = GERMAN
    upload = speech_wav(voice, sentence)
    create = client.audio.translations.create
    text = create(model="whisper-1", file=upload, response_format="text")
    assert isinstance(text, str)
    assert_holds(text, words)

    srt = create(model="whisper-1", file=upload, response_format="srt")
    assert isinstance(srt, str)
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n", srt)
    assert [cue[0] for cue in cues] == ["1"]
    assert cues[0][1] < cues[0][2]
    assert_holds(cues[0][3], words)

    vtt = create(model="whisper-1", file=upload, response_format="vtt")
    assert isinstance(vtt, str)
    assert vtt.startswith("WEBVTT\n\n")
    assert re.search(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n.*children", vtt), vtt


def test_verbose_json_names_english_and_the_language_heard(client: openai.OpenAI) -> None:
    voice, sentence, words = GERMAN
    result = client.audio.translations.create(
        model="whisper-1", file=speech_wav(voice, sentence), response_format="verbose_json"
    )
    assert result.language == "english"  # OpenAI's: the language of the text
    extra = result.model_extra or {}
    assert extra["task"] == "translate"
    assert extra["source_language"] == "de"
    assert "words" not in extra  # a translation's words have no times of their own
    assert_holds(result.text, words)
    segments = result.segments or []
    assert len(segments) == 1
    assert 0 <= segments[0].start < segments[0].end <= result.duration
    assert segments[0].text == result.text


def test_a_long_recording_is_translated_in_windows_of_one_language(
    client: openai.OpenAI,
) -> None:
    # coffee at 1 s, the children at 33 s: more than one window (at most 29.25 s each)
    audio = silence(38.0)
    for start, sentence in (
        (1.0, "Guten Morgen. Ich trinke jeden Tag Kaffee mit Milch."),
        (33.0, GERMAN[1]),
    ):
        speech = espeak(sentence, voice="de")
        audio[int(start * 16000) : int(start * 16000) + len(speech)] = speech
    result = client.audio.translations.create(
        model="whisper-1",
        file=("long.wav", write_wav(audio, 16000)),
        response_format="verbose_json",
    )
    assert (result.model_extra or {})["source_language"] == "de"
    segments = result.segments or []
    assert len({segment.seek for segment in segments}) == 2
    assert_holds(segments[0].text, ("coffee",))
    assert_holds(segments[-1].text, ("children",))
    assert result.text == " ".join(segment.text for segment in segments)


WAV = write_wav(silence(0.5), 16000)


@pytest.mark.parametrize(
    ("request_kwargs", "param", "message"),
    [
        pytest.param({"files": {"file": ("a.wav", b"")}}, "file", "empty", id="empty file"),
        pytest.param(
            {"files": {"file": ("notes.txt", b"plain text, not audio\n" * 50)}},
            "file", "formats read: flac", id="not audio",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"response_format": "xml"}},
            "response_format", "response_format", id="unknown response format",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"language": "fr"}},
            "language", "unsupported parameter 'language'", id="a language",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"timestamp_granularities[]": "word"}},
            "timestamp_granularities", "unsupported parameter", id="word times",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"temperature": "2"}},
            "temperature", "less than or equal to 1", id="bad temperature",
        ),
        pytest.param({"data": {"model": "whisper-1"}}, "file", "no file", id="no file"),
    ],
)  # fmt: skip
def test_bad_requests_get_openais_error_shape(
    server: RunningServer, request_kwargs: dict[str, Any], param: str, message: str
) -> None:
    if "files" not in request_kwargs:  # multipart all the same
        request_kwargs = {**request_kwargs, "files": {"other": ("x", b"x")}}
    response = httpx.post(f"{server.http}/v1/audio/translations", timeout=60, **request_kwargs)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]


def test_the_sdk_sees_our_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="formats read"):
        client.audio.translations.create(model="whisper-1", file=("a.mp3", b"not audio" * 100))
