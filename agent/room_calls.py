"""Room calls on an interpreter server: a join checked, and the call it makes
(:mod:`agent.rooms` says what a room is; the native protocol's ``?room=ID&language=xx`` joins).
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
from agent.session import Models, SessionSettings
from agent.translator import TranslatorResponder, language_name
from pipeline.asr.decoder import whisper_languages
from voices.catalog import load_catalog

__all__ = ["RoomCall", "RoomService"]


@dataclass
class RoomCall:
    """What one member's call runs with."""

    member: Member
    models: Models
    settings: SessionSettings
    responder: RoomResponder


class RoomService:
    """The rooms of an interpreter agent, and the calls that join them."""

    def __init__(self, config: AgentConfig, models: LoadedModels, llm: LLMEngine | None) -> None:
        self.config = config
        self.models = models
        self.llm = llm
        self.rooms = Rooms()

    def languages(self) -> dict[str, str]:
        """The languages a member may speak and hear here, with the voice that speaks each."""
        spoken = {self._language_of_voice(): self.config.voice.name}
        spoken.update(self.config.voice.languages)
        return spoken

    def join(self, room_id: str, language: str, settings: SessionSettings) -> RoomCall:
        """A member speaking ``language`` joins room ``room_id`` (:class:`RoomError` if not)."""
        language = language.lower()
        if language not in whisper_languages():
            raise RoomError("unknown_language", f"language: {language[:16]!r} is not known")
        voices = self.languages()
        if language not in voices:
            raise RoomError(
                "no_voice",
                f"language: no voice of this agent speaks {language_name(language)} "
                f"(it speaks {', '.join(sorted(voices))}: voice.languages)",
            )
        if self.config.dialogue.translate.engine == "whisper" and language != "en":
            raise RoomError(
                "no_route",
                f"language: the whisper engine translates into English only, not into "
                f"{language_name(language)} (dialogue.translate.engine: llm)",
            )
        member = self.rooms.join(room_id, language)
        asr = msgspec.structs.replace(settings.asr, language=language)
        translation = settings.translation
        if translation is not None:
            translation = msgspec.structs.replace(translation, language=language)
        voice = self.models.voices.get(language, (None, settings.voice))[1]
        call_settings = dataclasses.replace(
            settings, asr=asr, translation=translation, voice=voice, greeting=False
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

    def _language_of_voice(self) -> str:
        spoken = load_catalog().get(self.config.voice.name).language
        return spoken.split("-")[0].lower()
