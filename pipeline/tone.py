"""A sine-tone source: the placeholder voice until the speech stack answers calls."""

from __future__ import annotations

import math

import numpy as np

from pipeline.channels import Channel
from pipeline.clock import MediaClock
from pipeline.events import AudioFrame


class ToneSource:
    """Emits contiguous PCM16 frames of a sine tone, ``frame_ms`` long, forever or ``seconds``."""

    name = "tone"

    def __init__(
        self,
        session_id: str,
        sample_rate: int,
        *,
        frequency_hz: float = 440.0,
        amplitude: float = 0.2,
        frame_ms: int = 20,
        seconds: float | None = None,
        generation: int = 1,
    ) -> None:
        self.session_id = session_id
        self.clock = MediaClock(sample_rate)
        self.frequency_hz = frequency_hz
        self.amplitude = amplitude
        self.frame_samples = sample_rate * frame_ms // 1000
        self.total_samples = None if seconds is None else round(seconds * sample_rate)
        self.generation = generation

    def next_frame(self) -> AudioFrame | None:
        start = self.clock.samples
        count = self.frame_samples
        if self.total_samples is not None:
            count = min(count, self.total_samples - start)
            if count <= 0:
                return None
        t = (np.arange(start, start + count) / self.clock.sample_rate).astype(np.float64)
        wave = self.amplitude * np.sin(2 * math.pi * self.frequency_hz * t)
        pts = self.clock.advance(count)
        return AudioFrame(
            session_id=self.session_id,
            generation=self.generation,
            sample_rate=self.clock.sample_rate,
            pcm=(wave * 32767).astype("<i2").tobytes(),
            pts=pts,
        )

    async def __call__(self, inbox: Channel, outbox: Channel) -> None:
        """A source stage: ignores its inbox, sends frames until done (paced by the outbox)."""
        while (frame := self.next_frame()) is not None:
            await outbox.send(frame)
