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

Within a chunk, ``words`` are in text order and tile the chunk's samples with no gap or overlap
(the first starts at ``sample_offset``, the last ends at :attr:`SpeechChunk.end_offset`): a word
owns the pause after it. A chunk that speaks no word (a pause) has no words.

Callers own the generator: close it (``contextlib.aclosing``) or cancel the scope that reads it;
either stops synthesis of what has not been produced yet.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Protocol

import msgspec

from pipeline.events import BYTES_PER_SAMPLE

__all__ = [
    "BYTES_PER_SAMPLE",
    "Prosody",
    "SpeechChunk",
    "SpeechPlan",
    "SpeechSegment",
    "TTSEngine",
    "WordTiming",
    "as_plan",
    "heard_until",
]


class Prosody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-request synthesis knobs; ``None`` keeps the voice's own default.

    The names follow Piper's ``SynthesisConfig``: ``length_scale`` above 1 speaks slower,
    ``noise_scale`` varies the voice, ``noise_w_scale`` varies phoneme lengths, ``volume``
    multiplies the samples, ``speaker_id`` picks a speaker of a multi-speaker voice.
    """

    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    volume: float = 1.0
    speaker_id: int | None = None


class SpeechSegment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A stretch of text spoken with one prosody, then ``pause_ms`` of silence."""

    text: str
    prosody: Prosody = Prosody()
    pause_ms: int = 0


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
