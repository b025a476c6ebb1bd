"""What every config section shares: strict, frozen, keyword-only msgspec structs."""

from __future__ import annotations

from typing import Annotated

import msgspec

from voices.engine import Emotion as VoiceEmotion


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A config table: unknown keys are errors, every field is named."""


#: the emotions a reply or a voice may name: voices/ owns the vocabulary and its presets
Emotion = VoiceEmotion

#: a name that templates and cross-references can use (``party_size``, ``book_table``)
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

Milliseconds = Annotated[int, msgspec.Meta(ge=0, le=600_000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class ReplyConfig(Section, frozen=True, kw_only=True):
    """What the agent says: a template (``{slot}``, ``{var.path}``), maybe SSML, maybe an emotion.

    ``ssml`` left out means: SSML when the text starts with ``<speak``.
    """

    text: str
    ssml: bool | None = None
    emotion: Emotion | None = None


#: a reply written as a plain string, or as a table with ``text``/``ssml``/``emotion``
Reply = str | ReplyConfig


def reply_text(reply: Reply) -> str:
    return reply if isinstance(reply, str) else reply.text
