"""Events the VAD stage adds to the stream (sample positions are ``pts`` at 16 kHz)."""

from __future__ import annotations

from pipeline.events import Event


class SpeechStarted(Event, frozen=True, kw_only=True, tag="speech_started"):
    """The caller started speaking at ``sample``.

    ``audio_start`` is where the audio that follows this event begins when the stage forwards
    speech only (``sample`` minus the pre-roll); ``probability`` is the highest speech
    probability seen while the start was being confirmed.
    """

    sample: int
    audio_start: int
    probability: float


class SpeechPaused(Event, frozen=True, kw_only=True, tag="speech_paused"):
    """The caller has been silent since ``sample`` for ``PAUSE_SAMPLES``: the speech may have
    ended there (:class:`SpeechStopped` with that ``sample`` will say so once the silence
    lasts the configured minimum) or may go on. Sent once per silence run."""

    sample: int


class EndSpeechAt(Event, frozen=True, kw_only=True, tag="end_speech_at"):
    """To the VAD stage, in order with the audio: end the open speech at ``sample`` now, if
    the silence going on began there (the end-of-turn model heard a finished turn), rather
    than after the minimum silence; else nothing. The stage consumes it.

    ``until``: only once the silence has been heard up to that sample (turn-taking's early end
    at a pause: the caller must be silent that long in the audio, not only by the clock,
    which runs on while a client's audio stalls); speech before it keeps the speech going."""

    sample: int
    until: int = 0


class SpeechStopped(Event, frozen=True, kw_only=True, tag="speech_stopped"):
    """The speech that began at ``speech_start`` ended at ``sample`` (its first silent sample).

    It is sent once the silence has lasted the configured minimum, so it follows audio up to
    that point.
    """

    sample: int
    speech_start: int
