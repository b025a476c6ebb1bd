"""re-INVITEs mid-call against the real server process (``voxline serve --sip``): hold and
unhold, and a codec change, with sipp as the caller's signalling and the phone of
:mod:`tests.test_sip_call` as its media.

The scenarios say where they are to the phone's socket (an ``exec`` of sipp's that sends a
word there: ``held`` once the hold is ACKed, ``resuming`` before the unhold's re-INVITE,
``pcma`` once the codec change is ACKed); the phone keeps each word's place among the RTP
packets that came.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from pipeline.asr.decoder import WhisperDecoder
from tests.test_sip_call import (
    FRAME,
    QUIET,
    SIPP,
    Phone,
    Served,
    anyio_backend,
    hear,
    server,
    sipp,
    speech,
)
from transports.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from transports.rtp.packet import RtpError, RtpPacket, parse_rtp

__all__ = ["anyio_backend", "server"]  # the fixtures, shared

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
MARKERS = (b"held", b"resuming", b"pcma")


class MarkedPhone(Phone):
    """A :class:`Phone` that keeps the scenario's words (with how many RTP packets had come
    before each), and talks PCMA once told ``pcma`` (what it hears is kept as μ-law)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.marks: dict[bytes, int] = {}
        self.marked = {word: anyio.Event() for word in MARKERS}
        self.more = anyio.Event()  # set at each packet

    async def listen(self) -> None:
        while True:
            held = self.marked[b"held"].is_set() and not self.marked[b"resuming"].is_set()
            with anyio.move_on_after(0.5 if self.packets and not held else None):
                data, peer = await self.sock.receive()
                if data in MARKERS:
                    self.marks[data] = len(self.packets)
                    self.marked[data].set()
                    continue
                packet = parse_rtp(data)
                assert not isinstance(packet, RtpError), packet
                self.peer = peer
                self.packets.append(packet)
                self.first.set()
                payload = packet.payload
                if packet.payload_type == 8:
                    payload = pcm16_to_ulaw(alaw_to_pcm16(payload))
                self._heard(payload)
                self.more.set()
                self.more = anyio.Event()
                continue
            self.stopped.set()
            return

    def packet(self, sequence: int, timestamp: int) -> RtpPacket:
        """As the plain phone's, in PCMA once the scenario has switched to it."""
        payload = self.mic.popleft() if self.mic else QUIET
        payload_type = 0
        if self.marked[b"pcma"].is_set():
            payload, payload_type = pcm16_to_alaw(ulaw_to_pcm16(payload)), 8
        return RtpPacket(payload_type, sequence, timestamp, 0x1234ABCD, payload)

    async def packets_after(self, count: int) -> None:
        """Until ``count`` packets have come after the last mark."""
        while len(self.packets) < max(self.marks.values(), default=0) + count:
            await self.more.wait()


@pytest.mark.anyio
async def test_on_hold_no_rtp_is_sent_and_after_the_unhold_it_goes_on(server: Served) -> None:
    with anyio.fail_after(60):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = MarkedPhone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    status = await sipp(
                        server.sip_port, "caller_holds_and_resumes.xml", phone.port, pause_ms=1000
                    )
                    assert status == 0

                tg.start_soon(caller)
                await phone.marked[b"resuming"].wait()
                await phone.packets_after(10)
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    held, resuming = phone.marks[b"held"], phone.marks[b"resuming"]
    assert held > 0  # RTP came before the hold
    assert resuming == held  # nothing while held
    assert len(phone.packets) > resuming  # and again after it
    # one stream throughout: no sequence number skipped, the media clock went on meanwhile
    packets = phone.packets
    assert {p.ssrc for p in packets} == {packets[0].ssrc}
    for before, after in itertools.pairwise(packets):
        assert (after.sequence - before.sequence) % 65536 == 1
    gaps = [
        (after.timestamp - before.timestamp) % (1 << 32)
        for before, after in itertools.pairwise(packets)
    ]
    assert gaps[held - 1] > FRAME  # across the hold: the time it lasted
    assert [g for n, g in enumerate(gaps) if n != held - 1 and g != FRAME] == []


@pytest.mark.anyio
async def test_after_a_codec_change_to_pcma_the_reply_is_pcma_and_heard(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    question, goodbye = speech("What can you do?"), speech("Goodbye, thank you.")
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = MarkedPhone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    await phone.next_reply()  # the greeting (PCMU, then PCMA)
                    await phone.marked[b"pcma"].wait()
                    phone.say(question)
                    start = len(phone.packets)
                    answer = await phone.next_reply()
                    heard = await hear(whisper_decoder, answer)
                    assert "message" in heard or "person" in heard, heard
                    assert {p.payload_type for p in phone.packets[start:]} == {8}
                    phone.say(goodbye)

                tg.start_soon(caller)
                status = await sipp(server.sip_port, "caller_changes_codec.xml", phone.port)
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert status == 0
    assert phone.packets[0].payload_type == 0
    assert phone.packets[-1].payload_type == 8
    assert {p.ssrc for p in phone.packets} == {phone.packets[0].ssrc}
