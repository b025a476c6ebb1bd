"""The interpreter: a dialogue that translates each caller turn and speaks the translation.

An agent file with ``dialogue.engine: translate`` gets a :class:`TranslatorResponder` per
call. The session hands it every final transcript (:class:`TranscriptAware`) before the turn
those finals make is answered; :meth:`TranslatorResponder.respond` then takes the finals of
that turn (in order; a final the turn-taking dropped, such as the bot's own echo, is not part
of the turn's text and is skipped) and speaks them in ``dialogue.translate.target``:

- ``engine: whisper``: the finals' :attr:`~pipeline.asr.events.Transcript.translation`, which
  the ASR stage decoded with Whisper's translate task from the same audio (any language into
  English; no other model). It is spoken as soon as the turn ends.
- ``engine: llm``: the turn's text goes to the LLM of ``profile.llm`` with the translation
  instructions (``dialogue.translate.prompt``, the source language named as the ASR heard it),
  and the translation streams back delta by delta, so speech starts on its first clause. The
  last few source/translation pairs go with it (names and pronouns stay consistent); the LLM
  never sees anything else of the call.

Nothing is said in reply to the greeting or the idle prompts but what the agent file says; a
failed transfer says nothing (an interpreter does not transfer).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Literal, Protocol, runtime_checkable

import msgspec

from agent.config import AgentConfig
from agent.config.base import ReplyConfig
from agent.dialogue.decision import Say
from agent.dialogue.llm import LLMDone, LLMEngine, LLMFallback, LLMText
from agent.dialogue.llm_history import History
from agent.reply import ReplyPart
from agent.responders import say_reply
from pipeline.asr.events import Transcript
from pipeline.errors import ServerError

log = logging.getLogger("voxline.translate")

__all__ = [
    "LANGUAGE_NAMES",
    "TranscriptAware",
    "TranslatorResponder",
    "language_name",
    "translation_llm",
]

#: names the LLM is told (other codes are given as they are)
LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "fi": "Finnish", "fr": "French", "he": "Hebrew",
    "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip
#: source/translation pairs the LLM sees before the turn it translates
CONTEXT_PAIRS = 2
#: finals kept for the turn being decided at most (older ones were never part of a turn)
MAX_PENDING = 32


def language_name(code: str) -> str:
    """``"fr"`` -> ``"French"`` (an unknown code as it is)."""
    return LANGUAGE_NAMES.get(code, code)


@runtime_checkable
class TranscriptAware(Protocol):
    """A responder that hears every final transcript before the turn it belongs to."""

    def transcribed(self, transcript: Transcript) -> None: ...


class TranslatorResponder:
    """One interpreter call (``dialogue.engine: translate``); ``llm`` for ``engine: llm``."""

    def __init__(
        self,
        config: AgentConfig,
        llm: LLMEngine | None = None,
        *,
        source: str | None = None,
        target: str | None = None,
    ) -> None:
        self.config = config
        self.settings = config.dialogue.translate
        if self.settings.engine == "llm" and llm is None:
            raise ValueError("the llm translation engine needs an LLMEngine")
        self.llm = llm
        #: the language spoken to the caller (``dialogue.translate.target`` unless given)
        self.target = target or self.settings.target
        self._finals: deque[Transcript] = deque(maxlen=MAX_PENDING)
        self._pairs: deque[tuple[str, str]] = deque(maxlen=CONTEXT_PAIRS)
        #: the source language of the last turn (``profile.asr.language`` until one is heard)
        self.source = source or config.profile.asr.language or ""

    def transcribed(self, transcript: Transcript) -> None:
        if transcript.is_final:
            self._finals.append(transcript)

    def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        return self.translation(text, generation, self.target)

    async def translation(
        self, text: str, generation: int, target: str
    ) -> AsyncGenerator[ReplyPart, None]:
        """Turn ``text`` in ``target``: Whisper's English (``target`` ``en``) or the LLM's."""
        finals = self._turn(text)
        if finals and finals[-1].language:
            self.source = finals[-1].language
        if self.settings.engine == "whisper":
            if target != "en":
                raise ServerError(f"Whisper translates into English only, not {target!r}")
            english = " ".join(f.translation.strip() for f in finals if f.translation.strip())
            if not english:
                raise ServerError(f"no translation of {text!r}")
            self._pairs.append((text, english))
            yield Say(english)
            return
        async with aclosing(self._llm(text, generation, target)) as parts:
            async for part in parts:
                yield part

    def _turn(self, text: str) -> list[Transcript]:
        """The finals whose text makes up turn ``text``, oldest first; those before them,
        and they, are forgotten."""
        words = text.split()
        taken: list[Transcript] = []
        end = len(words)
        for final in reversed(self._finals):
            said = final.text.split()
            if not said or words[max(0, end - len(said)) : end] != said:
                continue  # not part of this turn (dropped by turn-taking), or trimmed
            taken.append(final)
            end -= len(said)
            if end <= 0:
                break
        if taken:
            while self._finals and self._finals[0] is not taken[-1]:
                self._finals.popleft()
            self._finals.popleft()
        return taken[::-1]

    async def _llm(
        self, text: str, generation: int, target: str
    ) -> AsyncGenerator[ReplyPart, None]:
        assert self.llm is not None
        settings = self.settings
        system = settings.prompt.format(
            source=language_name(self.source) if self.source else "the speaker's language",
            target=language_name(target),
        )
        history = History(system, max_messages=2 * CONTEXT_PAIRS + 1)
        for source, translation in self._pairs:
            history.add_user(source)
            history.add_assistant(translation)
        history.add_user(text)
        said: list[str] = []
        async with aclosing(self.llm.respond(history, generation=generation)) as events:
            async for event in events:
                match event:
                    case LLMText(text=delta):
                        said.append(delta)
                        yield Say(delta, final=False)
                    case LLMFallback(reason=reason, detail=detail):
                        raise ServerError(f"the translation failed: {reason} {detail}".strip())
                    case LLMDone():
                        yield Say("", final=True)
        self._pairs.append((text, "".join(said).strip()))

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        greeting = self.config.greeting
        if kind == "greeting" and greeting.text:
            reply = ReplyConfig(text=greeting.text, ssml=greeting.ssml, emotion=greeting.emotion)
            yield say_reply(reply)
        elif kind == "idle":
            yield say_reply(self.config.turns.idle_prompt)

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        return
        yield  # an interpreter never transfers: nothing to say

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        pass


def translation_llm(engine: LLMEngine, config: AgentConfig) -> LLMEngine:
    """The LLM ``engine`` (its backend shared) set up to translate: ``dialogue.translate``'s
    sampling, no tools, no fallback text (a failure is reported, not spoken)."""
    settings = config.dialogue.translate
    llm = msgspec.structs.replace(
        engine.config,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        tools=(),
        max_tool_rounds=0,
    )
    return LLMEngine(llm, engine.backend)
