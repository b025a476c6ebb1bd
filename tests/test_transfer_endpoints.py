"""Transfers on every transport, against the real server with the default agent: a transfer
that cannot happen is said in words and the call goes on; one that happens ends the call
``transferred``.

The default agent puts the caller through when they ask for an operator ("One moment, I'll
put you through."). Twilio's REST API is a local HTTP server standing in for it (standard
library, a thread), which answers as each test says and keeps every request.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import numpy as np
import pytest
import websockets
from twilio.request_validator import RequestValidator

from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, resample, silence
from tests.server import RunningServer, running_server
from tests.test_twilio_endpoint import SID, FakeTwilio
from tests.webrtc_client import calling, webrtc_agent
from transports.g711 import ulaw_to_pcm16

ACCOUNT = "AC" + "0123456789abcdef" * 2
CALL = "CA" + "fedcba9876543210" * 2
TOKEN = "secret-token"
FAILED = "I'm sorry, I couldn't put you through just now. How else can I help?"
HELLO = "Hello! How can I help?"


class TwilioApi:
    """Twilio's REST API, as far as a call update goes: answers the next request with the next
    status of :attr:`statuses` (200 when none is left) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.arrived = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                status = owner.statuses.pop(0) if owner.statuses else 200
                payload = json.dumps({"sid": CALL, "status": "in-progress"}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                with owner.arrived:
                    owner.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "form": form}
                    )
                    owner.arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    async def wait_for_request(self, count: int) -> dict[str, Any]:
        def wait() -> None:
            with self.arrived:
                self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=60)

        await anyio.to_thread.run_sync(wait)
        return self.requests[count - 1]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiortc is asyncio-only; the server under test runs on uvloop


@pytest.fixture(scope="module")
def api() -> Iterator[TwilioApi]:
    api = TwilioApi()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()
    api.thread.join()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, api: TwilioApi) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("transfer")
    path = webrtc_agent(folder)
    config = msgspec.yaml.decode(path.read_bytes())
    config["server"]["twilio"] = {"api_base_url": api.url, "api_timeout_s": 5}
    agent = Path(folder / "transfer-agent.yaml")
    agent.write_bytes(msgspec.yaml.encode(config))
    env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
    with running_server(str(agent), env=env) as running:
        yield running


# -- /v1/stream --------------------------------------------------------------------------------


class Native:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            message = await self.ws.recv()
            if isinstance(message, str):
                event: dict[str, Any] = json.loads(message)
                self.events.append(event)
                if event["type"] == kind:
                    return event

    async def say(self, text: str) -> str:
        """A typed turn; the agent's whole answer (its text, once its audio has ended)."""
        await self.ws.send(json.dumps({"type": "text", "text": text}))
        start = await self.until("audio.start")
        await self.until("audio.end")
        return "".join(
            e["delta"]
            for e in self.events
            if e["type"] == "agent.text" and e["generation"] == start["generation"]
        )


@pytest.mark.anyio
async def test_native_a_client_that_cannot_transfer_hears_why_and_the_call_goes_on(
    server: RunningServer,
) -> None:
    with anyio.fail_after(90):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Native(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            await call.until("audio.end")  # the greeting
            assert (
                await call.say("Can I talk to an operator?") == "One moment, I'll put you through."
            )
            error = await call.until("error")
            assert (error["code"], error["message"]) == ("transfer_failed", "unsupported")
            await call.until("audio.start")
            await call.until("audio.end")
            assert await call.say("Hello") == HELLO
            await ws.send(json.dumps({"type": "bye"}))
    said = "".join(e["delta"] for e in call.events if e["type"] == "agent.text")
    assert FAILED in said
    assert not [e for e in call.events if e["type"] == "transfer"]


@pytest.mark.anyio
async def test_native_a_client_refuses_a_transfer_then_carries_one_out(
    server: RunningServer,
) -> None:
    with anyio.fail_after(90):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Native(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000, "transfer": True}))
            await call.until("audio.end")  # the greeting
            await call.say("Operator, please.")
            assert (await call.until("transfer"))["target"] == "operator"
            await ws.send(json.dumps({"type": "transfer.result", "ok": False, "reason": "busy"}))
            start = await call.until("audio.start")
            await call.until("audio.end")
            failure = [
                e["delta"]
                for e in call.events
                if e["type"] == "agent.text" and e["generation"] == start["generation"]
            ]
            assert "".join(failure) == FAILED
            await call.say("Operator, please.")
            assert (await call.until("transfer"))["target"] == "operator"
            await ws.send(json.dumps({"type": "transfer.result", "ok": True}))
            ended = await call.until("session.ended")
            with pytest.raises(websockets.ConnectionClosedOK):
                await ws.recv()
    assert ended["reason"] == "transferred"
    assert ws.close_reason == "transferred"


# -- /v1/realtime ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_realtime_has_no_transfer_the_agent_says_so_and_answers_the_next_turn(
    server: RunningServer,
) -> None:
    async def ask(ws: websockets.ClientConnection, text: str) -> None:
        content = [{"type": "input_text", "text": text}]
        item = {"type": "message", "role": "user", "content": content}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))

    async def transcript(ws: websockets.ClientConnection) -> str:
        """The next response's audio transcript, once it is done."""
        text = ""
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "response.output_audio_transcript.delta":
                text += event["delta"]
            elif event["type"] == "error":
                raise AssertionError(event)
            elif event["type"] == "response.done":
                return text

    with anyio.fail_after(90):
        async with websockets.connect(f"{server.ws}/v1/realtime", max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ask(ws, "Put me through to an operator.")
            assert await transcript(ws) == "One moment, I'll put you through."
            assert await transcript(ws) == FAILED  # a response of its own, unasked
            await ask(ws, "Hello")
            assert await transcript(ws) == HELLO


# -- WebRTC ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_webrtc_a_caller_that_cannot_transfer_hears_why_and_the_call_goes_on(
    server: RunningServer,
) -> None:
    with anyio.fail_after(90):
        async with calling(server) as caller:
            await caller.wait_for_type("audio.end")  # the greeting
            caller.channel.send(json.dumps({"type": "text", "text": "An operator, please."}))
            await caller.wait_for_type("error", code="transfer_failed", message="unsupported")
            start = await caller.wait_for_type("audio.start")
            await caller.wait_for_type("audio.end", generation=start["generation"])
            caller.channel.send(json.dumps({"type": "text", "text": "Hello"}))
            hello = await caller.wait_for_type("audio.start")
            await caller.wait_for_type("audio.end", generation=hello["generation"])
            await caller.hang_up()

    def said(generation: int) -> str:
        return "".join(
            e["delta"]
            for e in caller.events
            if e["type"] == "agent.text" and e["generation"] == generation
        )

    assert said(start["generation"]) == FAILED
    assert said(hello["generation"]) == HELLO


@pytest.mark.anyio
async def test_webrtc_a_caller_that_transfers_ends_the_call_as_transferred(
    server: RunningServer,
) -> None:
    with anyio.fail_after(90):
        async with calling(server, transfer=True) as caller:
            await caller.wait_for_type("audio.end")  # the greeting
            caller.channel.send(json.dumps({"type": "text", "text": "An operator, please."}))
            transfer = await caller.wait_for_type("transfer")
            caller.channel.send(json.dumps({"type": "transfer.result", "ok": True}))
            ended = await caller.wait_for_type("session.ended")
    assert transfer["target"] == "operator"
    assert ended["reason"] == "transferred"


# -- Twilio ------------------------------------------------------------------------------------


def twilio_url(server: RunningServer) -> str:
    return f"{server.ws}/v1/telephony/twilio"


def signed(server: RunningServer) -> dict[str, str]:
    """Twilio's signature of the stream's URL (the server holds the auth token: rule T1),
    made by Twilio's own validator; Twilio signs the wss:// URL it used."""
    url = twilio_url(server).replace("ws://", "wss://", 1)
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})}


def start_message() -> str:
    start = {
        "accountSid": ACCOUNT,
        "streamSid": SID,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {},
    }
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": SID, "start": start})


def heard(decoder: WhisperDecoder, ulaw: bytes) -> str:
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype="<i2")
    audio = resample(pcm, 8000, 16000).astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


async def audio_grows(phone: FakeTwilio, since: int, seconds: float) -> None:
    """Until the phone has received ``seconds`` of audio after byte ``since``, and the reply
    it belongs to has ended (Twilio's marks name each reply's end)."""
    # the other side's state, read as it arrives: nothing to wait on but the phone's buffer
    while len(phone.audio) < since + round(8000 * seconds):  # noqa: ASYNC110
        await anyio.sleep(0.05)


def speech(text: str) -> np.ndarray[Any, Any]:
    return resample(np.concatenate([espeak(text), silence(1.5)]), 16000, 8000)


@pytest.mark.anyio
async def test_twilio_a_refused_update_is_said_and_the_call_goes_on(
    server: RunningServer, api: TwilioApi, whisper_decoder: WhisperDecoder
) -> None:
    api.statuses = [404]
    before = len(api.requests)
    with anyio.fail_after(120):
        async with websockets.connect(twilio_url(server), additional_headers=signed(server)) as ws:
            phone = FakeTwilio(ws)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.receive)
                await ws.send(start_message())
                tg.start_soon(phone.send_media)
                await phone.heard_a_second.wait()
                phone.say(speech("I want to speak to a human."))
                await api.wait_for_request(before + 1)
                asked = len(phone.audio)
                await audio_grows(phone, asked, 4.0)
                failure = heard(whisper_decoder, bytes(phone.audio[asked:]))
                answered = len(phone.audio)
                phone.say(speech("Hello."))
                await audio_grows(phone, answered + 8000, 1.5)
                hello = heard(whisper_decoder, bytes(phone.audio[answered:]))
                tg.cancel_scope.cancel()
    assert "put you through" in failure
    assert "help" in hello


@pytest.mark.anyio
async def test_twilio_a_transfer_updates_the_call_with_dial_and_ends_the_stream(
    server: RunningServer, api: TwilioApi
) -> None:
    api.statuses = [200]
    before = len(api.requests)
    with anyio.fail_after(120):
        async with websockets.connect(twilio_url(server), additional_headers=signed(server)) as ws:
            phone = FakeTwilio(ws)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.receive)
                await ws.send(start_message())
                tg.start_soon(phone.send_media)
                await phone.heard_a_second.wait()
                phone.say(speech("I want to speak to a human."))
                request = await api.wait_for_request(before + 1)
                await phone.closed.wait()  # the stream is over: Twilio dials now
                tg.cancel_scope.cancel()
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert request["form"] == {"Twiml": ["<Response><Dial>operator</Dial></Response>"]}
    credentials = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert request["headers"]["authorization"] == f"Basic {credentials}"
    assert ws.close_reason == "transferred"
