"""A WebRTC caller for tests (aiortc), and the agent file the WebRTC tests serve.

:func:`calling` connects a :class:`Caller` to a running server: its microphone is an
:class:`~agent.webrtc_io.AudioTrackOut` the test writes speech into (silence otherwise), the
reply audio is recorded frame by frame, and every data-channel event is kept with the number
of audio frames received when it arrived (``event["_frame"]``), so a test can cut the audio of
one reply out of the recording.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import av
import httpx
import msgspec
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from agent.webrtc_call import use_host_addresses
from agent.webrtc_io import AudioTrackOut, pcm_of
from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from pipeline.clock import MonotonicClock
from tests.audio import resample
from tests.server import ROOT, RunningServer
from transports.webrtc import InboundFrames

Event = dict[str, Any]


def webrtc_agent(folder: Path, agent: str = "default.yaml", **webrtc: Any) -> Path:
    """The default agent (or ``configs/{agent}``), with WebRTC host candidates on loopback (the
    machine may have no other interface) and short timeouts (a vanished caller is noticed
    quickly)."""
    config = msgspec.yaml.decode((ROOT / "configs" / agent).read_bytes())
    settings = {
        "host_addresses": ["127.0.0.1"],
        "connect_timeout_s": 5,
        "media_timeout_s": 3,
        **webrtc,
    }
    config.setdefault("server", {})["webrtc"] = settings
    path = folder / "webrtc-agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    return path


class Caller:
    """One call's client side; see :func:`calling`."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = AudioTrackOut(jitter_s=60)
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.events: list[Event] = []
        #: the reply audio: 20 ms frames of 48 kHz mono PCM16
        self.frames: list[bytes] = []
        self.session_id: str | None = None
        self.location: str | None = None
        self._send, self._receive = anyio.create_memory_object_stream[Event](10_000)
        self._frame = anyio.Event()

    def _on_message(self, message: str | bytes) -> None:
        assert isinstance(message, str)
        event: Event = json.loads(message)
        event["_frame"] = len(self.frames)
        self.events.append(event)
        self._send.send_nowait(event)

    async def wait_for(self, predicate: Callable[[Event], bool]) -> Event:
        """The next event (from now on) that ``predicate`` accepts."""
        async for event in self._receive:
            if predicate(event):
                return event
        raise AssertionError("the data channel closed")

    async def wait_for_type(self, kind: str, **fields: Any) -> Event:
        return await self.wait_for(
            lambda e: e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
        )

    async def frames_reach(self, count: int) -> None:
        while len(self.frames) < count:
            await self._frame.wait()

    def say(self, pcm16k: np.ndarray[Any, Any]) -> None:
        """Speak ``pcm16k`` (16 kHz int16) into the call, then silence."""
        self.mic.write(1, resample(pcm16k, 16000, 48000).astype("<i2").tobytes())

    async def record(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            pcm, channels = pcm_of(frame)
            samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
            self.frames.append(samples.mean(axis=1).astype("<i2").tobytes())
            self._frame.set()
            self._frame = anyio.Event()

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def hang_up(self) -> Event:
        """``bye``; the server's ``session.ended``."""
        self.channel.send(json.dumps({"type": "bye"}))
        return await self.wait_for_type("session.ended")


@asynccontextmanager
async def calling(
    server: RunningServer,
    *,
    whip: bool = False,
    transfer: bool = False,
    room: tuple[str, str] | None = None,
) -> AsyncIterator[Caller]:
    """A connected :class:`Caller` (``transfer``: its offer says it carries out transfers;
    ``room``: the room it joins and the language it speaks there); closed (and its recorder
    stopped) at the end."""
    use_host_addresses(["127.0.0.1"])
    caller = Caller()
    try:
        async with anyio.create_task_group() as tg, httpx.AsyncClient() as http:
            await caller.pc.setLocalDescription(await caller.pc.createOffer())
            offer = caller.pc.localDescription
            assert offer is not None
            url = f"{server.http}/v1/webrtc/offer"
            joining = {"room": room[0], "language": room[1]} if room is not None else {}
            if whip:
                headers = {"Content-Type": "application/sdp"}
                response = await http.post(url, content=offer.sdp, headers=headers, params=joining)
                assert response.status_code == 201, response.text
                caller.location = response.headers["location"]
                answer = response.text
            else:
                body = {
                    "type": "offer",
                    "sdp": offer.sdp,
                    **({"transfer": True} if transfer else {}),
                    **joining,
                }
                response = await http.post(url, json=body)
                assert response.status_code == 200, response.text
                caller.session_id = response.json()["session_id"]
                answer = response.json()["sdp"]
            await caller.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            (transceiver,) = caller.pc.getTransceivers()
            tg.start_soon(caller.record, transceiver.receiver.track)
            tg.start_soon(caller.mic.feed, MonotonicClock())
            try:
                yield caller
            finally:
                with anyio.CancelScope(shield=True):
                    await caller.pc.close()
                caller.mic.stop()
                tg.cancel_scope.cancel()  # the microphone's clock
    finally:
        caller.close()
        use_host_addresses(())


def level(frames: list[bytes]) -> float:
    """RMS of PCM16 frames."""
    if not frames:
        return 0.0
    samples = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def transcribe(decoder: WhisperDecoder, frames: list[bytes]) -> str:
    """What Whisper hears in 48 kHz mono frames."""
    inbound = InboundFrames()
    pcm = b""
    for frame in frames:
        chunk = inbound.convert(frame, 1, 48000)
        if chunk is not None:
            pcm += chunk.pcm
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


async def wait_until_idle(server: RunningServer) -> None:
    """Until the server has no session left (it polls ``/health/ready``)."""
    async with httpx.AsyncClient() as http:
        for _ in itertools.count():
            if not (await http.get(f"{server.http}/health/ready")).json()["sessions"]:
                return
            await anyio.sleep(0.05)
