"""Room calls on an interpreter server: a join checked, and the call it makes
(:mod:`agent.rooms` says what a room is). Every transport joins the same way,
:func:`join_room` then :meth:`RoomCall.start` once its session can start, and
:meth:`RoomService.leave` when the call is over: the native protocol's
``/v1/stream?room=ID&language=xx`` (at ``hello``) and a WebRTC offer's ``room`` and
``language`` (:mod:`agent.webrtc_routes`, before the answer).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import anyio
import msgspec

from agent.config import AgentConfig
from agent.dialogue.llm import LLMEngine
from agent.models import LoadedModels
from agent.rooms import Member, RoomError, RoomResponder, Rooms
from agent.session import Models, Session, SessionSettings
from agent.session_events import CallSink
from agent.translator import TranslatorResponder, language_name
from pipeline.asr.decoder import whisper_languages
from voices.catalog import load_catalog

__all__ = ["RoomCall", "RoomService", "join_room"]


@dataclass
class RoomCall:
    """What one member's call runs with."""

    member: Member
    models: Models
    settings: SessionSettings
    responder: RoomResponder

    def start(self, sink: CallSink, session_id: str) -> Session:
        """The member's session, saying what it says to ``sink``; the room speaks to the
        member through it from now on."""
        session = Session(self.models, self.responder, sink, self.settings, session_id=session_id)
        self.member.session = session
        return session


def join_room(
    rooms: RoomService | None, room_id: str, language: str | None, settings: SessionSettings
) -> RoomCall:
    """A caller speaking ``language`` joins room ``room_id`` on this server (``rooms``:
    ``None`` unless the agent is an interpreter); :class:`RoomError` says why not."""
    if rooms is None:
        raise RoomError("no_rooms", "room: this agent is not an interpreter")
    if not language:
        raise RoomError("unknown_language", "language: name the language you speak in the room")
    return rooms.join(room_id, language, settings)


class RoomService:
    """The rooms of an interpreter agent, and the calls that join them."""

    def __init__(self, config: AgentConfig, models: LoadedModels, llm: LLMEngine | None) -> None:
        self.config = config
        self.models = models
        self.llm = llm
        self.rooms = Rooms()
        own = load_catalog().get(config.voice.name).language.split("-")[0].lower()
        #: the languages a member may speak and hear here, with the voice that speaks each
        #: (read once: the catalog is files)
        self.languages = {own: config.voice.name, **config.voice.languages}

    def joinable(self) -> list[str]:
        """The languages a member may join with (what :meth:`join` accepts), sorted."""
        return [language for language in sorted(self.languages) if self._refusal(language) is None]

    def join(self, room_id: str, language: str, settings: SessionSettings) -> RoomCall:
        """A member speaking ``language`` joins room ``room_id`` (:class:`RoomError` if not)."""
        language = language.lower()
        refused = self._refusal(language)
        if refused is not None:
            raise refused
        member = self.rooms.join(room_id, language)
        asr = msgspec.structs.replace(settings.asr, language=language)
        translation = settings.translation
        if translation is not None:
            translation = msgspec.structs.replace(translation, language=language)
        voice = self.models.voices.get(language, (None, settings.voice))[1]
        # a member listening to the other (or waiting for their answer) is not idle, and a
        # room says nothing of its own: no idle prompt or idle hang-up (turns.max_call_ms
        # still ends it); the room ends when a member leaves
        turns = msgspec.structs.replace(settings.turns, idle_timeout_ms=0)
        call_settings = dataclasses.replace(
            settings, asr=asr, translation=translation, voice=voice, greeting=False, turns=turns
        )
        translator = TranslatorResponder(self.config, self.llm, source=language)
        return RoomCall(
            member,
            self.models.session_models(language),
            call_settings,
            RoomResponder(member, translator),
        )

    async def leave(self, call: RoomCall) -> None:
        """``call`` ended: its room closes (the other member's call ends)."""
        # the other call may be ending too: its control loop may be gone already
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self.rooms.leave(call.member)

    def _refusal(self, language: str) -> RoomError | None:
        """Why a member speaking ``language`` (lower case) cannot join here, if they cannot."""
        if language not in whisper_languages():
            return RoomError("unknown_language", f"language: {language[:16]!r} is not known")
        voices = self.languages
        if language not in voices:
            return RoomError(
                "no_voice",
                f"language: no voice of this agent speaks {language_name(language)} "
                f"(it speaks {', '.join(sorted(voices))}: voice.languages)",
            )
        if self.config.dialogue.translate.engine == "whisper" and language != "en":
            return RoomError(
                "no_route",
                f"language: the whisper engine translates into English only, not into "
                f"{language_name(language)} (dialogue.translate.engine: llm)",
            )
        return None
