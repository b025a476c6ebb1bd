"""SSML (a W3C SSML 1.1 subset) and plain text into :class:`~voices.engine.SpeechPlan` objects.

- :func:`parse_ssml` reads a ``<speak>`` document through a hardened XML reader
  (:mod:`voices.ssml.reader`: no DTDs or entities, size and depth limits) and the element rules
  of :mod:`voices.ssml.builder`; anything it cannot speak raises
  :class:`~pipeline.errors.InvalidSSML` with the line, column and reason (for the REST API).
- :func:`parse_ssml_lenient` never raises on bad markup: it speaks the text without the markup
  and returns the error beside the plan (for a live call, which sends it as a warning event).
- :func:`plan_from_text` is for plain text: inline emotion tags (``[happy]``) become styles and
  numbers, dates, money, abbreviations and addresses are normalised.

Everything here is pure: text in, a plan out.
"""

from __future__ import annotations

from pipeline.errors import InvalidSSML
from voices.engine import Prosody, SpeechPlan, Style
from voices.ssml.builder import PlanBuilder
from voices.ssml.plain import looks_like_ssml, plan_from_text, strip_markup
from voices.ssml.reader import Limits, read

__all__ = [
    "DEFAULT_LIMITS",
    "InvalidSSML",
    "Limits",
    "looks_like_ssml",
    "parse_ssml",
    "parse_ssml_lenient",
    "plan_from_text",
    "strip_markup",
]

DEFAULT_LIMITS = Limits()


def parse_ssml(
    text: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    prosody: Prosody | None = None,
    style: Style | None = None,
    voice: str | None = None,
    lang: str | None = None,
    normalize: bool = True,
    date_order: str = "mdy",
    base_pitch_hz: float = 120.0,
) -> SpeechPlan:
    """The plan for the SSML document ``text``; raises :class:`InvalidSSML`.

    ``prosody``, ``style``, ``voice`` and ``lang`` are the defaults the document starts from
    (the voice's and the reply's); ``base_pitch_hz`` is the voice's own pitch, which absolute
    SSML pitches (``pitch="200Hz"``) are relative to.
    """
    builder = PlanBuilder(
        prosody=prosody, style=style, voice=voice, lang=lang, normalize=normalize,
        date_order=date_order, base_pitch_hz=base_pitch_hz,
    )  # fmt: skip
    for event in read(text, limits):
        builder.feed(event)
    return builder.result()


def parse_ssml_lenient(
    text: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    prosody: Prosody | None = None,
    style: Style | None = None,
    voice: str | None = None,
    lang: str | None = None,
    normalize: bool = True,
    date_order: str = "mdy",
    base_pitch_hz: float = 120.0,
) -> tuple[SpeechPlan, InvalidSSML | None]:
    """Like :func:`parse_ssml`, but invalid SSML is spoken as its text without the markup.

    Returns the plan and the error (``None`` when the SSML was valid). At most
    ``limits.max_chars`` characters of an invalid document are spoken.
    """
    try:
        plan = parse_ssml(
            text, limits=limits, prosody=prosody, style=style, voice=voice, lang=lang,
            normalize=normalize, date_order=date_order, base_pitch_hz=base_pitch_hz,
        )  # fmt: skip
    except InvalidSSML as error:
        plain = strip_markup(text[: limits.max_chars])
        fallback = plan_from_text(
            plain, style=style, prosody=prosody, voice=voice, lang=lang, normalize=normalize,
            date_order=date_order,
        )  # fmt: skip
        return fallback, error
    return plan, None
