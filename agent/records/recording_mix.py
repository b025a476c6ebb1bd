"""A call's stereo recording laid out on one timeline (sans-I/O): the caller left, the agent
right.

Positions are samples at the mix's rate (16 kHz, the pipeline's) since the call started. Each
side's audio comes in chunks, each with the position it is *due* at: when the caller's chunk
was heard (its arrival less its length) or when the agent's is played (its sending plus the
playout's lead). A side is a stream that may pause; these rules lay it out:

====  ======================================================================================
id    rule
====  ======================================================================================
M1    a chunk due no later than ``slack`` after the end of that side's previous chunk goes
      right after it: a stream's jitter never shows as gaps, and a burst (a chunk due before
      the previous one ended) never overlaps it
M2    a side's first chunk, a chunk due later than that, and the first after a cut go where
      they are due: the silence between is the call's silence
M3    a cut (a barge-in) silences that side from the cut on (what was laid after it is
      zeroed)
M4    audio more than ``hold`` behind the newest position seen is final: :meth:`StereoMix.take`
      hands it out as interleaved PCM16 frames and forgets it; a cut or a chunk cannot reach
      back past it (it is moved up to it)
====  ======================================================================================

So what is kept is bounded by ``hold`` (plus the chunks of one call's batch); the writer
(:mod:`agent.records.recording`) takes what is final after each batch and everything at the
call's end.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LEFT", "RIGHT", "StereoMix"]

#: the caller's side
LEFT = 0
#: the agent's side
RIGHT = 1


class StereoMix:
    """Two mono PCM16 sides on one timeline (see the module doc for the rules)."""

    def __init__(self, rate: int, *, slack: int, hold: int) -> None:
        self.rate = rate
        self.slack = slack
        self.hold = hold
        #: samples handed out already (the timeline's final part)
        self.taken = 0
        self._sides = (bytearray(), bytearray())  # PCM16 of each side from ``taken`` on
        self._ends = [0, 0]  # where each side's last chunk ended
        self._streaming = [False, False]  # a side's next chunk may follow its last (M1)
        self._newest = 0

    def place(self, side: int, due: int, pcm: bytes) -> int:
        """Lay ``pcm`` (mono PCM16 at :attr:`rate`) on ``side``, due at sample ``due``;
        returns where it went (M1, M2, M4)."""
        end = self._ends[side]
        follows = self._streaming[side] and due <= end + self.slack
        at = max(end if follows else due, self.taken)
        track = self._sides[side]
        offset = 2 * (at - self.taken)
        if len(track) < offset:
            track.extend(bytes(offset - len(track)))
        track[offset : offset + len(pcm)] = pcm
        self._ends[side] = at + len(pcm) // 2
        self._streaming[side] = True
        self._newest = max(self._newest, self._ends[side])
        return at

    def end_of(self, side: int) -> int:
        """Where ``side``'s last chunk ended."""
        return self._ends[side]

    def cut(self, side: int, at: int) -> None:
        """``side`` is silent from ``at`` on (M3)."""
        at = max(at, self.taken)
        end = self._ends[side]
        self._streaming[side] = False
        if at >= end:
            return
        track = self._sides[side]
        start, stop = 2 * (at - self.taken), min(len(track), 2 * (end - self.taken))
        track[start:stop] = bytes(stop - start)
        self._ends[side] = at

    def take(self, *, final: bool = False) -> bytes:
        """Interleaved stereo PCM16 (left, right) of what is final (M4); ``final``: all of
        it, the call is over."""
        until = self._newest if final else self._newest - self.hold
        count = until - self.taken
        if count <= 0:
            return b""
        frames = np.zeros((count, 2), dtype="<i2")
        for side, track in enumerate(self._sides):
            have = min(count, len(track) // 2)
            frames[:have, side] = np.frombuffer(track, dtype="<i2", count=have)
            del track[: 2 * have]
        self.taken = until
        return frames.tobytes()
