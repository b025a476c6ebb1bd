"""Speech in several voices: :class:`VoiceRouter` sends each part of a plan to the engine of its
voice or its language (SSML ``<voice name>`` and ``xml:lang``).

Which engine speaks a segment (the first rule that matches):

1. its ``voice`` names a routed voice (``<voice name="espeak-fr">``): that voice's engine;
2. its ``lang`` has a routed engine, by the whole tag (``es-mx``) or else by its primary subtag
   (``es-MX`` -> ``es``), case-insensitive: that engine;
3. the default engine. A language that is neither routed nor the default voice's own is
   spoken by the default voice (SSML degrades gracefully, no error): :meth:`VoiceRouter.unrouted`
   lists such languages, and a request that has some logs them once.

A segment with nothing to say (marks, a pause) stays with the segment before it (at the very
start: the one after it), so a pause never switches voices. Consecutive segments with the same
engine are a *run*: one request to that engine, runs one after another in plan order.

The chunks of every run come out in one coordinate system, as :mod:`voices.engine` defines it
for one request: text offsets index the whole plan's text, sample offsets run on from the first
chunk, and every chunk is at the default engine's :attr:`~VoiceRouter.sample_rate` (a run from
an engine at another rate goes through a :class:`~voices.resample.ChunkResampler`: its words and
marks move with it, and its filter tail is a chunk with no words at the end of the run).

Engine knobs (``length_scale``, the noise scales, ``speaker_id``) belong to one model: a segment
sent to another engine than the default leaves them out (that model's own defaults apply); the
multipliers (rate, pitch, volume), the style, marks and phonemes go with it.

The router owns no engine: whoever started them closes them (in the server,
:func:`agent.models.load_models`'s exit stack). :meth:`~VoiceRouter.close` only makes the router
refuse new requests. Closing (or cancelling) a request closes the running engine request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import msgspec.structs

from pipeline.errors import ExecutorClosed
from voices.engine import (
    Prosody,
    SpeechChunk,
    SpeechPlan,
    SpeechSegment,
    TTSEngine,
    WordTiming,
    as_plan,
)
from voices.resample import ChunkResampler

__all__ = ["Run", "StatisticalEngine", "VoiceRouter"]

log = logging.getLogger(__name__)

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class StatisticalEngine(TTSEngine, Protocol[S_co]):
    """An engine that reports its executor statistics (what ``/metrics`` reads)."""

    def statistics(self) -> S_co: ...


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive segments of a plan that one engine speaks in one request."""

    #: the engine's index in :attr:`VoiceRouter.engines` (0: the default)
    engine: int
    segments: tuple[SpeechSegment, ...]
    #: where the run's text starts in the plan's text
    text_start: int


class VoiceRouter(Generic[S]):
    """A :class:`~voices.engine.TTSEngine` over ``default`` and more engines by language
    (``by_language``: ``{"es": engine}``) and by catalog voice name (``voices``:
    ``{"espeak-es": engine}``); ``language`` is what the default voice speaks (``en-US``: SSML in
    ``en-GB`` is no reason for a warning). See the module docstring."""

    def __init__(
        self,
        default: StatisticalEngine[S],
        by_language: Mapping[str, TTSEngine] | None = None,
        *,
        voices: Mapping[str, TTSEngine] | None = None,
        language: str | None = None,
    ) -> None:
        self.default = default
        self.language = language
        self._engines: list[TTSEngine] = [default]
        self._by_language = {
            _tag(code): self._index(engine) for code, engine in (by_language or {}).items()
        }
        self._by_voice = {name: self._index(engine) for name, engine in (voices or {}).items()}
        self._closed = False

    def _index(self, engine: TTSEngine) -> int:
        for index, known in enumerate(self._engines):
            if known is engine:
                return index
        self._engines.append(engine)
        return len(self._engines) - 1

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Check that every engine has started (their owner starts them): reading their sample
        rates raises :class:`RuntimeError` for one that has not."""
        for engine in self._engines:
            _ = engine.sample_rate

    def close(self) -> None:
        """Refuse new requests (the engines stay as they are: their owner closes them)."""
        self._closed = True

    def __enter__(self) -> VoiceRouter[S]:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sample_rate(self) -> int:
        """The default engine's rate: every chunk comes out at it."""
        return self.default.sample_rate

    @property
    def engines(self) -> tuple[TTSEngine, ...]:
        """Every engine the router sends to, the default first (each once)."""
        return tuple(self._engines)

    def statistics(self) -> S:
        """The default engine's statistics (the routed engines report their own)."""
        return self.default.statistics()

    # -- routing (pure) --------------------------------------------------------------------

    def route(self, segment: SpeechSegment) -> int:
        """The index in :attr:`engines` of the engine that speaks ``segment``."""
        if segment.voice is not None and segment.voice in self._by_voice:
            return self._by_voice[segment.voice]
        if segment.lang is not None:
            tag = _tag(segment.lang)
            for key in (tag, _primary(tag)):
                if key in self._by_language:
                    return self._by_language[key]
        return 0

    def runs(self, plan: SpeechPlan) -> list[Run]:
        """``plan`` cut into runs of consecutive segments that go to the same engine."""
        routes: list[int | None] = [
            self.route(segment) if segment.text.strip() else None for segment in plan.segments
        ]
        previous = None
        for n, route in enumerate(routes):  # nothing to say: with the segment before
            routes[n] = previous = route if route is not None else previous
        following = 0
        for n in reversed(range(len(routes))):  # ... or at the start, the one after
            route = routes[n]
            routes[n] = following = route if route is not None else following
        runs: list[Run] = []
        start = 0
        for segment, engine in zip(plan.segments, routes, strict=True):
            assert engine is not None
            if engine != 0:
                segment = msgspec.structs.replace(segment, prosody=_without_knobs(segment.prosody))
            if runs and runs[-1].engine == engine:
                last = runs[-1]
                runs[-1] = Run(engine, (*last.segments, segment), last.text_start)
            else:
                runs.append(Run(engine, (segment,), start))
            start += len(segment.text)
        return runs

    def unrouted(self, plan: SpeechPlan) -> tuple[str, ...]:
        """The languages of ``plan`` (as written, each once) that the default voice speaks
        because no voice of theirs is routed and it is not the default voice's own."""
        own = _primary(_tag(self.language)) if self.language else None
        found: dict[str, None] = {}
        for segment in plan.segments:
            if segment.lang is None or not segment.text.strip() or self.route(segment) != 0:
                continue
            if _primary(_tag(segment.lang)) != own:
                found[segment.lang] = None
        return tuple(found)

    # -- requests --------------------------------------------------------------------------

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` or a plan, each run by its engine; see
        :meth:`voices.engine.TTSEngine.synthesize` and the module docstring."""
        plan = as_plan(text, prosody)
        if self._closed:
            raise ExecutorClosed("the voice router is closed")
        missing = self.unrouted(plan)
        if missing:
            log.warning(
                "no voice for %s: spoken by the default voice (voice.languages adds one)",
                ", ".join(missing),
            )
        rate = self.sample_rate
        position = 0  # samples yielded so far
        for run in self.runs(plan):
            engine = self._engines[run.engine]
            resampler = ChunkResampler(rate) if engine.sample_rate != rate else None
            base = position
            async with aclosing(engine.synthesize(SpeechPlan(run.segments))) as chunks:
                async for chunk in chunks:
                    if resampler is not None:
                        chunk = resampler.process(chunk)
                    moved = _moved(chunk, run.text_start, base)
                    position = moved.end_offset
                    yield moved
            tail = resampler.flush() if resampler is not None else None
            if tail is not None:
                moved = _moved(tail, run.text_start, base)
                position = moved.end_offset
                yield moved


def _tag(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def _primary(tag: str) -> str:
    return tag.partition("-")[0]


def _without_knobs(prosody: Prosody) -> Prosody:
    """``prosody`` without the default model's engine knobs (another model reads them
    differently, or not at all)."""
    return msgspec.structs.replace(
        prosody, length_scale=None, noise_scale=None, noise_w_scale=None, speaker_id=None
    )


def _moved(chunk: SpeechChunk, text_base: int, sample_base: int) -> SpeechChunk:
    """``chunk`` of a run, in the coordinates of the whole plan."""
    if not text_base and not sample_base:
        return chunk
    words = tuple(
        WordTiming(
            w.text_start + text_base,
            w.text_end + text_base,
            w.sample_start + sample_base,
            w.sample_end + sample_base,
        )
        for w in chunk.words
    )
    return SpeechChunk(
        chunk.sample_rate,
        chunk.pcm,
        chunk.sample_offset + sample_base,
        chunk.text_start + text_base,
        chunk.text_end + text_base,
        words,
        chunk.marks,
    )
