"""Two-party rooms: two callers, each speaking their own language, each hearing the other
translated into theirs.

An interpreter agent (``dialogue.engine: translate``) takes room calls on the native protocol:
``/v1/stream?room=ID&language=es`` (``language``: what this caller speaks and hears). The first
caller opens the room, the second joins it; a third is refused (``room_full``). Each member's
call is a whole session of its own (its transport, VAD, ASR in its language, its own voice);
what joins them is the :class:`RoomResponder` each gets:

- the caller's own turn is translated into the other member's language (the interpreter's
  engine: Whisper's translation into English, or the LLM into any language) and handed to the
  other member's session, which speaks it as a reply (:class:`Relayed`: said as it is). The
  caller's own session says nothing back;
- so overlapping speech is the listener's ordinary barge-in: a member who talks over the
  translation of the other stops it (what they heard of it is in their ``interrupted`` event),
  and their words go the other way;
- when a member's call ends, the room closes: the other member's call ends with reason
  ``room_closed``.

A join is checked before its session starts, each failure a :class:`RoomError` the transport
reports with its code: ``bad_room`` (the id: 1-64 of ``A-Za-z0-9._-``), ``room_full``,
``unknown_language`` (not a language the ASR knows), ``no_voice`` (no voice of this agent speaks
it: ``voice.name`` and ``voice.languages``), ``no_route`` (the engine cannot translate
into it: Whisper's is English only), ``no_rooms`` (the agent is not an interpreter), and
``too_many_rooms`` (:data:`MAX_ROOMS`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Literal, Protocol

from agent.dialogue.decision import Say
from agent.reply import ReplyPart
from agent.translator import TranslatorResponder
from pipeline.asr.events import Transcript
from pipeline.errors import ClientError

log = logging.getLogger("voxline.rooms")

__all__ = [
    "MAX_MEMBERS",
    "MAX_ROOMS",
    "Member",
    "Relayed",
    "Room",
    "RoomError",
    "RoomResponder",
    "Rooms",
]

#: a room holds two callers
MAX_MEMBERS = 2
#: rooms open at once, at most (each holds at least one call: the session limit binds first)
MAX_ROOMS = 10_000
_ROOM_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RoomError(ClientError):
    """A join refused: ``code`` says why (the module docstring's list)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Relayed(str):
    """The other member's words, translated: spoken as they are."""


class Speaker(Protocol):
    """What a member's session must offer the room (a :class:`~agent.session.Session` does)."""

    def respond_now(self, text: str | None = None) -> int | None: ...

    async def end_call(self, reason: str) -> None: ...


@dataclass(eq=False)
class Member:
    """One caller in a room: the language they speak and hear, and their session once it
    has started."""

    room: Room
    language: str
    session: Speaker | None = None

    def partner(self) -> Member | None:
        return next((m for m in self.room.members if m is not self), None)

    def hear(self, text: str) -> bool:
        """Say ``text`` (already in this member's language) to this member; ``False`` when
        their call has not started or has ended."""
        if self.session is None or not text:
            return False
        return self.session.respond_now(Relayed(text)) is not None


@dataclass(eq=False)
class Room:
    id: str
    members: list[Member] = field(default_factory=list)


class Rooms:
    """The rooms open on this server."""

    def __init__(self, max_rooms: int = MAX_ROOMS) -> None:
        self.max_rooms = max_rooms
        self._rooms: dict[str, Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def join(self, room_id: str, language: str) -> Member:
        """A new member of room ``room_id`` (opened if it is not), speaking ``language``."""
        if not _ROOM_ID.match(room_id):
            raise RoomError("bad_room", f"room: {room_id[:80]!r} is not 1-64 of A-Za-z0-9._-")
        room = self._rooms.get(room_id)
        if room is None:
            if len(self._rooms) >= self.max_rooms:
                raise RoomError("too_many_rooms", f"{self.max_rooms} rooms are open")
            room = self._rooms[room_id] = Room(room_id)
        if len(room.members) >= MAX_MEMBERS:
            raise RoomError("room_full", f"room {room_id!r} has {MAX_MEMBERS} callers already")
        member = Member(room, language)
        room.members.append(member)
        log.info("room %s: a caller joined (%s), %d in it", room_id, language, len(room.members))
        return member

    async def leave(self, member: Member) -> None:
        """``member``'s call ended: the room closes, and the other member's call ends."""
        room = member.room
        if member not in room.members:
            return
        room.members.remove(member)
        member.session = None
        if self._rooms.get(room.id) is room:
            del self._rooms[room.id]  # no one joins a closing room
        for other in list(room.members):
            room.members.remove(other)
            session, other.session = other.session, None
            if session is not None:
                await session.end_call("room_closed")
        log.info("room %s closed", room.id)


class RoomResponder:
    """A room member's dialogue: their turns go to the other member translated; what the
    other member said comes back as :class:`Relayed` text and is spoken as it is."""

    def __init__(self, member: Member, translator: TranslatorResponder) -> None:
        self.member = member
        self.translator = translator

    def transcribed(self, transcript: Transcript) -> None:
        self.translator.transcribed(transcript)

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        if isinstance(text, Relayed):
            yield Say(str(text))
            return
        partner = self.member.partner()
        if partner is None:
            log.info("room %s: no one to hear %r yet", self.member.room.id, text)
            return
        said: list[str] = []
        async with aclosing(self.translator.translation(text, generation, partner.language)) as p:
            async for part in p:
                if isinstance(part, Say):
                    said.append(part.text)
        partner.hear("".join(said).strip())

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        return
        yield  # a room says nothing of its own: the members talk

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        return
        yield

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        pass
