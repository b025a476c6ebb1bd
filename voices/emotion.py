"""Emotion and speaking style: the shared vocabulary, its presets, inline tags, Piper's mapping.

The vocabulary is :data:`~voices.engine.EMOTIONS` (neutral, happy, sad, angry, excited, calm,
whisper, serious); a :class:`~voices.engine.Style` pairs one with an intensity (0 is neutral,
1 the preset, 2 twice as far from neutral). A style can be set per voice (the catalog), per reply
(intent templates, config), per span (an inline tag the LLM writes: ``[happy]``), or in SSML
(``<express-as style="happy" intensity="0.5">``).

Each engine maps a style to what it can really change. :data:`PRESETS` say it in engine-neutral
terms (an :class:`Expression`: speaking rate, pitch, loudness, how varied the voice and its
timing are, how breathy); intensity scales each factor geometrically. :func:`piper_settings`
turns prosody and style into Piper's knobs: ``length_scale`` (rate, through a measured curve:
:func:`piper_length_factor`), ``noise_scale`` and
``noise_w_scale`` (variation), and the output transforms of :mod:`voices.dsp` (volume, pitch,
whisper).

Inline tags (:class:`InlineTags`, sans-I/O): ``[happy]``, ``[sad:0.5]``, ``[excited:150%]``
switch the style until the next tag; ``[/happy]`` or ``[/]`` go back to the reply's own style.
Tag names are case-insensitive and a few synonyms work (``[cheerful]``); anything else in
brackets (``[1]``, ``[citation needed]``) is text. Tags are removed from the text (and so from
the transcript) with the space on one side, and a tag split across LLM deltas (``[ha`` +
``ppy]``) is recognised all the same: a ``[`` that may open a tag is held back until it is
decided, at most :data:`MAX_TAG_CHARS` characters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from voices.engine import EMOTIONS, Emotion, Prosody, Style

__all__ = [
    "MAX_TAG_CHARS",
    "PRESETS",
    "Expression",
    "InlineTags",
    "PiperSettings",
    "StyleChange",
    "expression",
    "parse_style",
    "piper_settings",
    "split_tags",
]


@dataclass(frozen=True, slots=True)
class Expression:
    """Engine-neutral multipliers (1 is the voice as it is) and a whisper amount (0 to 1)."""

    rate: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0
    #: how much the voice itself varies (Piper's noise_scale; StyleTTS2's diffusion alpha)
    variation: float = 1.0
    #: how much phoneme lengths vary (Piper's noise_w_scale)
    timing: float = 1.0
    #: share of the sound replaced by its whispered version (voicing removed)
    whisper: float = 0.0


PRESETS: dict[Emotion, Expression] = {
    "neutral": Expression(),
    "happy": Expression(rate=1.08, pitch=1.12, volume=1.12, variation=1.15, timing=1.1),
    "sad": Expression(rate=0.85, pitch=0.9, volume=0.7, variation=0.8, timing=0.8),
    "angry": Expression(rate=1.1, pitch=1.04, volume=1.6, variation=1.2, timing=1.1),
    "excited": Expression(rate=1.2, pitch=1.2, volume=1.35, variation=1.3, timing=1.2),
    "calm": Expression(rate=0.9, pitch=0.95, volume=0.8, variation=0.75, timing=0.8),
    "whisper": Expression(rate=0.95, volume=0.5, variation=0.9, whisper=1.0),
    "serious": Expression(rate=0.93, pitch=0.92, volume=1.05, variation=0.7, timing=0.8),
}
assert set(PRESETS) == set(EMOTIONS)

_SYNONYMS: dict[str, Emotion] = {
    "default": "neutral", "cheerful": "happy", "joyful": "happy", "glad": "happy",
    "unhappy": "sad", "mad": "angry", "furious": "angry", "enthusiastic": "excited",
    "relaxed": "calm", "soothing": "calm", "whispering": "whisper", "whispers": "whisper",
    "stern": "serious", "formal": "serious",
}  # fmt: skip
_EMOTION_OF: dict[str, Emotion] = {**{e: e for e in EMOTIONS}, **_SYNONYMS}
MAX_INTENSITY = 2.0


def parse_style(name: str, intensity: float = 1.0) -> Style:
    """The style named ``name`` (a vocabulary word or a synonym); raises :class:`ValueError`."""
    emotion = _EMOTION_OF.get(name.strip().lower())
    if emotion is None:
        raise ValueError(f"unknown emotion {name!r} (known: {', '.join(EMOTIONS)})")
    if not 0.0 <= intensity <= MAX_INTENSITY:
        raise ValueError(f"intensity {intensity} is outside 0-{MAX_INTENSITY}")
    return Style(emotion, intensity)


def expression(style: Style | None, presets: Mapping[Emotion, Expression] = PRESETS) -> Expression:
    """The preset of ``style`` (in ``presets``) scaled by its intensity (``None``: neutral)."""
    if style is None:
        return presets["neutral"]
    preset = presets[style.emotion]
    k = style.intensity
    return Expression(
        rate=preset.rate**k,
        pitch=preset.pitch**k,
        volume=preset.volume**k,
        variation=preset.variation**k,
        timing=preset.timing**k,
        whisper=min(1.0, preset.whisper * k),
    )


@dataclass(frozen=True, slots=True)
class PiperSettings:
    """What the Piper worker does for one segment."""

    length_scale: float
    noise_scale: float
    noise_w_scale: float
    #: output gain (limited above 1), pitch ratio, whisper share: see :mod:`voices.dsp`
    volume: float
    pitch: float
    whisper: float


#: how much longer Piper speaks for a length_scale factor (mean speech duration of three
#: sentences, three takes each, joe voice): phoneme lengths are rounded up to whole frames,
#: so durations change less than length_scale does
PIPER_DURATIONS = (
    (0.63, 0.4), (0.68, 0.5), (0.72, 0.6), (0.80, 0.7), (1.0, 1.0), (1.10, 1.2), (1.34, 1.5),
    (1.72, 2.0), (2.08, 2.5),
)  # fmt: skip


def piper_length_factor(duration: float) -> float:
    """The length_scale factor that makes Piper's speech last ``duration`` times as long.

    Interpolated in :data:`PIPER_DURATIONS` (log-log); beyond its ends the factor stays at
    0.4 or 2.5 (faster or slower than that, Piper's voice degrades).
    """
    durations = [math.log(d) for d, _ in PIPER_DURATIONS]
    factors = [math.log(f) for _, f in PIPER_DURATIONS]
    return math.exp(float(np.interp(math.log(duration), durations, factors)))


def piper_settings(
    prosody: Prosody,
    style: Style | None,
    *,
    length_scale: float,
    noise_scale: float,
    noise_w_scale: float,
    presets: Mapping[Emotion, Expression] = PRESETS,
) -> PiperSettings:
    """Piper's knobs for ``prosody`` and ``style``, from the voice's defaults.

    An absolute knob in ``prosody`` (``length_scale``...) replaces the voice's default and the
    style's factor for it; ``rate``, ``pitch`` and ``volume`` multiply with the style's.
    """
    e = expression(style, presets)
    base_length = length_scale if prosody.length_scale is None else prosody.length_scale
    return PiperSettings(
        length_scale=base_length * piper_length_factor(1.0 / (prosody.rate * e.rate)),
        noise_scale=noise_scale * e.variation
        if prosody.noise_scale is None
        else prosody.noise_scale,
        noise_w_scale=noise_w_scale * e.timing
        if prosody.noise_w_scale is None
        else prosody.noise_w_scale,
        volume=prosody.volume * e.volume,
        pitch=prosody.pitch * e.pitch,
        whisper=e.whisper,
    )


# -- inline tags -------------------------------------------------------------------------------

#: the longest bracketed text that may still be a tag (a longer one is text)
MAX_TAG_CHARS = 32
_TAG = re.compile(r"\[\s*(/?)\s*([a-zA-Z-]*)\s*(?:[:=]\s*(\d+(?:\.\d+)?|\.\d+)\s*(%?))?\s*\]")


@dataclass(frozen=True, slots=True)
class StyleChange:
    """From ``offset`` (in the text with tags removed) speak with ``style``.

    ``None`` goes back to the reply's own style.
    """

    offset: int
    style: Style | None


def _tag(text: str) -> StyleChange | bool | None:
    """The change a whole ``[...]`` token asks for, or ``False`` if it is not a tag."""
    match = _TAG.fullmatch(text)
    if match is None:
        return False
    closing, name, number, percent = match.groups()
    if closing:
        if number is not None:
            return False
        if not name:
            return None
        try:
            parse_style(name)
        except ValueError:
            return False
        return None
    intensity = 1.0
    if number is not None:
        intensity = float(number) / (100 if percent else 1)
    try:
        return StyleChange(0, parse_style(name, intensity))
    except ValueError:
        return False


class InlineTags:
    """Feed LLM text deltas, get text without tags and :class:`StyleChange` events, in order.

    Text comes out as soon as it cannot be part of a tag; :attr:`offset` counts the characters
    emitted so far, and each change carries the offset where it applies.
    """

    def __init__(self) -> None:
        self._held = ""
        self._offset = 0
        self._last = ""  # the last character emitted
        self._skip_space = False

    @property
    def offset(self) -> int:
        return self._offset

    def feed(self, delta: str) -> list[str | StyleChange]:
        text = self._held + delta
        self._held = ""
        out: list[str | StyleChange] = []
        start = search = 0
        while (j := text.find("[", search)) >= 0:
            k = text.find("]", j + 1)
            if k < 0 or k - j + 1 > MAX_TAG_CHARS:
                if len(text) - j <= MAX_TAG_CHARS and k < 0:
                    self._held = text[j:]  # may still become a tag
                    self._emit(out, text[start:j])
                    return out
                search = j + 1
                continue
            change = _tag(text[j : k + 1])
            if change is False:
                search = j + 1
                continue
            self._emit(out, text[start:j])
            assert change is None or isinstance(change, StyleChange)
            style = None if change is None else change.style
            out.append(StyleChange(self._offset, style))
            self._skip_space = self._last == "" or self._last.isspace()
            start = search = k + 1
        self._emit(out, text[start:])
        return out

    def flush(self) -> list[str | StyleChange]:
        """The end of the text: whatever was held back is text."""
        out: list[str | StyleChange] = []
        self._emit(out, self._held)
        self._held = ""
        return out

    def _emit(self, out: list[str | StyleChange], text: str) -> None:
        if self._skip_space:
            stripped = text.lstrip()
            if stripped:
                self._skip_space = False
            text = stripped
        if not text:
            return
        self._offset += len(text)
        self._last = text[-1]
        if out and isinstance(out[-1], str):
            out[-1] += text
        else:
            out.append(text)


def split_tags(text: str) -> tuple[str, list[StyleChange]]:
    """A whole text's tags removed, and the changes they asked for."""
    parser = InlineTags()
    pieces = [*parser.feed(text), *parser.flush()]
    clean = "".join(p for p in pieces if isinstance(p, str))
    return clean, [p for p in pieces if isinstance(p, StyleChange)]
