"""A client that never reads: the server holds a bounded amount for it, then drops its call.

The stuck client is a real `websockets` client on a socket with a tiny receive buffer that
never calls ``recv``: once its small queue is full it stops reading, its TCP window closes and
the server's sends stop going through. The server is the real process with a long greeting (so
it has far more to send than any buffer holds), a short ``server.send_timeout_s`` and a small
``server.send_buffer_kib``. Meanwhile
a second, well-behaved client holds a call on the same server. Every WebSocket endpoint sends
through the same writer (``agent/ws_io.py``), so the native one stands for all three.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import msgspec
import pytest
import websockets

from tests.server import ROOT, RunningServer, running_server
from tests.test_server import Call, wait_for_no_sessions

RATE = 48000  # the most bytes per second of reply audio the native protocol allows
#: about 25 s of speech: far more than the socket buffers and the server's bounded queue hold
GREETING = " ".join(
    [
        "Hi, this is Voxline, and this greeting is deliberately long.",
        "It goes on for sentence after sentence, so that a caller who never reads",
        "leaves the server with much more audio to send than any buffer can hold.",
        "The server keeps only a bounded queue of messages for each call.",
        "When the client has accepted nothing for a while, the call is dropped,",
        "and every other call on the server carries on as if nothing happened.",
        "That is the whole point of this test, and of this rather long greeting.",
    ]
)


def slow_agent(folder: Path) -> Path:
    config = msgspec.yaml.decode((ROOT / "configs" / "default.yaml").read_bytes())
    config["greeting"] = {"text": GREETING}
    config.setdefault("server", {}).update(send_timeout_s=1.0, send_buffer_kib=32)
    path = folder / "slow-client-agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(str(slow_agent(tmp_path_factory.mktemp("slow-client")))) as running:
        yield running


def stalled_socket(port: int) -> socket.socket:
    """A connected socket that buffers almost nothing it is sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def dropped_for_not_reading(server: RunningServer) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.http}/metrics")).text
    found = re.search(
        r'^voxline_errors_total\{kind="client_not_reading",where="websocket"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.anyio
async def test_a_client_that_never_reads_is_dropped_and_other_calls_go_on(
    server: RunningServer,
) -> None:
    with anyio.fail_after(120):
        stuck = await websockets.connect(
            f"{server.ws}/v1/stream", sock=stalled_socket(server.port), max_queue=1
        )
        await stuck.send(json.dumps({"type": "hello", "sample_rate": RATE}))
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            await call.receive_until(lambda e: e["type"] == "audio.start")
            async with anyio.create_task_group() as tg:
                # the good call plays its greeting while the stuck one fills every buffer
                tg.start_soon(call.receive_until, lambda e: e["type"] == "audio.end")
                # another process's state: nothing to wait on but its answers
                while not await dropped_for_not_reading(server):  # noqa: ASYNC110
                    await anyio.sleep(0.1)
                at_drop = len(call.audio.get(call.generation, b""))
                # the good call goes on: one more second of its greeting arrives
                while len(call.audio.get(call.generation, b"")) < at_drop + 32000:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            await ws.send(json.dumps({"type": "bye"}))
        stuck.transport.abort()
        await wait_for_no_sessions(server)
    assert at_drop > 0
    assert await dropped_for_not_reading(server) == 1
    assert any("read nothing for 1.0 s" in line for line in server.log)
    assert server.process.poll() is None
