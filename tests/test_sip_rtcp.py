"""RTCP in a real SIP call (agent/sip_rtcp.py): sipp places the call, the test owns the
caller's media, an RTP socket on an even port and an RTCP socket on the port above, and reads
the reports Voxline sends with the project's own parser. No models: the SIP server alone, with
sessions that only run the call's tasks (tests/test_sip_call.py's ``Admitted``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import UDPSocket

from agent.config.schema import SipConfig
from agent.sip_call import SipCall
from agent.sip_rtcp import RTCP_INTERVAL_S
from agent.sip_server import SipServer
from tests.test_sip_call import SIPP, Admitted, Phone, free_udp_port, sipp
from transports.rtp.packet import (
    Bye,
    RtcpPacket,
    RtpError,
    Sdes,
    SenderReport,
    build_rtcp,
    parse_rtcp,
)

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
PHONE_SSRC = 0x1234ABCD  # what tests.test_sip_call's Phone sends with
#: the NTP time of the phone's sender report; its middle 32 bits are the LSR it should come back as
PHONE_NTP = 0x0123_4567_89AB_CDEF


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


async def port_pair() -> tuple[UDPSocket, UDPSocket]:
    """Two sockets on an even port and the one above it (the caller's RTP and RTCP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] & ~1
        try:
            rtp = await anyio.create_udp_socket(local_host="127.0.0.1", local_port=port)
        except OSError:
            continue
        try:
            return rtp, await anyio.create_udp_socket(local_host="127.0.0.1", local_port=port + 1)
        except OSError:
            await rtp.aclose()
    raise OSError("no free port pair")


@asynccontextmanager
async def sip_server() -> AsyncIterator[tuple[int, SipServer]]:
    port = free_udp_port()
    server = SipServer(SipConfig(listen=(f"udp:127.0.0.1:{port}",)), Admitted())
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        yield port, server
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_call_sends_sender_reports_then_bye_with_the_counts_that_went_out() -> None:
    compounds: list[list[RtcpPacket]] = []
    calls: list[SipCall] = []
    bye = anyio.Event()
    sent_sr_at = got_bye_at = 0.0
    with anyio.fail_after(30):
        rtp, rtcp = await port_pair()
        async with rtp, rtcp, sip_server() as (port, server):
            phone = Phone(rtp)

            async def reports() -> None:
                nonlocal sent_sr_at, got_bye_at
                async for data, source in rtcp:
                    parsed = parse_rtcp(data)
                    assert not isinstance(parsed, RtpError), parsed
                    compounds.append(parsed)
                    if any(isinstance(packet, Bye) for packet in parsed):
                        got_bye_at = time.perf_counter()
                        bye.set()
                    if len(compounds) == 1:  # the phone's SR is read, garbage dropped
                        calls.extend(server.endpoints[0].calls.values())
                        sr = SenderReport(PHONE_SSRC, PHONE_NTP, 80000, 100, 16000)
                        sent_sr_at = time.perf_counter()
                        await rtcp.sendto(build_rtcp(sr), *source)
                        await rtcp.sendto(b"\x80\x00 not RTCP at all", *source)

            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                tg.start_soon(reports)
                # long enough for the first report (at half the interval), not for a second
                pause = int(RTCP_INTERVAL_S * 1000 * 0.9)
                status = await sipp(port, "caller_hangs_up.xml", phone.port, pause_ms=pause)
                await phone.stopped.wait()
                await bye.wait()  # the call's last report comes as it ends
                tg.cancel_scope.cancel()
    assert status == 0
    first, last = compounds[0], compounds[-1]
    assert len(compounds) == 2  # one report in the call, one with the BYE at its end
    ours = phone.packets[0].ssrc
    for compound in compounds:
        report, sdes, *_ = compound
        assert isinstance(report, SenderReport)  # we had sent RTP (comfort silence at least)
        assert report.ssrc == ours
        assert sdes == Sdes(ours, "voxline")
        (block,) = report.reports  # about the caller's stream
        assert block.ssrc == PHONE_SSRC
        assert block.cumulative_lost == 0  # loopback: nothing lost
        assert block.highest_sequence >= 1000  # the phone's first sequence number
    assert last[-1] == Bye((ours,), "hangup")
    report = last[0]
    assert isinstance(report, SenderReport)
    # every RTP packet that went out is counted, and only those: the phone got them all
    assert report.packets == len(phone.packets)
    assert report.octets == sum(len(p.payload) for p in phone.packets)
    assert isinstance(first[0], SenderReport)
    assert first[0].packets < report.packets
    # RFC 3550 §6.4.1: the first report came before any SR of the phone's (LSR, DLSR 0); the
    # last one names the phone's SR by the middle of its NTP time, and the delay since it came
    # (in 1/65536 s) is no longer than the phone saw from sending it to the BYE coming back
    # (give or take the one sample at 8 kHz that the call's media time is counted in)
    (before,), (after,) = first[0].reports, report.reports
    assert (before.last_sr, before.delay_since_last_sr) == (0, 0)
    assert after.last_sr == 0x4567_89AB
    assert 0 < after.delay_since_last_sr <= (got_bye_at - sent_sr_at + 1 / 8000) * 65536
    (call,) = calls
    assert call.rtcp is not None
    assert (call.rtcp.received, call.rtcp.dropped, call.rtcp.sent) == (1, 1, 2)
