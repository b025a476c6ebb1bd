"""A file transcript in the response formats of OpenAI's ``/v1/audio/transcriptions`` and
``/v1/audio/translations``.

``json`` (``{"text"}``), ``text``, ``srt`` and ``vtt`` subtitles (one cue per segment), and
``verbose_json`` (language, duration, segments and, when asked for, words; times in seconds).
A translation's ``verbose_json`` says ``"task": "translate"`` and, as OpenAI's, names the
language of its text, ``"english"``; Voxline adds the language detected in the speech as
``source_language``.
Pure functions: a :class:`~pipeline.asr.batch.FileTranscript` in, a body and its media type out.
"""

from __future__ import annotations

from typing import Any, Literal

from pipeline.asr.batch import FileTranscript, Segment

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


def render(
    transcript: FileTranscript,
    fmt: ResponseFormat,
    *,
    granularities: frozenset[Granularity] = frozenset({"segment"}),
) -> tuple[str | dict[str, Any], str]:
    """The body (text, or a dict to send as JSON) and its media type."""
    match fmt:
        case "json":
            return {"text": transcript.text, "usage": _usage(transcript)}, "application/json"
        case "text":
            return transcript.text + "\n", "text/plain; charset=utf-8"
        case "srt":
            return srt(transcript.segments), "text/plain; charset=utf-8"
        case "vtt":
            return vtt(transcript.segments), "text/vtt; charset=utf-8"
        case "verbose_json":
            return verbose_json(transcript, granularities), "application/json"


def verbose_json(
    transcript: FileTranscript, granularities: frozenset[Granularity]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
    }
    if transcript.translated:
        body |= {"task": "translate", "language": "english", "source_language": transcript.language}
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.window_start // 160,  # Whisper counts seek in 10 ms mel frames
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": round(s.avg_logprob, 4),
                "compression_ratio": 1.0,
                "no_speech_prob": round(s.no_speech_prob, 4),
            }
            for s in transcript.segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in transcript.words
        ]
    body["usage"] = _usage(transcript)
    return body


def srt(segments: tuple[Segment, ...]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    cues = [
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{_cue_text(s.text)}\n"
        for i, s in enumerate(segments, 1)
    ]
    return "\n".join(cues)


def vtt(segments: tuple[Segment, ...]) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    cues = [
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{_cue_text(s.text)}\n"
        for s in segments
    ]
    return "\n".join(["WEBVTT\n", *cues])


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS`` then ``decimal`` and milliseconds (hours never wrap)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _cue_text(text: str) -> str:
    # a blank line would end the cue early, and "-->" would read as a timing line in VTT
    return " ".join(text.split()).replace("-->", "->") or "..."


def _usage(transcript: FileTranscript) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(transcript.duration, 3)}
