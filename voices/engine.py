"""What every TTS engine speaks: speech plans in, PCM chunks with word alignment out.

An engine turns text, or a :class:`SpeechPlan` (text segments, each with its own
:class:`Prosody`), into an async generator of :class:`SpeechChunk`. Each chunk carries PCM16
audio, its sample rate and its place in the utterance (``sample_offset``), the span of the
input text it speaks, and :class:`WordTiming` entries that say which characters each stretch of
its samples speaks. So when a barge-in stops playout at sample ``p``, :func:`heard_until` turns
``p`` into the text the listener actually heard.

Coordinates, for one call of :meth:`TTSEngine.synthesize`:

- **text offsets** index the input text (for a plan, :attr:`SpeechPlan.text`: the segments'
  texts joined with nothing in between);
- **sample offsets** count samples at the chunk's ``sample_rate`` from the first sample of the
  first chunk; chunk ``k`` starts where chunk ``k - 1`` ended.

A plan says more than words: each :class:`SpeechSegment` may carry a :class:`Style` (an emotion
and its intensity), marks (named points that fire when playout reaches the segment's first
sample: the chunk that starts there lists them in :attr:`SpeechChunk.marks`), a voice and a
language (for a router that switches engines; an engine with one voice ignores them), and IPA
phonemes for some of its characters (:class:`PhonemeSpan`, for engines that read phonemes).
SSML (:mod:`voices.ssml`) and inline emotion tags (:mod:`voices.emotion`) compile to plans.

Within a chunk, ``words`` are in text order and tile the chunk's samples with no gap or overlap
(the first starts at ``sample_offset``, the last ends at :attr:`SpeechChunk.end_offset`): a word
owns the pause after it. A chunk that speaks no word (a pause) has no words.

Callers own the generator: close it (``contextlib.aclosing``) or cancel the scope that reads it;
either stops synthesis of what has not been produced yet.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Literal, Protocol, get_args

import msgspec
import msgspec.structs

from pipeline.events import BYTES_PER_SAMPLE

__all__ = [
    "BYTES_PER_SAMPLE",
    "EMOTIONS",
    "Emotion",
    "PhonemeSpan",
    "Prosody",
    "SpeechChunk",
    "SpeechPlan",
    "SpeechSegment",
    "Style",
    "TTSEngine",
    "WordTiming",
    "as_plan",
    "heard_until",
]


#: the shared emotion and style vocabulary; each engine maps it to what it can change
Emotion = Literal["neutral", "happy", "sad", "angry", "excited", "calm", "whisper", "serious"]
EMOTIONS: tuple[Emotion, ...] = get_args(Emotion)


class Prosody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-request synthesis knobs; ``None`` keeps the voice's own default.

    Engine-neutral multipliers: ``rate`` above 1 speaks faster, ``pitch`` multiplies the
    fundamental frequency (1.2 is "+20%"), ``volume`` multiplies the amplitude (above 1 the
    engine limits peaks rather than clip).

    Engine knobs, named after Piper's ``SynthesisConfig`` (an absolute value replaces the
    voice's default; ``rate`` still applies on top): ``length_scale`` above 1 speaks slower,
    ``noise_scale`` varies the voice, ``noise_w_scale`` varies phoneme lengths, ``speaker_id``
    picks a speaker of a multi-speaker voice.
    """

    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    volume: float = 1.0
    speaker_id: int | None = None
    rate: float = 1.0
    pitch: float = 1.0

    def scaled(self, *, rate: float = 1.0, pitch: float = 1.0, volume: float = 1.0) -> Prosody:
        """This prosody with its multipliers multiplied (how nested SSML ``prosody`` composes)."""
        return msgspec.structs.replace(
            self, rate=self.rate * rate, pitch=self.pitch * pitch, volume=self.volume * volume
        )


class Style(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An emotion or speaking style with an intensity (0: none, 1: the preset, up to 2)."""

    emotion: Emotion = "neutral"
    intensity: float = 1.0


class PhonemeSpan(msgspec.Struct, frozen=True, array_like=True):
    """``segment.text[start:end]`` is to be read as the IPA ``phonemes`` (SSML ``phoneme``)."""

    start: int
    end: int
    phonemes: str


class SpeechSegment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Marks, then a stretch of text spoken with one prosody and style, then a pause.

    ``marks`` fire when playout reaches the segment's first sample (after the previous
    segment's pause). ``voice`` and ``lang`` name a catalog voice and a BCP 47 language for the
    segment (``None``: the request's); ``phonemes`` override how parts of ``text`` are read.
    """

    text: str
    prosody: Prosody = Prosody()
    pause_ms: int = 0
    style: Style | None = None
    marks: tuple[str, ...] = ()
    voice: str | None = None
    lang: str | None = None
    phonemes: tuple[PhonemeSpan, ...] = ()


class SpeechPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to say and how: the shape SSML and emotion presets compile to."""

    segments: tuple[SpeechSegment, ...]

    @property
    def text(self) -> str:
        """The text that chunk and word offsets index."""
        return "".join(segment.text for segment in self.segments)

    @classmethod
    def from_text(cls, text: str, prosody: Prosody | None = None) -> SpeechPlan:
        return cls((SpeechSegment(text, prosody or Prosody()),))

    def after(self, offset: int) -> SpeechPlan | None:
        """What is left to say from ``offset`` of :attr:`text` on, each segment keeping its
        prosody, style, voice and language (the rest of an interrupted reply, said again):
        the segment cut there keeps its pause but not its marks (they were reached), and a
        phoneme span cut by it is read as text. ``None`` when nothing is left to say."""
        segments: list[SpeechSegment] = []
        start = 0
        for segment in self.segments:
            end = start + len(segment.text)
            if end > offset and start < offset:
                cut = offset - start
                kept = tuple(
                    PhonemeSpan(p.start - cut, p.end - cut, p.phonemes)
                    for p in segment.phonemes
                    if p.start >= cut
                )
                segment = msgspec.structs.replace(
                    segment, text=segment.text[cut:], marks=(), phonemes=kept
                )
            if end > offset or start >= offset:
                segments.append(segment)
            start = end
        if not any(segment.text.strip() for segment in segments):
            return None
        return SpeechPlan(tuple(segments))


class WordTiming(msgspec.Struct, frozen=True, array_like=True):
    """``text[text_start:text_end]`` is spoken in samples ``[sample_start, sample_end)``."""

    text_start: int
    text_end: int
    sample_start: int
    sample_end: int


class SpeechChunk(msgspec.Struct, frozen=True):
    """PCM16 audio for ``text[text_start:text_end]`` of the request, with word timings."""

    sample_rate: int
    pcm: bytes
    #: position of the first sample in the utterance
    sample_offset: int
    text_start: int
    text_end: int
    words: tuple[WordTiming, ...] = ()
    #: plan marks reached when playout reaches this chunk's first sample (may be an empty chunk)
    marks: tuple[str, ...] = ()

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def end_offset(self) -> int:
        return self.sample_offset + self.num_samples

    @property
    def duration(self) -> float:
        """Seconds of audio in this chunk."""
        return self.num_samples / self.sample_rate


class TTSEngine(Protocol):
    """A speech synthesizer shared by every session."""

    @property
    def sample_rate(self) -> int:
        """The rate of every chunk this engine produces."""
        ...

    def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` (with ``prosody``) or a plan (which carries its own prosody).

        Chunks arrive as soon as each is synthesized. Raises
        :class:`~pipeline.errors.Overloaded` when too many requests wait, and
        :class:`~pipeline.errors.ModelError` when the engine fails during this request.
        """
        ...


def as_plan(text: str | SpeechPlan, prosody: Prosody | None = None) -> SpeechPlan:
    """The plan for a :meth:`TTSEngine.synthesize` argument (``prosody`` only applies to text)."""
    if isinstance(text, SpeechPlan):
        if prosody is not None:
            raise TypeError("a SpeechPlan carries its own prosody")
        return text
    return SpeechPlan.from_text(text, prosody)


def heard_until(words: Iterable[WordTiming], position: int) -> int:
    """The text offset up to which a listener heard the utterance when playout stopped.

    ``position`` is the number of samples played (in the words' sample coordinates). A word
    counts as heard once its samples have all been played; the result is the ``text_end`` of
    the last such word, or 0.
    """
    heard = 0
    for word in words:
        if word.sample_end > position:
            break
        heard = word.text_end
    return heard
