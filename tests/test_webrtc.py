"""WebRTC calls: a real server process, real aiortc callers, real speech over Opus.

The callers speak espeak-ng speech into their track; the agent's replies are recorded from the
received track and transcribed with Whisper; the data channel must carry the events of the
native protocol.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import anyio
import av
import httpx
import numpy as np
import pytest
from anyio import wait_all_tasks_blocked

from agent.config import parse_config
from agent.config.schema import WebRtcConfig
from agent.webrtc_call import ice_servers
from agent.webrtc_io import AudioTrackOut, DataChannelWriter, WebRtcSink
from pipeline.asr.decoder import WhisperDecoder
from pipeline.clock import FakeClock
from pipeline.errors import ConfigError
from tests.audio import espeak, silence
from tests.server import RunningServer, running_server
from tests.transports.test_webrtc import CHROMIUM_OFFER
from tests.webrtc_client import calling, level, transcribe, wait_until_idle, webrtc_agent
from transports.native import Playback
from transports.webrtc import data_channel_protocol

GREETING = "Hi, this is Voxline. You can leave a message, or ask me what I can do."
SILENT = 50.0  # RMS of a frame that carries no speech (Opus-decoded digital silence is ~0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiortc is asyncio-only; the server under test runs on uvloop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(str(webrtc_agent(tmp_path_factory.mktemp("webrtc")))) as running:
        yield running


# -- the track -----------------------------------------------------------------------------------


def tone(seconds: float) -> bytes:
    samples = np.arange(round(48000 * seconds)) / 48000
    return (np.sin(samples * 2 * np.pi * 440) * 8000).astype("<i2").tobytes()


@contextlib.asynccontextmanager
async def ticking(track: AudioTrackOut) -> AsyncIterator[FakeClock]:
    """``track`` with its media clock running on a fake clock the test advances."""
    clock = FakeClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(track.feed, clock)
        await wait_all_tasks_blocked()
        yield clock
        tg.cancel_scope.cancel()
    track.stop()


async def next_frame(track: AudioTrackOut, clock: FakeClock) -> av.AudioFrame:
    """The frame aiortc gets at the next 20 ms tick."""
    clock.advance(0.02)
    return await track.recv()


@pytest.mark.anyio
async def test_barge_in_silences_the_outbound_track_from_the_next_frame() -> None:
    track = AudioTrackOut()
    with anyio.fail_after(5):
        async with ticking(track) as clock:
            track.write(3, tone(0.1))
            before = await next_frame(track, clock)
            track.clear(3)
            after = await next_frame(track, clock)
            track.write(3, tone(0.1))  # late audio of the interrupted reply
            later = await next_frame(track, clock)
    assert np.abs(before.to_ndarray()).max() > 1000
    assert not after.to_ndarray().any()
    assert not later.to_ndarray().any()
    assert (before.pts, after.pts, later.pts) == (0, 960, 1920)


@pytest.mark.anyio
async def test_the_track_sends_a_frame_per_tick_of_the_media_clock_and_none_before() -> None:
    track = AudioTrackOut()
    with anyio.fail_after(5):
        async with ticking(track) as clock:
            track.write(1, tone(0.1))
            with anyio.move_on_after(0) as waiting:  # no tick yet: aiortc waits
                await track.recv()
            clock.advance(0.06)  # three ticks at once (a stalled sender catches up)
            frames = [await track.recv() for _ in range(3)]
    assert waiting.cancelled_caught
    assert [frame.pts for frame in frames] == [0, 960, 1920]
    assert track.sent_samples(1) == 3 * 960


@pytest.mark.anyio
async def test_what_was_heard_is_what_the_track_sent_or_the_callers_playback_report() -> None:
    protocol = data_channel_protocol("s1")
    track = AudioTrackOut()
    sink = WebRtcSink(protocol, track, DataChannelWriter())
    with anyio.fail_after(5):
        async with ticking(track) as clock:
            await sink.send_audio(1, tone(0.1))
            for _ in range(2):
                await next_frame(track, clock)
            unreported = await sink.clear_audio(1)  # 2 frames went out, 3 were still queued
            await sink.end_audio(1)
            await sink.send_audio(2, tone(0.1))
            for _ in range(4):
                await next_frame(track, clock)
            playback = json.dumps({"type": "playback", "generation": 2, "samples": 1000})
            assert [type(e) for e in protocol.receive_text(playback)] == [Playback]
            reported = await sink.clear_audio(2)
    assert (unreported, reported) == (2 * 960, 1000)
    assert track.frames.buffered_samples == 0


# -- calls ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_spoken_call_gets_captions_and_a_spoken_answer(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(60):
        async with calling(server) as caller:
            started = await caller.wait_for_type("session.started")
            assert started["session_id"] == caller.session_id
            await caller.wait_for_type("audio.end", generation=1)  # the greeting
            caller.say(np.concatenate([espeak("What can you do?"), silence(1.5)]))
            latency = await caller.wait_for_type("turn.latency")
            end = await caller.wait_for_type("audio.end", generation=latency["generation"])
            await caller.frames_reach(end["_frame"] + 25)  # what was still on its way
            ended = await caller.hang_up()
    assert ended["reason"] == "bye"
    types = [e["type"] for e in caller.events]
    assert types[0] == "session.started"
    assert "speech.started" in types
    assert "transcript.partial" in types
    finals = [e["text"].lower() for e in caller.events if e["type"] == "transcript.final"]
    assert any("what can you do" in text for text in finals)
    said = "".join(e["delta"] for e in caller.events if e["type"] == "agent.text")
    assert "take a message" in said
    assert latency["latency_ms"]["total"] > 0
    start = next(
        e
        for e in caller.events
        if e["type"] == "audio.start" and e["generation"] == end["generation"]
    )
    assert start["sample_rate"] == 48000
    greeting = transcribe(whisper_decoder, caller.frames[: start["_frame"]])
    assert "leave a message" in greeting
    reply = transcribe(whisper_decoder, caller.frames[start["_frame"] : end["_frame"] + 25])
    assert "message" in reply


@pytest.mark.anyio
async def test_speaking_over_the_agent_stops_its_audio(server: RunningServer) -> None:
    with anyio.fail_after(60):
        async with calling(server) as caller:
            start = await caller.wait_for_type("audio.start", generation=1)
            caller.say(np.concatenate([espeak("What can you do?"), silence(1.5)]))
            interrupted = await caller.wait_for_type("interrupted")
            answer = await caller.wait_for(lambda e: e["type"] == "audio.start")
            await caller.hang_up()
    assert interrupted["generation"] == 1
    assert GREETING.startswith(interrupted["heard_text"])
    assert interrupted["heard_text"] != GREETING
    ends = [e for e in caller.events if e["type"] == "audio.end" and e["generation"] == 1]
    assert ends == [] or ends[0]["interrupted"]
    assert answer["generation"] > 1
    spoken = caller.frames[start["_frame"] : interrupted["_frame"]]
    assert level(spoken) > 300  # the greeting was playing ...
    # ... and stops: past what was already on its way, nothing until the answer starts
    gap = caller.frames[interrupted["_frame"] : answer["_frame"]]
    assert len(gap) > 25
    assert all(level([frame]) < SILENT for frame in gap[10:])


@pytest.mark.anyio
async def test_the_callers_playback_report_decides_what_was_heard(server: RunningServer) -> None:
    with anyio.fail_after(60):
        async with calling(server) as caller:
            start = await caller.wait_for_type("audio.start", generation=1)
            await caller.frames_reach(start["_frame"] + 50)  # a second of the greeting came
            played = {"type": "playback", "generation": 1, "samples": 24000}
            caller.channel.send(json.dumps(played))  # the browser has played half a second
            caller.channel.send(json.dumps({"type": "interrupt"}))
            interrupted = await caller.wait_for_type("interrupted")
            await caller.hang_up()
    assert interrupted["generation"] == 1
    assert interrupted["played_ms"] == 500
    assert GREETING.startswith(interrupted["heard_text"])
    assert "Voxline" not in interrupted["heard_text"]
    assert not [e for e in caller.events if e["type"] == "error"]


@pytest.mark.anyio
async def test_ten_calls_at_once_connect_hear_the_greeting_and_end_cleanly(
    server: RunningServer,
) -> None:
    levels: list[float] = []

    async def one_call() -> None:
        async with calling(server) as caller:
            end = await caller.wait_for_type("audio.end", generation=1)
            await caller.frames_reach(end["_frame"])
            levels.append(level(caller.frames))
            assert (await caller.hang_up())["reason"] == "bye"

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one_call)
        await wait_until_idle(server)
    assert len(levels) == 10
    assert min(levels) > 300


@pytest.mark.anyio
async def test_a_whip_call_ends_with_delete(server: RunningServer) -> None:
    with anyio.fail_after(30):
        async with calling(server, whip=True) as caller, httpx.AsyncClient() as http:
            assert caller.location is not None
            assert caller.location.startswith("/v1/webrtc/sessions/")
            await caller.wait_for_type("session.started")
            deleted = await http.delete(server.http + caller.location)
            ended = await caller.wait_for_type("session.ended")
            again = await http.delete(server.http + caller.location)
    assert deleted.status_code == 204
    assert ended["reason"] == "hangup"
    assert again.status_code == 404


# -- signalling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code", "words"),
    [
        ("text/plain", CHROMIUM_OFFER, 400, "bad_offer", "application/json or application/sdp"),
        ("application/sdp", "hello", 400, "bad_offer", "not SDP"),
        (
            "application/sdp",
            CHROMIUM_OFFER.replace("m=audio 43004", "m=video 43004"),
            400,
            "bad_offer",
            "audio only",
        ),
        (
            "application/json",
            '{"type": "offer", "sdp": "v=0", "agent": "nobody"}',
            400,
            "bad_offer",
            "exactly one audio section",
        ),
        ("application/sdp", "v=0\r\n" + "a=x\r\n" * 20000, 413, "offer_too_large", "limited"),
    ],
)
def test_a_bad_offer_gets_an_error_in_words(
    server: RunningServer, content_type: str, body: str, status: int, code: str, words: str
) -> None:
    response = httpx.post(
        f"{server.http}/v1/webrtc/offer", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]


def test_an_unknown_agent_or_voice_is_refused(server: RunningServer) -> None:
    for field, code in (("agent", "unknown_agent"), ("voice", "unknown_voice")):
        body = {"type": "offer", "sdp": CHROMIUM_OFFER, field: "nobody"}
        response = httpx.post(f"{server.http}/v1/webrtc/offer", json=body)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == code


def test_the_demo_page_and_its_choices_are_served(server: RunningServer) -> None:
    page = httpx.get(f"{server.http}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="call"' in page.text
    for asset in ("app.js", "style.css"):
        assert httpx.get(f"{server.http}/static/{asset}").status_code == 200
    options = httpx.get(f"{server.http}/v1/webrtc/config").json()
    assert [agent["name"] for agent in options["agents"]] == ["default"]
    assert [voice["name"] for voice in options["voices"]] == ["joe"]
    assert options["voices"][0]["language"] == "en-US"
    assert options["ice_servers"] == []


@pytest.mark.anyio
async def test_a_call_that_never_connects_is_dropped(server: RunningServer) -> None:
    no_candidates = "".join(
        line for line in CHROMIUM_OFFER.splitlines(keepends=True) if "candidate" not in line
    )
    with anyio.fail_after(30):
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{server.http}/v1/webrtc/offer", json={"type": "offer", "sdp": no_candidates}
            )
        assert response.status_code == 200
        await wait_until_idle(server)
    session = response.json()["session_id"][:8]
    (line,) = [line for line in server.log if f"webrtc call {session} ended" in line]
    assert "ended: connect_timeout" in line or "ended: ice_failed" in line


# -- config --------------------------------------------------------------------------------------


def test_no_ice_server_is_used_unless_configured() -> None:
    assert ice_servers(WebRtcConfig()) == []  # not None: aiortc would add a public STUN server
    config = parse_config(
        b"name: x\nserver:\n  webrtc:\n    ice_servers:\n"
        b"      - urls: [turn:turn.example.com:3478]\n        username: u\n        credential: p\n",
        ".yaml",
    )
    (server,) = ice_servers(config.server.webrtc)
    assert (server.urls, server.username, server.credential) == (
        ["turn:turn.example.com:3478"],
        "u",
        "p",
    )


def test_an_ice_server_url_must_be_stun_or_turn() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(b"name: x\nserver: {webrtc: {ice_servers: [{urls: [http://x]}]}}", ".yaml")
    assert info.value.path == "$.server.webrtc.ice_servers[0].urls[0]"
