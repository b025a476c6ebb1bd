"""SSML events into a :class:`~voices.engine.SpeechPlan` (sans-I/O).

The element rules (a subset of W3C SSML 1.1, plus ``express-as`` for emotion):

- ``speak`` is the root; ``p`` and ``s`` end with a sentence end (a ``.`` is added if the text
  has none); ``w``, ``token`` and ``audio`` are transparent (``audio`` is never fetched: its
  content is the fallback text); ``desc``, ``meta`` and ``metadata`` are not spoken.
- ``break`` (``time`` or ``strength``) adds a pause after the text so far: at most
  :data:`~voices.ssml.values.MAX_BREAK_MS` in a row and
  :data:`~voices.ssml.values.MAX_TOTAL_PAUSE_MS` in the document.
- The document may speak :data:`~voices.ssml.values.MAX_SPEECH_S` at most, pauses included, as
  estimated from its text and rates before any synthesis.
- ``prosody`` (``rate``, ``pitch``, ``volume``; ``range``, ``contour`` and ``duration`` are
  accepted and ignored) and ``emphasis`` (``level``) multiply the enclosing prosody.
- ``say-as`` (``interpret-as``, ``format``), ``sub`` (``alias``) and ``phoneme`` (``ph``;
  ``alphabet`` ``ipa``) hold text only; ``phoneme`` keeps its text and tells engines that read
  IPA how to say it.
- ``voice`` (``name``), ``lang`` and ``xml:lang`` on any container set the segment's voice and
  language; ``express-as`` (``style``, ``intensity``) its emotion.
- ``mark`` (``name``) fires when playout reaches the next segment's first sample.
- Anything else (``lexicon``, ``lookup``, unknown elements and attributes, bad values) is an
  :class:`~pipeline.errors.InvalidSSML` at its position.

Text is whitespace-collapsed and, unless ``normalize=False``, read through
:func:`voices.normalize.normalize`. Consecutive text with the same settings is one segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from pipeline.errors import InvalidSSML
from voices import normalize as nz
from voices.emotion import parse_style
from voices.engine import PhonemeSpan, Prosody, SpeechPlan, SpeechSegment, Style
from voices.ssml import values
from voices.ssml.reader import End, Event, Start, Text

_SPACE = re.compile(r"\s+")
_SENTENCE_END = frozenset(".!?…")
_LANG = "xml:lang"
_COMMON = frozenset({_LANG, "xml:base", "xml:id", "id"})
#: element -> attributes it accepts (beyond the common ones)
_ATTRIBUTES: dict[str, frozenset[str]] = {
    "speak": frozenset({"version", "xmlns", "xmlns:xsi", "xsi:schemaLocation", "onlangfailure"}),
    "p": frozenset(),
    "s": frozenset(),
    "w": frozenset({"role"}),
    "token": frozenset({"role"}),
    "break": frozenset({"time", "strength"}),
    "prosody": frozenset({"rate", "pitch", "volume", "range", "contour", "duration"}),
    "emphasis": frozenset({"level"}),
    "say-as": frozenset({"interpret-as", "format", "detail"}),
    "sub": frozenset({"alias"}),
    "phoneme": frozenset({"ph", "alphabet"}),
    "voice": frozenset({"name", "gender", "age", "variant", "languages", "required", "ordering"}),
    "lang": frozenset(),
    "mark": frozenset({"name"}),
    "express-as": frozenset({"style", "intensity"}),
    "audio": frozenset({"src", "fetchtimeout", "fetchhint", "maxage", "maxstale", "clipBegin",
                        "clipEnd", "repeatCount", "repeatDur", "soundLevel", "speed"}),
    "desc": frozenset(),
    "meta": frozenset({"name", "content", "http-equiv"}),
    "metadata": frozenset(),
}  # fmt: skip
#: elements whose content is captured as plain text and spoken by the element's rule
_CAPTURING = frozenset({"say-as", "sub", "phoneme"})
#: elements whose content is never spoken
_SILENT = frozenset({"desc", "meta", "metadata"})
_EMPTY = frozenset({"break", "mark", "meta"})


@dataclass(frozen=True, slots=True)
class _Context:
    element: str
    prosody: Prosody
    style: Style | None
    voice: str | None
    lang: str | None


@dataclass(slots=True)
class _Pending:
    context: _Context
    text: list[str] = field(default_factory=list)
    pause_ms: int = 0
    marks: list[str] = field(default_factory=list)
    phonemes: list[PhonemeSpan] = field(default_factory=list)
    length: int = 0

    def settings(self) -> tuple[object, ...]:
        return _settings(self.context)


def _settings(context: _Context) -> tuple[object, ...]:
    return (context.prosody, context.style, context.voice, context.lang)


class PlanBuilder:
    """Feed :mod:`~voices.ssml.reader` events one at a time; :meth:`result` gives the plan."""

    def __init__(
        self,
        *,
        prosody: Prosody | None = None,
        style: Style | None = None,
        voice: str | None = None,
        lang: str | None = None,
        normalize: bool = True,
        date_order: str = "mdy",
        base_pitch_hz: float = 120.0,
    ) -> None:
        self._stack: list[_Context] = []
        self._root = _Context("", prosody or Prosody(), style, voice, lang)
        self._normalize = normalize
        self._date_order = date_order
        self._base_pitch_hz = base_pitch_hz
        self._segments: list[_Pending] = []
        self._pending = _Pending(self._root)
        self._last_space = True  # drop leading whitespace
        self._last_text = ""
        self._captured: list[str] | None = None
        self._capture_attributes: dict[str, str] = {}
        self._capture_position = (1, 1)
        self._silent_depth = 0
        self._done = False
        self._paused_ms = 0  # the document's pauses so far
        self._speech_s = 0.0  # its estimated speech so far (text at its rates)

    # -- events ----------------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        try:
            match event:
                case Start():
                    self._start(event)
                case End():
                    self._end(event)
                case Text():
                    self._text(event.data)
        except ValueError as error:
            raise InvalidSSML(str(error), event.line, event.column) from None

    def result(self) -> SpeechPlan:
        if not self._done:
            raise InvalidSSML("the document has no speak element", 1, 1)
        self._flush()
        segments = [p for p in self._segments if p.text or p.pause_ms or p.marks]
        for last in reversed(segments):
            if last.text:
                last.text = ["".join(last.text).rstrip()]
                break
        return SpeechPlan(tuple(self._segment(p) for p in segments))

    # -- elements --------------------------------------------------------------------------

    def _start(self, event: Start) -> None:
        name, attributes = event.name, event.attributes
        if not self._stack and name != "speak":
            raise ValueError(f"the root element must be speak, not {name}")
        if self._stack and name == "speak":
            raise ValueError("speak can only be the root element")
        if self._captured is not None:
            raise ValueError(f"<{self._stack[-1].element}> can only hold text, not <{name}>")
        context = self._stack[-1] if self._stack else self._root
        if self._silent_depth:  # metadata may hold anything: none of it is spoken
            self._silent_depth += 1
            self._stack.append(replace(context, element=name))
            return
        if name not in _ATTRIBUTES:
            raise ValueError(f"unsupported element <{name}>")
        allowed = _ATTRIBUTES[name] | _COMMON
        for key in attributes:
            if key not in allowed and not key.startswith("xmlns:"):
                raise ValueError(f"<{name}> has no attribute {key!r}")
        if name in _SILENT:
            self._silent_depth += 1
            self._stack.append(replace(context, element=name))
            return
        if _LANG in attributes:
            context = replace(context, lang=attributes[_LANG])
        context = replace(context, element=name)
        match name:
            case "s" | "p":
                self._separate()
            case "break":
                self._separate()
                ms = values.break_ms(attributes.get("time"), attributes.get("strength"))
                self._pending.pause_ms += ms
                self._paused_ms += ms
                if self._pending.pause_ms > values.MAX_BREAK_MS:
                    raise ValueError(
                        f"pauses in a row add up to more than {values.MAX_BREAK_MS} ms"
                    )
                if self._paused_ms > values.MAX_TOTAL_PAUSE_MS:
                    raise ValueError(
                        f"the pauses add up to more than {values.MAX_TOTAL_PAUSE_MS} ms"
                    )
                self._check_length()
            case "mark":
                self._separate()
                self._mark(_required(name, attributes, "name"))
            case "prosody":
                context = replace(context, prosody=self._prosody(context.prosody, attributes))
            case "emphasis":
                level = attributes.get("level", "moderate")
                if level not in values.EMPHASIS:
                    raise ValueError(f"unknown emphasis level {level!r}")
                rate, pitch, volume = values.EMPHASIS[level]
                prosody = context.prosody.scaled(rate=rate, pitch=pitch, volume=volume)
                context = replace(context, prosody=_checked(prosody))
            case "voice":
                context = replace(context, voice=attributes.get("name", context.voice))
            case "lang":
                _required(name, attributes, _LANG)
            case "express-as":
                intensity = values.intensity(attributes.get("intensity", "1"))
                style = parse_style(_required(name, attributes, "style"), intensity)
                context = replace(context, style=style)
            case "say-as":
                _required(name, attributes, "interpret-as")
            case "sub":
                _required(name, attributes, "alias")
            case "phoneme":
                _required(name, attributes, "ph")
                alphabet = attributes.get("alphabet", "ipa")
                if alphabet not in ("ipa", "x-ipa"):
                    raise ValueError(f"phoneme alphabet {alphabet!r} is not supported (use ipa)")
        if name in _CAPTURING:
            self._captured = []
            self._capture_attributes = attributes
            self._capture_position = (event.line, event.column)
        self._stack.append(context)

    def _end(self, event: End) -> None:
        context = self._stack.pop()
        name = context.element
        if self._silent_depth:
            self._silent_depth -= 1
            return
        if name in _CAPTURING:
            self._spoken_capture(name, self._capture_attributes)
        elif name in ("s", "p"):
            self._end_sentence()
        if not self._stack:
            self._done = True

    def _text(self, data: str) -> None:
        if not self._stack:
            return
        if self._silent_depth or self._stack[-1].element in _EMPTY:
            if data.strip() and self._stack[-1].element in _EMPTY:
                raise ValueError(f"<{self._stack[-1].element}> must be empty")
            return
        if self._captured is not None:
            self._captured.append(data)
            return
        text = _SPACE.sub(" ", data)
        if self._normalize and text.strip():
            text = nz.normalize(text, date_order=self._date_order)
        self._say(text)

    # -- building ---------------------------------------------------------------------------

    def _spoken_capture(self, name: str, attributes: dict[str, str]) -> None:
        assert self._captured is not None
        raw = _SPACE.sub(" ", "".join(self._captured)).strip()
        self._captured = None
        if name == "say-as":
            kind = attributes["interpret-as"]
            try:
                spoken = nz.say_as(raw, kind, attributes.get("format"))
            except ValueError as error:  # reported where the say-as starts
                raise InvalidSSML(f"say-as: {error}", *self._capture_position) from None
            self._say(spoken)
        elif name == "sub":
            alias = _SPACE.sub(" ", attributes["alias"]).strip()
            self._say(
                nz.normalize(alias, date_order=self._date_order) if self._normalize else alias
            )
        else:
            self._say(raw, phonemes=attributes["ph"].strip())

    def _say(self, text: str, phonemes: str | None = None) -> None:
        if not text:
            return
        if self._last_space and text.startswith(" "):
            text = text[1:]
            if not text:
                return
        if text.startswith(".") and self._last_text.endswith("."):
            text = text[1:]  # "p.m." then the sentence's own dot
            if not text:
                return
        context = self._stack[-1]
        pending = self._pending
        if not text.strip():  # whitespace never starts a segment of its own
            if pending.text and not pending.pause_ms:
                pending.text.append(text)
                pending.length += len(text)
                self._last_space = True
            return
        if pending.pause_ms or (pending.text and pending.settings() != _settings(context)):
            if text.startswith(" ") and not pending.pause_ms:  # spaces trail their word
                pending.text.append(" ")
                pending.length += 1
                text = text[1:]
            self._flush()
            pending = self._pending
        pending.context = context
        if phonemes:
            pending.phonemes.append(
                PhonemeSpan(pending.length, pending.length + len(text), phonemes)
            )
        pending.text.append(text)
        pending.length += len(text)
        self._last_space = text.endswith(" ")
        self._last_text = text
        rate = max(context.prosody.rate, values.RATE_RANGE[0])
        self._speech_s += len(text) / (values.CHARS_PER_SECOND * rate)
        self._check_length()

    def _check_length(self) -> None:
        total = self._speech_s + self._paused_ms / 1000
        if total > values.MAX_SPEECH_S:
            raise ValueError(
                f"the document would speak for more than {values.MAX_SPEECH_S} s (about"
                f" {values.CHARS_PER_SECOND:g} characters a second at rate 1, pauses included)"
            )

    def _mark(self, name: str) -> None:
        if self._pending.text or self._pending.pause_ms:
            self._flush()
        self._pending.marks.append(name)

    def _flush(self) -> None:
        self._segments.append(self._pending)
        self._pending = _Pending(self._pending.context)

    def _separate(self) -> None:
        if not self._last_space:
            self._say(" ")

    def _end_sentence(self) -> None:
        for pending in reversed([*self._segments, self._pending]):
            if pending.text:
                text = "".join(pending.text).rstrip()
                if text and text[-1] not in _SENTENCE_END:
                    pending.length = len(text) + 1
                    pending.text = [text + "."]
                self._separate()
                return

    def _prosody(self, prosody: Prosody, attributes: dict[str, str]) -> Prosody:
        result = prosody
        if "rate" in attributes:
            result = result.scaled(rate=values.rate(attributes["rate"]))
        if "pitch" in attributes:
            pitch = values.pitch(attributes["pitch"], result.pitch, self._base_pitch_hz)
            result = result.scaled(pitch=pitch / result.pitch)
        if "volume" in attributes:
            result = result.scaled(volume=values.volume(attributes["volume"]))
        return _checked(result)

    def _segment(self, pending: _Pending) -> SpeechSegment:
        c = pending.context
        return SpeechSegment(
            "".join(pending.text),
            c.prosody,
            pending.pause_ms,
            style=c.style,
            marks=tuple(pending.marks),
            voice=c.voice,
            lang=c.lang,
            phonemes=tuple(pending.phonemes),
        )


def _checked(prosody: Prosody) -> Prosody:
    values.check_range("the rate", prosody.rate, values.RATE_RANGE)
    values.check_range("the pitch", prosody.pitch, values.PITCH_RANGE)
    values.check_range("the volume", prosody.volume, values.VOLUME_RANGE)
    return prosody


def _required(element: str, attributes: dict[str, str], name: str) -> str:
    value = attributes.get(name)
    if value is None or not value.strip():
        raise ValueError(f"<{element}> needs a {name} attribute")
    return value
