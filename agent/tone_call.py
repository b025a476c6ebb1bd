"""The placeholder call: a WebSocket client hears a tone; its audio is taken in and counted.

Protocol (a preview of /v1/stream): the client's first text message is
``{"type": "hello", "sample_rate": 16000, "encoding": "pcm16"}``; the server answers
``{"type": "session.started", "session_id": ...}`` and streams PCM16 tone frames in binary
messages at real-time pace, while binary messages from the client are taken as PCM16 audio.
Bad messages get an ``error`` event and the call goes on.
"""

from __future__ import annotations

import uuid
from typing import Literal

import anyio
import anyio.lowlevel
import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from agent.config import ToneConfig
from pipeline.channels import Policy
from pipeline.clock import MediaClock, MonotonicClock
from pipeline.events import AudioFrame
from pipeline.pacing import Pacer
from pipeline.runtime import SessionRuntime
from pipeline.tone import ToneSource

MAX_FRAME_BYTES = 64 * 1024


class Hello(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["hello"]
    sample_rate: int
    encoding: Literal["pcm16"] = "pcm16"


_hello = msgspec.json.Decoder(Hello)


def error_event(code: str, message: str) -> str:
    return msgspec.json.encode({"type": "error", "code": code, "message": message}).decode()


async def wait_for_hello(ws: WebSocket) -> Hello:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            await ws.send_text(error_event("audio_before_hello", "send a hello message first"))
            continue
        try:
            hello = _hello.decode(text)
        except msgspec.DecodeError as error:
            await ws.send_text(error_event("bad_hello", str(error)))
            continue
        if not 8000 <= hello.sample_rate <= 48000:
            await ws.send_text(error_event("bad_hello", "sample_rate must be 8000-48000 Hz"))
            continue
        return hello


async def tone_call(ws: WebSocket, tone: ToneConfig) -> None:
    """Serve one call until the client leaves."""
    await ws.accept()
    try:
        hello = await wait_for_hello(ws)
    except WebSocketDisconnect:
        return
    session_id = uuid.uuid4().hex
    await ws.send_text(
        msgspec.json.encode({"type": "session.started", "session_id": session_id}).decode()
    )
    async with SessionRuntime(session_id) as runtime:
        # Real-time audio from the network is never blocked: coalesce when the consumer lags.
        inbound = runtime.channel("ws->in", 16, Policy.COALESCE)
        # The tone is produced as fast as the pacer takes it: backpressure.
        tone_out = runtime.channel("tone->pacer", 4, Policy.BLOCK)
        paced = runtime.channel("pacer->ws", 4, Policy.BLOCK)
        source = ToneSource(
            session_id, hello.sample_rate, frequency_hz=tone.frequency_hz, amplitude=tone.amplitude
        )
        runtime.start_stage("tone", source, inbound, tone_out)
        runtime.start_stage("pacer", Pacer(MonotonicClock()), tone_out, paced)

        async def send_audio() -> None:
            try:
                async for event in paced:
                    if isinstance(event, AudioFrame):
                        await ws.send_bytes(event.pcm)
            except (WebSocketDisconnect, RuntimeError):
                runtime.cancel()  # the client left mid-send

        async def receive_audio() -> None:
            clock = MediaClock(hello.sample_rate)
            try:
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    data = message.get("bytes")
                    if data is None:
                        continue
                    if len(data) % 2 or len(data) > MAX_FRAME_BYTES:
                        await ws.send_text(
                            error_event(
                                "bad_audio", "binary frames are PCM16: even length, <= 64 KiB"
                            )
                        )
                        continue
                    await inbound.send(
                        AudioFrame(
                            session_id=session_id,
                            sample_rate=hello.sample_rate,
                            pcm=data,
                            pts=clock.advance(len(data) // 2),
                        )
                    )
            finally:
                runtime.cancel()

        async def drain_inbound() -> None:
            async for _ in inbound:
                await anyio.lowlevel.checkpoint()

        runtime.start_task("send", send_audio)
        runtime.start_task("receive", receive_audio)
        runtime.start_task("inbound", drain_inbound)
