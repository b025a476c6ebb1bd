"""Typed events that flow between stages.

Every event names its session and its *generation*: ``0`` is the caller's side (input audio,
transcripts); each bot reply gets a fresh positive id, so cancelling a reply can drop its
in-flight events anywhere downstream by id.

Events are either *data* (audio, text: ordered, subject to the channel's policy) or *control*
(interrupt, end of input: they overtake queued data and are never coalesced or dropped).
"""

from __future__ import annotations

from typing import ClassVar

import msgspec
import numpy as np
import numpy.typing as npt

#: PCM16: two bytes a sample, little-endian, mono.
BYTES_PER_SAMPLE = 2
#: PCM16 samples as a numpy array (mono), as stages and tests handle them decoded.
Pcm = npt.NDArray[np.int16]
#: The sample rate of all audio inside the pipeline: every stage takes it, and transports
#: resample to it at the edge. 16 kHz because Whisper and silero VAD both take 16 kHz.
PIPELINE_RATE = 16000
USER_GENERATION = 0


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every pipeline event."""

    control: ClassVar[bool] = False
    session_id: str
    generation: int = USER_GENERATION


class AudioFrame(Event, frozen=True, kw_only=True, tag="audio"):
    """Mono PCM16 little-endian audio.

    ``pts`` is the media timestamp of the first sample, counted in samples at ``sample_rate``
    from the start of the stream it belongs to.
    """

    sample_rate: int
    pcm: bytes
    pts: int

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def end_pts(self) -> int:
        return self.pts + self.num_samples

    @property
    def duration(self) -> float:
        """Seconds of audio in this frame."""
        return self.num_samples / self.sample_rate

    def follows(self, previous: AudioFrame) -> bool:
        """True when this frame continues ``previous`` with no gap, in the same stream."""
        return (
            self.session_id == previous.session_id
            and self.generation == previous.generation
            and self.sample_rate == previous.sample_rate
            and self.pts == previous.end_pts
        )

    def append(self, following: AudioFrame) -> AudioFrame:
        """One frame holding this frame's samples then ``following``'s (see :meth:`follows`)."""
        if not following.follows(self):
            raise ValueError("frames are not contiguous in one stream")
        return AudioFrame(
            session_id=self.session_id,
            generation=self.generation,
            sample_rate=self.sample_rate,
            pcm=self.pcm + following.pcm,
            pts=self.pts,
        )


class TextChunk(Event, frozen=True, kw_only=True, tag="text"):
    """A piece of text (an LLM delta, a clause for TTS)."""

    text: str


class Flush(Event, frozen=True, kw_only=True, tag="flush"):
    """End the caller's open utterance here (a client's commit): finish it with the audio sent
    before this event, without waiting for more audio.

    A *data* event, on purpose: it keeps its place behind the audio queued before it (a
    control event would overtake that audio and cut the utterance short). The VAD stage closes
    open speech and passes it on; the ASR stage finalises the utterance and passes it on after
    that final, so whoever reads it downstream has every transcript of the audio before it.

    ``commit``: the turn ends here too (a client's commit); without it only the utterance is
    split (the session's, where the echo of the bot's reply ends: what follows is the caller's).

    ``discard``: forget the audio before it instead (a client cleared its input buffer): the
    VAD drops its open speech without closing it, the ASR drops the open utterance and any
    transcript of it still to come (partial or final), and the session drops the open turn.
    Audio after it starts afresh.
    """

    commit: bool = True
    discard: bool = False


class Interrupt(Event, frozen=True, kw_only=True, tag="interrupt"):
    """Stop the reply whose id is ``generation``: drop its queued events, cancel its work."""

    control: ClassVar[bool] = True


class EndOfInput(Event, frozen=True, kw_only=True, tag="end_of_input"):
    """No more data will follow on this stream."""

    control: ClassVar[bool] = True


def is_control(event: Event) -> bool:
    return type(event).control
