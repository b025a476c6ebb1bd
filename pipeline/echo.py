"""Echo detection: is what the caller's microphone sends the bot's own voice coming back?

A sans-I/O detector (no clock, no awaits; positions are samples of the 16 kHz input timeline).
Feed it the **reference**, the bot's audio as it goes to the transport, with
:meth:`EchoDetector.push_reference` (any rate, stamped with the input position at which it was
sent), and the **input**, the caller's 16 kHz PCM16 with its pts, with
:meth:`EchoDetector.push_input`, which returns the verdicts that changed.

How: the reference is placed as the far side plays it: a reply's chunks back to back from the
first one's stamp (a new stream after ``restart`` or after a gap), so the few ms by which the
moments of sending jitter do not smear it. A reference at another rate is resampled onto the
input's 16 kHz timeline (:class:`pipeline.resample.StreamResampler`). Every ``frame_ms`` of
either signal becomes the powers of ``bands`` log-spaced bands of 300-3400 Hz (the telephone
band, what any line carries) over the last ``spectrum_ms`` (a Hann window: the long window makes
a frame's powers barely depend on where inside a pitch period the frame starts, so an echo delay
that is not a whole number of frames still lines up; with 10 ms rectangular frames, a delay of
14.5 frames found the echo in 54 % of its frames). After every input frame, the last
``window_ms`` of the input's band envelopes are correlated (Pearson, over bands and frames
together) with the reference's at every lag from 0 to ``max_delay_ms`` (echo comes back later,
never earlier: network round trip, client buffering, acoustics). What is correlated is the
frame-to-frame change of loudness-like envelopes (power ** 0.25): attenuation and the noise
floor barely change its shape, its changes (onsets, pauses, formant moves) are sharp, and
another voice saying other words moves other bands at other times. Each lag's correlation is
smoothed over frames (``smoothing``): echo keeps one delay, chance matches jump between lags.
Echo is **likely** when

- the reference was audible (``min_reference_db``) at the best lag, and
- that lag's smoothed correlation is at least ``min_correlation`` (once likely, at least
  ``release_correlation``: a weaker stretch inside the bot's speech is not a caller), and
- no caller has been heard over the echo for ``double_talk_ms``: the echo path's gain is a
  low percentile of input minus reference (dB) at the best lag where the reference is loud,
  and when the input's newest ``recent_ms`` exceed the reference plus that gain (or the noise
  floor) by more than ``max_excess_db`` on average, someone louder than the echo can be is
  talking. The hold is there because a caller's speech may be quieter than the echo for a
  while after their first syllable, and
- the echo is not over: the input is at most ``tail_ms`` past the end of the reference placed
  so far plus the delay. A verdict that turns past that end (for this, or for a caller heard
  over the echo's last syllables) says ``ended``: a session splits the caller's utterance
  there, so that speech right after the bot's is not glued to its echo.

Thresholds, measured on espeak-ng speech as the reference and echo delayed 40 / 150 / 400 ms
and 45 / 145 / 155 / 405 ms, attenuated -6 / -12 / -20 dB, band-passed 300-3400 Hz, with noise
at -60 dBFS, against another espeak voice and real read speech (the moonshine-voice recordings)
as callers, alone and over that echo (tests/test_echo.py): echo alone is likely in at least
98.7 % of its frames in every case (also with the reference sent up to +-10 ms off its
schedule), while a caller alone peaks at 0.56 (espeak), 0.44 and 0.49 (read speech) against
``min_correlation`` 0.7 and is never likely; the first verdict comes 210-220 ms (median; at
most 340) after the echo begins (``agent.turns.ECHO_JUDGE_MS``); a caller over the echo turns
it within 80-100 ms of their onset.

Cost: one FFT per frame of each signal, and every ``hop_frames`` (20 ms) one correlation per
band while the bot's audio is under the searched lags: about 0.75 ms of numpy calls per 20 ms
of audio (~4 % of one core, measured on the shared 2-core box; 1.3 ms judging every 10 ms);
while the bot has been silent for longer than the window and the longest delay, only the
input's FFT (0.35 ms per 20 ms).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import numpy.typing as npt

from pipeline.events import PIPELINE_RATE
from pipeline.resample import StreamResampler

__all__ = ["EchoConfig", "EchoDetector", "EchoVerdict"]

FloatArray = npt.NDArray[np.float64]

#: energies are in dB relative to full scale; silence reads as this floor
FLOOR_DB = -90.0
#: the telephone band the spectra are taken over (Hz)
LOW_HZ, HIGH_HZ = 300.0, 3400.0


class EchoConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the detector frames, searches and decides (durations in milliseconds)."""

    frame_ms: int = 10
    #: each frame's spectrum is taken over this much audio ending with it (a Hann window)
    spectrum_ms: int = 40
    #: the 300-3400 Hz band is split into this many log-spaced bands
    bands: int = 6
    #: the input spectra correlated with the reference's
    window_ms: int = 400
    #: the longest echo delay searched (round trip + client buffering)
    max_delay_ms: int = 500
    #: how fast each lag's correlation follows new frames (0..1 per frame)
    smoothing: float = 0.1
    #: the verdict is judged every this many frames (the smoothing per frame is the same: a
    #: judgement after two frames moves the scores as two would)
    hop_frames: int = 2
    #: the smoothed correlation that makes echo likely ...
    min_correlation: float = 0.7
    #: ... and, once it is, the one under which it is no longer (hysteresis: a few frames of
    #: weaker match inside the bot's speech are not a caller)
    release_correlation: float = 0.5
    #: reference frames quieter than this (dBFS, in the band) are silence
    min_reference_db: float = -60.0
    #: the newest input this long is checked against the echo the reference explains ...
    recent_ms: int = 100
    #: ... and may exceed it by this much (mean dB) and still be echo
    max_excess_db: float = 6.0
    #: once it does (a caller talking over the echo), echo is not likely for this long after:
    #: a caller's speech may be quieter than the echo for a while after their first syllable
    double_talk_ms: int = 400
    #: echo outlasts its reference by the delay and at most this much (the spectrum's window,
    #: reverberation, a sender a little late): after that it is over
    tail_ms: int = 100
    #: the echo path's gain is this percentile of input minus reference (dB) over the
    #: window's frames where the reference is within ``gain_range_db`` of its loudest
    gain_percentile: float = 35.0
    gain_range_db: float = 30.0

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.window_ms < 4 * self.frame_ms:
            raise ValueError("frame_ms must be positive and window_ms at least 4 frames")
        if self.spectrum_ms < self.frame_ms or self.bands < 1:
            raise ValueError("spectrum_ms must be at least frame_ms, and bands at least 1")
        if min(self.double_talk_ms, self.max_delay_ms, self.tail_ms) < 0:
            raise ValueError("double_talk_ms, max_delay_ms and tail_ms must not be negative")
        if not 0 < self.recent_ms <= self.window_ms:
            raise ValueError("recent_ms must be in (0, window_ms]")
        if not -1.0 < self.release_correlation <= self.min_correlation <= 1.0:
            raise ValueError("need -1 < release_correlation <= min_correlation <= 1")
        if self.hop_frames < 1:
            raise ValueError("hop_frames must be at least 1")
        if not (0.0 < self.smoothing <= 1.0 and 0.0 <= self.gain_percentile <= 100.0):
            raise ValueError("smoothing must be in (0, 1] and gain_percentile in [0, 100]")


class EchoVerdict(msgspec.Struct, frozen=True):
    """From input sample ``sample`` on, echo is (or is not) ``likely``.

    ``correlation`` is the best smoothed one, ``delay`` its lag in samples, ``excess`` the dB
    by which the newest input exceeds the echo the reference explains, ``ended`` whether the
    echo is over because the reference is.
    """

    sample: int
    likely: bool
    correlation: float = 0.0
    delay: int = 0
    excess: float = 0.0
    #: not likely, and the reference ended more than ``delay`` before: its echo is over
    ended: bool = False


class _Spectra:
    """Band powers (mean square, int16 scale) of Hann-windowed spans of 16 kHz audio.

    Each row is computed on its own (no matrix products), so a frame's powers do not depend
    on how many frames were computed with it."""

    def __init__(self, length: int, rate: int, bands: int) -> None:
        self.length = length
        self.window = np.hanning(length + 2)[1:-1]
        freqs = np.fft.rfftfreq(length, 1.0 / rate)
        edges = np.searchsorted(freqs, np.geomspace(LOW_HZ, HIGH_HZ, bands + 1))
        if np.any(np.diff(edges) < 1):
            raise ValueError(f"{bands} bands need a longer spectrum_ms")
        self.low, self.high = int(edges[0]), int(edges[-1])
        self.starts = edges[:-1] - edges[0]
        # one-sided spectrum to mean square (Parseval, the window's energy divided out)
        self.scale = 2.0 / (length * float(self.window @ self.window))

    def __call__(self, spans: FloatArray) -> FloatArray:
        """``spans`` (n, length) -> band powers (n, bands)."""
        spectrum = np.fft.rfft(spans * self.window, axis=1)[:, self.low : self.high]
        power = spectrum.real**2 + spectrum.imag**2
        out: FloatArray = np.add.reduceat(power, self.starts, axis=1) * self.scale
        return out


class EchoDetector:
    """One call's echo detector (input and reference on the ``sample_rate`` timeline)."""

    def __init__(
        self, config: EchoConfig | None = None, *, sample_rate: int = PIPELINE_RATE
    ) -> None:
        self.config = c = config or EchoConfig()
        self.sample_rate = sample_rate
        self.frame = sample_rate * c.frame_ms // 1000
        self.window = c.window_ms // c.frame_ms
        self.lags = c.max_delay_ms // c.frame_ms + 1
        self.recent = max(1, c.recent_ms // c.frame_ms)
        self._spectra = _Spectra(sample_rate * c.spectrum_ms // 1000, sample_rate, c.bands)
        self._reach = -(-self._spectra.length // self.frame)  # frames a spectrum spans
        # the reference on the input timeline (sample_rate), a ring of frames: 20 s, far more
        # than the span searched; the band powers of its frames are kept once computed
        self._size = max(2048, 4 * (self.window + self.lags + self._reach))
        self._ref = np.zeros((self._size, self.frame))
        self._ref_tag = np.full(self._size, -1, dtype=np.int64)
        self._ref_power = np.zeros((self._size, c.bands))
        self._power_tag = np.full(self._size, -1, dtype=np.int64)
        # the reference stream being placed: where its first sample went, its rate and how
        # many samples so far; resampled onto the input's rate (soxr: its output stands in
        # time, only a few ms late), how many of those are placed
        self._stream: tuple[int, int, int] = (0, 0, 0)
        self._resampler = StreamResampler(sample_rate, sample_rate)
        self._resampled = 0
        self._placed_until = 0  # the input position after the newest reference sample
        self._loud_until = -(1 << 62)  # the newest reference frame at or above min_reference_db
        # the input: its newest samples (for the spectra) and its frames' band powers and dB
        self._tail = np.zeros(self._spectra.length - self.frame)
        self._pending = np.zeros(0)  # input samples of an incomplete frame
        self._power = np.zeros((self.window, c.bands))
        self._input = np.full(self.window, FLOOR_DB)  # the input envelope (dB), oldest first
        self._frames = 0  # input frames complete
        self._next_pts = 0
        self._scores = np.zeros(self.lags)  # smoothed correlation per lag (lag 0 first)
        self._keep = (1.0 - c.smoothing) ** c.hop_frames  # what a judgement keeps of them
        self._hold = c.double_talk_ms // c.frame_ms
        self._echo_tail = sample_rate * c.tail_ms // 1000
        self._talk_until = 0  # the input frame until which a caller talks over the echo
        self.verdict = EchoVerdict(0, False)

    @property
    def likely(self) -> bool:
        return self.verdict.likely

    # -- feeding ------------------------------------------------------------------------------

    def push_reference(
        self, pcm: bytes | npt.NDArray[np.int16], rate: int, at: int, *, restart: bool = False
    ) -> None:
        """The bot's audio (mono PCM16 at ``rate``) sent when the input was at sample ``at``.

        A player plays what it is sent without gaps, so a chunk is placed right after the
        previous one unless it was sent later than that (the player ran dry: a gap), however
        the moments of sending jitter. ``restart``: the player's buffer was cleared (a new
        reply, a barge-in): the chunk is placed at ``at``, and what was placed after it is
        dropped (never played)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        data = _as_bytes(pcm)
        if not data:
            return
        anchor, rate_, count = self._stream
        follows = anchor + math.ceil(count * self.sample_rate / rate) if rate_ == rate else None
        if restart or follows is None or at > follows:
            self._place(self._resampler.flush())  # the last stream's tail, where it belongs
            if restart and at < self._placed_until:
                self._write(np.arange(at, self._placed_until), None)
            anchor, count = at, 0
            self._resampler = StreamResampler(rate, self.sample_rate)
            self._resampled = 0
        self._stream = (anchor, rate, count + len(data) // 2)
        self._place(self._resampler.process(data))

    def _place(self, pcm: bytes) -> None:
        """The current stream's next resampled samples, after those placed before."""
        samples = _as_float(pcm)
        if len(samples):
            start = self._stream[0] + self._resampled
            self._resampled += len(samples)
            self._write(start + np.arange(len(samples)), samples)

    def _write(self, positions: npt.NDArray[np.int64], values: FloatArray | None) -> None:
        """Reference samples at input positions (``None``: silence)."""
        if not len(positions):
            return
        frames = positions // self.frame
        first, last = int(frames[0]), int(frames[-1])
        index = np.arange(first, last + 1)
        slots = index % self._size
        stale = self._ref_tag[slots] != index
        self._ref[slots[stale]] = 0.0
        self._ref_tag[slots] = index
        self._ref[frames % self._size, positions % self.frame] = 0.0 if values is None else values
        # spectra that reach over these frames are computed again when next needed
        self._power_tag[np.arange(first, last + self._reach) % self._size] = -1
        self._placed_until = max(self._placed_until, int(positions[-1]) + 1)
        if values is not None:
            level = _db(np.mean(self._ref[slots] ** 2, axis=1))
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
        data = np.concatenate([self._pending, samples])
        whole = len(data) // self.frame
        self._pending = data[whole * self.frame :]
        if not whole:
            return []
        audio = np.concatenate([self._tail, data[: whole * self.frame]])
        self._tail = audio[len(audio) - len(self._tail) :]
        spans = np.lib.stride_tricks.sliding_window_view(audio, self._spectra.length)
        powers = self._spectra(spans[:: self.frame][:whole])
        changes = []
        for power in powers:
            self._power[:-1] = self._power[1:]
            self._power[-1] = power
            self._input[:-1] = self._input[1:]
            self._input[-1] = _db(np.sum(power))
            self._frames += 1
            if self._frames % self.config.hop_frames:
                continue
            verdict = self._judge()
            if verdict.likely != self.verdict.likely:
                changes.append(verdict)
            self.verdict = verdict
        return changes

    # -- deciding -----------------------------------------------------------------------------

    def _reference(self, first: int, count: int) -> FloatArray:
        """The band powers of reference frames ``first .. first + count - 1``."""
        index = np.arange(first, first + count)
        slots = index % self._size
        missing = index[self._power_tag[slots] != index]
        if len(missing):
            reach = np.arange(1 - self._reach, 1)
            frames = missing[:, None] + reach[None, :]  # the frames each spectrum spans
            known = self._ref_tag[frames % self._size] == frames
            blocks = np.where(known[..., None], self._ref[frames % self._size], 0.0)
            spans = blocks.reshape(len(missing), -1)[:, -self._spectra.length :]
            self._ref_power[missing % self._size] = self._spectra(spans)
            self._power_tag[missing % self._size] = missing
        out: FloatArray = self._ref_power[slots]
        return out

    def _judge(self) -> EchoVerdict:
        c = self.config
        sample = self._frames * self.frame
        last = self._frames - 1  # the newest input frame
        first = last - self.window + 2 - self.lags
        if self._loud_until < first:
            # the bot was silent under every lag (most of a call): every correlation is 0, so
            # the scores only decay; no spectra (the same verdict, at a fraction of the cost)
            self._scores *= self._keep
            lag = int(np.argmax(self._scores))
            return EchoVerdict(sample, False, float(self._scores[lag]), lag * self.frame)
        bands = self._reference(first, self.window + self.lags - 1)
        span = _db(bands.sum(axis=1))
        # rows[j]: the reference under the input window at lag j
        rows = np.lib.stride_tricks.sliding_window_view(span, self.window)[::-1]
        x = self._input
        # loudness-like band envelopes (power ** 0.25), their frame-to-frame changes, correlated
        # over bands and frames at every lag; the reference's sums come from running sums
        xf = np.diff(_loudness(self._power), axis=0)
        xc = xf - xf.mean()
        yf = np.diff(_loudness(bands), axis=0)
        m = len(xf)
        size = m * yf.shape[1]
        sums = np.concatenate([[0.0], np.cumsum(yf.sum(axis=1))])
        squares = np.concatenate([[0.0], np.cumsum((yf * yf).sum(axis=1))])
        total = (sums[m:] - sums[:-m])[::-1]
        spread = np.maximum((squares[m:] - squares[:-m])[::-1] - total * total / size, 0.0)
        cov = np.zeros(self.lags)
        for band in range(yf.shape[1]):
            cov += np.correlate(yf[:, band], xc[:, band], mode="valid")[::-1]
        norms = np.sqrt(spread * float(np.sum(xc * xc)))
        loud = np.concatenate([[0], np.cumsum(span >= c.min_reference_db)])
        audible = (loud[self.window :] - loud[: -self.window])[::-1] > 0
        ok = audible & (norms > 1e-12)
        corr = np.where(ok, cov / np.where(ok, norms, 1.0), 0.0)
        self._scores += (1.0 - self._keep) * (corr - self._scores)
        lag = int(np.argmax(self._scores))
        score = float(self._scores[lag])
        if self._frames < self.window or not audible[lag]:
            return EchoVerdict(sample, False, score, lag * self.frame)
        y = rows[lag]
        # the echo path's gain (dB): a low percentile of input minus reference where the
        # reference is loud; a caller talking over the echo only raises some frames of it
        loud_ref = y >= max(c.min_reference_db, float(y.max()) - c.gain_range_db)
        excess = 0.0
        if np.count_nonzero(loud_ref) >= self.recent:  # too few to tell the gain: no excess
            differences = (x - y)[loud_ref]
            rank = round(c.gain_percentile / 100 * (len(differences) - 1))
            gain = float(np.partition(differences, rank)[rank])
            # the reference a frame either side too: a delay that is not a whole number of
            # frames smears an onset or an end over two
            near = rows[max(0, lag - 1) : lag + 2].max(axis=0)
            predicted = np.maximum(near + gain, x.min())
            excess = float(np.mean(np.maximum(0.0, x - predicted)[-self.recent :]))
        if excess > c.max_excess_db:
            self._talk_until = self._frames + self._hold
        needed = c.release_correlation if self.verdict.likely else c.min_correlation
        likely = score >= needed and self._frames >= self._talk_until
        # the reference's echo should be over: it may still ring for ``tail_ms``
        over = self._placed_until + lag * self.frame
        likely = likely and sample <= over + self._echo_tail
        ended = sample > over and not likely
        return EchoVerdict(sample, likely, score, lag * self.frame, excess, ended=ended)


def _loudness(power: FloatArray) -> FloatArray:
    """Band powers (int16 scale) as power ** 0.25 relative to full scale, floored."""
    out: FloatArray = (power / (32768.0 * 32768.0) + 10 ** (FLOOR_DB / 10)) ** 0.25
    return out


def _as_bytes(pcm: bytes | npt.NDArray[np.int16]) -> bytes:
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        return bytes(pcm)
    return np.asarray(pcm, dtype="<i2").tobytes()


def _as_float(pcm: bytes | npt.NDArray[np.int16]) -> FloatArray:
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        return np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return np.asarray(pcm, dtype=np.float64)


def _db(power: FloatArray | float) -> FloatArray:
    """Mean square of int16 samples as dB relative to full scale (floored)."""
    out: FloatArray = 10.0 * np.log10(
        np.asarray(power) / (32768.0 * 32768.0) + 10 ** (FLOOR_DB / 10)
    )
    return out
