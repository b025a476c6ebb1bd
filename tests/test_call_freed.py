"""An ended call's objects are freed by reference counting, not at the next full collection.

A real server runs in this process (uvicorn serving :func:`agent.server.create_app` with the
default agent's real models), so the test can see its objects; a real `websockets` client
places a call over ``/v1/stream``: the greeting, a spoken turn committed, the answer, goodbye
(read to the end, or not: the client leaving at once takes another path through the server);
a short call over ``/v1/realtime`` and a Twilio media stream too (each transport's sink points
back at its session, and must let go of it when the call is over: ``WsTransport.over``).
The cyclic garbage collector is off for the whole call. Once the server has finished with the
connection, the session and its parts (the playout, the replies, the echo detector and its
ring, the outbox, the transport's sink, the caller's audio channel) must be gone: anything in a
reference cycle through them would only go at the next full collection (BENCHMARKS.md, "Soak":
tens of MB of ended calls' buffers kept at a time, freed in bulk between the live calls').
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
import uvicorn
import websockets
from anyio import wait_all_tasks_blocked

from agent.auth import ApiKeys
from agent.call_loop import WATCHERS
from agent.config import load_config
from agent.server import create_app
from agent.session import Session
from tests.audio import espeak
from tests.server import ROOT

pytestmark = pytest.mark.anyio

RATE = 16000
FRAME_BYTES = RATE // 50 * 2  # 20 ms of PCM16
SID = "MZ0123456789abcdef0123456789abcdef"  # a Twilio media stream's id
#: the parts of a session that must go with it (attribute names; those the call has)
PARTS = ("playout", "replies", "echo", "outbox", "sink", "inbound", "turns", "transfers")


class _Ready(logging.Handler):
    """Sets ``event`` when the server logs that its models are ready."""

    def __init__(self, event: anyio.Event) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("voxline ready"):
            self.event.set()


@contextmanager
def _logged_ready(event: anyio.Event) -> Iterator[None]:
    logger = logging.getLogger("voxline.server")
    handler, level = _Ready(event), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def _watched(found: dict[str, weakref.ref[Any]]) -> Iterator[None]:
    """Weak references to each session that starts (and its parts) in ``found``."""

    def watch(session: Session) -> Callable[[Exception | None], None]:
        found["session"] = weakref.ref(session)
        for name in PARTS:
            part = getattr(session, name, None)
            if part is not None:
                found[name] = weakref.ref(part)
        return lambda failure: None

    WATCHERS.append(watch)
    try:
        yield
    finally:
        WATCHERS.remove(watch)


@asynccontextmanager
async def _in_process_server(served: Callable[[], None]) -> AsyncIterator[int]:
    """The default agent's server on a free port of this process, once its models are ready;
    ``served()`` is called each time it has finished with a WebSocket connection."""
    config = load_config(ROOT / "configs" / "default.yaml")
    inner = create_app(config, keys=ApiKeys())  # no key: a loopback listener

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await inner(scope, receive, send)
        finally:
            if scope["type"] == "websocket":
                served()

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()  # connections wait in the backlog until uvicorn accepts them
    server = uvicorn.Server(
        uvicorn.Config(app, ws="websockets-sansio", log_config=None, log_level="warning")
    )
    ready = anyio.Event()
    try:
        with _logged_ready(ready):
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve, [listening])
                await ready.wait()
                yield listening.getsockname()[1]
                server.should_exit = True
    finally:
        listening.close()


async def _receive_until(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        message = await ws.recv()
        if isinstance(message, str) and (event := json.loads(message))["type"] == kind:
            return event  # type: ignore[no-any-return]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    gc.collect()  # what earlier tests left, so that only this call's objects are at stake
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _freed_after(call: Callable[[int], Awaitable[None]]) -> list[str]:
    """Serve one call that ``call(port)`` places, with the cyclic collector off: the names of
    the session's parts (:data:`PARTS`) still alive once the server has finished with it."""
    found: dict[str, weakref.ref[Any]] = {}
    served = anyio.Event()
    with _watched(found):
        async with _in_process_server(served.set) as port:
            with _no_cyclic_gc():
                await call(port)
                await served.wait()  # the server's handler of the call has returned
                await wait_all_tasks_blocked()  # and what it scheduled has run
                alive = sorted(name for name, ref in found.items() if ref() is not None)
    assert {"session", "playout", "replies", "outbox", "sink", "inbound"} <= found.keys()
    return alive


@pytest.mark.parametrize("waits", [True, False], ids=["waits-for-the-end", "leaves-at-once"])
async def test_an_ended_calls_session_and_buffers_go_without_the_garbage_collector(
    waits: bool,
) -> None:
    """``waits``: the client reads until ``session.ended`` after its ``bye``; else it closes at
    once, as bench/soak.py's callers do (the server's end of the call then meets a peer gone)."""
    speech = espeak("What can you do?").astype("<i2").tobytes()
    heard: list[str] = []

    async def call(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await _receive_until(ws, "audio.end")  # the greeting, played
            for offset in range(0, len(speech), FRAME_BYTES):
                await ws.send(speech[offset : offset + FRAME_BYTES])
            await ws.send(json.dumps({"type": "commit"}))
            heard.append((await _receive_until(ws, "transcript.final"))["text"])
            await _receive_until(ws, "audio.end")  # the answer, played
            await ws.send(json.dumps({"type": "bye"}))
            if waits:
                await _receive_until(ws, "session.ended")

    with anyio.fail_after(180):
        alive = await _freed_after(call)
    assert "what can you do" in heard[0].lower()  # a real turn went through the call
    assert alive == [], f"kept after the call (in a reference cycle): {alive}"


async def test_an_ended_realtime_call_goes_without_the_garbage_collector() -> None:
    """``/v1/realtime``: a response (the greeting, asked for), then the client closes the
    socket, as the API's clients end a call (its sink would hold the session)."""

    async def call(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
            await _receive_until(ws, "session.created")
            await ws.send(json.dumps({"type": "response.create"}))
            done = await _receive_until(ws, "response.done")
            assert done["response"]["status"] == "completed"

    with anyio.fail_after(120):
        alive = await _freed_after(call)
    assert alive == [], f"kept after the call (in a reference cycle): {alive}"


async def test_an_ended_twilio_stream_goes_without_the_garbage_collector() -> None:
    """``/v1/telephony/twilio``: the stream starts, the greeting's first media comes, Twilio
    stops the stream (the session's sink, a :class:`~agent.twilio_call.TwilioSink`, held it)."""
    ulaw = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    start = {"streamSid": SID, "callSid": "CA0123", "tracks": ["inbound"], "mediaFormat": ulaw}

    async def call(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/telephony/twilio") as ws:
            await ws.send(json.dumps({"event": "start", "streamSid": SID, "start": start}))
            while json.loads(await ws.recv())["event"] != "media":
                pass  # the greeting has started
            await ws.send(json.dumps({"event": "stop", "streamSid": SID}))
            with pytest.raises(websockets.ConnectionClosedOK):
                while True:
                    await ws.recv()

    with anyio.fail_after(120):
        alive = await _freed_after(call)
    assert alive == [], f"kept after the call (in a reference cycle): {alive}"
