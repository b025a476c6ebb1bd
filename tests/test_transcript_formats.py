"""Transcripts rendered as OpenAI's response formats (golden outputs)."""

from __future__ import annotations

import pytest

from agent.transcript_formats import render, srt, timestamp, vtt
from pipeline.asr.batch import FileTranscript, Segment, Word

WORDS = (Word("Hello", 0.5, 0.9, 0.9), Word("there.", 0.9, 1.25, 0.8))
SEGMENTS = (
    Segment(0, 0.5, 1.25, "Hello there.", 0, -0.2, 0.01, WORDS),
    Segment(
        1, 3661.0, 3662.5004, "One --> two", 480000, -0.3, 0.02, (Word("One", 3661, 3662.5, 1),)
    ),
)
TRANSCRIPT = FileTranscript("Hello there. One --> two", "en", 3663.0, SEGMENTS)


@pytest.mark.parametrize(
    ("seconds", "decimal", "expected"),
    [
        (0.0, ",", "00:00:00,000"),
        (1.2345, ".", "00:00:01.234"),  # half-even rounding of 1234.5 ms
        (59.9996, ",", "00:01:00,000"),
        (3725.5, ".", "01:02:05.500"),
        (360000.0, ",", "100:00:00,000"),
        (-0.01, ",", "00:00:00,000"),
    ],
)
def test_timestamps(seconds: float, decimal: str, expected: str) -> None:
    assert timestamp(seconds, decimal) == expected


def test_srt() -> None:
    assert srt(SEGMENTS) == (
        "1\n00:00:00,500 --> 00:00:01,250\nHello there.\n\n"
        "2\n01:01:01,000 --> 01:01:02,500\nOne -> two\n"
    )


def test_vtt() -> None:
    assert vtt(SEGMENTS) == (
        "WEBVTT\n\n"
        "00:00:00.500 --> 00:00:01.250\nHello there.\n\n"
        "01:01:01.000 --> 01:01:02.500\nOne -> two\n"
    )


def test_json_and_text() -> None:
    assert render(TRANSCRIPT, "json") == (
        {"text": TRANSCRIPT.text, "usage": {"type": "duration", "seconds": 3663.0}},
        "application/json",
    )
    assert render(TRANSCRIPT, "text") == (TRANSCRIPT.text + "\n", "text/plain; charset=utf-8")


def test_verbose_json_has_segments_and_the_words_asked_for() -> None:
    body, media_type = render(TRANSCRIPT, "verbose_json", granularities=frozenset({"word"}))
    assert media_type == "application/json"
    assert isinstance(body, dict)
    assert "segments" not in body
    assert body["words"][:2] == [
        {"word": "Hello", "start": 0.5, "end": 0.9},
        {"word": "there.", "start": 0.9, "end": 1.25},
    ]
    body, _ = render(TRANSCRIPT, "verbose_json", granularities=frozenset({"segment"}))
    assert isinstance(body, dict)
    assert "words" not in body
    assert body["language"] == "en"
    assert body["duration"] == 3663.0
    assert body["segments"][1] == {
        "id": 1,
        "seek": 3000,
        "start": 3661.0,
        "end": 3662.5,
        "text": "One --> two",
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": -0.3,
        "compression_ratio": 1.0,
        "no_speech_prob": 0.02,
    }


def test_a_translation_names_english_and_the_language_heard() -> None:
    translated = FileTranscript("Hello there.", "de", 2.0, SEGMENTS[:1], translated=True)
    body, _ = render(translated, "verbose_json")
    assert isinstance(body, dict)
    assert (body["task"], body["language"], body["source_language"]) == (
        "translate",
        "english",
        "de",
    )
    assert body["text"] == "Hello there."
    assert [segment["text"] for segment in body["segments"]] == ["Hello there."]
    transcribed, _ = render(TRANSCRIPT, "verbose_json")
    assert isinstance(transcribed, dict)
    assert (transcribed["task"], transcribed["language"]) == ("transcribe", "en")
    assert "source_language" not in transcribed
