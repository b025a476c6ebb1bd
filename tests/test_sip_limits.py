"""``server.sip.max_calls_per_source``: INVITEs past it from one host get 503 with
Retry-After (rule U5 of transports/sip/dialog.py), other hosts are unaffected. sipp places the
calls against the SIP server alone (no models: tests/test_sip_call.py's ``Admitted``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute

from agent.config.schema import SipConfig
from agent.sip_server import SipServer
from tests.test_sip_call import SIPP, Admitted, free_udp_port, sipp
from transports.sip.dialog import UserAgent
from transports.sip.events import Dropped, IncomingCall
from transports.sip.message import SipRequest

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class Counting(Admitted):
    """:class:`Admitted`, with an event once ``wanted`` calls are live at once."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted
        self.reached = anyio.Event()

    def admit(self, call_id: str, dialled: str) -> int | None:
        status = super().admit(call_id, dialled)
        if self.live >= self.wanted:
            self.reached.set()
        return status


@pytest.mark.anyio
async def test_a_call_past_the_cap_of_its_host_gets_503_and_another_host_is_answered() -> None:
    admission = Counting(2)
    port = free_udp_port()
    config = SipConfig(listen=(f"udp:127.0.0.1:{port}",), max_calls_per_source=2)
    statuses: dict[str, int] = {}
    with anyio.fail_after(60):
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as media,
            anyio.create_task_group() as tg,
        ):
            media_port = media.extra(SocketAttribute.local_port)
            await tg.start(SipServer(config, admission).run)

            async def call(name: str, scenario: str, source: str, pause_ms: int = 0) -> None:
                statuses[name] = await sipp(
                    port, scenario, media_port, source=source, pause_ms=pause_ms
                )

            async with anyio.create_task_group() as calls:
                for name in ("first", "second"):  # two calls from 127.0.0.1 that stay
                    calls.start_soon(call, name, "caller_hangs_up.xml", "127.0.0.1", 4000)
                await admission.reached.wait()
                await call("third", "caller_over_the_cap.xml", "127.0.0.1")
                await call("elsewhere", "caller_hangs_up.xml", "127.0.0.2", 200)
                # the first two still go on (their sipp has not exited); not `admission.live`:
                # the server lets go of "elsewhere" after its sipp got the 200 to its BYE, and
                # under load that can come after this line (seen: 3 == 2 with two busy loops)
                assert not {"first", "second"} & statuses.keys()
            tg.cancel_scope.cancel()
    assert statuses == {"first": 0, "second": 0, "third": 0, "elsewhere": 0}
    assert admission.calls == 3  # the third never reached admission
    assert admission.live == 0


def invite(call_id: str, host: str) -> bytes:
    headers = (
        ("Via", f"SIP/2.0/UDP {host}:5060;branch=z9hG4bK{call_id}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:a@{host}>;tag=a"),
        ("To", "<sip:bot@voxline.test>"),
        ("Call-ID", call_id),
        ("CSeq", "1 INVITE"),
        ("Contact", f"<sip:a@{host}:5060>"),
    )
    return bytes(SipRequest(headers=headers, method="INVITE", uri="sip:bot@voxline.test"))


def test_the_cap_counts_calls_per_host_whatever_their_port_u5() -> None:
    agent = UserAgent("198.51.100.7", 5060, max_calls_per_source=2)
    for n, port in enumerate((5060, 5062)):
        (event,) = agent.receive(invite(f"c{n}", "192.0.2.4"), ("192.0.2.4", port), 0)
        assert isinstance(event, IncomingCall)
    refused = agent.receive(invite("c3", "192.0.2.4"), ("192.0.2.4", 5064), 0)
    assert refused == [Dropped("too many calls from one source", 503)]
    (other,) = agent.receive(invite("c4", "192.0.2.5"), ("192.0.2.5", 5060), 0)
    assert isinstance(other, IncomingCall)
    agent.reject("c0", 486, 0.1)  # a call ends: its host may call again
    (again,) = agent.receive(invite("c5", "192.0.2.4"), ("192.0.2.4", 5066), 0.2)
    assert isinstance(again, IncomingCall)
    retry = [o.data for o in agent.data_to_send() if b"SIP/2.0 503" in o.data]
    (refusal,) = retry
    assert b"Retry-After: 5\r\n" in refusal
