"""Small stages and helpers shared by the runtime tests and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.channels import Channel
from pipeline.events import AudioFrame, Event


async def passthrough(inbox: Channel, outbox: Channel) -> None:
    async for event in inbox:
        await outbox.send(event)


def frames(count: int, samples: int = 320, session: str = "s", generation: int = 0) -> list[Event]:
    """``count`` contiguous 16 kHz frames whose bytes encode their index."""
    return [
        AudioFrame(
            session_id=session,
            generation=generation,
            sample_rate=16000,
            pcm=index.to_bytes(4, "little") * (samples // 2),
            pts=index * samples,
        )
        for index in range(count)
    ]


def joined_pcm(events: Sequence[Event]) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, AudioFrame))
