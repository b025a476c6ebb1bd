"""Realtime over WebRTC (``POST /v1/realtime/calls``): OpenAI's browser flow, against Voxline.

The sink's audio events unit by unit (a fake clock drives the outgoing track); then a real
server process and an aiortc caller doing what OpenAI's docs show a browser doing: an audio
track and an ``oai-events`` data channel, the SDP offer POSTed with a Bearer token, Realtime
events on the channel, espeak-ng speech on the track, the reply heard back by Whisper. Every
server event on the channel is validated against the ``openai`` SDK's model of its type.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from anyio import wait_all_tasks_blocked

from agent.realtime_call import RealtimeSink
from agent.realtime_webrtc import RealtimeEvents
from agent.realtime_webrtc_route import BadSession, parse_call
from agent.session_events import AgentText, Interrupted
from agent.turns import TurnConfig
from agent.webrtc_call import use_host_addresses
from agent.webrtc_io import AudioTrackOut, DataChannelWriter
from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from pipeline.clock import FakeClock, MonotonicClock
from pipeline.errors import ProtocolError
from pipeline.media import decode_audio
from tests.audio import espeak, silence, write_wav
from tests.server import RunningServer, running_server
from tests.test_browser import CHROMIUM, RECORDING, chromium
from tests.test_webrtc import SILENT, next_frame, ticking
from tests.transports.realtime_support import SERVER_MODELS, client, fresh, tone, types
from tests.transports.test_webrtc import CHROMIUM_OFFER
from tests.webrtc_client import (
    Caller,
    Event,
    level,
    transcribe,
    wait_until_idle,
    webrtc_agent,
)

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiortc is asyncio-only; the server under test runs on uvloop


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


# -- the sink: audio on the track, output_audio_buffer.* on the channel ------------------------


class Channel:
    """The open end of a data channel, for :class:`DataChannelWriter` (what it sends, kept)."""

    readyState = "open"
    bufferedAmount = 0

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, message: str) -> None:
        self.messages.append(message)

    def on(self, event: str, handler: Callable[..., None]) -> None:
        pass

    def events(self) -> list[dict[str, Any]]:
        """What was sent since the last call, each event validated against the SDK."""
        sent, self.messages = [json.loads(m) for m in self.messages], []
        for event in sent:
            SERVER_MODELS[event["type"]].model_validate(event)
        return sent


@asynccontextmanager
async def realtime_events(clock: FakeClock) -> AsyncIterator[tuple[RealtimeEvents, Channel]]:
    protocol = fresh()
    channel = Channel()
    writer = DataChannelWriter()
    writer.attach(cast(RTCDataChannel, channel))
    events = RealtimeEvents(
        protocol,
        AudioTrackOut(24000),
        writer,
        lambda sender: RealtimeSink(protocol, sender, TurnConfig()),
        seed="tw",
        clock=clock,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(events.sink.watch_track)
        yield events, channel
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_reply_audio_goes_to_the_track_and_the_channel_says_when_it_starts_and_stops() -> (
    None
):
    clock = FakeClock()
    with anyio.fail_after(5):
        async with realtime_events(clock) as (events, channel):
            sink = events.sink
            async with ticking(sink.track) as track_clock:
                await sink.send_event(AgentText(1, "Hello there."))
                await sink.send_audio(1, tone(0.1, 24000))  # five frames
                await sink.end_audio(1)
                during = channel.events()
                for _ in range(5):
                    await next_frame(sink.track, track_clock)
                clock.advance(0.02)
                await wait_all_tasks_blocked()
                after = channel.events()
    kinds = types(during)
    assert "response.output_audio.delta" not in kinds
    assert kinds.index("response.content_part.added") < kinds.index("output_audio_buffer.started")
    assert kinds.index("output_audio_buffer.started") < kinds.index("response.done")
    assert "output_audio_buffer.stopped" not in kinds  # the track still holds it
    [started] = [e for e in during if e["type"] == "output_audio_buffer.started"]
    [done] = [e for e in during if e["type"] == "response.done"]
    assert started["response_id"] == done["response"]["id"]
    assert done["response"]["status"] == "completed"
    assert [(e["type"], e["response_id"]) for e in after] == [
        ("output_audio_buffer.stopped", started["response_id"])
    ]
    ids = [e["event_id"] for e in during + after]
    assert len(set(ids)) == len(ids)


@pytest.mark.anyio
async def test_a_barge_in_clears_the_track_and_reports_what_it_sent_as_heard() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):
        async with realtime_events(clock) as (events, channel):
            sink = events.sink
            async with ticking(sink.track) as track_clock:
                await sink.send_event(AgentText(1, "Hello there."))
                await sink.send_audio(1, tone(0.1, 24000))
                for _ in range(2):
                    await next_frame(sink.track, track_clock)
                heard = await sink.clear_audio(1)
                before = channel.events()
                await sink.send_event(Interrupted(1, "Hello", 40.0, rule="B1"))
                cleared = channel.events()
                silent = await next_frame(sink.track, track_clock)
                await sink.end_audio(1)
                clock.advance(0.02)
                await wait_all_tasks_blocked()
                later = channel.events()
    assert heard == 2 * 480
    assert "output_audio_buffer.cleared" not in types(before)  # after the response's end
    assert types(cleared)[-2:] == ["response.done", "output_audio_buffer.cleared"]
    assert cleared[-2]["response"]["status"] == "cancelled"
    assert not silent.to_ndarray().any()
    assert "output_audio_buffer.stopped" not in types(later)
    assert "output_audio_buffer.cleared" not in types(later)


@pytest.mark.anyio
async def test_the_clients_output_audio_buffer_clear_is_cleared_once() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):
        async with realtime_events(clock) as (events, channel):
            sink = events.sink
            await sink.send_event(AgentText(1, "Hello there."))
            await sink.send_audio(1, tone(0.1, 24000))
            [started] = of(channel.events(), "output_audio_buffer.started")
            client(events.protocol, {"type": "output_audio_buffer.clear"})  # the protocol's
            await events.realtime.flush()
            await sink.clear_audio(1)  # the session's interruption reaches the track
            await sink.send_event(Interrupted(1, "", 0.0))
            sent = channel.events()
    [cleared] = of(sent, "output_audio_buffer.cleared")
    assert cleared["response_id"] == started["response_id"]
    [done] = of(sent, "response.done")
    assert done["response"]["status"] == "cancelled"


# -- the offer's parts ----------------------------------------------------------------------------


def test_an_offer_with_a_session_is_parsed_and_a_bad_session_names_its_field() -> None:
    parsed = parse_call(CHROMIUM_OFFER, b'{"type": "realtime", "instructions": "Be brief."}')
    assert parsed.offer.summary.caller_sends
    assert parsed.session is not None
    assert parsed.session.instructions == "Be brief."
    assert parse_call(CHROMIUM_OFFER, None).session is None
    with pytest.raises(ProtocolError, match="not SDP"):
        parse_call("hello", None)
    with pytest.raises(BadSession) as bad:
        parse_call(CHROMIUM_OFFER, '{"type": "realtime", "instructions": 3}')
    assert (bad.value.code, bad.value.param) == ("invalid_value", "session.instructions")
    with pytest.raises(BadSession) as bad:
        parse_call(CHROMIUM_OFFER, "{not json")
    assert bad.value.code == "invalid_json"


# -- calls -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = str(webrtc_agent(tmp_path_factory.mktemp("realtime-webrtc")))
    with running_server(config, env={"VOXLINE_API_KEYS": KEY}) as running:
        yield running


class RealtimeCaller(Caller):
    """A browser as OpenAI's docs show it: a microphone track and an ``oai-events`` channel."""

    def __init__(self) -> None:  # Caller's, with OpenAI's channel label
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = AudioTrackOut(jitter_s=60)
        self.pc.addTrack(self.mic)
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", self._on_message)
        self.events: list[Event] = []
        self.frames: list[bytes] = []
        self.session_id: str | None = None
        self.location: str | None = None
        self._send, self._receive = anyio.create_memory_object_stream[Event](10_000)
        self._frame = anyio.Event()
        #: set when the peer connection has closed (or failed)
        self.gone = anyio.Event()
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState in ("closed", "failed"):
            self.gone.set()

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def validated(self) -> list[Event]:
        """The events so far, each checked against the SDK's model of its type."""
        for event in self.events:
            SERVER_MODELS[event["type"]].model_validate(
                {k: v for k, v in event.items() if k != "_frame"}
            )
        return self.events


@asynccontextmanager
async def calling(
    server: RunningServer,
    *,
    session: dict[str, Any] | None = None,
    token: str = KEY,
) -> AsyncIterator[RealtimeCaller]:
    """A connected :class:`RealtimeCaller`: the offer as ``application/sdp``, or as multipart
    with ``session``; closed at the end.

    As in OpenAI's docs, the offer is the one ``createOffer`` made, POSTed at once, before any
    candidate is gathered: the server learns the caller's address from its connectivity
    checks."""
    use_host_addresses(["127.0.0.1"])
    caller = RealtimeCaller()
    try:
        async with anyio.create_task_group() as tg, httpx.AsyncClient() as http:
            offer = await caller.pc.createOffer()
            assert "a=candidate" not in offer.sdp
            await caller.pc.setLocalDescription(offer)
            url = f"{server.http}/v1/realtime/calls"
            headers = {"Authorization": f"Bearer {token}"}
            if session is None:
                headers["Content-Type"] = "application/sdp"
                response = await http.post(url, content=offer.sdp, headers=headers)
            else:
                files = {
                    "sdp": (None, offer.sdp, "application/sdp"),
                    "session": (None, json.dumps(session), "application/json"),
                }
                response = await http.post(url, files=files, headers=headers)
            assert response.status_code == 201, response.text
            assert response.headers["content-type"].startswith("application/sdp")
            caller.location = response.headers["location"]
            answer = RTCSessionDescription(response.text, "answer")
            await caller.pc.setRemoteDescription(answer)
            (transceiver,) = caller.pc.getTransceivers()
            tg.start_soon(caller.record, transceiver.receiver.track)
            tg.start_soon(caller.mic.feed, MonotonicClock())
            try:
                yield caller
            finally:
                with anyio.CancelScope(shield=True):
                    await caller.pc.close()
                caller.mic.stop()
                tg.cancel_scope.cancel()
    finally:
        caller.close()
        use_host_addresses(())


@pytest.mark.anyio
async def test_a_spoken_call_over_webrtc_gets_events_on_the_channel_and_audio_on_the_track(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(90):
        async with calling(server) as caller, httpx.AsyncClient() as http:
            assert caller.location is not None
            assert caller.location.startswith("/v1/realtime/calls/rtc_")
            await caller.wait_for_type("session.created")
            update = {"type": "realtime", "instructions": "Be brief."}
            caller.send({"type": "session.update", "session": update})
            updated = await caller.wait_for_type("session.updated")
            caller.say(np.concatenate([espeak("What can you do?"), silence(1.5)]))
            done = await caller.wait_for_type("response.done")
            stopped = await caller.wait_for_type(
                "output_audio_buffer.stopped", response_id=done["response"]["id"]
            )
            await caller.frames_reach(stopped["_frame"] + 10)
            hung_up = await http.post(f"{server.http}{caller.location}/hangup", headers=AUTH)
            await caller.gone.wait()  # the server closed the connection
            again = await http.post(f"{server.http}{caller.location}/hangup", headers=AUTH)
            await wait_until_idle(server)
    events = caller.validated()
    assert updated["session"]["instructions"] == "Be brief."
    kinds = types(events)
    assert kinds[0] == "session.created"
    assert "response.output_audio.delta" not in kinds  # the audio is on the track
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio_transcript.delta",
        "output_audio_buffer.started",
        "response.done",
        "output_audio_buffer.stopped",
    ]
    assert [kinds.index(kind) for kind in order] == sorted(kinds.index(kind) for kind in order)
    [heard] = of(events, "conversation.item.input_audio_transcription.completed")
    assert "what can you do" in heard["transcript"].lower()
    said = "".join(e["delta"] for e in of(events, "response.output_audio_transcript.delta"))
    assert "take a message" in said
    assert done["response"]["status"] == "completed"
    assert kinds[kinds.index("response.done") + 1] == "rate_limits.updated"
    [started] = of(events, "output_audio_buffer.started")
    reply = transcribe(whisper_decoder, caller.frames[started["_frame"] : stopped["_frame"] + 10])
    assert "message" in reply
    assert (hung_up.status_code, again.status_code) == (200, 404)
    assert again.json()["error"]["code"] == "call_not_found"


@pytest.mark.anyio
async def test_a_multipart_offer_with_a_client_secret_sets_the_session_and_response_create_speaks(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(90):
        async with httpx.AsyncClient() as http:
            minted = await http.post(
                f"{server.http}/v1/realtime/client_secrets",
                json={"session": {"type": "realtime", "instructions": "From the secret."}},
                headers=AUTH,
            )
        assert minted.status_code == 200, minted.text
        secret = minted.json()["value"]
        session = {"type": "realtime", "audio": {"output": {"voice": "marin"}}}
        async with calling(server, session=session, token=secret) as caller:
            created = await caller.wait_for_type("session.created")
            caller.send({"type": "response.create"})
            done = await caller.wait_for_type("response.done")
            stopped = await caller.wait_for_type(
                "output_audio_buffer.stopped", response_id=done["response"]["id"]
            )
            await caller.frames_reach(stopped["_frame"] + 10)
            caller.channel.close()  # the caller hangs up by closing the channel
            await wait_until_idle(server)
    events = caller.validated()
    assert created["session"]["instructions"] == "From the secret."
    assert created["session"]["audio"]["output"]["voice"] == "marin"
    [started] = of(events, "output_audio_buffer.started")
    assert started["response_id"] == done["response"]["id"]
    said = "".join(e["delta"] for e in of(events, "response.output_audio_transcript.delta"))
    assert "leave a message" in said.lower()
    greeting = transcribe(
        whisper_decoder, caller.frames[started["_frame"] : stopped["_frame"] + 10]
    )
    assert "message" in greeting
    assert "error" not in types(events)


@pytest.mark.anyio
async def test_speaking_over_a_response_clears_the_track_and_keeps_what_was_heard(
    server: RunningServer,
) -> None:
    with anyio.fail_after(60):
        async with calling(server) as caller:
            await caller.wait_for_type("session.created")
            caller.send({"type": "response.create"})  # the greeting, a long sentence
            started = await caller.wait_for_type("output_audio_buffer.started")
            await caller.frames_reach(started["_frame"] + 25)
            caller.say(np.concatenate([espeak("What can you do?"), silence(1.5)]))
            cleared = await caller.wait_for_type("output_audio_buffer.cleared")
            answer = await caller.wait_for_type("output_audio_buffer.started")
    events = caller.validated()
    cut = next(e for e in of(events, "response.done") if e["response"]["status"] == "cancelled")
    assert cut["response"]["id"] == started["response_id"] == cleared["response_id"]
    assert cut["response"]["status_details"]["reason"] == "turn_detected"
    kinds = types(events)
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index(
        "output_audio_buffer.cleared"
    )
    assert "output_audio_buffer.stopped" not in kinds[: kinds.index("output_audio_buffer.cleared")]
    assert answer["response_id"] != started["response_id"]
    # the item keeps the text the track sent: part of the greeting
    [item] = [
        e["item"]
        for e in of(events, "response.output_item.done")
        if e["response_id"] == started["response_id"]
    ]
    heard = item["content"][0]["transcript"] if item["content"] else ""
    full = "".join(
        e["delta"]
        for e in of(events, "response.output_audio_transcript.delta")
        if e["response_id"] == started["response_id"]
    )
    assert item["status"] == "incomplete"
    assert len(heard) <= len(full)
    gap = caller.frames[cleared["_frame"] + 10 : answer["_frame"]]
    assert all(level([frame]) < SILENT for frame in gap)  # silent from the barge-in on


@pytest.mark.anyio
async def test_without_turn_detection_a_commit_ends_the_turn_the_track_brought(
    server: RunningServer,
) -> None:
    session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    with anyio.fail_after(60):
        async with calling(server, session=session) as caller:
            created = await caller.wait_for_type("session.created")
            speech = espeak("What can you do?")
            caller.say(np.concatenate([speech, silence(0.5)]))
            # the server's track runs on the same clock: this many frames, and it has it all
            await caller.frames_reach(len(caller.frames) + len(speech) // 320 + 40)
            caller.send({"type": "input_audio_buffer.commit"})
            committed = await caller.wait_for_type("input_audio_buffer.committed")
            heard = await caller.wait_for_type(
                "conversation.item.input_audio_transcription.completed"
            )
            caller.send({"type": "response.create"})
            done = await caller.wait_for_type("response.done")
    events = caller.validated()
    assert created["session"]["audio"]["input"]["turn_detection"] is None
    assert heard["item_id"] == committed["item_id"]
    assert "what can you do" in heard["transcript"].lower()
    assert "input_audio_buffer.speech_started" not in types(events)
    assert types(events).count("response.created") == 1  # only the one asked for
    assert done["response"]["status"] == "completed"
    assert "error" not in types(events)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "body", "code", "param"),
    [
        ("application/sdp", "hello", "bad_offer", None),
        ("text/plain", CHROMIUM_OFFER, "bad_offer", None),
        (None, '{"type": "realtime", "instructions": 3}', "invalid_value", "session.instructions"),
        (None, "{not json", "invalid_json", "session"),
        (None, '{"type": "transcription"}', "invalid_value", "session.type"),
        (None, '{"type": "realtime", "voice": "nobody"}', "invalid_value", "session.voice"),
    ],
)
async def test_a_bad_offer_or_session_gets_a_400_in_openais_shape(
    server: RunningServer,
    content_type: str | None,
    body: str,
    code: str,
    param: str | None,
) -> None:
    url = f"{server.http}/v1/realtime/calls"
    with anyio.fail_after(30):
        async with httpx.AsyncClient() as http:
            if content_type is None:  # multipart: a good offer, this session
                files = {"sdp": (None, CHROMIUM_OFFER), "session": (None, body)}
                response = await http.post(url, files=files, headers=AUTH)
            else:
                headers = {**AUTH, "Content-Type": content_type}
                response = await http.post(url, content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["message"]


@pytest.mark.anyio
async def test_a_call_needs_a_key_or_a_secret(server: RunningServer) -> None:
    with anyio.fail_after(30):
        async with httpx.AsyncClient() as http:
            headers = {"Content-Type": "application/sdp"}
            url = f"{server.http}/v1/realtime/calls"
            refused = await http.post(url, content=CHROMIUM_OFFER, headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_api_key"


# -- a browser, as OpenAI's docs show it ----------------------------------------------------------

#: OpenAI's browser example: microphone track, ``oai-events`` channel, the offer POSTed at once
OPENAI_PAGE = """async (token) => {
  const pc = new RTCPeerConnection();
  window.events = [];
  const audioEl = document.createElement("audio");
  audioEl.autoplay = true;
  pc.ontrack = (e) => { audioEl.srcObject = e.streams[0]; window.remote = e.streams[0]; };
  const ms = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc.addTrack(ms.getTracks()[0]);
  const dc = pc.createDataChannel("oai-events");
  dc.addEventListener("message", (e) => window.events.push(JSON.parse(e.data)));
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const response = await fetch("/v1/realtime/calls", {
    method: "POST",
    body: offer.sdp,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
  });
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  window.pc = pc;
  return [response.status, response.headers.get("Location")];
}"""

RECORD_REMOTE = """() => new Promise((resolve) => {
  const wait = () => {
    if (!window.remote) { setTimeout(wait, 20); return; }
    const recorder = new MediaRecorder(window.remote, { mimeType: "audio/webm;codecs=opus" });
    window.recorded = [];
    recorder.ondataavailable = (event) => window.recorded.push(event.data);
    recorder.start(250);
    window.recorder = recorder;
    resolve();
  };
  wait();
})"""


def _seen(kind: str, text: str = "") -> str:
    """A page condition: an event of ``kind`` (whose JSON contains ``text``) came."""
    return (
        f"(window.events || []).some((e) => e.type === {json.dumps(kind)}"
        f" && JSON.stringify(e).toLowerCase().includes({json.dumps(text)}))"
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")
@pytest.mark.anyio
async def test_chromium_running_openais_example_talks_with_the_agent(
    server: RunningServer, whisper_decoder: WhisperDecoder, tmp_path: Path
) -> None:
    rate = 48000
    speech = np.concatenate(
        [silence(2.0, rate), espeak("What can you do?", rate), silence(14.0, rate)]
    )
    microphone = tmp_path / "question.wav"
    microphone.write_bytes(write_wav(speech, rate))
    with anyio.fail_after(90):
        async with chromium(tmp_path / "profile", microphone, {"width": 800, "height": 600}) as b:
            page = b.pages[0] if b.pages else await b.new_page()
            await page.goto(f"{server.http}/health/live")  # the server's origin, a blank page
            status, location = await page.evaluate(OPENAI_PAGE, KEY)
            await page.evaluate(RECORD_REMOTE)
            await page.wait_for_function(_seen("session.created"))
            await page.wait_for_function(
                _seen("conversation.item.input_audio_transcription.completed", "what can you do")
            )
            await page.wait_for_function(_seen("output_audio_buffer.stopped"))
            recording = base64.b64decode(await page.evaluate(RECORDING))
            events: list[dict[str, Any]] = await page.evaluate("window.events")
            await page.evaluate("window.pc.close()")  # hang up
            await wait_until_idle(server)
    assert status == 201
    assert location.startswith("/v1/realtime/calls/rtc_")
    for event in events:
        SERVER_MODELS[event["type"]].model_validate(event)
    kinds = types(events)
    assert "response.output_audio.delta" not in kinds
    said = "".join(e["delta"] for e in of(events, "response.output_audio_transcript.delta"))
    assert "take a message" in said
    audio = decode_audio(recording, 16000).astype(np.float32) / np.float32(32768)
    heard = whisper_decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()
    assert "message" in heard  # the answer, as the browser received it
