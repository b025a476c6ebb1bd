"""The WebSocket call loop's outgoing side: ordered, bounded while a writer runs, cancel-safe.

The calls themselves (accept, the start, goodbye, disconnect, a client that stops reading) are
tested end to end against the real server: tests/test_server.py, tests/test_slow_client.py,
tests/test_twilio_endpoint.py and tests/test_realtime_endpoint.py.
"""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from agent.ws_io import Message, Outbox, Outgoing


class Batches:
    """A sans-I/O protocol's queue: each ``data_to_send`` hands over one batch."""

    def __init__(self, *batches: list[Message]) -> None:
        self.batches = list(batches)

    def data_to_send(self) -> list[str | bytes]:
        return list(self.batches.pop(0)) if self.batches else []


async def drain(outgoing: Outgoing) -> list[Message]:
    sent = []
    while len(outgoing):
        sent.append(await outgoing.head())
        outgoing.sent()
    return sent


@pytest.mark.anyio
async def test_a_full_queue_holds_up_the_sender_only_while_a_writer_runs() -> None:
    outgoing = Outgoing(capacity=2)
    with anyio.fail_after(5):
        for message in ("a", "b", "c"):
            await outgoing.send(message)  # no writer yet: never waits
        outgoing.bounded = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(outgoing.send, b"d")
            await wait_all_tasks_blocked()
            assert len(outgoing) == 3  # waiting for room
            assert await outgoing.head() == "a"
            outgoing.sent()
            assert len(outgoing) == 2  # still full
            outgoing.sent()
        assert await drain(outgoing) == ["c", b"d"]


@pytest.mark.anyio
async def test_a_flush_cancelled_on_a_full_queue_loses_nothing_and_keeps_the_order() -> None:
    outgoing = Outgoing(capacity=2)
    outgoing.bounded = True
    outbox = Outbox(Batches(["1", "2", "3", "4"], ["5"]), outgoing)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(outbox.flush)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()  # the call ended while its flush waited for room
        assert len(outgoing) == 2
        outgoing.bounded = False  # the call's end: what is left is sent
        await outbox.flush()
        assert await drain(outgoing) == ["1", "2", "3", "4", "5"]
