"""What every config section shares: strict, frozen, keyword-only msgspec structs.

The bounded numbers sections use (``Milliseconds`` ...) are in :mod:`agent.bounds`, which the
running parts' own settings share.
"""

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
