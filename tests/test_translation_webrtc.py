"""Two-party rooms over WebRTC, on a real server: a browser-like caller (aiortc) names the room
and its language in its offer and shares the room with a ``/v1/stream?room=`` caller.

The shipped interpreter (the whisper engine: into English only, Joe's voice) with both members
speaking English: the cheapest room there is. What the WebRTC caller says reaches the WebSocket
caller as the interpreter's reply, text and audio (transcribed back by the embedded Whisper);
joins the room cannot take are refused at the offer, in HTTP; and when the WebRTC caller hangs
up, the room closes and the WebSocket caller's call ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection

from pipeline.asr.decoder import WhisperDecoder
from tests.audio import espeak
from tests.server import RunningServer, running_server
from tests.test_server import heard
from tests.test_translation_rooms import joined
from tests.webrtc_client import calling, wait_until_idle, webrtc_agent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    path = webrtc_agent(tmp_path_factory.mktemp("interpreter"), "interpreter.yaml")
    with running_server(str(path)) as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})  # aiortc runs on asyncio


async def an_offer() -> str:
    """A complete offer's SDP, from a peer connection that is closed again."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.anyio
async def test_a_webrtc_caller_and_a_websocket_caller_share_a_room(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    offers = f"{server.http}/v1/webrtc/offer"
    with anyio.fail_after(120):
        async with (
            websockets.connect(f"{server.ws}/v1/stream?room=desk-w&language=en") as ws,
            httpx.AsyncClient() as http,
        ):
            options = (await http.get(f"{server.http}/v1/webrtc/config")).json()
            listener = await joined(ws)
            async with calling(server, room=("desk-w", "en")) as caller:
                started = await caller.wait_for_type("session.started")
                sdp = await an_offer()
                full = await http.post(
                    offers,
                    content=sdp,
                    params={"room": "desk-w", "language": "en"},
                    headers={"Content-Type": "application/sdp"},
                )
                spanish = await http.post(
                    offers,
                    json={"type": "offer", "sdp": sdp, "room": "desk-x", "language": "es"},
                )
                caller.say(espeak("Where is the train station?", wpm=140))
                end = await listener.receive_until(lambda e: e["type"] == "audio.end")
                final = await caller.wait_for_type("transcript.final")
                ended = await caller.hang_up()
            closed = await listener.receive_until(lambda e: e["type"] == "session.ended")
        await wait_until_idle(server)
    said = "".join(
        e["delta"]
        for e in listener.events
        if e["type"] == "agent.text" and e["generation"] == end["generation"]
    )
    assert options["agents"][0]["engine"] == "translate"
    assert options["rooms"] == {"languages": ["en"]}  # whisper: into English only
    assert started["sample_rate"] == 48000
    assert "station" in final["text"].lower(), final
    assert final["language"] == "en"
    assert "station" in said.lower(), said
    assert "station" in heard(whisper_decoder, bytes(listener.audio[end["generation"]])), said
    assert (full.status_code, full.json()["error"]["code"]) == (409, "room_full"), full.text
    assert "desk-w" in full.json()["error"]["message"]
    assert (spanish.status_code, spanish.json()["error"]["code"]) == (400, "no_voice")
    assert ended["reason"] == "bye"
    assert closed["reason"] == "room_closed"
