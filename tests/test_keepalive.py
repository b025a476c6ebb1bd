"""WebSocket keepalive (``server.ping_interval_s``, ``server.ping_timeout_s``): a client whose
connection went dead (it answers no ping) is dropped and its call ends.

The client is the ``websockets`` library's sans-I/O protocol over a plain TCP socket, which
lets the test open a call and then send nothing more, pongs included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.server import RunningServer, running_server
from tests.test_auth import agent_file

HELLO = json.dumps({"type": "hello", "sample_rate": 16000}).encode()


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("keepalive")
    settings = {"ping_interval_s": 0.5, "ping_timeout_s": 0.5}
    with running_server(str(agent_file(folder, settings))) as running:
        yield running


@pytest.mark.anyio
async def test_a_client_that_answers_no_ping_is_dropped_and_its_call_ends(
    server: RunningServer,
) -> None:
    url = f"{server.ws}/v1/stream"
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    client = ClientProtocol(parse_uri(url))
    frames: list[Frame] = []
    with anyio.fail_after(30):
        async with await anyio.connect_tcp(host, int(port)) as tcp:
            client.send_request(client.connect())
            for data in client.data_to_send():
                await tcp.send(data)
            while not any(f.opcode is Opcode.CLOSE for f in frames):
                try:
                    client.receive_data(await tcp.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
                for event in client.events_received():
                    if isinstance(event, Response):  # upgraded: open the call, then go quiet
                        assert event.status_code == 101
                        client.send_text(
                            json.dumps({"type": "hello", "sample_rate": 16000}).encode()
                        )
                        for data in client.data_to_send():
                            await tcp.send(data)
                    elif isinstance(event, Frame):
                        frames.append(event)
                client.data_to_send()  # what it would answer (pongs) is never sent
    texts = [json.loads(bytes(f.data)) for f in frames if f.opcode is Opcode.TEXT]
    assert texts[0]["type"] == "session.started"  # the call ran
    assert any(f.opcode is Opcode.PING for f in frames)
    close = next(f for f in frames if f.opcode is Opcode.CLOSE)
    assert int.from_bytes(close.data[:2], "big") == 1011
    assert b"keepalive ping timeout" in close.data
