"""Torture for the real server (``voxline serve --sip``), in the spirit of RFC 4475: broken SIP
datagrams sent raw from the test, then broken RTP at a live call.

Each bad request gets the status transports/sip/message.py's and dialog.py's rule tables
promise (M*, U*), or, where no answer can be built (no Via, no Call-ID...: RFC 3261 §8.2.6
copies them), is dropped with a log line. Whether a datagram was answered is known without
waiting: an OPTIONS follows it on the same socket, and the endpoint handles its datagrams in
order, so the OPTIONS' 200 comes after anything the bad datagram got.

At a call (signalling by sipp, media by the test's phone) RTP of other payload types, cut
short, from another SSRC, out of order, doubled and from another host is thrown in; the call
still answers a spoken question, and a second call beside it is not disturbed.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import UDPSocket

from pipeline.asr.decoder import WhisperDecoder
from tests.server import ROOT, running_server
from tests.test_sip_call import (
    FRAME,
    QUIET,
    SIPP,
    Phone,
    Served,
    free_udp_port,
    hear,
    sipp,
    speech,
)
from transports.rtp.packet import RtpPacket
from transports.sip.message import MAX_HEADERS, SipResponse, parse_message

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = tmp_path_factory.mktemp("sip-torture") / "sip-torture.yaml"
    default = (ROOT / "configs" / "default.yaml").read_text()
    assert "\nserver:\n" in default
    config.write_text(default.replace("\nserver:\n", "\nserver:\n  sip:\n    ring_ms: 0\n"))
    port = free_udp_port()
    with running_server(str(config), args=["--sip", f"127.0.0.1:{port}"]) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


# -- SIP --------------------------------------------------------------------------------------

_serial = itertools.count()


def request(
    method: str = "OPTIONS",
    *,
    start: str = "",
    extra: str = "",
    leave_out: str = "",
    length: str | None = None,
    body: bytes = b"",
) -> bytes:
    """A well-formed request of ``method`` from the test's socket (port 9: replies go to where
    the datagram came from, RFC 3581 ``rport``), then broken as asked: another start line,
    ``extra`` header lines, the field named ``leave_out`` left out, ``length`` as the
    Content-Length."""
    n = next(_serial)
    fields = [
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKtorture{n};rport",
        "From: <sip:torture@127.0.0.1>;tag=t" + str(n),
        "To: <sip:voxline@127.0.0.1>",
        f"Call-ID: torture-{n}@127.0.0.1",
        f"CSeq: 1 {method}",
        "Contact: <sip:torture@127.0.0.1:9>",
        "Max-Forwards: 70",
    ]
    fields = [f for f in fields if not (leave_out and f.startswith(leave_out + ":"))]
    head = [start or f"{method} sip:voxline@127.0.0.1 SIP/2.0", *fields]
    head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n" + extra + "\r\n").encode() + body


SDP_GARBAGE = b"v=9\r\no=\r\nm=audio port RTP/AVP\r\nc=IN IP9 nowhere\r\n\x00\x01\r\n"

#: (name, datagram, the status it gets or None: dropped, what the server logs for it)
SIP_TORTURE = [
    ("start line without version", request(start="OPTIONS sip:voxline@127.0.0.1"), None, "M2"),
    ("two spaces in the start line", request(start="OPTIONS  sip:v@127.0.0.1 SIP/2.0"), None, "M2"),
    ("only bytes", bytes(range(256)), None, "M2"),
    ("empty lines", b"\r\n\r\n", None, "M2"),
    ("version 7", request(start="OPTIONS sip:voxline@127.0.0.1 SIP/7.0"), 505, "M3"),
    ("header without colon", request(extra="NoColonHere\r\n"), 400, "M4"),
    (
        "too many headers",
        request(extra="".join(f"X-{i}: {i}\r\n" for i in range(MAX_HEADERS + 1))),
        None,  # the cap is checked before the fields are read: nothing to answer with
        "M1",
    ),
    ("no Via", request(leave_out="Via"), None, "M5: no Via"),
    ("no Call-ID", request(leave_out="Call-ID"), None, "M5: no Call-ID"),
    ("no CSeq", request(leave_out="CSeq"), None, "M5: bad CSeq"),
    ("no From", request(leave_out="From"), None, "M5"),
    ("no To", request(leave_out="To"), None, "M5"),
    ("CSeq over 2**31-1", request(extra="").replace(b"CSeq: 1 ", b"CSeq: 4294967296 "), None, "M5"),
    ("CSeq method mismatch", request().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 BYE"), 400, "M5"),
    ("Max-Forwards not a number", request().replace(b"Forwards: 70", b"Forwards: x"), 400, "M5"),
    ("Content-Length too big", request(length="500"), 400, "M6"),
    ("Content-Length negative", request(length="-5"), 400, "M6"),
    ("Content-Length not a number", request(length="five"), 400, "M6"),
    ("Call-ID twice", request(extra="i: another@127.0.0.1\r\n"), 400, "M5: Call-ID more than"),
    ("CSeq twice", request(extra="CSeq: 2 OPTIONS\r\n"), 400, "M5: CSeq more than"),
    ("Content-Length twice", request(extra="l: 0\r\n"), 400, "M5: Content-Length more than"),
    (
        "headers not UTF-8",
        request(extra="Subject: caf@\r\n").replace(b"caf@", b"caf\xe9"),
        None,
        "M2: headers are not",
    ),
    ("unknown method", request("FROBNICATE"), 501, ""),
    ("REGISTER", request("REGISTER"), 405, ""),
    ("SUBSCRIBE", request("SUBSCRIBE"), 405, ""),
    ("BYE outside a dialog", request("BYE"), 481, ""),
    ("CANCEL of nothing", request("CANCEL"), 481, ""),
    ("Max-Forwards 0", request().replace(b"Forwards: 70", b"Forwards: 0"), 483, ""),
    ("Require of an unknown extension", request(extra="Require: 100rel, foo\r\n"), 420, ""),
    # what must be accepted (RFC 4475 §3.1.1): OPTIONS answered 200
    (
        "escaped and odd URI",
        request(
            start="OPTIONS sip:%76ox%6Cine;lr;x=%41@127.0.0.1;transport=udp?Subject=hi SIP/2.0"
        ),
        200,
        "",
    ),
    ("IPv6 reference URI", request(start="OPTIONS sip:[::1]:5060;maddr=[::1] SIP/2.0"), 200, ""),
    (
        "folded headers",
        request(
            extra="Subject: I know you're there,\r\n  pick up the phone\r\n\tand talk to me\r\n"
        ),
        200,
        "",
    ),
    ("LF alone", request().replace(b"\r\n", b"\n"), 200, ""),
    (
        "compact names, odd case",
        request().replace(b"Call-ID:", b"i:").replace(b"CSeq", b"cSEQ"),
        200,
        "",
    ),
    (
        "escaped quotes in a name",
        request().replace(b"From: ", b'From: "J \\"Q\\" P\\\\" '),
        200,
        "",
    ),
    ("a header of 60000 bytes", request(extra=f"X-Big: {'a' * 60_000}\r\n"), 200, ""),
    ("a body without Content-Type", request(body=b"\x00\xffbinary"), 200, ""),
]


def replies(data: bytes) -> list[SipResponse]:
    message = parse_message(data)
    return [message] if isinstance(message, SipResponse) else []


async def answer_to(sock: UDPSocket, sip_port: int, data: bytes) -> SipResponse | None:
    """What ``data`` got before an OPTIONS sent after it got its 200 (``None``: nothing)."""
    probe = request()
    probe_id = probe.split(b"Call-ID: ")[1].split(b"\r\n")[0].decode()
    await sock.sendto(data, "127.0.0.1", sip_port)
    await sock.sendto(probe, "127.0.0.1", sip_port)
    got: SipResponse | None = None
    while True:
        received, _ = await sock.receive()
        for response in replies(received):
            if response.call_id != probe_id:
                assert got is None, (got, response)  # one answer, no more
                got = response
            elif response.status == 200:
                return got


async def logged(server: Served, since: int, text: str) -> None:
    """Until the server's log has a line with ``text`` (written before its reply went out;
    the test reads the log in a thread)."""
    while not any(text in line for line in server.running.log[since:]):  # noqa: ASYNC110
        await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_broken_sip_gets_its_status_or_is_dropped_with_a_log_line(server: Served) -> None:
    bad: list[str] = []
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        for name, data, status, log in SIP_TORTURE:
            since = len(server.running.log)
            with anyio.fail_after(10):
                got = await answer_to(sock, server.sip_port, data)
            if (got.status if got else None) != status:
                bad.append(f"{name}: {got.status if got else 'nothing'}, not {status}")
                continue
            if log:
                with anyio.fail_after(10):
                    await logged(server, since, f"dropped: {log}")
    assert not bad, bad
    assert server.running.process.poll() is None


def ack_for(invite: bytes, final: SipResponse) -> bytes:
    """The ACK of ``invite``'s non-2xx ``final`` (RFC 3261 §17.1.1.3: its branch, its To)."""
    head = invite.split(b"\r\n\r\n")[0].decode().split("\r\n")
    keep = [line for line in head[1:] if line.split(":")[0] in ("Via", "From", "Call-ID")]
    lines = [head[0].replace("INVITE", "ACK"), *keep, f"To: {final.get('To')}"]
    lines += ["CSeq: 1 ACK", "Max-Forwards: 70", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.anyio
async def test_an_invite_with_garbage_sdp_gets_a_4xx_and_no_call(server: Served) -> None:
    calls = sum("answered (" in line for line in server.running.log)
    invite = request("INVITE", body=SDP_GARBAGE, extra="Content-Type: application/sdp\r\n")
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        with anyio.fail_after(10):
            await sock.sendto(invite, "127.0.0.1", server.sip_port)
            final = None
            while final is None:
                for response in replies((await sock.receive())[0]):
                    final = response if response.status >= 200 else None
        await sock.sendto(ack_for(invite, final), "127.0.0.1", server.sip_port)
    assert final.status in (400, 488), final
    assert sum("answered (" in line for line in server.running.log) == calls


# -- RTP --------------------------------------------------------------------------------------


class TorturedPhone(Phone):
    """A phone whose RTP is mangled on its way: once :attr:`mangle` is set, every 10th packet
    swaps places with the next and every 7th is sent twice; :meth:`new_ssrc` starts another
    stream (another SSRC, sequence and timestamp), as a PBX does when it re-anchors media;
    :meth:`inject` sends raw packets from the talking task (one writer per socket: anyio refuses
    a second concurrent send on it)."""

    def __init__(self, sock: UDPSocket) -> None:
        super().__init__(sock)
        self.mangle = False
        self.ssrc, self.sequence, self.timestamp = 0x1234ABCD, 1000, 80000
        self._injected: list[bytes] = []
        self._sent = anyio.Event()

    async def inject(self, packets: list[bytes]) -> None:
        """Send ``packets`` as they are, before the next 20 ms packet; return once sent."""
        self._injected, self._sent = list(packets), anyio.Event()
        await self._sent.wait()

    def new_ssrc(self) -> None:
        self.ssrc, self.sequence, self.timestamp = 0x0BADCAFE, 40000, 3_000_000_000

    async def talk(self) -> None:
        start = time.perf_counter()
        held: bytes | None = None
        for n in range(1_000_000):
            await anyio.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))
            if self.peer is None or self.stopped.is_set():
                continue
            payload = self.mic.popleft() if self.mic else QUIET
            packet = bytes(RtpPacket(0, self.sequence, self.timestamp, self.ssrc, payload))
            self.sequence = (self.sequence + 1) % 65536
            self.timestamp = (self.timestamp + FRAME) % (1 << 32)
            out = [packet]
            if self.mangle and held is None and n % 10 == 0:
                held, out = packet, []
            elif held is not None:
                out, held = [packet, held], None
            if self.mangle and n % 7 == 0:
                out.append(packet)
            injected, self._injected = self._injected, []
            for data in injected + out:
                await self.sock.sendto(data, *self.peer)
            if injected:
                self._sent.set()


def rtp_garbage(ssrc: int) -> list[bytes]:
    """Packets a call must shrug off: other payload types, cut short, broken headers."""
    good = bytes(RtpPacket(0, 7, 1600, ssrc, QUIET))
    packets = [
        bytes(RtpPacket(pt, 7 + pt, 1600, ssrc, b"\x55" * FRAME)) for pt in (8, 9, 18, 96, 127)
    ]
    packets += [b"", good[:1], good[:5], good[:11], bytes([0x40]) + good[1:]]  # short; version 1
    packets += [bytes([0x8F]) + good[1:20]]  # 15 CSRCs announced, none there
    packets += [bytes([0xA0]) + good[1:-1] + b"\xff"]  # 255 bytes of padding announced
    packets += [bytes([0x90]) + good[1:12] + b"\x00\x00\xff\xff"]  # extension longer than all
    packets += [bytes([0x80, 201]) + b"\x00\x01garbage"]  # RTCP that does not parse
    return packets


@pytest.mark.anyio
async def test_a_call_survives_rtp_garbage_and_a_call_beside_it_is_undisturbed(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    question, goodbye = speech("What can you do?"), speech("Goodbye, thank you.")
    ended = len(server.running.log)
    with anyio.fail_after(120):
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
            await anyio.create_udp_socket(local_host="127.0.0.1") as other_sock,
            await anyio.create_udp_socket(local_host="127.0.0.2") as stranger,
        ):
            phone, other = TorturedPhone(sock), Phone(other_sock)
            statuses: list[int] = []

            async def call(scenario: str, phone: Phone, pause_ms: int = 0) -> None:
                statuses.append(
                    await sipp(server.sip_port, scenario, phone.port, pause_ms=pause_ms)
                )

            async with anyio.create_task_group() as tg:
                for p in (phone, other):
                    tg.start_soon(p.listen)
                    tg.start_soon(p.talk)

                async def caller() -> None:
                    await phone.heard_a_second.wait()  # of the greeting
                    assert phone.peer is not None
                    await phone.inject(rtp_garbage(phone.ssrc))
                    stray = RtpPacket(0, 1, 160, 0x5EEDED, b"\x00" * FRAME)  # loud, another host
                    for _ in range(25):
                        await stranger.sendto(bytes(stray), *phone.peer)
                    await phone.next_reply()  # the greeting
                    phone.new_ssrc()
                    phone.mangle = True
                    phone.say(question)
                    heard = await hear(whisper_decoder, await phone.next_reply())
                    assert "message" in heard or "person" in heard, heard
                    phone.say(goodbye)

                tg.start_soon(caller)
                tg.start_soon(call, "caller_hangs_up.xml", other, 6000)
                await call("agent_hangs_up.xml", phone)
                await phone.stopped.wait()
                await other.stopped.wait()
                tg.cancel_scope.cancel()
    assert statuses == [0, 0]  # both calls went as scripted
    assert other.speech_frames >= 50  # the other call heard its greeting
    log = "".join(server.running.log[ended:])
    assert "ended it (caller said goodbye)" in log
    # what was thrown in was counted as dropped (the stranger's 25 at least), not played
    (dropped,) = re.findall(r"ended: caller said goodbye \(RTP: .*?, (\d+) dropped", log)
    assert int(dropped) >= 25
    assert "Traceback" not in log
    assert server.running.process.poll() is None
