"""A caller whose voice is a capture: sipp plays espeak-ng speech from a pcap file as G.711 RTP
(``<exec play_pcap_audio>``, tests/sip/caller_plays_a_question.xml) into a call to the real
server; the agent's answer is captured and transcribed with the tests' Whisper.

sipp sends the capture from its own media port and ignores the RTP it gets, so the server runs
with ``server.sip.symmetric_rtp: false``: its RTP goes to the address in sipp's SDP, a UDP
socket of the test's that records it (:class:`tests.test_sip_call.Phone`, listening only),
rather than to where the capture comes from. sipp plays a pcap through a raw socket: without
``CAP_NET_RAW`` the call test is skipped (saying so).

The pcap writer itself (tests/rtp_pcap.py) is checked by reading its file back.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed

from pipeline.asr.decoder import WhisperDecoder
from tests.rtp_pcap import read_pcap, rtp_pcap
from tests.server import ARTIFACTS, ROOT, running_server
from tests.test_sip_call import (
    FRAME,
    QUIET,
    SCENARIOS,
    SIPP,
    Phone,
    Served,
    assert_one_clean_stream,
    free_udp_port,
    speech,
    transcribe,
)
from transports.rtp.packet import RtpError, parse_rtp

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")

#: the capture: quiet while the greeting plays, the question, then quiet while it is answered
GREETING_S, ANSWER_S = 7.0, 11.0
FRAMES_A_SECOND = 50


def raw_sockets() -> bool:
    """Whether this process may open a raw UDP socket (what sipp's pcap play uses)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        return False
    return True


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("sip-pcap")
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    port = free_udp_port()
    config["server"]["sip"] = {"listen": [f"udp:127.0.0.1:{port}"], "symmetric_rtp": False}
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path)) as running:
        yield Served(running, port)


def question_capture(path: Path) -> tuple[Path, int]:
    """The caller's side of the call as a pcap (one PCMU packet per 20 ms) and its packets."""
    quiet = [QUIET] * int(GREETING_S * FRAMES_A_SECOND)
    frames = quiet + speech("What can you do?") + [QUIET] * int(ANSWER_S * FRAMES_A_SECOND)
    return rtp_pcap(frames, path), len(frames)


async def sipp_playing(sip_port: int, capture: Path, phone_port: int, pause_ms: int) -> int:
    """One call of caller_plays_a_question.xml playing ``capture``; sipp's exit status. Its
    messages and errors are kept in artifacts/."""
    name = "caller_plays_a_question"
    media_port = free_udp_port() & ~1  # where the capture is sent from
    command = ["timeout", "90", SIPP, f"127.0.0.1:{sip_port}", "-m", "1", "-i", "127.0.0.1"]
    command += ["-sf", str(SCENARIOS / f"{name}.xml"), "-p", str(free_udp_port())]
    command += ["-mp", str(media_port), "-nostdin", "-timeout", "80s", "-timeout_error"]
    command += ["-trace_msg", "-message_file", str(ARTIFACTS / f"sipp-{name}-messages.log")]
    command += ["-trace_err", "-error_file", str(ARTIFACTS / f"sipp-{name}-errors.log")]
    command += ["-key", "rtp_ip", "127.0.0.1", "-key", "rtp_port", str(phone_port)]
    command += ["-key", "pcap", str(capture), "-d", str(pause_ms)]
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / f"sipp-{name}-screen.log").open("wb") as screen:
        process = await anyio.open_process(command, stdout=screen, stderr=screen)
        async with process:
            return await process.wait()


@pytest.mark.skipif(
    not raw_sockets(), reason="sipp plays a pcap through a raw socket: no CAP_NET_RAW"
)
@pytest.mark.anyio
async def test_a_question_played_from_a_pcap_is_answered(
    server: Served, whisper_decoder: WhisperDecoder, tmp_path: Path
) -> None:
    capture, packets = question_capture(tmp_path / "question.pcap")
    pause_ms = packets * 20 + 1000  # the whole capture has played before the BYE
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)  # records; it never talks: sipp's capture is the caller
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                status = await sipp_playing(server.sip_port, capture, phone.port, pause_ms)
                if phone.packets:
                    await phone.stopped.wait()  # Voxline's RTP stops with the BYE
                tg.cancel_scope.cancel()
    assert status == 0
    assert phone.packets, "no RTP came to the address in sipp's SDP"
    assert_one_clean_stream(phone.packets)
    assert len(phone.replies) >= 2, phone.replies  # the greeting, then the answer
    greeting = transcribe(whisper_decoder, bytes(phone.audio[slice(*phone.replies[0])]))
    answer = transcribe(whisper_decoder, bytes(phone.audio[slice(*phone.replies[1])]))
    assert "this is" in greeting, greeting
    assert "person" in answer or "put you through" in answer, answer
    # every packet of the capture reached the call, though none came from the SDP's address
    ended = [line for line in server.running.log if re.search(r"RTP: \d+ packets in", line)]
    (line,) = ended
    assert f"RTP: {packets} packets in" in line, line


def folds_to_all_ones(data: bytes) -> bool:
    """Whether ``data`` with its checksum in place sums to 0xFFFF (RFC 1071: it checks out)."""
    data += b"\x00" * (len(data) % 2)
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return total % 0xFFFF == 0


def test_the_pcap_holds_one_rtp_packet_every_20_ms(tmp_path: Path) -> None:
    frames = [bytes([n]) * FRAME for n in range(5)]
    source, destination = ("10.1.2.3", 4000), ("10.1.2.4", 4002)
    path = rtp_pcap(frames, tmp_path / "five.pcap", source=source, destination=destination)
    data = path.read_bytes()
    assert struct.unpack_from("<IHH", data) == (0xA1B2C3D4, 2, 4)  # libpcap 2.4
    records = read_pcap(path)
    assert [when for when, _ in records] == [0, 20_000, 40_000, 60_000, 80_000]
    parsed = [parse_rtp(payload) for _, payload in records]
    assert [
        (p.payload_type, p.sequence, p.timestamp, p.marker, p.payload)
        for p in parsed
        if not isinstance(p, RtpError)
    ] == [(0, 1 + n, 160 * n, n == 0, frames[n]) for n in range(5)]
    # the first record: Ethernet, then an IPv4 header and a UDP datagram whose sums check out
    frame = data[24 + 16 :][: 14 + 20 + 8 + 12 + FRAME]
    assert frame[12:14] == b"\x08\x00"  # IPv4
    ip, udp = frame[14:34], frame[34:]
    assert (ip[9], ip[12:16], ip[16:20]) == (17, bytes([10, 1, 2, 3]), bytes([10, 1, 2, 4]))
    assert folds_to_all_ones(ip)
    assert struct.unpack("!HH", udp[:4]) == (4000, 4002)
    assert folds_to_all_ones(ip[12:20] + struct.pack("!BBH", 0, 17, len(udp)) + udp)
