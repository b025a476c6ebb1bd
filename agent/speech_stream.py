"""``POST /v1/audio/speech`` behind the HTTP layer: the plan, the requests, the encoded stream.

- :func:`build_plan`: the request's text (plain, with inline emotion tags and normalisation,
  or SSML when it starts with ``<speak``) with the voice's defaults, the speed and the emotion
  (a :class:`~agent.reply.ReplyVoice`, the same defaults a call's replies speak with).
- :func:`split_plan`: the plan cut into about a sentence per engine request. The TTS engine is
  shared with live calls and serves one request at a time, so a long text spoken as one request
  would keep every call waiting for its turn; sentence-sized requests interleave with theirs.
- :func:`synthesize_plans`: the requests one after another, as one stream of chunks.
- :class:`AudioEncoder`: PCM16 chunks to the file format asked for, at the rate asked for.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncGenerator, Sequence

import msgspec

from agent.reply import ReplyVoice
from pipeline.media import OutputFormat, StreamEncoder
from voices.chunking import ClauseChunker
from voices.engine import (
    PhonemeSpan,
    SpeechChunk,
    SpeechPlan,
    SpeechSegment,
    TTSEngine,
)
from voices.resample import StreamResampler
from voices.ssml import looks_like_ssml

__all__ = ["AudioEncoder", "build_plan", "split_plan", "synthesize_plans"]

_SENTENCE_END = tuple(".!?…")


def build_plan(text: str, voice: ReplyVoice) -> SpeechPlan:
    """The plan for ``text`` in ``voice`` (the catalog voice with the request's speed and
    emotion: :meth:`ReplyVoice.of`, as calls speak); SSML (``<speak ...``) raises
    :class:`~pipeline.errors.InvalidSSML` when it cannot be spoken."""
    if looks_like_ssml(text):
        plan, _ = voice.ssml_plan(text, voice.style)
        return plan
    return voice.text_plan(text, voice.style)


def split_plan(plan: SpeechPlan, *, max_chars: int = 250) -> list[SpeechPlan]:
    """``plan`` as consecutive plans of about one sentence each (at most ``max_chars``
    characters where the text allows); together they say exactly what ``plan`` says."""
    plans: list[SpeechPlan] = []
    current: list[SpeechSegment] = []
    chars = 0
    for segment in plan.segments:
        for piece in _split_segment(segment, max_chars):
            current.append(piece)
            chars += len(piece.text)
            if piece.text.rstrip().endswith(_SENTENCE_END) or piece.pause_ms or chars >= max_chars:
                plans.append(SpeechPlan(tuple(current)))
                current, chars = [], 0
    if current:
        plans.append(SpeechPlan(tuple(current)))
    return plans


def _split_segment(segment: SpeechSegment, max_chars: int) -> list[SpeechSegment]:
    """One segment cut at its sentence ends (and a long sentence at a clause end), never inside
    a phoneme span;
    the marks stay on the first piece, the pause on the last."""
    # clause ends only where a sentence is too long: a request per clause would break the
    # sentence's intonation at each comma
    chunker = ClauseChunker(min_clause_chars=max_chars, max_chars=max_chars)
    chunks = [*chunker.feed(segment.text), *chunker.flush()]
    cuts = [
        chunk.start
        for chunk in chunks[1:]
        if not any(span.start < chunk.start < span.end for span in segment.phonemes)
    ]
    if not cuts:
        return [segment]
    bounds = [0, *cuts, len(segment.text)]
    pieces = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        spans = tuple(
            PhonemeSpan(span.start - start, span.end - start, span.phonemes)
            for span in segment.phonemes
            if start <= span.start < end
        )
        pieces.append(
            msgspec.structs.replace(
                segment,
                text=segment.text[start:end],
                pause_ms=segment.pause_ms if end == len(segment.text) else 0,
                marks=segment.marks if index == 0 else (),
                phonemes=spans,
            )
        )
    return pieces


async def synthesize_plans(
    engine: TTSEngine, plans: Sequence[SpeechPlan]
) -> AsyncGenerator[SpeechChunk, None]:
    """The chunks of every plan, each plan one engine request, in order.

    Close the generator (``contextlib.aclosing``) to stop: the running request is cancelled.
    """
    for plan in plans:
        async with contextlib.aclosing(engine.synthesize(plan)) as chunks:
            async for chunk in chunks:
                yield chunk


class AudioEncoder:
    """PCM16 mono at ``in_rate`` to ``fmt`` at ``out_rate``, a chunk at a time (blocking:
    run it on a worker thread)."""

    def __init__(self, fmt: OutputFormat, in_rate: int, out_rate: int) -> None:
        self._resampler = StreamResampler(in_rate, out_rate)
        self._encoder = StreamEncoder(fmt, out_rate)

    def encode(self, pcm: bytes) -> bytes:
        resampled = self._resampler.process(pcm)
        return self._encoder.encode(resampled) if resampled else b""

    def close(self) -> bytes:
        tail = self._resampler.flush()
        head = self._encoder.encode(tail) if tail else b""
        return head + self._encoder.close()
