"""SSML attribute values: durations, break strengths, prosody changes, emphasis levels.

Prosody values become multipliers of the enclosing prosody, except absolute pitches (``200Hz``),
which set the pitch relative to the voice's base pitch. Every parser raises :class:`ValueError`
with the reason; the builder adds the position.

==========  ==========================================================================
attribute   accepted
==========  ==========================================================================
``time``    ``500ms``, ``1.5s`` (0 to :data:`MAX_BREAK_MS`)
``rate``    ``x-slow`` 0.6, ``slow`` 0.8, ``medium``/``default`` 1, ``fast`` 1.25,
            ``x-fast`` 1.5; ``150%``; ``+20%``/``-20%``; a bare number (``1.5``)
``pitch``   ``x-low`` 0.8, ``low`` 0.9, ``medium``/``default`` 1, ``high`` 1.1,
            ``x-high`` 1.25; ``+20%``/``-10%``; ``+2st``; ``+30Hz``; ``200Hz``
``volume``  ``silent`` 0, ``x-soft`` -12 dB, ``soft`` -6 dB, ``medium``/``default`` 0 dB,
            ``loud`` +6 dB, ``x-loud`` +9 dB; ``+3dB``/``-6dB``; ``+20%``/``-50%``; ``80%``
==========  ==========================================================================
"""

from __future__ import annotations

import re

#: the longest single ``break`` (and pause) a document may ask for
MAX_BREAK_MS = 10_000
#: the pauses of one document (one reply, one speech request) together
MAX_TOTAL_PAUSE_MS = 60_000
#: the longest a document may speak, pauses included, as estimated before synthesis: its
#: text at :data:`CHARS_PER_SECOND` times each part's rate (``prosody``, ``emphasis``, the
#: request's speed), so a slow rate over a long text cannot make hours of audio
MAX_SPEECH_S = 600
#: characters spoken a second at rate 1 (about 150 words a minute, English read aloud)
CHARS_PER_SECOND = 15.0
#: the products of nested prosody must stay within these (rate, pitch, volume)
RATE_RANGE = (0.25, 4.0)
PITCH_RANGE = (0.5, 2.0)
VOLUME_RANGE = (0.0, 4.0)

BREAK_STRENGTHS = {
    "none": 0, "x-weak": 100, "weak": 250, "medium": 400, "strong": 700, "x-strong": 1000,
}  # fmt: skip
_RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
_PITCHES = {"x-low": 0.8, "low": 0.9, "medium": 1.0, "default": 1.0, "high": 1.1, "x-high": 1.25}
_VOLUMES_DB = {"x-soft": -12.0, "soft": -6.0, "medium": 0.0, "default": 0.0, "loud": 6.0}
_VOLUMES_DB["x-loud"] = 9.0
#: emphasis level: (rate, pitch, volume) multipliers
EMPHASIS = {
    "strong": (0.85, 1.1, 1.4),
    "moderate": (0.92, 1.05, 1.2),
    "none": (1.0, 1.0, 1.0),
    "reduced": (1.1, 0.95, 0.8),
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_TIME = re.compile(rf"{_NUMBER}\s*(ms|s)")
_SIGNED = re.compile(rf"([+-]){_NUMBER}\s*(%|st|hz|db)", re.IGNORECASE)
_UNSIGNED = re.compile(rf"{_NUMBER}\s*(%|hz)?", re.IGNORECASE)


def break_ms(time: str | None, strength: str | None) -> int:
    """Milliseconds of a ``break`` (``time`` wins; neither is a ``medium`` break)."""
    if time is not None:
        match = _TIME.fullmatch(time.strip())
        if match is None:
            raise ValueError(f"break time {time!r} is not a duration like 500ms or 1.5s")
        ms = float(match[1]) * (1 if match[2] == "ms" else 1000)
        if ms > MAX_BREAK_MS:
            raise ValueError(f"break time {time!r} is longer than {MAX_BREAK_MS} ms")
        return round(ms)
    key = (strength or "medium").strip()
    if key not in BREAK_STRENGTHS:
        raise ValueError(f"unknown break strength {strength!r}")
    return BREAK_STRENGTHS[key]


def rate(value: str) -> float:
    """The multiplier a ``rate`` value applies."""
    text = value.strip().lower()
    if text in _RATES:
        return _RATES[text]
    signed = _SIGNED.fullmatch(text)
    if signed is not None and signed[3] == "%":
        return _positive(1 + _signed(signed) / 100, "rate", value)
    unsigned = _UNSIGNED.fullmatch(text)
    if unsigned is not None and unsigned[2] in (None, "%"):
        number = float(unsigned[1])
        return _positive(number / 100 if unsigned[2] else number, "rate", value)
    raise ValueError(f"unknown rate {value!r}")


def pitch(value: str, current: float, base_hz: float) -> float:
    """The pitch (a multiplier of the voice's own) after ``value``, from ``current``."""
    text = value.strip().lower()
    if text in _PITCHES:
        return current * _PITCHES[text]
    signed = _SIGNED.fullmatch(text)
    if signed is not None:
        amount, unit = _signed(signed), signed[3].lower()
        if unit == "%":
            return current * _positive(1 + amount / 100, "pitch", value)
        if unit == "st":
            return current * 2 ** (amount / 12)
        if unit == "hz":
            return _positive(current + amount / base_hz, "pitch", value)
    unsigned = _UNSIGNED.fullmatch(text)
    if unsigned is not None and unsigned[2] is not None:
        number = float(unsigned[1])
        if unsigned[2] == "hz":
            return _positive(number / base_hz, "pitch", value)
        return current * _positive(number / 100, "pitch", value)
    raise ValueError(f"unknown pitch {value!r}")


def volume(value: str) -> float:
    """The amplitude multiplier a ``volume`` value applies."""
    text = value.strip().lower()
    if text == "silent":
        return 0.0
    if text in _VOLUMES_DB:
        return _decibels(_VOLUMES_DB[text])
    signed = _SIGNED.fullmatch(text)
    if signed is not None and signed[3].lower() == "db":
        return _decibels(_signed(signed))
    if signed is not None and signed[3] == "%":
        return max(0.0, 1 + _signed(signed) / 100)
    unsigned = _UNSIGNED.fullmatch(text)
    if unsigned is not None and unsigned[2] == "%":
        return float(unsigned[1]) / 100
    raise ValueError(f"unknown volume {value!r}")


def intensity(value: str) -> float:
    """An emotion intensity: a number (``0.7``) or a percentage (``70%``), 0 to 2."""
    match = _UNSIGNED.fullmatch(value.strip())
    if match is None or match[2] not in (None, "%"):
        raise ValueError(f"intensity {value!r} is not a number")
    number = float(match[1]) / (100 if match[2] else 1)
    if number > 2:
        raise ValueError(f"intensity {value!r} is above 2")
    return number


def check_range(name: str, value: float, limits: tuple[float, float]) -> None:
    low, high = limits
    if not low <= value <= high:
        raise ValueError(f"{name} would be {value:.3g} times the voice's (allowed {low}-{high})")


def _signed(match: re.Match[str]) -> float:
    return float(match[2]) * (-1 if match[1] == "-" else 1)


def _positive(number: float, name: str, value: str) -> float:
    if number <= 0:
        raise ValueError(f"{name} {value!r} leaves nothing to speak")
    return number


def _decibels(db: float) -> float:
    return float(10 ** (db / 20))
