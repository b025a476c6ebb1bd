"""Voice to voice over SIP against the native WebSocket, one ``voxline serve --sip``, one run.

Calls are placed with sipp (tests/sip/agent_hangs_up.xml: INVITE offering PCMU, ACK, the agent's
BYE answered); the caller's media is this process's own UDP socket (the SDP points there), which
sends espeak-ng speech as 20 ms μ-law frames at real-time pace and timestamps every RTP packet
that arrives. "Loud": a packet with a sample above |300| after μ-law decoding. All times are the
bench's own clock.

voice to voice
    the same utterances as bench.voice_to_voice's scripted call (``--turns``), once over
    /v1/stream (that module's caller: the baseline) and once over SIP: from sending the packet
    holding the utterance's last loud sample to the arrival of the first loud reply packet.
barge-in (SIP)
    "What can you do?", then 0.8-2.0 s into the answer's audio "Hello, good morning." over it:
    from sending the packet holding the interruption's first loud sample to the arrival of the
    reply's last loud packet (before 200 ms of quiet).
concurrency (SIP)
    N calls at once (``--calls``): greeting, "Hello, good morning.", "What can you do?", bye.
    Late: a packet arriving more than 60 ms after its slot (20 ms apart from the call's first
    packet; the server paces RTP by its media clock, so this is the server falling behind);
    missing: sequence numbers never seen.

Run: ``python -m bench.sip_voice_to_voice`` (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL

import anyio
import numpy as np
from anyio.abc import SocketAttribute, UDPSocket

from agent.caller_audio import espeak
from agent.server_process import ROOT, free_port, running_server
from bench.utterances import utterance
from bench.v2v_report import load
from bench.voice_to_voice import (
    BARGE_DELAYS,
    CONCURRENT_SCRIPT,
    INTERRUPTION,
    SCRIPT,
    TRIGGER,
    scripted_call,
)
from transports.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from transports.rtp.packet import RtpPacket, parse_rtp

SIPP = "/usr/bin/sipp"
SCENARIO = ROOT / "tests" / "sip" / "agent_hangs_up.xml"
RATE, FRAME = 8000, 160
QUIET = b"\xff" * FRAME
LOUD = 300
GOODBYE = "Bye, goodbye."


@dataclass
class Speech:
    frames: list[bytes]
    first_loud: int  # frame index
    last_loud: int


def sip_speech(text: str) -> Speech:
    pcm = espeak(text, RATE)
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LOUD)
    data = pcm16_to_ulaw(pcm.astype("<i2").tobytes())
    frames = [data[i : i + FRAME].ljust(FRAME, b"\xff") for i in range(0, len(data), FRAME)]
    return Speech(frames, int(loud[0]) // FRAME, int(loud[-1]) // FRAME)


@dataclass
class Heard:
    at: float
    sequence: int
    loud: bool


@dataclass
class SipPhone:
    sock: UDPSocket
    heard: list[Heard] = field(default_factory=list)
    mic: deque[tuple[bytes, str]] = field(default_factory=deque)
    sent: dict[str, float] = field(default_factory=dict)  # mark -> send time
    peer: tuple[str, int] | None = None
    stopped: bool = False

    async def listen(self) -> None:
        while True:
            with anyio.move_on_after(1.0 if self.heard else None):
                data, self.peer = await self.sock.receive()
                packet = parse_rtp(data)
                if isinstance(packet, RtpPacket):
                    pcm = np.frombuffer(ulaw_to_pcm16(packet.payload), dtype="<i2")
                    loud = bool(pcm.size) and int(np.abs(pcm.astype(np.int32)).max()) > LOUD
                    self.heard.append(Heard(time.perf_counter(), packet.sequence, loud))
                continue
            self.stopped = True
            return

    async def talk(self) -> None:
        start, sequence = time.perf_counter(), 1000
        for n in range(10_000_000):
            await anyio.sleep(max(0.0, start + (n + 1) * 0.02 - time.perf_counter()))
            if self.stopped:
                return
            if self.peer is None:
                continue
            payload, mark = self.mic.popleft() if self.mic else (QUIET, "")
            packet = RtpPacket(0, sequence % 65536, sequence * FRAME, 0x5151, payload)
            sequence += 1
            await self.sock.sendto(bytes(packet), *self.peer)
            if mark:
                self.sent[mark] = time.perf_counter()

    def say(self, speech: Speech, name: str) -> None:
        for i, frame in enumerate(speech.frames):
            mark = {speech.first_loud: f"{name}:onset", speech.last_loud: f"{name}:end"}.get(i, "")
            self.mic.append((frame, mark))

    async def until(self, mark: str) -> float:
        while mark not in self.sent:  # noqa: ASYNC110 -- the talker's clock
            await anyio.sleep(0.01)
        return self.sent[mark]

    async def first_loud_after(self, t: float, within: float = 15.0) -> float | None:
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline and not self.stopped:
            found = next((h.at for h in self.heard if h.at > t and h.loud), None)
            if found is not None:
                return found
            await anyio.sleep(0.01)
        return None

    async def quiet_after(self, t: float, packets: int) -> float | None:
        """The last loud packet after ``t`` that ``packets`` quiet ones followed."""
        while not self.stopped:
            after = [h for h in self.heard if h.at > t]
            last = max((i for i, h in enumerate(after) if h.loud), default=None)
            if last is not None and len(after) - last - 1 >= packets:
                return after[last].at
            await anyio.sleep(0.02)
        return None


@dataclass
class SipResult:
    v2v: list[float | None] = field(default_factory=list)
    barge: list[float | None] = field(default_factory=list)
    late: int = 0
    missing: int = 0
    packets: int = 0
    sipp: int | None = None


async def sip_call(sip_port: int, script: Sequence[str], barges: int = 0) -> SipResult:
    """One call: greeting, ``script`` (each answered), ``barges`` barge-ins, goodbye."""
    speeches = {text: sip_speech(text) for text in (*script, TRIGGER, INTERRUPTION, GOODBYE)}
    out = SipResult()
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        phone = SipPhone(sock)
        port = sock.extra(SocketAttribute.local_port)
        command = ["timeout", "150", SIPP, f"127.0.0.1:{sip_port}", "-sf", str(SCENARIO)]
        command += ["-m", "1", "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin"]
        command += ["-timeout", "120s", "-key", "rtp_ip", "127.0.0.1", "-key", "rtp_port"]
        command += [str(port)]

        async def caller() -> None:
            await phone.quiet_after(0.0, 50)  # the greeting is over
            for i, text in enumerate(script):
                phone.say(speeches[text], f"t{i}")
                end = await phone.until(f"t{i}:end")
                first = await phone.first_loud_after(end)
                out.v2v.append(None if first is None else first - end)
                await phone.quiet_after(end, 50)
                await anyio.sleep(0.3)
            for b in range(barges):
                phone.say(speeches[TRIGGER], f"b{b}")
                end = await phone.until(f"b{b}:end")
                first = await phone.first_loud_after(end)
                if first is None:
                    continue
                await anyio.sleep(max(0.0, first + BARGE_DELAYS[b % 5] - time.perf_counter()))
                phone.say(speeches[INTERRUPTION], f"i{b}")
                onset = await phone.until(f"i{b}:onset")
                last = await phone.quiet_after(onset, 10)
                out.barge.append(None if last is None else max(0.0, last - onset))
                await phone.quiet_after(onset, 50)
                await anyio.sleep(0.3)
            phone.say(speeches[GOODBYE], "bye")

        async with anyio.create_task_group() as tg:
            tg.start_soon(phone.listen)
            tg.start_soon(phone.talk)
            tg.start_soon(caller)
            process = await anyio.open_process(command, stdout=DEVNULL, stderr=DEVNULL)
            async with process:
                out.sipp = await process.wait()
            while not phone.stopped:  # noqa: ASYNC110 -- RTP stops after the BYE
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    if phone.heard:
        first = phone.heard[0]
        base = first.at
        seqs = {h.sequence for h in phone.heard}
        span = (phone.heard[-1].sequence - first.sequence) % 65536 + 1
        out.missing = span - len(seqs)
        out.late = sum(
            h.at - (base + ((h.sequence - first.sequence) % 65536) * 0.02) > 0.06
            for h in phone.heard
        )
        out.packets = len(phone.heard)
    return out


def median_ms(values: Sequence[float | None]) -> str:
    got = [v for v in values if v is not None]
    return f"{statistics.median(got) * 1000:.0f} ms" if got else "-"


async def run(args: argparse.Namespace) -> None:
    script = list(SCRIPT[: args.turns])
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory(prefix="voxline-sip-bench-") as folder:
        config = Path(folder) / "sip-bench.yaml"
        default = (ROOT / "configs" / "default.yaml").read_text()
        section = "\nserver:\n  max_sessions: 8\n  sip:\n    ring_ms: 0\n"
        config.write_text(default.replace("\nserver:\n", section))
        sip_port = free_port()
        with running_server(str(config), args=["--sip", f"127.0.0.1:{sip_port}"]) as server:
            print(f"load at start {load()}")
            turns, _ = await scripted_call(server.ws, [utterance(t) for t in script])
            ws = [t.latency for t in turns]
            print(f"load before SIP {load()}")
            sip = await sip_call(sip_port, script, barges=args.barge_ins)
            print(f"\nvoice to voice, {len(script)} turns: WebSocket p50 {median_ms(ws)}, "
                  f"SIP p50 {median_ms(sip.v2v)} (sipp {sip.sipp})")  # fmt: skip
            for text, w, s in zip(script, ws, sip.v2v, strict=False):
                print(f"  {text!r}: ws {median_ms([w])}, sip {median_ms([s])}")
            barge = [None if b is None else round(b * 1000) for b in sip.barge]
            print(f"barge-in on the wire (onset -> last loud packet), ms: {barge}, "
                  f"p50 {median_ms(sip.barge)}")  # fmt: skip
            for n in args.calls:
                at = load()
                results: list[SipResult] = []

                async def one(index: int, into: list[SipResult]) -> None:
                    await anyio.sleep(index * 0.5)
                    into.append(await sip_call(sip_port, list(CONCURRENT_SCRIPT)))

                async with anyio.create_task_group() as tg:
                    for index in range(n):
                        tg.start_soon(one, index, results)
                v2v = [v for r in results for v in r.v2v]
                late = sum(r.late for r in results)
                missing = sum(r.missing for r in results)
                packets = sum(r.packets for r in results)
                print(f"{n} SIP calls (load {at}): v2v p50 {median_ms(v2v)}, "
                      f"{late} late / {missing} missing of {packets} packets, "
                      f"sipp {[r.sipp for r in results]}")  # fmt: skip
            print(f"load at end {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--barge-ins", type=int, default=3)
    parser.add_argument(
        "--calls", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 6]
    )
    anyio.run(run, parser.parse_args(), backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
