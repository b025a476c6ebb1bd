"""Admission: a call beyond ``server.max_sessions`` is refused with close code 1013 (try again
later), after the socket is accepted (a browser sees the code, not a failed handshake), and the
calls already open go on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets

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
