"""Small stages and helpers shared by the runtime tests and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from pipeline.channels import Channel, Policy
from pipeline.events import AudioFrame, Event
from pipeline.runtime import Stage, run_pipeline


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


async def run_stage(
    stage: Stage | Sequence[Stage], events: Sequence[Event], capacity: int = 4
) -> list[Event]:
    """Push ``events`` through ``stage`` (or a chain of stages) between two small real
    channels; collect the output."""
    source = Channel("test->stage", capacity, Policy.BLOCK)
    sink = Channel("stage->test", capacity, Policy.BLOCK)
    received: list[Event] = []

    async def produce() -> None:
        for event in events:
            await source.send(event)
        source.close()

    async def consume() -> None:
        async for event in sink:
            received.append(event)

    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        group.start_soon(consume)
        chain = list(stage) if isinstance(stage, Sequence) else [stage]
        await run_pipeline("test", chain, source, sink)
    return received
