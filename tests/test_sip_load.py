"""Twenty SIP calls at once against the real server (``voxline serve --sip``), placed by sipp.

This is about set-up and tear-down, not speech: the embedded models on a small machine do not
hold twenty calls in real time. Every call is answered (sipp's scenario fails on anything but a
200), gets RTP, and ends by the caller's BYE (answered 200); afterwards the server has no call
open and counted no error, and one more call works as the first did.

All twenty SDP offers point their media at one UDP socket of the test: Voxline sends each
call's RTP from that call's own port, so the sources seen there are the calls that got RTP.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, UDPSocket
from prometheus_client.parser import text_string_to_metric_families

from tests.server import ARTIFACTS, ROOT, running_server
from tests.test_sip_call import SCENARIOS, SIPP, Served, free_udp_port
from transports.rtp.packet import RtpError, parse_rtp

#: a log line's timestamp ("2026-12-07 07:21:57,503 ")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
REFUSED = re.compile(r"\b503\b")
CALLS = 20
CALL_MS = 3000  # how long each call stays up (sipp's -d)

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = tmp_path_factory.mktemp("sip-load") / "sip-load.yaml"
    default = (ROOT / "configs" / "default.yaml").read_text()
    assert "\nserver:\n" in default
    # all CALLS come from 127.0.0.1: the per-source cap must let them in too
    sip = f"  sip:\n    ring_ms: 0\n    max_calls_per_source: {CALLS}\n"
    section = f"\nserver:\n  max_sessions: {CALLS}\n{sip}"
    config.write_text(default.replace("\nserver:\n", section))
    port = free_udp_port()
    with running_server(str(config), args=["--sip", f"127.0.0.1:{port}"]) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


async def place_calls(sip_port: int, media_port: int, calls: int, name: str) -> int:
    """``calls`` calls of caller_hangs_up.xml, all at once (``-l``, ``-r``), each up for
    :data:`CALL_MS`; sipp's exit status (0: every call went as scripted)."""
    ARTIFACTS.mkdir(exist_ok=True)
    command = ["timeout", "120", SIPP, f"127.0.0.1:{sip_port}"]
    command += ["-sf", str(SCENARIOS / "caller_hangs_up.xml"), "-i", "127.0.0.1"]
    command += ["-m", str(calls), "-l", str(calls), "-r", str(calls), "-d", str(CALL_MS)]
    command += ["-p", str(free_udp_port()), "-nostdin", "-timeout", "100s", "-timeout_error"]
    command += ["-trace_msg", "-message_file", str(ARTIFACTS / f"sipp-{name}-messages.log")]
    command += ["-trace_err", "-error_file", str(ARTIFACTS / f"sipp-{name}-errors.log")]
    command += ["-key", "rtp_ip", "127.0.0.1", "-key", "rtp_port", str(media_port)]
    with (ARTIFACTS / f"sipp-{name}-screen.log").open("wb") as screen:
        process = await anyio.open_process(command, stdout=screen, stderr=screen)
        async with process:
            return await process.wait()


async def collect_rtp(sock: UDPSocket, sources: dict[tuple[str, int], set[int]]) -> None:
    """Every RTP packet's source address and SSRC, until cancelled."""
    async for data, peer in sock:
        packet = parse_rtp(data)
        assert not isinstance(packet, RtpError), packet
        sources.setdefault(peer, set()).add(packet.ssrc)


def metrics(served: Served) -> dict[str, float]:
    """Every sample of /metrics, its labels folded into the name."""
    text = httpx.get(f"{served.running.http}/metrics", timeout=10).text
    return {
        sample.name + repr(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def no_call_open(served: Served) -> None:
    """Until /metrics says no call is open (the 200 to a BYE goes out before the call's
    session has wound down)."""
    while metrics(served)["voxline_sessions[]"] != 0:  # noqa: ASYNC110 -- another process
        await anyio.sleep(0.1)


def errors(served: Served) -> float:
    return sum(v for k, v in metrics(served).items() if k.startswith("voxline_errors_total"))


async def calls_with_rtp(served: Served, calls: int, name: str) -> tuple[int, int]:
    """Place ``calls`` at once; (sipp's exit status, how many calls' RTP came back)."""
    sources: dict[tuple[str, int], set[int]] = {}
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        media_port = sock.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect_rtp, sock, sources)
            status = await place_calls(served.sip_port, media_port, calls, name)
            tg.cancel_scope.cancel()
    assert all(len(ssrcs) == 1 for ssrcs in sources.values()), sources  # one stream a call
    return status, len(sources)


@pytest.mark.anyio
async def test_twenty_calls_at_once_are_answered_get_rtp_and_end_cleanly(
    server: Served,
) -> None:
    ended = re.compile(r"sip call \S+ ended: hangup \(RTP: \d+ packets in, [1-9]\d* out")
    log_start = len(server.running.log)
    errors_before = errors(server)
    with anyio.fail_after(180):
        status, with_rtp = await calls_with_rtp(server, CALLS, "load")
        await no_call_open(server)
    assert status == 0  # every call: 200 to the INVITE, 200 to the BYE
    assert with_rtp == CALLS
    log = server.running.log[log_start:]
    assert sum(bool(ended.search(line)) for line in log) == CALLS, "".join(log)
    # a 503 refusal, not the digits of a timestamp's milliseconds or of a call's id
    said = [STAMP.sub("", line) for line in log]
    bad = [line for line in said if "Traceback" in line or "ERROR" in line or REFUSED.search(line)]
    assert not bad
    assert errors(server) == errors_before == 0
    assert server.running.process.poll() is None

    # and the server takes the next call as it took the first
    with anyio.fail_after(60):
        status, with_rtp = await calls_with_rtp(server, 1, "load-after")
        await no_call_open(server)
    assert (status, with_rtp) == (0, 1)
