"""SIP over TCP (RFC 3261 §18.3): ``server.sip.listen: [tcp:HOST:PORT]``.

Against the real server process: sipp over one TCP connection (``-t t1``) as the caller's
signalling and the phone of :mod:`tests.test_sip_call` as its media; a stream of garbage on
another connection closes that connection only. Without models (:class:`SipServer` alone):
responses go back on the connection the request came in on, connections past the cap are
closed at once, idle ones after ``tcp_idle_s``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream

from agent.config.schema import SipConfig
from agent.sip_server import SipServer
from pipeline.asr.decoder import WhisperDecoder
from tests.audio import is_greeting
from tests.server import ARTIFACTS, ROOT, free_port, running_server
from tests.test_sip_call import (
    SIPP,
    Admitted,
    Phone,
    Served,
    assert_one_clean_stream,
    sipp,
    transcribe,
)

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
TCP = ("-t", "t1")  # sipp: one TCP connection


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = tmp_path_factory.mktemp("sip-tcp") / "sip-agent.yaml"
    default = (ROOT / "configs" / "default.yaml").read_text()
    assert "\nserver:\n" in default
    port = free_port()
    sip = f"\nserver:\n  sip:\n    listen: [tcp:127.0.0.1:{port}]\n"
    config.write_text(default.replace("\nserver:\n", sip))
    with running_server(str(config)) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def options(call_id: str, *, max_forwards: str = "70") -> bytes:
    """An OPTIONS over TCP (``max_forwards`` not a number: it parses to a 400)."""
    return (
        "OPTIONS sip:voxline@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\n"
        "From: <sip:test@127.0.0.1>;tag=1\r\n"
        "To: <sip:voxline@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def response(stream: SocketStream) -> bytes:
    """The next response's head (the tests' OPTIONS answers have no body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


async def closed(stream: SocketStream) -> bool:
    """Whether the server closes ``stream`` (read to its end, whatever comes before)."""
    try:
        while await stream.receive():
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return True
    return False


@pytest.mark.anyio
async def test_a_call_over_tcp_is_answered_and_ends_with_the_callers_bye(
    tcp_server: Served, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(60):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                status = await sipp(
                    tcp_server.sip_port, "caller_hangs_up.xml", phone.port, pause_ms=4000, extra=TCP
                )
                await phone.stopped.wait()  # Voxline's RTP stops with the BYE
                tg.cancel_scope.cancel()
    assert status == 0
    assert_one_clean_stream(phone.packets)
    greeting = transcribe(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting
    # our 200 asks for the dialog's requests over TCP (our own Via and Contact over TCP: the
    # user agent's test, tests/transports/sip/test_dialog_client.py)
    messages = (ARTIFACTS / "sipp-caller_hangs_up-tt1-messages.log").read_text()
    answer = messages[messages.index("SIP/2.0 200 OK") :].replace("\r", "").split("\n\n")[0]
    assert ";transport=tcp>" in answer, answer


@pytest.mark.anyio
async def test_a_garbage_stream_closes_its_connection_only_while_a_call_goes_on(
    tcp_server: Served, whisper_decoder: WhisperDecoder
) -> None:
    broken = sum("a malformed stream" in line for line in tcp_server.running.log)
    with anyio.fail_after(60):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def garbage() -> None:
                    await phone.first.wait()  # the call is up
                    stream = await anyio.connect_tcp("127.0.0.1", tcp_server.sip_port)
                    async with stream:
                        # a framed message that does not parse: a 400 on its connection
                        await stream.send(options("garbage-1", max_forwards="many"))
                        assert (await response(stream)).startswith(b"SIP/2.0 400 ")
                        # the connection goes on: the next request is answered
                        await stream.send(options("garbage-2"))
                        assert (await response(stream)).startswith(b"SIP/2.0 200 ")
                        # a stream that cannot be framed: that connection is closed
                        await stream.send(b"INVITE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n")
                        assert await closed(stream)

                tg.start_soon(garbage)
                status = await sipp(
                    tcp_server.sip_port, "caller_hangs_up.xml", phone.port, pause_ms=5000, extra=TCP
                )
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert status == 0  # the call went on to its BYE
    assert_one_clean_stream(phone.packets)
    greeting = transcribe(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting
    assert sum("a malformed stream" in line for line in tcp_server.running.log) == broken + 1


# -- the adapter alone: no models ---------------------------------------------------------------


@asynccontextmanager
async def tcp_alone(**settings: Any) -> AsyncIterator[int]:
    """A SIP server over TCP on a free port, no HTTP server and no models."""
    port = free_port()
    server = SipServer(SipConfig(listen=(f"tcp:127.0.0.1:{port}",), **settings), Admitted())
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        yield port
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_each_connection_gets_its_answers_and_one_past_the_cap_is_closed_at_once() -> None:
    with anyio.fail_after(20):
        async with tcp_alone(tcp_max_connections=2) as port:
            first = await anyio.connect_tcp("127.0.0.1", port)
            second = await anyio.connect_tcp("127.0.0.1", port)
            async with first, second:
                # both open: each request answered on its own connection (the bytes split
                # anywhere: the framer cuts by Content-Length)
                request = options("tcp-2")
                await second.send(request[:50])
                await first.send(options("tcp-1"))
                await second.send(request[50:])
                assert b"Call-ID: tcp-1\r\n" in await response(first)
                assert b"Call-ID: tcp-2\r\n" in await response(second)
                async with await anyio.connect_tcp("127.0.0.1", port) as third:
                    assert await closed(third)  # past the cap, before it sent anything
                await first.send(options("tcp-3"))  # the others are still open
                assert b"Call-ID: tcp-3\r\n" in await response(first)


@pytest.mark.anyio
async def test_an_idle_connection_is_closed() -> None:
    with anyio.fail_after(20):
        async with (
            tcp_alone(tcp_idle_s=0.2) as port,
            await anyio.connect_tcp("127.0.0.1", port) as stream,
        ):
            await stream.send(options("idle-1"))
            assert (await response(stream)).startswith(b"SIP/2.0 200 ")
            assert await closed(stream)  # nothing more, no call on it: closed
