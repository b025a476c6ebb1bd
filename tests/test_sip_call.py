"""Inbound SIP calls against the real server process (``voxline serve --sip``), with sipp as
the caller's signalling and a UDP socket of the test's as the caller's phone.

The scenarios (tests/sip/*.xml) offer PCMU with the media address of :class:`Phone`'s socket
(sipp's ``-key rtp_port``): Voxline's RTP comes there, and the phone sends its microphone (20 ms
μ-law frames at real-time pace, silence or espeak-ng speech) back from that socket, to where
Voxline's RTP comes from. What comes back is decoded and transcribed with the tests' Whisper.
The server rings ``ring_ms`` before answering, so a CANCEL on 180 comes before the answer.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import msgspec
import numpy as np
import pytest
from anyio.abc import SocketAttribute, TaskStatus, UDPSocket

from agent.call_loop import Task
from agent.cli import main
from agent.config import ConfigError, parse_config
from agent.config.schema import SipConfig
from agent.session import Session
from agent.session_events import CallSink
from agent.sip_call import SipSink
from agent.sip_server import RtpPorts, SipServer, source_filter
from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, is_greeting, resample, silence
from tests.server import ARTIFACTS, ROOT, RunningServer, running_server
from transports.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from transports.rtp.packet import RtpError, RtpPacket, parse_rtp
from transports.rtp.stream import RtpStream

SIPP = "/usr/bin/sipp"
SCENARIOS = Path(__file__).parent / "sip"
RATE = 8000
FRAME = RATE // 50  # 20 ms of μ-law: one byte a sample
QUIET = b"\xff" * FRAME  # μ-law zero: what Voxline's comfort silence carries
#: comfort silence this long after speech: the reply is over
REPLY_GAP_FRAMES = 50
RING_MS = 1000

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    def __init__(self, running: RunningServer, sip_port: int) -> None:
        self.running = running
        self.sip_port = sip_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = tmp_path_factory.mktemp("sip") / "sip-agent.yaml"
    default = (ROOT / "configs" / "default.yaml").read_text()
    assert "\nserver:\n" in default
    sip = f"\nserver:\n  sip:\n    ring_ms: {RING_MS}\n"
    sip += "    allowed_networks: [127.0.0.1/32]\n"  # 127.0.0.2 is refused (403)
    config.write_text(default.replace("\nserver:\n", sip))
    port = free_udp_port()
    with running_server(str(config), args=["--sip", f"127.0.0.1:{port}"]) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


class Phone:
    """The caller's media: what comes in is kept (and cut into replies at comfort silence),
    the microphone goes out every 20 ms to where Voxline's RTP comes from."""

    def __init__(self, sock: UDPSocket) -> None:
        self.sock = sock
        self.port: int = sock.extra(SocketAttribute.local_port)
        self.mic: deque[bytes] = deque()
        self.packets: list[RtpPacket] = []
        self.audio = bytearray()  # every payload, as it came
        self.replies: list[tuple[int, int]] = []  # (start, end) in self.audio
        self.peer: tuple[str, int] | None = None
        self.reply_ended = anyio.Event()
        self.speech_frames = 0  # frames with speech in them, so far
        self.heard_a_second = anyio.Event()
        self.first = anyio.Event()
        self.stopped = anyio.Event()
        self._talk_start: int | None = None
        self._quiet = 0

    def say(self, frames: list[bytes]) -> None:
        self.mic.extend(frames)

    async def listen(self) -> None:
        """Until Voxline's RTP stops (nothing for half a second after it began)."""
        while True:
            with anyio.move_on_after(0.5 if self.packets else None):
                data, peer = await self.sock.receive()
                packet = parse_rtp(data)
                assert not isinstance(packet, RtpError), packet
                self.peer = peer
                self.packets.append(packet)
                self.first.set()
                self._heard(packet.payload)
                continue
            self.stopped.set()
            return

    async def talk(self) -> None:
        """20 ms of microphone every 20 ms, once Voxline's RTP has come (symmetric RTP)."""
        start = time.perf_counter()
        sequence, timestamp = 1000, 80000
        for n in range(1_000_000):
            await anyio.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))
            if self.peer is None or self.stopped.is_set():
                continue
            packet = self.packet(sequence, timestamp)
            sequence, timestamp = sequence + 1, timestamp + FRAME
            await self.sock.sendto(bytes(packet), *self.peer)

    def packet(self, sequence: int, timestamp: int) -> RtpPacket:
        """The packet of this 20 ms: the microphone's next frame, else quiet (subclasses send
        other kinds)."""
        payload = self.mic.popleft() if self.mic else QUIET
        return RtpPacket(0, sequence, timestamp, 0x1234ABCD, payload)

    async def next_reply(self) -> bytes:
        """The μ-law of the next reply that ends (speech, then a second of comfort silence)."""
        count = len(self.replies)
        while len(self.replies) == count:
            self.reply_ended = anyio.Event()
            await self.reply_ended.wait()
        start, end = self.replies[count]
        return bytes(self.audio[start:end])

    def _heard(self, payload: bytes) -> None:
        self.audio += payload
        if payload.strip(b"\xff\x7f"):  # not (near) zero
            self._quiet = 0
            self.speech_frames += 1
            if self.speech_frames >= 50:
                self.heard_a_second.set()
            if self._talk_start is None:
                self._talk_start = len(self.audio) - len(payload)
        elif self._talk_start is not None:
            self._quiet += 1
            if self._quiet >= REPLY_GAP_FRAMES:
                self.replies.append((self._talk_start, len(self.audio)))
                self._talk_start = None
                self.reply_ended.set()


async def sipp(
    sip_port: int,
    scenario: str,
    phone_port: int,
    *,
    source: str = "127.0.0.1",
    pause_ms: int = 0,
    service: str = "",
    extra: Sequence[str] = (),
) -> int:
    """Run one call of ``scenario`` from ``source`` to the end; sipp's exit status (0: every
    message as scripted). ``pause_ms``: how long its ``<pause/>`` lasts; ``service``: the number
    a scenario that dials ``[service]`` dials; ``extra``: more options (``-t t1``: TCP). Its
    messages and errors are kept in artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = Path(scenario).stem + "".join(extra)  # caller_hangs_up-tt1 over TCP
    command = ["timeout", "60", SIPP, f"127.0.0.1:{sip_port}", *extra]
    command += ["-sf", str(SCENARIOS / scenario), "-m", "1", "-i", source]
    command += ["-p", str(free_udp_port()), "-nostdin", "-timeout", "50s", "-timeout_error"]
    command += ["-trace_msg", "-message_file", str(ARTIFACTS / f"sipp-{name}-messages.log")]
    command += ["-trace_err", "-error_file", str(ARTIFACTS / f"sipp-{name}-errors.log")]
    command += ["-key", "rtp_ip", "127.0.0.1", "-key", "rtp_port", str(phone_port)]
    command += (["-d", str(pause_ms)] if pause_ms else []) + (["-s", service] if service else [])
    with (ARTIFACTS / f"sipp-{name}-screen.log").open("wb") as screen:
        process = await anyio.open_process(command, stdout=screen, stderr=screen)
        async with process:
            return await process.wait()


def speech(text: str) -> list[bytes]:
    """``text`` by espeak-ng as 20 ms μ-law frames, with half a second of silence after."""
    pcm = np.concatenate([espeak(text, RATE), silence(0.5, RATE)])
    data = pcm16_to_ulaw(pcm.astype("<i2").tobytes())
    return [data[i : i + FRAME].ljust(FRAME, b"\xff") for i in range(0, len(data), FRAME)]


async def hear(decoder: WhisperDecoder, mulaw: bytes) -> str:
    """:func:`transcribe` in a worker thread: the phone keeps its 20 ms pace meanwhile (a
    stalled phone sends a burst, which the jitter buffer cuts to its 200 ms)."""
    return await anyio.to_thread.run_sync(transcribe, decoder, mulaw)


def transcribe(decoder: WhisperDecoder, mulaw: bytes) -> str:
    pcm = np.frombuffer(ulaw_to_pcm16(mulaw), dtype="<i2")
    audio = resample(pcm, RATE, 16000).astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


def hung_up_for_goodbye(server: Served) -> int:
    """Calls the agent has ended so far because the caller said goodbye (the server's log)."""
    return sum("ended it (caller said goodbye)" in line for line in server.running.log)


def assert_one_clean_stream(packets: list[RtpPacket]) -> None:
    """One SSRC, PCMU, sequence numbers and timestamps in 20 ms steps: the wire is a phone's."""
    assert {p.ssrc for p in packets} == {packets[0].ssrc}
    assert {p.payload_type for p in packets} == {0}
    for before, after in itertools.pairwise(packets):
        assert (after.sequence - before.sequence) % 65536 == 1
        assert (after.timestamp - before.timestamp) % (1 << 32) == FRAME
        assert len(after.payload) == FRAME


@pytest.mark.anyio
async def test_a_call_is_answered_and_ends_when_the_caller_hangs_up(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(60):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                status = await sipp(
                    server.sip_port, "caller_hangs_up.xml", phone.port, pause_ms=4000
                )
                await phone.stopped.wait()  # Voxline's RTP stops with the BYE
                tg.cancel_scope.cancel()
    assert status == 0
    # 4 s on the line: the greeting, paced in real time (comfort silence around it)
    assert 150 <= len(phone.packets) <= 260
    assert_one_clean_stream(phone.packets)
    assert phone.packets[0].marker or not phone.packets[0].payload.strip(b"\xff")
    greeting = transcribe(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting


@pytest.mark.anyio
async def test_the_caller_asks_and_hears_the_answer_then_the_agent_hangs_up(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    question, goodbye = speech("What can you do?"), speech("Goodbye, thank you.")
    goodbyes = hung_up_for_goodbye(server)
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    greeting = await phone.next_reply()
                    heard = await hear(whisper_decoder, greeting)
                    assert "this is" in heard, heard
                    phone.say(question)
                    answer = await phone.next_reply()
                    heard = await hear(whisper_decoder, answer)
                    assert "message" in heard or "person" in heard, heard
                    phone.say(goodbye)

                tg.start_soon(caller)
                # the agent says goodbye and hangs up: sipp gets its BYE and answers 200
                status = await sipp(server.sip_port, "agent_hangs_up.xml", phone.port)
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert status == 0
    assert len(phone.replies) >= 2
    # it hung up for the goodbye (logged before its BYE), not for an idle line
    assert hung_up_for_goodbye(server) == goodbyes + 1
    assert_one_clean_stream(phone.packets)


@pytest.mark.anyio
async def test_the_caller_talks_over_the_greeting_which_stops_and_is_answered(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    # not "Okay, goodbye then.": with half a second of silence before it (the VAD's pre-roll,
    # as much as the caller's timing leaves), Whisper base gives that phrase from espeak-ng at
    # 8 kHz a no-speech probability of 0.62 and log-prob -0.55, and the decoder rightly drops it
    goodbye = speech("Goodbye, thank you.")
    interruptions = sum("interrupted" in line for line in server.running.log)
    with anyio.fail_after(60):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    await phone.heard_a_second.wait()  # of the greeting
                    phone.say(goodbye)

                tg.start_soon(caller)
                status = await sipp(server.sip_port, "agent_hangs_up.xml", phone.port)
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert status == 0
    # the greeting stopped when the caller spoke over it (logged seconds before the BYE)
    assert sum("interrupted" in line for line in server.running.log) == interruptions + 1
    heard = transcribe(whisper_decoder, bytes(phone.audio))  # the whole call: a few seconds
    assert "this is" in heard, heard
    assert "bye" in heard.split("this is", 1)[1], heard


async def ask_for_a_person(
    server: Served, scenario: str, *, then: str = "", decoder: WhisperDecoder | None = None
) -> int:
    """A call in which the caller asks for a person after the greeting (the dialogue
    transfers to ``operator``), and says ``then`` once the agent has said the transfer failed
    (the replies are told apart by what ``decoder`` hears in them: "one moment" and the
    failure come back to back, often as one stretch of speech)."""
    person = speech("Can I talk to a person?")
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    await phone.next_reply()  # the greeting
                    phone.say(person)
                    if then:
                        assert decoder is not None
                        heard = ""
                        while "sorry" not in heard:  # the transfer failed: said so
                            heard = (await hear(decoder, await phone.next_reply())).lower()
                        phone.say(speech(then))

                tg.start_soon(caller)
                status = await sipp(server.sip_port, scenario, phone.port)
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    return status


@pytest.mark.anyio
async def test_a_transfer_is_a_refer_and_the_call_ends_once_the_target_answered(
    server: Served,
) -> None:
    ended = sum("ended: transferred" in line for line in server.running.log)
    # the scenario checks Refer-To (the operator at the caller's host) and Referred-By
    assert await ask_for_a_person(server, "caller_transferred.xml") == 0
    assert sum("ended: transferred" in line for line in server.running.log) == ended + 1


@pytest.mark.anyio
async def test_a_refused_transfer_is_said_and_the_call_goes_on(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    goodbyes = hung_up_for_goodbye(server)
    status = await ask_for_a_person(
        server, "caller_refuses_transfer.xml", then="Goodbye, thank you.", decoder=whisper_decoder
    )
    assert status == 0
    assert hung_up_for_goodbye(server) == goodbyes + 1  # the call went on to the goodbye


@pytest.mark.anyio
async def test_a_call_cancelled_while_it_rings_gets_487(server: Served) -> None:
    with anyio.fail_after(30):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            status = await sipp(server.sip_port, "caller_cancels.xml", Phone(sock).port)
    assert status == 0


@pytest.mark.anyio
async def test_an_invite_from_outside_the_allowed_networks_gets_403(server: Served) -> None:
    with anyio.fail_after(30):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            status = await sipp(
                server.sip_port, "caller_refused.xml", Phone(sock).port, source="127.0.0.2"
            )
    assert status == 0


# -- the adapter alone: sessions that only run the call's tasks, no models ------------------


async def run(task: Callable[[], Awaitable[object]]) -> None:
    await task()


class QuietSession:
    """Stands in for a :class:`~agent.session.Session` where only SIP and RTP matter."""

    ended: str | None = None

    def __init__(self) -> None:
        self.audio = 0  # bytes of 16 kHz caller audio pushed
        self.loud = 0  # of them, in chunks that are not silence
        self._scope = anyio.CancelScope()

    async def run(self, *, tasks: Sequence[Task] = ()) -> None:
        with self._scope:
            async with anyio.create_task_group() as tg:
                for _, task in tasks:
                    tg.start_soon(run, task)

    def end_input(self) -> None:
        self._scope.cancel()

    async def push_audio(self, pcm: bytes) -> None:
        self.audio += len(pcm)
        self.loud += len(pcm) if np.abs(np.frombuffer(pcm, dtype="<i2")).max() > 1000 else 0


class Admitted:
    """Every call admitted, with a quiet session; counts what is live."""

    def __init__(self) -> None:
        self.live = 0
        self.calls = 0
        self.sessions: list[QuietSession] = []

    def admit(self, call_id: str, dialled: str) -> int | None:
        self.live += 1
        self.calls += 1
        return None

    def new_session(self, call_id: str, sink: CallSink, session_id: str | None = None) -> Session:
        self.sessions.append(session := QuietSession())
        return cast(Session, session)

    async def release(self, call_id: str) -> None:
        self.live -= 1


@asynccontextmanager
async def sip_alone(admission: Admitted) -> AsyncIterator[tuple[int, anyio.CancelScope]]:
    """A SIP server on a free port with no HTTP server; cancel the scope to stop it."""
    port = free_udp_port()
    server = SipServer(SipConfig(listen=(f"udp:127.0.0.1:{port}",)), admission)
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def serve(*, task_status: TaskStatus[None]) -> None:
            with scope:
                await server.run(task_status=task_status)

        await tg.start(serve)
        yield port, scope
        scope.cancel()


@pytest.mark.anyio
async def test_at_shutdown_a_call_in_progress_gets_a_bye() -> None:
    admission = Admitted()
    with anyio.fail_after(30):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with sip_alone(admission) as (port, server), anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)

                async def stop_once_answered() -> None:
                    await phone.first.wait()
                    server.cancel()

                tg.start_soon(stop_once_answered)
                status = await sipp(port, "agent_hangs_up.xml", phone.port)
                await phone.stopped.wait()
    assert status == 0
    assert admission.calls == 1
    assert admission.live == 0


@pytest.mark.anyio
async def test_an_offer_with_no_codec_in_common_gets_488() -> None:
    admission = Admitted()
    with anyio.fail_after(30):
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
            sip_alone(admission) as (port, _),
        ):
            status = await sipp(port, "caller_offers_g722.xml", Phone(sock).port)
    assert status == 0
    assert admission.live == 0


@pytest.mark.anyio
async def test_the_callers_audio_reaches_the_session_at_16_khz() -> None:
    admission = Admitted()
    with anyio.fail_after(30):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            tone = (np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE) * 8000).astype("<i2")
            mulaw = pcm16_to_ulaw(tone.tobytes())
            phone.say([mulaw[i : i + FRAME] for i in range(0, RATE, FRAME)])  # 1 s of 440 Hz
            async with sip_alone(admission) as (port, _), anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                status = await sipp(port, "caller_hangs_up.xml", phone.port, pause_ms=2000)
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert status == 0
    assert admission.live == 0
    (session,) = admission.sessions
    # 2 s of 20 ms ticks, at 16 kHz (the resampler holds a few ms back)
    assert 1.8 * 32000 <= session.audio <= 2.2 * 32000
    assert 0.8 * 32000 <= session.loud <= 1.1 * 32000  # the tone, through the jitter buffer


@pytest.mark.anyio
async def test_a_barge_in_reports_what_went_out_on_the_wire() -> None:
    stream = RtpStream(0, remote=("127.0.0.1", 9), ssrc=1)
    sink = SipSink(stream, "test")
    with anyio.fail_after(5):
        await sink.send_audio(1, b"\x01\x00" * 800)  # 100 ms of reply 1
        for _ in range(2):  # 40 ms go out
            stream.tick()
        assert await sink.clear_audio(1) == 320
        _, packet, _ = stream.tick()
        assert packet is not None
        assert bytes(packet)[12:] == QUIET  # the next tick after a clear is silence
        await sink.send_audio(2, b"\x01\x00" * 400)
        stream.tick()
        assert await sink.clear_audio(2) == 160


@pytest.mark.anyio
async def test_rtp_ports_skip_one_in_use() -> None:
    with anyio.fail_after(5):
        held = [await anyio.create_udp_socket(local_host="127.0.0.1") for _ in range(8)]
        busy = next(
            s.extra(SocketAttribute.local_port)
            for s in held
            if s.extra(SocketAttribute.local_port) % 2 == 0
        )
        ports = RtpPorts(busy, busy + 2)
        try:
            sock, rtcp, port = await ports.open("127.0.0.1")
            held += [sock, rtcp]
        finally:
            for s in held:
                await s.aclose()
    assert port == busy + 2


def test_only_the_allowed_networks_may_call() -> None:
    allowed = source_filter(["127.0.0.1/32", "10.0.0.0/8"])
    assert allowed(("127.0.0.1", 5060))
    assert allowed(("10.1.2.3", 5060))
    assert not allowed(("127.0.0.2", 5060))
    assert not allowed(("192.168.1.1", 5060))
    assert not allowed(("not-an-address", 5060))


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"rtp_ports": [30000, 20000]}, "30000 is above 20000"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "is not a network"),
        ({"listen": ["udp:0.0.0.0:5060"]}, "needs a public_address"),
        ({"listen": ["tls:127.0.0.1:5060"]}, "matching regex"),
        ({"listen": ["udp:127.0.0.1:70000"]}, "out of range"),
        ({"listn": ["udp:127.0.0.1:5060"]}, "unknown field"),
    ],
)
def test_a_bad_sip_section_is_refused_with_its_place_and_reason(
    section: dict[str, object], problem: str
) -> None:
    raw = msgspec.json.encode({"name": "x", "server": {"sip": section}})  # YAML reads JSON
    with pytest.raises(ConfigError, match=re.escape("$.server.sip") + ".*" + problem):
        parse_config(raw, ".yaml")


def test_the_sip_section_is_off_unless_it_listens() -> None:
    assert parse_config(b"name: x", ".yaml").server.sip.listen == ()
    sip = parse_config(b"name: x\nserver: {sip: {listen: [udp:127.0.0.1:5062]}}", ".yaml")
    assert sip.server.sip.listen == ("udp:127.0.0.1:5062",)
    assert sip.server.sip.allowed_networks == ("127.0.0.0/8", "::1/128")


def test_serve_checks_the_sip_flag_as_it_checks_the_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--sip", "0.0.0.0:5060"]) == 2
    assert "needs a public_address" in capsys.readouterr().err
    assert main(["serve", "--sip", "127.0.0.1"]) == 2
    assert "matching regex" in capsys.readouterr().err
