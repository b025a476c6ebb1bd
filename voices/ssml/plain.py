"""Plain text (with inline emotion tags) into a plan, and SSML that failed back into text."""

from __future__ import annotations

import html
import re

from voices import normalize as nz
from voices.emotion import split_tags
from voices.engine import Prosody, SpeechPlan, SpeechSegment, Style

_MARKUP = re.compile(r"<[^<>]*>")
_SPACES = re.compile(r"[ \t]*\n[ \t\n]*|[ \t]{2,}")


def plan_from_text(
    text: str,
    *,
    style: Style | None = None,
    prosody: Prosody | None = None,
    voice: str | None = None,
    lang: str | None = None,
    normalize: bool = True,
    date_order: str = "mdy",
) -> SpeechPlan:
    """A plan for plain text: inline tags (``[happy]``) removed and turned into styles.

    ``style`` is the reply's own style (what ``[/]`` returns to), ``prosody``, ``voice`` and
    ``lang`` apply to every segment. With ``normalize`` the text of each segment is read through
    :func:`voices.normalize.normalize`.
    """
    clean, changes = split_tags(text)
    bounds = [(0, style)] + [(change.offset, change.style or style) for change in changes]
    segments: list[SpeechSegment] = []
    for (start, current), (end, _) in zip(bounds, [*bounds[1:], (len(clean), None)], strict=True):
        piece = clean[start:end]
        if not piece.strip():
            continue
        if normalize:
            piece = nz.normalize(piece, date_order=date_order)
        segments.append(
            SpeechSegment(piece, prosody or Prosody(), style=current, voice=voice, lang=lang)
        )
    return SpeechPlan(tuple(segments))


def strip_markup(text: str) -> str:
    """``text`` without anything that looks like a tag, entities decoded, spaces tidied."""
    without = _MARKUP.sub(" ", text)
    return _SPACES.sub(" ", html.unescape(without)).strip()


def looks_like_ssml(text: str) -> bool:
    """Whether ``text`` means to be SSML (it starts with ``<speak`` or an XML declaration)."""
    head = text.lstrip()[:64]
    return head.startswith(("<speak", "<?xml"))
