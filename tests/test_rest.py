"""The REST API on a real `voxline serve` process, through httpx and the official `openai` SDK.

Speech in many containers, rates and channel layouts is transcribed right; every response
format is well formed; synthesized speech in every format decodes and transcribes back to its
text; SSML and emotions work; bad requests get the right 4xx with a clear message; /metrics
and /v1/voices answer.
"""

from __future__ import annotations

import io
import itertools
import re
import socket
from collections.abc import Iterator
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.events import Pcm
from pipeline.media import StreamEncoder, decode_audio
from tests.asr.support import BECKETT, SENTENCES
from tests.asr.wer import wer
from tests.audio import espeak, read_speech, resample, silence, write_wav
from tests.server import RunningServer, running_server

TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was "
    "the season of Light, it was the season of Darkness, it was the spring of hope, it was the "
    "winter of despair, we had everything before us, we had nothing before us, we were all "
    "going direct to Heaven, we were all going direct the other way - in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its "
    "being received, for good or for evil, in the superlative degree of comparison only."
)
SPOKEN = "Thank you for calling, we will see you on Friday."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def encode(pcm: Pcm, rate: int, fmt: str, channels: int = 1) -> bytes:
    """``pcm`` (mono) as a ``fmt`` file at ``rate``; ``channels=2`` duplicates it (wav)."""
    pcm = resample(pcm, 16000, rate)
    if fmt == "wav":
        return write_wav(np.repeat(pcm, channels), rate, channels)
    if fmt == "webm":
        out = io.BytesIO()
        with av.open(out, mode="w", format="webm") as container:
            stream = container.add_stream("libopus", rate=48000)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
            for part in [*resampler.resample(frame), *resampler.resample(None)]:
                for packet in stream.encode(part):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return out.getvalue()
    encoder = StreamEncoder("opus" if fmt == "ogg" else fmt, rate)  # type: ignore[arg-type]
    return encoder.encode(pcm.tobytes()) + encoder.close()


def padded(text: str) -> Pcm:
    return np.concatenate([silence(0.4), espeak(text), silence(0.4)])


# -- transcription ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate", "channels", "sentence"),
    [
        ("wav", 16000, 1, SENTENCES[0]),
        ("wav", 44100, 2, SENTENCES[1]),
        ("flac", 8000, 1, SENTENCES[2]),
        ("mp3", 22050, 1, SENTENCES[2]),
        ("ogg", 48000, 1, SENTENCES[1]),
        # greedy Whisper base hears Opus-coded espeak "back later" as "MacLader" (int8, 2 threads)
        ("webm", 24000, 1, SENTENCES[0]),
    ],
)
def test_speech_in_any_container_rate_and_layout_is_transcribed(
    client: openai.OpenAI, fmt: str, rate: int, channels: int, sentence: str
) -> None:
    data = encode(padded(sentence), rate, fmt, channels)
    result = client.audio.transcriptions.create(model="whisper-1", file=(f"speech.{fmt}", data))
    assert wer(sentence, result.text) <= 0.2, result.text


def test_a_long_recording_is_transcribed_in_windows_with_word_times(
    client: openai.OpenAI,
) -> None:
    audio, rate = read_speech("two_cities")  # 44 s at 48 kHz
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("two_cities.flac", encode(resample(audio, rate, 16000), rate, "flac")),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert wer(TWO_CITIES, result.text) <= 0.1, result.text
    assert result.language == "en"
    assert result.duration == pytest.approx(len(audio) / rate, abs=0.05)
    segments, words = result.segments or [], result.words or []
    assert len({segment.seek for segment in segments}) >= 2  # more than one window
    assert all(a.end <= b.start + 0.01 for a, b in itertools.pairwise(segments))
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert all(0 <= w.start <= w.end <= result.duration for w in words)
    assert words[-1].end > result.duration - 4  # the last words are near the end of the file
    # "in short," comes right after the cut between the first windows: its time is the file's
    short = next(w for w in words if w.word.lower().startswith("short"))
    assert 28 < short.start < 31


def test_every_response_format(client: openai.OpenAI) -> None:
    audio, _ = read_speech("beckett")
    wav = ("beckett.wav", write_wav(audio, 16000))
    create = client.audio.transcriptions.create
    text = create(model="whisper-1", file=wav, response_format="text")
    assert isinstance(text, str)
    assert wer(BECKETT, text) <= 0.1, text
    assert wer(BECKETT, create(model="whisper-1", file=wav, response_format="json").text) <= 0.1

    srt = create(model="whisper-1", file=wav, response_format="srt")
    assert isinstance(srt, str)
    cues = re.findall(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)\n", srt)
    assert [int(cue[0]) for cue in cues] == list(range(1, len(cues) + 1))
    assert wer(BECKETT, " ".join(cue[3] for cue in cues)) <= 0.1
    times = [t for cue in cues for t in cue[1:3]]
    assert times == sorted(times)
    assert times[0] < times[-1] <= "00:00:10,000"

    vtt = create(model="whisper-1", file=wav, response_format="vtt", language="en")
    assert isinstance(vtt, str)
    assert vtt.startswith("WEBVTT\n\n")
    assert re.findall(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}", vtt)


# -- speech -------------------------------------------------------------------------------------


def transcribe(server: RunningServer, audio: bytes, name: str) -> str:
    response = httpx.post(
        f"{server.http}/v1/audio/transcriptions",
        files={"file": (name, audio)},
        data={"response_format": "text"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "opus", "flac"])
def test_speech_in_every_format_decodes_and_says_the_input(
    server: RunningServer, client: openai.OpenAI, fmt: Any
) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="joe", input=SPOKEN, response_format=fmt
    ) as response:
        assert response.headers["content-type"].startswith("audio/")
        audio = b"".join(response.iter_bytes())
    if fmt == "pcm":  # raw 24 kHz PCM16, as OpenAI's
        assert response.headers["content-type"] == "audio/L16; rate=24000; channels=1"
        audio = write_wav(np.frombuffer(audio, "<i2"), 24000)
    seconds = len(decode_audio(audio, 16000)) / 16000
    assert 1.5 < seconds < 6
    heard = transcribe(server, audio, f"speech.{'wav' if fmt == 'pcm' else fmt}")
    assert wer(SPOKEN, heard) <= 0.2, heard


def speak(server: RunningServer, **body: Any) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "response_format": "wav", **body}
    return httpx.post(f"{server.http}/v1/audio/speech", json=body, timeout=60)


def test_ssml_input_is_spoken_with_its_pauses(server: RunningServer) -> None:
    plain = speak(server, input="Your table is ready. Please come in.")
    ssml = speak(
        server,
        input='<speak>Your table is ready.<break time="1s"/>'
        '<prosody rate="slow">Please come in.</prosody></speak>',
    )
    assert plain.status_code == ssml.status_code == 200, ssml.text
    heard = transcribe(server, ssml.content, "ssml.wav")
    assert wer("Your table is ready. Please come in.", heard) <= 0.15, heard
    longer = len(decode_audio(ssml.content)) - len(decode_audio(plain.content))
    assert longer > 0.8 * 16000  # the break, and the slow prosody


def test_an_emotion_and_a_speed_are_accepted(server: RunningServer) -> None:
    response = speak(server, input="What a lovely day!", emotion="happy", speed=1.2)
    assert response.status_code == 200, response.text
    assert wer("What a lovely day!", transcribe(server, response.content, "happy.wav")) <= 0.25


# -- refusals -----------------------------------------------------------------------------------

WAV = write_wav(silence(0.5), 16000)


@pytest.mark.parametrize(
    ("request_kwargs", "status", "param", "message"),
    [
        pytest.param(
            {"files": {"model": (None, "whisper-1")}}, 400, "file", "no file", id="no file"
        ),
        pytest.param(
            {"files": {"file": ("a.wav", b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(200)))}},
            400, "file", "cannot decode", id="corrupt file",
        ),
        pytest.param({"files": {"file": ("a.wav", b"")}}, 400, "file", "empty", id="empty file"),
        pytest.param(
            {"files": {"file": ("notes.txt", b"plain text, not audio\n" * 50)}},
            400, "file", "formats read: flac", id="not audio",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"response_format": "xml"}},
            400, "response_format", "response_format", id="unknown response format",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"language": "klingon"}},
            400, "language", "unknown language", id="unknown language",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"temperature": "7"}},
            400, "temperature", "less than or equal to 1", id="bad temperature",
        ),
        pytest.param(
            {"files": {"file": ("a.wav", WAV)}, "data": {"include[]": "logprobs"}},
            400, "include", "unsupported parameter", id="unsupported parameter",
        ),
        pytest.param(
            {"json": {"file": "a.wav"}}, 400, "file", "multipart/form-data", id="not multipart"
        ),
    ],
)  # fmt: skip
def test_bad_transcription_requests_are_refused_clearly(
    server: RunningServer,
    request_kwargs: dict[str, Any],
    status: int,
    param: str | None,
    message: str,
) -> None:
    response = httpx.post(f"{server.http}/v1/audio/transcriptions", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]


def test_an_oversized_upload_is_refused_before_its_body_is_read(server: RunningServer) -> None:
    head = (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\n\r\n--x\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode())  # 100 MiB announced, none of it sent
        reply = sock.makefile("rb")
        status_line = reply.readline()
        headers = dict(
            line.decode().lower().rstrip().split(": ", 1) for line in iter(reply.readline, b"\r\n")
        )
        body = reply.read(int(headers["content-length"]))
    assert status_line.startswith(b"HTTP/1.1 413")
    assert b"larger than 25 MiB" in body


def test_an_oversized_upload_of_unknown_length_is_cut_off(server: RunningServer) -> None:
    def body() -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield bytes(1024 * 1024)

    response = httpx.post(
        f"{server.http}/v1/audio/transcriptions",
        content=body(),  # chunked: no Content-Length
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        pytest.param({"voice": "nobody"}, "voice", "unknown voice 'nobody'", id="unknown voice"),
        pytest.param(
            {"input": '<speak>Hello <break time="soon"/></speak>'},
            "input", "invalid SSML at line 1, column 14: break time 'soon'", id="invalid SSML",
        ),
        pytest.param(
            {"input": "<speak>Hello <b>there</speak>"},
            "input", "line 1, column 24: malformed XML: mismatched tag", id="malformed SSML",
        ),
        pytest.param({"speed": 10}, "speed", "less than or equal to 4", id="too fast"),
        pytest.param({"speed": "fast"}, "speed", "valid number", id="speed not a number"),
        pytest.param({"response_format": "aac"}, "response_format", "'wav'", id="aac"),
        pytest.param({"emotion": "grumpy"}, "emotion", "unknown emotion", id="unknown emotion"),
        pytest.param({"input": ""}, "input", "at least 1 character", id="empty input"),
        pytest.param({"input": "a" * 5000}, "input", "limit 4096", id="input too long"),
        pytest.param({"input": "<speak></speak>"}, "input", "nothing to say", id="silent SSML"),
        pytest.param({"instructions": "Be cheerful"}, "instructions", "unsupported", id="extra"),
    ],
)  # fmt: skip
def test_bad_speech_requests_are_refused_clearly(
    server: RunningServer, body: dict[str, Any], param: str, message: str
) -> None:
    response = speak(server, **{"input": "Hello.", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert message in error["message"]


def test_a_body_that_is_not_json_is_refused(server: RunningServer) -> None:
    response = httpx.post(f"{server.http}/v1/audio/speech", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_an_oversized_json_body_is_refused(server: RunningServer) -> None:
    response = speak(server, input="Hello.", padding="x" * 2_000_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_the_sdk_sees_our_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown voice 'nobody'"):
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hello.")


# -- voices and metrics ---------------------------------------------------------------------------


def test_the_voice_list_names_the_embedded_voice(server: RunningServer) -> None:
    voices = httpx.get(f"{server.http}/v1/voices").json()["data"]
    joe = next(v for v in voices if v["name"] == "joe")
    assert joe["available"]
    assert joe["default"]
    assert joe["language"] == "en-US"
    assert "happy" in joe["styles"]


def test_metrics_expose_sessions_stages_executors_and_errors(server: RunningServer) -> None:
    assert speak(server, input="Hi.", voice="nobody").status_code == 400
    assert speak(server, input="Hi.").status_code == 200
    response = httpx.get(f"{server.http}/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in (
        "voxline_sessions",
        "voxline_turn_stage_seconds",
        "voxline_interruptions",
        "voxline_executor_queue_depth",
        "voxline_executor_busy_fraction",
        "voxline_executor_rejected",
        "voxline_tts_cache_hits",  # the agent's fixed replies were cached at start-up
        "voxline_tts_cache_bytes",
    ):
        assert name in families, name
    [cached] = families["voxline_tts_cache_bytes"].samples
    assert cached.value > 0
    executors = {s.labels["executor"] for s in families["voxline_executor_queue_depth"].samples}
    assert {"silero-vad", "piper"} <= executors
    assert any(name.startswith("whisper") for name in executors)
    requests = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["voxline_http_requests"].samples
    }
    assert requests[("speech", "200")] >= 1
    assert requests[("speech", "400")] >= 1
    errors = {s.labels["kind"]: s.value for s in families["voxline_errors"].samples}
    assert errors["unknown_voice"] >= 1
