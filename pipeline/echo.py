"""Echo detection: is what the caller's microphone sends the bot's own voice coming back?

A sans-I/O detector (no clock, no awaits; positions are samples of the 16 kHz input timeline).
Feed it the **reference**, the bot's audio as it goes to the transport, with
:meth:`EchoDetector.push_reference` (any rate, stamped with the input position at which it was
sent), and the **input**, the caller's 16 kHz PCM16 with its pts, with
:meth:`EchoDetector.push_input`, which returns the verdicts that changed.

How: both signals are band-passed to the telephone band (300-3400 Hz, what any line carries)
and become energy envelopes on one grid of ``frame_ms`` frames of the input timeline (the
reference's energy is binned by position, so its rate does not matter and no resampling is
needed). After every input frame, the last ``window_ms`` of the input envelope is correlated
(Pearson) with the reference envelope at every lag from 0 to ``max_delay_ms`` (echo comes back
later, never earlier: network round trip, client buffering, acoustics). What is correlated is
the change of a loudness-like envelope (power ** 0.25), smoothed over ``envelope_frames``
(a 50 ms triangle) and taken over ``change_frames`` (30 ms): attenuation and the noise floor
barely change its shape, and its changes (onsets, pauses) are sharp, so unrelated speech
rarely lines up with it; the smoothing keeps a reference and its echo lined up when their
frames are stamped a few ms apart (a live call's sender and player jitter: with the plain
frame-to-frame change and +-10 ms of such jitter, simulated, echo was found in 1-4 % of its
frames; with the smoothing, in 65-91 %). Each lag's correlation is smoothed over frames
(``smoothing``): echo keeps one delay, chance matches jump between lags. Echo is **likely** when

- the reference was audible (``min_reference_db``) at the best lag, and
- that lag's smoothed correlation is at least ``min_correlation``, and
- the input is not far above what the reference explains: the echo path's gain (input minus
  reference energy, dB, median at the best lag) is learned while echo is likely, and the
  input's newest ``recent_ms`` may exceed the reference plus that gain (or the noise floor) by
  at most ``max_excess_db`` on average. A caller talking over echo is louder than the echo can
  be: not echo, within a frame or two of their onset.

Thresholds, measured on espeak-ng speech as the reference and echo delayed 40 / 150 / 400 ms,
attenuated -6 / -12 / -20 dB, band-passed 300-3400 Hz, with noise at -60 dBFS, against another
espeak voice and real read speech (the moonshine-voice recordings) as callers, alone and over
that echo (tests/test_echo.py): with ``min_correlation`` 0.85 echo alone is likely in at least
89 % of its frames (all nine delay and attenuation cases), while a caller alone peaks at 0.85
(espeak), 0.77 and 0.66 (read speech) and is never likely; its first verdict comes 390-460 ms
after the echo begins (``agent.turns.ECHO_JUDGE_MS``). The margin over a caller's chance
correlation is thin: the excess check and the words rule of turn-taking are the backstops. The
excess of echo alone is <= 1.8 dB in 90 % of its frames while a caller over echo exceeds it by
9-40 dB within 100-300 ms of their onset, so ``max_excess_db`` is 6.

Cost: running sums and one correlation per 10 ms frame while the bot's audio is under the
searched lags: about 0.35 ms of numpy calls per frame (0.7 ms per 20 ms of audio, ~3.5 % of
one core, measured on the shared 2-core box). While the bot has been silent for longer than
the window and the longest delay, a frame costs only the band filter and the envelope.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["EchoConfig", "EchoDetector", "EchoVerdict"]

FloatArray = npt.NDArray[np.float64]

#: energies are in dB relative to full scale; silence reads as this floor
FLOOR_DB = -90.0


class EchoConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the detector frames, searches and decides (durations in milliseconds)."""

    frame_ms: int = 10
    #: the input envelope correlated with the reference
    window_ms: int = 400
    #: the longest echo delay searched (round trip + client buffering)
    max_delay_ms: int = 500
    #: how fast each lag's correlation follows new frames (0..1 per frame)
    smoothing: float = 0.05
    #: the smoothed correlation that makes echo likely
    min_correlation: float = 0.85
    #: the envelopes are smoothed over this many frames (a triangle) and their change taken
    #: over ``change_frames``: a reference and its echo stamped a few ms apart (sender and
    #: player jitter) still line up
    envelope_frames: int = 5
    change_frames: int = 3
    #: reference frames quieter than this (dBFS, in the band) are silence
    min_reference_db: float = -60.0
    #: the newest input this long is checked against the echo the reference explains ...
    recent_ms: int = 100
    #: ... and may exceed it by this much (mean dB) and still be echo
    max_excess_db: float = 6.0
    #: how fast the learned echo-path gain follows new evidence (0..1 per frame)
    gain_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.window_ms < 4 * self.frame_ms:
            raise ValueError("frame_ms must be positive and window_ms at least 4 frames")
        if self.max_delay_ms < 0 or not 0 < self.recent_ms <= self.window_ms:
            raise ValueError("max_delay_ms must not be negative; recent_ms in (0, window_ms]")
        if not -1.0 < self.min_correlation <= 1.0:
            raise ValueError("min_correlation must be in (-1, 1]")
        if not (0.0 < self.smoothing <= 1.0 and 0.0 < self.gain_rate <= 1.0):
            raise ValueError("smoothing and gain_rate must be in (0, 1]")
        if not (self.envelope_frames >= 1 and 1 <= self.change_frames < self.window_ms // 2):
            raise ValueError("envelope_frames and change_frames must be at least 1")


class EchoVerdict(msgspec.Struct, frozen=True):
    """From input sample ``sample`` on, echo is (or is not) ``likely``.

    ``correlation`` is the best smoothed one, ``delay`` its lag in samples, ``excess`` the dB
    by which the newest input exceeds the echo the reference explains.
    """

    sample: int
    likely: bool
    correlation: float = 0.0
    delay: int = 0
    excess: float = 0.0


class _Band:
    """The 300-3400 Hz band of one stream (a windowed-sinc FIR; state kept across chunks)."""

    def __init__(self, rate: int, taps: int = 63) -> None:
        n = np.arange(taps) - (taps - 1) / 2
        high = min(3400.0, 0.45 * rate)

        def lowpass(cutoff: float) -> FloatArray:
            h: FloatArray = np.sinc(2 * cutoff / rate * n) * 2 * cutoff / rate
            return h

        self.taps = (lowpass(high) - lowpass(300.0)) * np.hamming(taps)
        self.tail = np.zeros(taps - 1)

    def __call__(self, samples: FloatArray) -> FloatArray:
        data = np.concatenate([self.tail, samples])
        self.tail = data[len(data) - len(self.tail) :]
        out: FloatArray = np.convolve(data, self.taps, mode="valid")
        return out


class EchoDetector:
    """One call's echo detector (input and reference on the ``sample_rate`` timeline)."""

    def __init__(self, config: EchoConfig | None = None, *, sample_rate: int = 16000) -> None:
        self.config = c = config or EchoConfig()
        self.sample_rate = sample_rate
        self.frame = sample_rate * c.frame_ms // 1000
        self.window = c.window_ms // c.frame_ms
        self.lags = c.max_delay_ms // c.frame_ms + 1
        self.recent = max(1, c.recent_ms // c.frame_ms)
        # reference ring: 20 s of frames, far more than the span searched
        self._size = max(2048, 4 * (self.window + self.lags))
        self._ref_sum = np.zeros(self._size)
        self._ref_count = np.zeros(self._size)
        self._ref_tag = np.full(self._size, -1, dtype=np.int64)
        self._ref_band: dict[int, _Band] = {}
        self._in_band = _Band(sample_rate)
        self._input = np.full(self.window, FLOOR_DB)  # the input envelope (dB), oldest first
        self._frames = 0  # input frames complete
        self._pending = np.zeros(0)  # input samples of an incomplete frame
        self._next_pts = 0
        self._scores = np.zeros(self.lags)  # smoothed correlation per lag (lag 0 first)
        self._gain: float | None = None  # the learned echo-path gain, dB
        self._loud_until = -(1 << 62)  # the newest reference frame at or above min_reference_db
        self.verdict = EchoVerdict(0, False)
        self._taps = _triangle(c.envelope_frames)

    @property
    def likely(self) -> bool:
        return self.verdict.likely

    # -- feeding ------------------------------------------------------------------------------

    def push_reference(self, pcm: bytes | npt.NDArray[np.int16], rate: int, at: int) -> None:
        """The bot's audio (mono PCM16 at ``rate``) sent when the input was at sample ``at``."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        samples = _as_float(pcm)
        if not len(samples):
            return
        band = self._ref_band.get(rate)
        if band is None:
            band = self._ref_band[rate] = _Band(rate)
        samples = band(samples)
        frames = (at + (np.arange(len(samples)) * self.sample_rate) // rate) // self.frame
        first = int(frames[0])
        offsets = frames - first
        sums = np.bincount(offsets, weights=samples * samples)
        counts = np.bincount(offsets).astype(np.float64)
        index = np.arange(first, first + len(sums))
        slots = index % self._size
        stale = self._ref_tag[slots] != index
        self._ref_sum[slots[stale]] = 0.0
        self._ref_count[slots[stale]] = 0.0
        self._ref_tag[slots] = index
        self._ref_sum[slots] += sums
        self._ref_count[slots] += counts
        level = _db(self._ref_sum[slots] / np.maximum(self._ref_count[slots], 1.0))
        loud = index[level >= self.config.min_reference_db]
        if len(loud):
            self._loud_until = max(self._loud_until, int(loud[-1]))

    def push_input(self, pcm: bytes | npt.NDArray[np.int16], pts: int) -> list[EchoVerdict]:
        """Caller audio (PCM16 at ``sample_rate``) from input sample ``pts``; returns the
        verdicts that changed, in order. A gap before ``pts`` counts as silence (at most a
        window of it); audio before the position already fed is dropped."""
        samples = _as_float(pcm)
        end = pts + len(samples)
        if end <= self._next_pts:
            return []
        if pts < self._next_pts:
            samples = samples[self._next_pts - pts :]
        elif pts > self._next_pts:
            gap = pts - self._next_pts
            if gap > (self.window + 1) * self.frame:  # a long gap: resume on its last frames
                self._pending = np.zeros(0)
                self._frames = pts // self.frame - self.window - 1
                gap = pts - self._frames * self.frame
            samples = np.concatenate([np.zeros(gap), samples])
        self._next_pts = end
        samples = self._in_band(samples)
        data = np.concatenate([self._pending, samples])
        whole = len(data) // self.frame
        self._pending = data[whole * self.frame :]
        if not whole:
            return []
        power = np.mean(data[: whole * self.frame].reshape(whole, self.frame) ** 2, axis=1)
        changes = []
        for energy in _db(power):
            self._input[:-1] = self._input[1:]
            self._input[-1] = energy
            self._frames += 1
            verdict = self._judge()
            if verdict.likely != self.verdict.likely:
                changes.append(verdict)
            self.verdict = verdict
        return changes

    # -- deciding -----------------------------------------------------------------------------

    def _change(self, envelope: FloatArray) -> FloatArray:
        """The envelope's change over ``change_frames`` after smoothing, one value per frame
        after the first (as long as ``np.diff`` of it)."""
        if len(self._taps) > 1:
            envelope = np.convolve(envelope, self._taps, mode="same")
        lag = self.config.change_frames
        change = envelope[lag:] - envelope[:-lag]
        out: FloatArray = np.concatenate([np.zeros(lag - 1), change])
        return out

    def _reference(self, first: int, count: int) -> FloatArray:
        """The reference envelope (dB) of frames ``first .. first + count - 1``."""
        index = np.arange(first, first + count)
        slots = index % self._size
        known = self._ref_tag[slots] == index
        count_ = np.where(known, self._ref_count[slots], 0.0)
        power = np.where(count_ > 0, self._ref_sum[slots] / np.maximum(count_, 1.0), 0.0)
        return _db(power)

    def _judge(self) -> EchoVerdict:
        c = self.config
        sample = self._frames * self.frame
        last = self._frames - 1  # the newest input frame
        first = last - self.window + 2 - self.lags
        if self._loud_until < first:
            # the bot was silent under every lag (most of a call): every correlation is 0, so
            # the scores only decay; no envelope work (the same verdict, at a fraction of it)
            self._scores *= 1.0 - c.smoothing
            lag = int(np.argmax(self._scores))
            return EchoVerdict(sample, False, float(self._scores[lag]), lag * self.frame)
        span = self._reference(first, self.window + self.lags - 1)
        # rows[j]: the reference under the input window at lag (lags - 1 - j)
        rows = np.lib.stride_tricks.sliding_window_view(span, self.window)[::-1]
        x = self._input
        # loudness-like envelopes (power ** 0.25), their frame-to-frame changes, correlated;
        # the reference's sums come from running sums over the span (no per-lag copies)
        xf = self._change(10.0 ** (x / 40.0))
        xc = xf - xf.mean()
        yf = self._change(10.0 ** (span / 40.0))
        m = len(xf)
        sums = np.concatenate([[0.0], np.cumsum(yf)])
        squares = np.concatenate([[0.0], np.cumsum(yf * yf)])
        total = (sums[m:] - sums[:-m])[::-1]
        spread = np.maximum((squares[m:] - squares[:-m])[::-1] - total * total / m, 0.0)
        cov = np.correlate(yf, xc, mode="valid")[::-1]
        norms = np.sqrt(spread * float(xc @ xc))
        loud = np.concatenate([[0], np.cumsum(span >= c.min_reference_db)])
        audible = (loud[self.window :] - loud[: -self.window])[::-1] > 0
        ok = audible & (norms > 1e-12)
        corr = np.where(ok, cov / np.where(ok, norms, 1.0), 0.0)
        self._scores += c.smoothing * (corr - self._scores)
        lag = int(np.argmax(self._scores))
        score = float(self._scores[lag])
        if self._frames < self.window or not audible[lag]:
            return EchoVerdict(sample, False, score, lag * self.frame)
        y = rows[lag]
        heard = y >= c.min_reference_db
        gain = float(np.median((x - y)[heard]))
        known = gain if self._gain is None else self._gain
        predicted = np.maximum(y + known, x.min())
        excess = float(np.mean(np.maximum(0.0, x - predicted)[-self.recent :]))
        likely = score >= c.min_correlation and excess <= c.max_excess_db
        if likely:
            self._gain = known + c.gain_rate * (gain - known)
        return EchoVerdict(sample, likely, score, lag * self.frame, excess)


def _triangle(frames: int) -> FloatArray:
    half = np.arange(1, frames // 2 + 2, dtype=np.float64)
    taps = np.concatenate([half, half[-2::-1]])[:frames] if frames > 1 else np.ones(1)
    out: FloatArray = taps / taps.sum()
    return out


def _as_float(pcm: bytes | npt.NDArray[np.int16]) -> FloatArray:
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        return np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return np.asarray(pcm, dtype=np.float64)


def _db(power: FloatArray) -> FloatArray:
    """Mean square of int16 samples as dB relative to full scale (floored)."""
    out: FloatArray = 10.0 * np.log10(power / (32768.0 * 32768.0) + 10 ** (FLOOR_DB / 10))
    return out
