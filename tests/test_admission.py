"""Admission: a call beyond ``server.max_sessions`` is refused with close code 1013 (try again
later), after the socket is accepted (a browser sees the code, not a failed handshake), and the
calls already open go on; a WebRTC offer holds its slot from the moment it is admitted."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets

from agent.admission import REFUSALS, LoadCeiling, Slots
from agent.drain import Draining
from tests.server import RunningServer, running_server
from tests.test_auth import agent_file

HELLO = json.dumps({"type": "hello", "sample_rate": 16000})


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("admission")
    with running_server(str(agent_file(folder, {"max_sessions": 1}))) as running:
        yield running


async def _started(ws: websockets.ClientConnection) -> None:
    await ws.send(HELLO)
    while json.loads(await ws.recv())["type"] != "session.started":
        pass


@pytest.mark.anyio
async def test_a_call_beyond_the_limit_is_closed_with_1013_and_the_open_one_goes_on(
    server: RunningServer,
) -> None:
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}/v1/stream") as first:
            await _started(first)
            for path, offered in [("/v1/stream", None), ("/v1/realtime", ["realtime"])]:
                subprotocols = [websockets.Subprotocol(p) for p in offered or []]
                async with websockets.connect(
                    f"{server.ws}{path}", subprotocols=subprotocols or None
                ) as refused:
                    assert refused.subprotocol == (offered[0] if offered else None)
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await refused.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1013
                assert closed.value.rcvd.reason == "server is at its session limit"
            await first.send(json.dumps({"type": "text", "text": "What can you do?"}))
            while json.loads(await first.recv())["type"] != "agent.text":
                pass  # the open call is answered


async def _sessions(client: httpx.AsyncClient, server: RunningServer) -> int:
    return int((await client.get(f"{server.http}/health/ready")).json()["sessions"])


@pytest.mark.anyio
async def test_a_webrtc_offer_holds_its_slot_while_it_is_read_so_offers_cannot_overshoot(
    server: RunningServer,
) -> None:
    """The slot is taken before the offer's body is read (a slow client, or many at once,
    used to pass the check together), and given back when the offer fails."""
    url = f"{server.http}/v1/webrtc/offer"
    json_body = {"content-type": "application/json"}
    release = anyio.Event()

    async def slow_offer() -> AsyncIterator[bytes]:
        yield b'{"type": "offer", "sdp": "'
        await release.wait()
        yield b'not sdp"}'

    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=30) as client:
            while await _sessions(client, server):
                pass  # the previous test's call is still closing
            first: list[httpx.Response] = []
            async with anyio.create_task_group() as tg:

                async def send_first() -> None:
                    first.append(await client.post(url, content=slow_offer(), headers=json_body))

                tg.start_soon(send_first)
                while await _sessions(client, server) == 0:
                    pass  # until the server holds the slot for the offer it is reading
                second = await client.post(url, content=b'{"sdp": "x"}', headers=json_body)
                assert second.status_code == 503
                assert second.json()["error"]["code"] == "at_capacity"
                release.set()
            assert first[0].status_code == 400  # a bad offer: its slot is given back
            assert await _sessions(client, server) == 0
            third = await client.post(url, content=b'{"sdp": "x"}', headers=json_body)
            assert third.status_code == 400


@pytest.mark.anyio
async def test_sockets_that_never_say_hello_do_not_lock_out_a_call(server: RunningServer) -> None:
    """100 sockets that never start a call (each would be closed after open_timeout_s) hold
    no session slot: a real call is answered meanwhile."""
    with anyio.fail_after(60):
        async with contextlib.AsyncExitStack() as idle:
            for _ in range(100):
                await idle.enter_async_context(websockets.connect(f"{server.ws}/v1/stream"))
            async with websockets.connect(f"{server.ws}/v1/stream") as caller:
                await _started(caller)
                await caller.send(json.dumps({"type": "text", "text": "What can you do?"}))
                while json.loads(await caller.recv())["type"] != "agent.text":
                    pass


@pytest.mark.anyio
async def test_a_call_that_starts_with_every_slot_taken_is_closed_before_it_runs(
    server: RunningServer,
) -> None:
    """Two sockets opened while a slot was free: the first to say hello takes it, the other's
    hello is answered with 1013 and no session.started."""
    with anyio.fail_after(30):
        async with (
            websockets.connect(f"{server.ws}/v1/stream") as first,
            websockets.connect(f"{server.ws}/v1/stream") as second,
        ):
            await _started(first)
            await second.send(HELLO)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await second.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason == "server is at its session limit"


@dataclass
class Counted:
    """A server's counts, as a ticket sees them."""

    sessions: int = 0
    opening: int = 0
    draining: Draining = field(default_factory=Draining)


@pytest.mark.anyio
async def test_a_ticket_says_why_its_call_was_refused() -> None:
    counts = Counted()
    slots = Slots(counts, max_sessions=1, max_opening=4)
    first, second, third = slots.open(), slots.open(), slots.open()
    assert first is not None
    assert second is not None
    assert third is not None
    assert (first.start(), first.refusal) == (True, "")
    assert (second.start(), second.refusal) == (False, "at_capacity")
    counts.draining.started.set()  # the third socket was opening when the drain began
    first.close()
    assert (third.start(), third.refusal) == (False, "draining")
    assert REFUSALS[third.refusal] == "server is shutting down"
    assert (counts.sessions, counts.opening) == (0, 0)


def test_opening_sockets_are_bounded_and_a_ticket_starts_once() -> None:
    counts = Counted()
    slots = Slots(counts, max_sessions=4, max_opening=1)
    ticket = slots.open()
    assert ticket is not None
    assert slots.open() is None  # max_opening sockets are opening
    assert counts.opening == 1
    assert ticket.start()
    assert ticket.start()  # again: it holds its session slot, and takes no second one
    assert (counts.sessions, counts.opening) == (1, 0)
    waiting = slots.open()  # the opening slot it gave back
    assert waiting is not None
    waiting.close()  # a socket that left before its call started gives its opening slot back
    waiting.close()  # and closing twice gives back nothing more
    assert (counts.sessions, counts.opening) == (1, 0)
    ticket.close()
    assert not ticket.start()  # a closed ticket never starts
    assert (counts.sessions, counts.opening) == (0, 0)


def _ceiling(gate: LoadCeiling) -> int | None:
    """The gate's ceiling (read through a call: it changes between the checks)."""
    return gate.ceiling


def test_the_load_ceiling_admits_until_finals_wait_then_caps_the_calls_and_rises_slowly() -> None:
    gate = LoadCeiling(max_wait_s=1.0, window_s=10.0)
    assert gate.admits(wait=0.9, sessions=30, now=0.0)  # finals on time: no ceiling
    assert _ceiling(gate) is None
    assert not gate.admits(wait=1.2, sessions=8, now=1.0)  # overloaded: none joins
    assert _ceiling(gate) == 6  # three quarters of the eight open
    assert not gate.admits(wait=1.5, sessions=7, now=10.9)  # the same window: no new cut
    assert _ceiling(gate) == 6
    assert not gate.admits(wait=1.5, sessions=4, now=11.0)  # a window on, still overloaded
    assert _ceiling(gate) == 3
    # the calls behind the overload have ended and the window reads as no load: calls join
    # up to the ceiling, not all who ask
    assert gate.admits(wait=0.0, sessions=2, now=12.0)
    assert not gate.admits(wait=0.0, sessions=3, now=12.0)
    assert not gate.admits(wait=0.2, sessions=3, now=20.9)  # not yet a whole window since
    assert gate.admits(wait=0.2, sessions=3, now=21.0)  # one quiet window: one call more
    assert _ceiling(gate) == 4
    assert gate.admits(wait=0.2, sessions=5, now=46.0)  # two more windows: two more
    assert _ceiling(gate) == 6
    assert not gate.admits(wait=2.0, sessions=1, now=56.0)  # never below one call
    assert _ceiling(gate) == 1
