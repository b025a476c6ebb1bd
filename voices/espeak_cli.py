"""espeak-ng's command line, as :class:`~voices.espeak_engine.EspeakEngine` runs it: the options
for a prosody and style, plain-text input, its WAV output, its voice listing, and word timings
shared out over a sentence's samples (the CLI reports none).

Prosody and style (:func:`espeak_settings`; measured on espeak-ng 1.51, ``es``, see the
constants): ``rate`` → ``-s`` words per minute (175 * rate, 80 to 450; duration is close
to inversely proportional), ``pitch`` → ``-p`` (50 + 75 * log2 pitch, 0 to 99: about 0.66 to
1.7 times the default F0), ``volume`` → ``-a`` (100 * volume, 0 to 200; espeak-ng limits its
own peaks).
A style multiplies each by its preset (:data:`voices.emotion.PRESETS`, or the voice's own); a
style that whispers (``whisper`` ≥ 0.5) uses espeak-ng's ``+whisper`` variant. Piper's absolute
knobs (``length_scale``, the noise scales, ``speaker_id``), SSML phonemes (IPA, which espeak-ng's
text input does not read) and the presets' ``variation``/``timing`` have no espeak-ng meaning and
are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from voices.emotion import PRESETS, Expression, expression
from voices.engine import BYTES_PER_SAMPLE, Emotion, Prosody, Style, WordTiming

__all__ = [
    "DEFAULT_WPM",
    "EspeakSettings",
    "base_voice",
    "char_timings",
    "espeak_settings",
    "parse_wav",
    "plain_text",
    "stderr_tail",
    "voice_names",
]

#: espeak-ng's defaults and limits (``espeak-ng --help``)
DEFAULT_WPM = 175
WPM_RANGE = (80, 450)
DEFAULT_PITCH = 50
PITCH_RANGE = (0, 99)
#: ``-p`` steps per octave of F0 (measured: -p 0, 50, 99 give 66, 100, 169 Hz for ``es``)
PITCH_STEPS_PER_OCTAVE = 75.0
DEFAULT_AMPLITUDE = 100
AMPLITUDE_RANGE = (0, 200)
#: a style whispers from this much on (espeak-ng's whisper is a voice variant, all or nothing)
WHISPER_FROM = 0.5

#: ``(en-gb 3)`` in the Other Languages column of ``espeak-ng --voices``
OTHER_LANGUAGE = re.compile(r"\(([^\s()]+) \d+\)")


@dataclass(frozen=True, slots=True)
class EspeakSettings:
    """espeak-ng's command-line knobs for one segment."""

    wpm: int
    pitch: int
    amplitude: int
    whisper: bool

    def argv(self, voice: str) -> list[str]:
        variant = f"{voice}+whisper" if self.whisper and "+" not in voice else voice
        return [
            "-v", variant, "-s", str(self.wpm), "-p", str(self.pitch), "-a", str(self.amplitude),
        ]  # fmt: skip


def espeak_settings(
    prosody: Prosody, style: Style | None, presets: Mapping[Emotion, Expression] = PRESETS
) -> EspeakSettings:
    """espeak-ng's knobs for ``prosody`` and ``style`` (see the module docstring)."""
    e = expression(style, presets)
    rate = max(prosody.rate * e.rate, 1e-3)
    pitch = max(prosody.pitch * e.pitch, 1e-3)
    return EspeakSettings(
        wpm=_clamp(round(DEFAULT_WPM * rate), WPM_RANGE),
        pitch=_clamp(round(DEFAULT_PITCH + PITCH_STEPS_PER_OCTAVE * math.log2(pitch)), PITCH_RANGE),
        amplitude=_clamp(round(DEFAULT_AMPLITUDE * prosody.volume * e.volume), AMPLITUDE_RANGE),
        whisper=e.whisper >= WHISPER_FROM,
    )


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return min(max(value, bounds[0]), bounds[1])


def parse_wav(data: bytes) -> tuple[int, bytes]:
    """``(sample_rate, pcm)`` of a mono PCM16 WAV as espeak-ng writes it to a pipe (its sizes
    are placeholders: the data runs to the end). Raises :class:`ValueError`."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    at = 12
    rate: int | None = None
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        body = data[at + 8 : at + 8 + size]
        if kind == b"fmt ":
            if len(body) < 16:
                raise ValueError("a short fmt chunk")
            audio_format = int.from_bytes(body[0:2], "little")
            channels = int.from_bytes(body[2:4], "little")
            bits = int.from_bytes(body[14:16], "little")
            if (audio_format, channels, bits) != (1, 1, 16):
                raise ValueError(f"not mono PCM16 (format {audio_format}, {channels} ch, {bits})")
            rate = int.from_bytes(body[4:8], "little")
        elif kind == b"data":
            if rate is None:
                raise ValueError("data before fmt")
            pcm = body  # a placeholder size just runs to the end
            return rate, pcm[: len(pcm) - len(pcm) % BYTES_PER_SAMPLE]
        at += 8 + size + size % 2
    raise ValueError("no data chunk")


def char_timings(
    spans: Sequence[tuple[int, int]], sample_offset: int, samples: int
) -> tuple[WordTiming, ...]:
    """Words (``spans`` of text) sharing ``samples`` from ``sample_offset`` in proportion to
    their lengths in characters: they tile the samples, in order, each owning the pause after
    it (the first also owns the leading silence)."""
    if not spans:
        return ()
    total = sum(end - start for start, end in spans)
    bounds = [sample_offset]
    running = 0
    for start, end in spans:
        running += end - start
        bounds.append(sample_offset + samples * running // total)
    return tuple(
        WordTiming(start, end, bounds[i], bounds[i + 1]) for i, (start, end) in enumerate(spans)
    )


def plain_text(text: str) -> str:
    """``text`` as espeak-ng's plain-text input: no ``[[phoneme]]`` blocks, no NULs."""
    return text.replace("\x00", " ").replace("[[", "[ [").replace("]]", "] ]")


def stderr_tail(stderr: bytes) -> str:
    text = stderr.decode(errors="replace").strip()
    return f"stderr: {text[-500:]}" if text else "no stderr"


def base_voice(voice: str) -> str:
    return voice.partition("+")[0].lower()


def voice_names(listing: str) -> frozenset[str]:
    """Every name ``espeak-ng -v`` takes, from ``espeak-ng --voices``: languages, other
    languages, voice names and voice files (with and without their folder), lower-case."""
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        language, name, file = fields[1], fields[3], fields[4]
        names.update({language, name, file, file.rpartition("/")[2]})
        names.update(OTHER_LANGUAGE.findall(" ".join(fields[5:])))
    return frozenset(n.lower() for n in names)
