"""Whether the audio has just gone quiet, so a partial decode should wait (sans-I/O).

**Why.** A call's decodes share one worker per model (:mod:`pipeline.executor`), and a decode
that has started runs to its end: CTranslate2 cannot stop one half-way. A partial started in the
~100 ms before the VAD's :class:`~pipeline.vad.events.SpeechPaused` therefore holds the worker
when the speculative final is submitted, and the final-quality decode that should overlap the
VAD's confirmation of the end starts up to one decode later (BENCHMARKS.md, "Every turn at its
floor": 5 turns of 24 got their final 29-53 ms after the VAD's stop, a decode taking ~145 ms on
that CPU). The VAD's pause comes 100 ms (in whole 32 ms frames: 128 ms) after the silence it
scores began, and that begins after the speech's energy fell (the VAD's end error, 4-108 ms):
the recogniser can see the quiet coming well before the pause. A partial that finds the audio
quiet for :data:`PAUSE_LIKELY` waits (:class:`~pipeline.asr.stage.AsrStage`): until a loud block
comes (the caller goes on: it is decoded then, a few tens of ms late) or until a newer job
replaces it (the pause's speculative final, which reads as a partial anyway, or the stop's
final). After :data:`HOLD_LIMIT` of quiet with no pause the VAD is hearing speech in audio that
is quiet here (a soft voice after a loud one), and the partial goes; once the VAD has paused in
this quiet, partials wait for loud audio however long it lasts (the stop's final is coming, and
the speculative one covers the audio meanwhile).

Rules (all in samples of the audio received, in stream order):

* Levels are the RMS of 10 ms blocks (:data:`BLOCK`); a block is complete once its last sample
  arrived, whatever the frames' sizes (feeding the same audio in other pieces gives the same
  answers at the same positions).
* A block is *quiet* when it is more than :data:`~pipeline.asr.guards.ACTIVE_RANGE_DB` below the
  loudest block of the utterance so far (the guards' own rule for active audio) or below
  ``floor_dbfs``. Digital silence is quiet.
* :attr:`QuietTail.quiet` is the length of the run of quiet blocks at the end of the audio.
* :meth:`QuietTail.paused` (the VAD's pause) marks the run as a pause: it ends only with a loud
  block. :meth:`QuietTail.restart` (a new utterance) forgets the loudest block and the run.
* :attr:`QuietTail.pause_likely`: ``PAUSE_LIKELY <= quiet``, and ``quiet < HOLD_LIMIT`` or the run
  is a pause.

Noise within 35 dB of the speech is never quiet: there a partial never waits, as before.

Measured with ``bench.voice_to_voice --floor 3 --baseline-tree`` (this rule and the stage's
abandoned partials against the tree before them, in turn in one run, 2 shared cores,
2026-12-07): the median time from the VAD's stop to the final went from 31 to 6 ms, and voice to
voice p50 from 437 to 398 ms, with decodes taking 219 ms; in a second run (decodes at 306 ms,
longer than the 192 ms from pause to stop, so every final was late by itself) 36 to 23 ms, and
426 to 400 ms.
"""

from __future__ import annotations

import numpy as np

from pipeline.asr.guards import ACTIVE_RANGE_DB
from pipeline.events import Pcm

#: samples per level block (10 ms at 16 kHz)
BLOCK = 160
#: quiet this long (30 ms) makes a pause likely: a partial would hold the worker into it
PAUSE_LIKELY = 3 * BLOCK
#: quiet this long (300 ms) with no pause yet: the VAD hears speech in it, partials go on (the
#: pause comes 128 ms after the VAD's silence began, which trails the quiet by up to ~110 ms)
HOLD_LIMIT = 30 * BLOCK


class QuietTail:
    """One session's audio level at the end of what was received. Feed it in stream order."""

    def __init__(self, floor_dbfs: float = -55.0) -> None:
        #: a block's mean square (of PCM16 values) below this is quiet whatever the speech
        self._floor = (32768.0 * 10 ** (floor_dbfs / 20)) ** 2
        self._range = 10 ** (-ACTIVE_RANGE_DB / 10)  # as a ratio of mean squares
        self._loudest = 0.0
        self._partial = np.zeros(0, np.float64)  # the samples of an unfinished block
        #: samples of quiet blocks at the end of the audio
        self.quiet = 0
        self._paused = False  # the VAD paused since the last loud block

    @property
    def pause_likely(self) -> bool:
        return self.quiet >= PAUSE_LIKELY and (self.quiet < HOLD_LIMIT or self._paused)

    def paused(self) -> None:
        """The VAD heard a pause: the quiet is one until a loud block comes."""
        self._paused = True

    def restart(self) -> None:
        """A new utterance: its own loudest block decides what is quiet."""
        self._loudest = 0.0
        self.quiet = 0
        self._paused = False

    def feed(self, samples: Pcm) -> None:
        audio = np.concatenate([self._partial, samples.astype(np.float64)])
        whole = len(audio) // BLOCK * BLOCK
        self._partial = audio[whole:]
        if not whole:
            return
        levels = np.mean(audio[:whole].reshape(-1, BLOCK) ** 2, axis=1)
        for level in levels.tolist():
            self._loudest = max(self._loudest, level)
            if level < self._floor or level < self._loudest * self._range:
                self.quiet += BLOCK
            else:
                self.quiet = 0
                self._paused = False
