"""One bot reply (a generation): dialogue output -> clauses -> TTS -> playout.

The dialogue yields :data:`ReplyPart` values: text to speak (a whole intent reply, or an LLM's
deltas one by one) and call actions. Text goes through a :class:`~voices.chunking.ClauseChunker`
so synthesis starts on the first complete clause; each clause is synthesised, resampled to the
transport's rate, and written to the playout (which bounds how far synthesis runs ahead).

How it sounds: a reply's ``emotion`` (or the voice's default) styles its clauses; inline tags
an LLM writes (``[happy]``, ``[/]``) change the style from where they stand and are removed from
the text and the transcript; an SSML reply is parsed into one speech plan (invalid SSML is
spoken without its markup, and ``on_warning`` says why). Plain text is normalised (numbers,
dates, currency...) on its way to the voice.

:class:`SpokenText` records what the reply said, with word timings in the generation's sample
coordinates at the playout rate, so a barge-in can be turned into the text actually heard.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from agent.dialogue.decision import CallAction, Say
from pipeline.clock import MonotonicClock, WallClock
from pipeline.playout import Playout, Word
from voices.cache import CachedEngine
from voices.chunking import ClauseChunker
from voices.emotion import InlineTags, StyleChange, parse_style
from voices.engine import Prosody, SpeechChunk, SpeechPlan, Style, TTSEngine
from voices.resample import ChunkResampler
from voices.router import VoiceRouter
from voices.ssml import InvalidSSML, parse_ssml, parse_ssml_lenient, plan_from_text

if TYPE_CHECKING:
    from voices.catalog import Voice


#: what a dialogue yields for one reply, in order (the actions are
#: :mod:`agent.dialogue.decision`'s, re-exported here as the reply's vocabulary)
ReplyPart = Say | CallAction

#: how a reply comes out: ``audio`` is synthesised and played; ``text`` is only written (its
#: text goes to the client as it comes, nothing is synthesised, and it ends with its text)
ReplyMode = Literal["audio", "text"]


class ReplyShape(msgspec.Struct, frozen=True):
    """How a reply comes out: its ``mode``, and the most tokens of text it may have
    (:func:`agent.reply_limit.count_tokens`; ``None``: no limit but the agent's own). A reply
    cut there is cut as one at ``limits.max_reply_chars`` is (:class:`SpokenText` ``cut``)."""

    mode: ReplyMode = "audio"
    max_tokens: int | None = None


class ReplyVoice(msgspec.Struct, frozen=True):
    """How a reply speaks, before its own emotion, inline tags or SSML change anything: the
    catalog voice's name (in every segment of the speech plan, for an engine that routes voices;
    ``None``: the engine's own voice), its prosody (a speaker of a multi-speaker model, rate,
    pitch), its style, and its base pitch (what absolute SSML pitches are relative to).

    :meth:`of` applies a speed and an emotion to a catalog voice, and :meth:`text_plan` and
    :meth:`ssml_plan` turn text into plans from these defaults: calls (the agent file's
    ``voice``) and ``POST /v1/audio/speech`` (the request's ``speed`` and ``emotion``) both
    speak through them.
    """

    name: str | None = None
    prosody: Prosody = Prosody()
    style: Style | None = None
    pitch_hz: float = 120.0

    @classmethod
    def of(
        cls, voice: Voice | None, *, speed: float = 1.0, style: Style | None = None
    ) -> ReplyVoice:
        """Catalog ``voice`` (``None``: the engine's own) at ``speed`` times its rate, in
        ``style`` (``None``: the voice's own style)."""
        if voice is None:
            return cls(prosody=Prosody().scaled(rate=speed), style=style)
        return cls(
            voice.name,
            voice.prosody.scaled(rate=speed),
            style if style is not None else voice.style,
            voice.pitch_hz,
        )

    def text_plan(self, text: str, style: Style | None) -> SpeechPlan:
        """Plain ``text`` (inline tags become styles; ``[/]`` goes back to ``style``)."""
        return plan_from_text(text, style=style, prosody=self.prosody, voice=self.name)

    def ssml_plan(
        self, document: str, style: Style | None, *, lenient: bool = False
    ) -> tuple[SpeechPlan, InvalidSSML | None]:
        """The SSML ``document`` starting from these defaults and ``style``. Invalid SSML
        raises :class:`~pipeline.errors.InvalidSSML`; ``lenient``: it is spoken without its
        markup, and the error comes back beside the plan."""
        if lenient:
            return parse_ssml_lenient(
                document,
                style=style,
                prosody=self.prosody,
                voice=self.name,
                base_pitch_hz=self.pitch_hz,
            )
        plan = parse_ssml(
            document,
            style=style,
            prosody=self.prosody,
            voice=self.name,
            base_pitch_hz=self.pitch_hz,
        )
        return plan, None


class Responder(Protocol):
    """A dialogue engine as the session sees it."""

    def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        """The reply to the caller's turn ``text``."""
        ...

    def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        """What to say unprompted: the greeting, or the ``count``-th idle prompt."""
        ...

    def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        """What to say now that the transfer to ``target`` a reply announced did not happen
        (``reason``: ``no_target``, ``unsupported``, ``timeout``, the far end's words); the
        conversation goes on."""
        ...

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        """Reply ``generation`` ended; the caller heard ``text`` of it."""
        ...


@dataclass
class SpokenText:
    """What a reply said: its text, where each word and SSML mark sits in its audio, and the
    speech plans it was said with (so the unheard rest can be said again as it was meant)."""

    text: str = ""
    words: list[Word] = field(default_factory=list)
    samples: int = 0
    #: ``(sample, name)`` of each SSML mark, in the generation's samples at the playout rate
    marks: list[tuple[int, str]] = field(default_factory=list)
    #: ``(offset in text, plan)`` of each plan synthesised
    plans: list[tuple[int, SpeechPlan]] = field(default_factory=list)
    #: cut at a length limit (``limits.max_reply_chars``, or the reply's ``max_tokens``)
    cut: bool = False

    def heard(self, text_end: int) -> str:
        return self.text[:text_end].strip()

    def played(self, samples: int) -> str:
        """The text whose audio has begun once ``samples`` have played (the word under way
        included): what the caller can have heard, and so what can come back as echo. Text
        synthesised ahead of playout is not in it; without word timings, all of the text is."""
        if not self.words:
            return self.text
        end = 0
        for word in self.words:
            if word.sample_start >= samples:
                break
            end = word.text_end
        return self.text[:end].strip()

    def rest(self, text_end: int) -> list[SpeechPlan]:
        """The plans of what was not heard (from ``text_end`` on), with their SSML prosody,
        styles and emotions."""
        rest = []
        for base, plan in self.plans:
            tail = plan.after(max(0, text_end - base))
            if tail is not None:
                rest.append(tail)
        return rest


@dataclass
class ReplyTimes:
    """Wall-clock marks of one reply (the session's clock), for the latency breakdown."""

    started: float
    first_text: float | None = None
    first_audio: float | None = None


Notify = Callable[[str], Awaitable[None]]


class Speaker:
    """Speaks the parts of one reply into the playout.

    ``on_text`` hears each piece of text as it is spoken, ``on_action`` each call action, and
    ``on_warning`` why invalid SSML was spoken without its markup; all are awaited, so a slow
    listener paces the reply. In ``text`` mode nothing is synthesised: the text is recorded
    (without word timings) and the playout is told at once that the reply has ended.
    """

    def __init__(
        self,
        generation: int,
        tts: TTSEngine,
        playout: Playout,
        *,
        clock: WallClock | None = None,
        on_text: Notify | None = None,
        on_action: Callable[[CallAction], Awaitable[None]] | None = None,
        on_warning: Notify | None = None,
        voice: ReplyVoice | None = None,
        mode: ReplyMode = "audio",
    ) -> None:
        self.generation = generation
        self.mode = mode
        self.tts = tts
        self.playout = playout
        self.clock = clock or MonotonicClock()
        self.on_text = on_text
        self.on_action = on_action
        self.on_warning = on_warning
        self.spoken = SpokenText()
        self.times = ReplyTimes(self.clock.now())
        self._chunker = ClauseChunker()
        self._tags = InlineTags()
        #: the reply's defaults (``None``: the engine's own voice as it is)
        self.voice = voice if voice is not None else ReplyVoice()
        self._default_style = self.voice.style
        self._style = self._default_style

    async def speak(self, parts: AsyncGenerator[ReplyPart, None]) -> SpokenText:
        """Say everything ``parts`` yields; returns what was said (all of it, if not cancelled)."""
        async with aclosing(parts) as stream:
            async for part in stream:
                if isinstance(part, Say):
                    if part.text and self.times.first_text is None:
                        self.times.first_text = self.clock.now()
                    if part.ssml:
                        await self._flush()
                        await self._speak_ssml(part.text)
                        continue
                    if part.emotion is not None:
                        self._style = _style(part.emotion) or self._default_style
                    await self._feed(self._tags.feed(part.text))
                    if part.final:
                        await self._feed(self._tags.flush())
                        await self._flush()
                else:
                    await self._flush()
                    if self.on_action is not None:
                        await self.on_action(part)
        await self._feed(self._tags.flush())
        await self._flush()
        self.playout.finish(self.generation)
        return self.spoken

    async def say_plans(self, plans: list[SpeechPlan]) -> SpokenText:
        """Say ``plans`` as they are (the unheard rest of an interrupted reply)."""
        for plan in plans:
            if self.times.first_text is None:
                self.times.first_text = self.clock.now()
            await self._text(plan.text)
            await self._synthesize(plan)
        self.playout.finish(self.generation)
        return self.spoken

    async def _feed(self, pieces: list[str | StyleChange]) -> None:
        for piece in pieces:
            if isinstance(piece, StyleChange):
                await self._flush()  # what came before speaks in the style it was written in
                self._style = piece.style or self._default_style
                continue
            await self._text(piece)
            for clause in self._chunker.feed(piece):
                await self._synthesize(self._plan(clause.text.strip()))

    async def _text(self, text: str) -> None:
        if self.on_text is not None:
            await self.on_text(text)

    async def _flush(self) -> None:
        clauses = self._chunker.flush()
        self._chunker = ClauseChunker()  # a chunker ends at its flush; more text may follow
        for clause in clauses:
            await self._synthesize(self._plan(clause.text.strip()))

    async def _speak_ssml(self, document: str) -> None:
        plan, error = self.voice.ssml_plan(document, self._style, lenient=True)
        if error is not None and self.on_warning is not None:
            await self.on_warning(f"invalid SSML, spoken without markup: {error}")
        tts = self.tts
        unrouted = tts.unrouted(plan) if isinstance(tts, VoiceRouter | CachedEngine) else ()
        if unrouted and self.on_warning is not None:
            languages = ", ".join(unrouted)
            await self.on_warning(f"no voice for xml:lang {languages}: the agent's voice says it")
        await self._text(plan.text)
        await self._synthesize(plan)

    def _plan(self, text: str) -> SpeechPlan:
        return self.voice.text_plan(text, self._style)

    async def _synthesize(self, plan: SpeechPlan) -> None:
        text = plan.text
        if not text.strip():
            return
        spoken = self.spoken
        if spoken.text:
            spoken.text += " "
        text_base = len(spoken.text)
        spoken.text += text
        spoken.plans.append((text_base, plan))
        if self.mode == "text":
            return
        resampler = ChunkResampler(self.playout.buffer.sample_rate)
        sample_base = spoken.samples
        async with aclosing(self.tts.synthesize(plan)) as chunks:
            async for raw in chunks:
                await self._write(resampler.process(raw), text_base, sample_base)
        tail = resampler.flush()
        if tail is not None:
            await self._write(tail, text_base, sample_base)

    async def _write(self, chunk: SpeechChunk, text_base: int, sample_base: int) -> None:
        self.spoken.marks.extend((sample_base + chunk.sample_offset, m) for m in chunk.marks)
        if not chunk.pcm:
            return
        words = [
            Word(
                text_base + w.text_start,
                text_base + w.text_end,
                sample_base + w.sample_start,
                sample_base + w.sample_end,
            )
            for w in chunk.words
        ]
        if self.times.first_audio is None:
            self.times.first_audio = self.clock.now()
        await self.playout.write(self.generation, chunk.pcm, words)
        self.spoken.words.extend(words)
        self.spoken.samples = sample_base + chunk.end_offset


def _style(emotion: str) -> Style | None:
    try:
        return parse_style(emotion)
    except ValueError:
        return None
