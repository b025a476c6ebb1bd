"""Which audio to decode, and when: utterances from speech events (sans-I/O).

:class:`UtteranceTracker` is fed the stream's audio (``pts`` in samples at 16 kHz) and the VAD's
speech boundaries, and returns :class:`Decode` actions. It never reads a clock: "every N ms"
means every N ms *of audio*.

Rules (``C`` is a :class:`TrackerConfig`):

* While nobody speaks, the last ``C.pre_roll_keep`` samples are kept, so an utterance can begin
  at :attr:`SpeechStarted.audio_start <pipeline.vad.events.SpeechStarted.audio_start>` even when
  the audio came before the event (the VAD stage's ``forward="all"``) rather than after it
  (``forward="speech"``).
* At speech start an utterance opens at ``audio_start`` (or at the oldest sample kept, if
  later). Audio before it is dropped.
* While the utterance is open, a partial ``Decode`` of everything so far is returned once it
  holds ``C.first_partial`` samples after the speech start, then again after every
  ``C.partial_interval`` new samples (``0`` turns partials off).
* At a pause (the VAD's :class:`~pipeline.vad.events.SpeechPaused` at sample ``p``) a
  *speculative* final ``Decode`` covers the utterance up to ``p + C.end_margin`` (as far as
  the audio goes); the utterance stays open. If the speech then stops at ``p``, that decode is
  its final (the stage reuses it); if the caller goes on, it was one more partial.
* At speech stop (sample ``s``, the first silent one) the final ``Decode`` covers the
  utterance up to ``s + C.end_margin`` (no further than the audio received). The audio after
  the cut is kept as the next utterance's pre-roll.
* An utterance reaching ``C.max_utterance`` samples is finalised in the quietest 100 ms of its
  last ``C.split_search`` samples (reason ``"max_length"``), and a new one opens there.
* A frame that does not continue the stream (a gap or overlap in ``pts``) closes an open
  utterance (reason ``"gap"``) and starts the buffer afresh. :meth:`UtteranceTracker.end_of_stream`
  closes it with reason ``"end_of_stream"``: its audio may stop mid-word.
  :meth:`UtteranceTracker.discard` drops it with no final, and everything buffered with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.events import PIPELINE_RATE, Pcm

_QUIET_WINDOW = 1600  # 100 ms
_HOP = 160  # 10 ms


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Durations in samples at 16 kHz (:meth:`from_seconds` takes seconds)."""

    first_partial: int = 8000
    partial_interval: int = 8000
    end_margin: int = 3200
    max_utterance: int = 20 * PIPELINE_RATE
    split_search: int = 3 * PIPELINE_RATE
    pre_roll_keep: int = PIPELINE_RATE

    def __post_init__(self) -> None:
        if min(self.first_partial, self.partial_interval, self.end_margin, self.pre_roll_keep) < 0:
            raise ValueError("durations must not be negative")
        if not 0 < self.split_search < self.max_utterance:
            raise ValueError("need 0 < split_search < max_utterance")

    @classmethod
    def from_seconds(
        cls,
        *,
        first_partial: float = 0.5,
        partial_interval: float = 0.5,
        end_margin: float = 0.2,
        max_utterance: float = 20.0,
        split_search: float = 3.0,
        pre_roll_keep: float = 1.0,
    ) -> TrackerConfig:
        return cls(
            first_partial=round(first_partial * PIPELINE_RATE),
            partial_interval=round(partial_interval * PIPELINE_RATE),
            end_margin=round(end_margin * PIPELINE_RATE),
            max_utterance=round(max_utterance * PIPELINE_RATE),
            split_search=round(split_search * PIPELINE_RATE),
            pre_roll_keep=round(pre_roll_keep * PIPELINE_RATE),
        )


@dataclass(frozen=True, slots=True, eq=False)  # holds an array: compare by identity
class Decode:
    """Decode ``audio`` (which starts at sample ``start``) for utterance ``utterance``."""

    utterance: int
    start: int
    audio: Pcm
    final: bool
    #: ``"partial"``, ``"speculative"``, ``"speech_stopped"``, ``"max_length"``, ``"gap"`` or
    #: ``"end_of_stream"``
    reason: str
    #: the end of speech this decode assumes: the stop of a ``speech_stopped`` final, the pause
    #: of a ``speculative`` one (``None`` for the others)
    stop: int | None = None

    @property
    def speculative(self) -> bool:
        """A final-quality decode at a pause, in case the speech ends there (the utterance
        stays open): the final of a stop at the same sample is the same decode."""
        return self.reason == "speculative"

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


class UtteranceTracker:
    """One session's utterances. Feed it in stream order; act on what it returns."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self._chunks: list[Pcm] = []
        self._length = 0
        #: pts of the first buffered sample (``None``: nothing received yet)
        self._start: int | None = None
        self._in_speech = False
        self._utterance = -1
        self._next_partial = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def utterance(self) -> int:
        """The id of the open (or the last) utterance; ``-1`` before the first."""
        return self._utterance

    @property
    def end(self) -> int | None:
        """pts just after the last sample received."""
        return None if self._start is None else self._start + self._length

    # -- inputs --------------------------------------------------------------------------------

    def audio(self, pts: int, samples: Pcm) -> list[Decode]:
        actions: list[Decode] = []
        if self.end is not None and pts != self.end:
            if self._in_speech:
                actions.append(self._final(self._length, "gap"))
            self._chunks, self._length, self._start = [], 0, None
        if self._start is None:
            self._start = pts
        if len(samples):
            self._chunks.append(samples)
            self._length += len(samples)
        if not self._in_speech:
            self._trim(self._length - self.config.pre_roll_keep)
            return actions
        while self._length >= self.config.max_utterance:
            actions.append(self._final(self._quiet_point(), "max_length"))
            self._open()
        if self.config.partial_interval and self._length >= self._next_partial:
            actions.append(Decode(self._utterance, self._origin, self._joined(), False, "partial"))
            self._next_partial = self._length + self.config.partial_interval
        return actions

    def speech_started(self, audio_start: int, speech_start: int | None = None) -> list[Decode]:
        """Speech began at ``speech_start``; its utterance's audio begins at ``audio_start``."""
        actions: list[Decode] = []
        if self._in_speech:  # a start without a stop: close what was open
            actions.append(self._final(self._length, "speech_stopped"))
        if self._start is None:
            self._start = audio_start
        self._trim(audio_start - self._origin)
        if self._length == 0:
            self._start = max(audio_start, self._origin)
        self._open()
        if speech_start is not None:  # partials count from the speech, not the pre-roll
            self._next_partial += max(speech_start - self._origin, 0)
        return actions

    def speech_paused(self, sample: int) -> list[Decode]:
        """The caller went silent at ``sample`` (the VAD's pause): the final the speech would
        get if it ended there, as far as the audio goes (the utterance stays open)."""
        if not self._in_speech:
            return []
        cut = max(min(sample + self.config.end_margin - self._origin, self._length), 0)
        audio = self._joined()[:cut].copy()
        return [Decode(self._utterance, self._origin, audio, True, "speculative", sample)]

    def speech_stopped(self, sample: int) -> list[Decode]:
        if not self._in_speech:
            return []
        cut = min(sample + self.config.end_margin - self._origin, self._length)
        return [self._final(max(cut, 0), "speech_stopped", sample)]

    def end_of_stream(self) -> list[Decode]:
        if not self._in_speech:
            return []
        return [self._final(self._length, "end_of_stream")]

    def discard(self) -> int:
        """Forget the audio so far (a client cleared its input): the open utterance closes
        with no final and the buffer empties (none of it is the next utterance's pre-roll).
        Returns the last utterance id given out: none up to it will be finalised."""
        self._in_speech = False
        self._chunks, self._length, self._start = [], 0, None
        return self._utterance

    # -- internals -----------------------------------------------------------------------------

    @property
    def _origin(self) -> int:
        return self._start if self._start is not None else 0

    def _open(self) -> None:
        self._in_speech = True
        self._utterance += 1
        self._next_partial = self.config.first_partial

    def _final(self, cut: int, reason: str, stop: int | None = None) -> Decode:
        """The utterance's audio up to ``cut`` (samples into the buffer); the rest stays."""
        audio = self._joined()
        action = Decode(self._utterance, self._origin, audio[:cut].copy(), True, reason, stop)
        self._in_speech = False
        self._trim(cut)
        return action

    def _trim(self, count: int) -> None:
        """Drop the first ``count`` buffered samples."""
        if count <= 0:
            return
        audio = self._joined()
        count = min(count, len(audio))
        rest = audio[count:]
        self._chunks = [rest] if len(rest) else []
        self._length = len(rest)
        self._start = self._origin + count

    def _joined(self) -> Pcm:
        if len(self._chunks) != 1:
            joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            self._chunks = [joined] if len(joined) else []
        return self._chunks[0] if self._chunks else np.zeros(0, np.int16)

    def _quiet_point(self) -> int:
        """Where to cut an over-long utterance: in its quietest 100 ms lately (sliding by 10 ms),
        at the quietest 20 ms inside that; the latest such point among equals."""
        audio = self._joined()[: self.config.max_utterance]
        begin = len(audio) - self.config.split_search
        energy = np.concatenate([[0.0], np.cumsum(audio[begin:].astype(np.float64) ** 2)])
        window = _sliding(energy, _QUIET_WINDOW, _HOP)
        if len(window) == 0:
            return len(audio)
        best = (len(window) - 1 - int(np.argmin(window[::-1]))) * _HOP
        inner = _sliding(energy[best : best + _QUIET_WINDOW + 1], _HOP * 2, _HOP)
        spot = best + (len(inner) - 1 - int(np.argmin(inner[::-1]))) * _HOP + _HOP
        return begin + spot


def _sliding(cumulative: npt.NDArray[np.float64], width: int, hop: int) -> npt.NDArray[np.float64]:
    """Sums of ``width`` samples every ``hop`` samples, from a cumulative sum (with its 0)."""
    ends = np.arange(width, len(cumulative), hop)
    return cumulative[ends] - cumulative[ends - width]
