"""Speech start/stop detection from per-frame speech probabilities (sans-I/O).

Feed :meth:`SpeechDetector.feed` one speech probability per frame with the frame's length in
samples; it returns the :class:`SpeechStart` / :class:`SpeechEnd` transitions that frame
completed. It never reads a clock and never does I/O: positions are sample counts from the
``start`` given to the constructor (the stream's ``pts``).

Rules (``C`` is a :class:`DetectorConfig`):

* Silence to speech: a *speech run* begins at the first sample of a frame whose probability
  is at least ``C.activation``, and goes on while probabilities stay at least
  ``C.deactivation`` (hysteresis). Once the run is ``C.min_speech_samples`` long it is speech:
  :class:`SpeechStart` reports the run's first sample. A run that dips below
  ``C.deactivation`` sooner is forgotten (a click, a cough).
* Speech to silence: a *silence run* begins at the first sample of a frame whose probability
  is below ``C.deactivation``, and goes on while probabilities stay below it. Once it is
  ``C.min_silence_samples`` long, :class:`SpeechEnd` reports the run's first sample (the end
  of speech). A frame at or above ``C.deactivation`` ends the silence run: still speaking.
* Pre-roll: :attr:`SpeechStart.audio_start` is ``C.pre_roll_samples`` before the speech, but
  never before the stream's start nor before the point where the previous speech end was
  confirmed, so an adapter that forwards audio from there never sends a sample twice.

Everything is decided at sample precision, so the transitions do not depend on how the
probability signal is cut into frames: feeding ``(p, 512)`` or ``(p, 200), (p, 312)`` gives the
same transitions (a property the tests check).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.events import PIPELINE_RATE


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Thresholds and durations; durations are counted in samples (the defaults: at 16 kHz)."""

    #: a speech run starts at a frame with probability >= this
    activation: float = 0.5
    #: speech goes on while probability >= this (hysteresis: at most ``activation``)
    deactivation: float = 0.35
    #: a speech run must last this long before it counts as speech
    min_speech_samples: int = 4000
    #: silence must last this long before speech is over
    min_silence_samples: int = 8000
    #: audio kept before the speech start so the first syllable is never cut
    pre_roll_samples: int = 8000

    def __post_init__(self) -> None:
        if not 0.0 <= self.deactivation <= self.activation <= 1.0:
            raise ValueError("need 0 <= deactivation <= activation <= 1")
        if min(self.min_speech_samples, self.min_silence_samples, self.pre_roll_samples) < 0:
            raise ValueError("durations must not be negative")
        if self.min_silence_samples < 1:
            raise ValueError("min_silence_samples must be at least 1")

    @classmethod
    def from_seconds(
        cls,
        *,
        rate: int = PIPELINE_RATE,
        activation: float = 0.5,
        deactivation: float = 0.35,
        min_speech: float = 0.25,
        min_silence: float = 0.5,
        pre_roll: float = 0.5,
    ) -> DetectorConfig:
        """The same config with durations given in seconds at ``rate``."""
        return cls(
            activation=activation,
            deactivation=deactivation,
            min_speech_samples=round(min_speech * rate),
            min_silence_samples=round(min_silence * rate),
            pre_roll_samples=round(pre_roll * rate),
        )


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """Speech began at ``sample``; audio worth keeping begins at ``audio_start``."""

    sample: int
    audio_start: int
    #: the highest probability seen in the run's first ``min_speech_samples``
    probability: float


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    """Speech that began at ``start`` ended at ``sample`` (the first silent sample)."""

    sample: int
    start: int


Transition = SpeechStart | SpeechEnd


class SpeechDetector:
    """Hysteresis, minimum durations and pre-roll over a stream of frame probabilities."""

    def __init__(self, config: DetectorConfig | None = None, *, start: int = 0) -> None:
        self.config = config if config is not None else DetectorConfig()
        self._position = start
        self._floor = start  # pre-roll never reaches before this
        self._speaking = False
        self._speech_start = start
        self._run_start: int | None = None  # candidate speech (silent) or silence (speaking)
        self._run_peak = 0.0

    @property
    def position(self) -> int:
        """The sample just after the last one fed."""
        return self._position

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def pause(self) -> int | None:
        """While speaking: the first sample of the silence run going on (it may still turn out
        to be a pause inside the speech, or become its end); else ``None``."""
        return self._run_start if self._speaking else None

    def feed(self, probability: float, num_samples: int) -> list[Transition]:
        """Take one frame's speech probability; return the transitions it completed."""
        if num_samples < 0:
            raise ValueError("num_samples must not be negative")
        if num_samples == 0:
            return []
        begin = self._position
        end = begin + num_samples
        self._position = end
        if self._speaking:
            return self._while_speaking(probability, begin, end)
        return self._while_silent(probability, begin, end)

    def flush(self) -> list[Transition]:
        """The stream ended: close open speech at its end; forget an unconfirmed run.

        Feeding may go on afterwards; the next pre-roll starts no earlier than here.
        """
        out: list[Transition] = []
        if self._speaking:
            stop = self._run_start if self._run_start is not None else self._position
            out.append(SpeechEnd(sample=stop, start=self._speech_start))
        self._floor = self._position
        self._speaking = False
        self._run_start = None
        return out

    def end_at(self, sample: int) -> list[Transition]:
        """End the speech at ``sample`` now if the silence run going on began there (someone
        who knows better than ``C.min_silence_samples`` says it is the end); else nothing."""
        if not self._speaking or self._run_start != sample:
            return []
        self._speaking = False
        self._run_start = None
        self._floor = self._position
        return [SpeechEnd(sample=sample, start=self._speech_start)]

    def _while_silent(self, probability: float, begin: int, end: int) -> list[Transition]:
        config = self.config
        if self._run_start is None:
            if probability < config.activation:
                return []
            self._run_start = begin
            self._run_peak = probability
        elif probability < config.deactivation:
            self._run_start = None
            return []
        else:
            # frames fed here all begin inside the run's first min_speech_samples
            self._run_peak = max(self._run_peak, probability)
        if end - self._run_start < config.min_speech_samples:
            return []
        start = self._run_start
        self._speaking = True
        self._speech_start = start
        self._run_start = None
        audio_start = max(start - config.pre_roll_samples, self._floor)
        return [SpeechStart(sample=start, audio_start=audio_start, probability=self._run_peak)]

    def _while_speaking(self, probability: float, begin: int, end: int) -> list[Transition]:
        config = self.config
        if probability >= config.deactivation:
            self._run_start = None
            return []
        if self._run_start is None:
            self._run_start = begin
        confirmed = self._run_start + config.min_silence_samples
        if end < confirmed:
            return []
        stop = self._run_start
        self._speaking = False
        self._run_start = None
        self._floor = confirmed
        return [SpeechEnd(sample=stop, start=self._speech_start)]
