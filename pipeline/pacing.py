"""Real-time pacing: release audio frames no faster than their media time."""

from __future__ import annotations

from pipeline.channels import Channel
from pipeline.clock import WallClock
from pipeline.events import AudioFrame


class Pacer:
    """A stage that forwards each audio frame when the wall clock reaches its media time.

    The first frame of each generation sets the origin; ``lead`` seconds of audio may be sent
    ahead of real time (a jitter buffer on the far side absorbs it). Other events pass at once.
    """

    name = "pacer"

    def __init__(self, clock: WallClock, *, lead: float = 0.04) -> None:
        self.clock = clock
        self.lead = lead
        self._origin: dict[int, tuple[float, int]] = {}

    async def __call__(self, inbox: Channel, outbox: Channel) -> None:
        async for event in inbox:
            if isinstance(event, AudioFrame):
                origin = self._origin.setdefault(event.generation, (self.clock.now(), event.pts))
                due = origin[0] + (event.pts - origin[1]) / event.sample_rate - self.lead
                await self.clock.sleep_until(due)
            await outbox.send(event)
