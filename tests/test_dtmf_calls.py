"""Keypad digits (DTMF) drive the shipped phone menu (configs/ivr.yaml) on a real server
process, on every transport that carries them: the native protocol's ``dtmf`` message, Twilio's
``dtmf`` events, SIP INFO and RFC 4733 telephone events on RTP (sipp and the SIP tests' phone),
and the WebRTC data channel's ``dtmf`` message.

The menu: 2 is support, which asks for a 6-digit account number (complete at its length; a
shorter one ended by ``#`` is refused with the slot's reply) and a 4-8 digit PIN ended by
``#``, then says goodbye and hangs up. A key stops the agent mid-sentence.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import websockets

from pipeline.asr.decoder import WhisperDecoder
from tests.server import ROOT, RunningServer, running_server
from tests.test_sip_call import SIPP, Phone, free_udp_port, hear, sipp, transcribe
from tests.test_twilio_endpoint import FakeTwilio, start_message
from tests.test_twilio_endpoint import transcribe as transcribe_mulaw
from tests.webrtc_client import calling, wait_until_idle
from transports.rtp.dtmf import digit_packets
from transports.rtp.packet import RtpPacket

Event = dict[str, Any]
FRAME = 160  # 20 ms at 8 kHz
TELEPHONE_EVENT = 101  # the payload type the SIP scenarios offer for telephone-event


class Served:
    def __init__(self, running: RunningServer, sip_port: int) -> None:
        self.running = running
        self.sip_port = sip_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The ivr agent, with SIP on a free port and WebRTC candidates on loopback."""
    config = msgspec.yaml.decode((ROOT / "configs" / "ivr.yaml").read_bytes())
    config["server"]["sip"] = {"ring_ms": 300, "allowed_networks": ["127.0.0.1/32"]}
    config["server"]["webrtc"] = {"host_addresses": ["127.0.0.1"], "media_timeout_s": 3}
    path = tmp_path_factory.mktemp("dtmf") / "ivr-agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    port = free_udp_port()
    with running_server(str(path), args=["--sip", f"127.0.0.1:{port}"]) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


class NativeClient:
    """A ``/v1/stream`` client that only keys in: every event kept, audio dropped."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.events: list[Event] = []

    async def until(self, done: Callable[[Event], bool]) -> Event:
        while True:
            message = await self.ws.recv()
            if isinstance(message, str):
                event: Event = json.loads(message)
                self.events.append(event)
                if done(event):
                    return event

    async def key(self, digits: str) -> Event:
        """Key ``digits`` in; the turn they end."""
        await self.ws.send(json.dumps({"type": "dtmf", "digits": digits}))
        return await self.until(lambda e: e["type"] == "turn.ended")

    async def reply_text(self, turn: Event) -> str:
        """What the agent says to ``turn``: its text until its audio ends or the call does."""
        await self.until(lambda e: e["type"] in ("audio.end", "session.ended"))
        after = self.events[self.events.index(turn) :]
        return "".join(e["delta"] for e in after if e["type"] == "agent.text")


@pytest.mark.anyio
async def test_a_native_client_keys_through_the_menu_and_fills_a_code(server: Served) -> None:
    with anyio.fail_after(90):
        async with websockets.connect(f"{server.running.ws}/v1/stream") as ws:
            client = NativeClient(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            await client.until(lambda e: e["type"] == "audio.start")  # the greeting plays
            await ws.send(json.dumps({"type": "dtmf", "digit": "2"}))
            support = await client.until(lambda e: e["type"] == "turn.ended")
            prompt = await client.reply_text(support)
            short = await client.key("123#")
            refused = await client.reply_text(short)
            account = await client.key("004213")
            pin_prompt = await client.reply_text(account)
            pin = await client.key("2580#")
            goodbye = await client.reply_text(pin)
            ended = await client.until(lambda e: e["type"] == "session.ended")
    interrupted = next(e for e in client.events if e["type"] == "interrupted")
    assert interrupted["generation"] == 1  # the key stopped the greeting
    assert "rule" not in interrupted
    assert (support["text"], support["rule"], support["keypad"]) == ("2", "K3", True)
    assert "6-digit account number" in prompt
    assert (short["text"], short["rule"]) == ("123", "K1")
    assert "123 is not a 6-digit account number" in refused
    assert (account["text"], account["rule"]) == ("004213", "K3")
    assert "PIN" in pin_prompt
    assert (pin["text"], pin["rule"]) == ("2580", "K1")
    assert "Account 004213 has no open faults" in goodbye
    assert ended["reason"] == "support done"


@pytest.mark.anyio
async def test_a_native_client_gets_an_error_for_a_bad_key_and_the_call_goes_on(
    server: Served,
) -> None:
    with anyio.fail_after(60):
        async with websockets.connect(f"{server.running.ws}/v1/stream") as ws:
            client = NativeClient(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            await client.until(lambda e: e["type"] == "session.started")
            await ws.send(json.dumps({"type": "dtmf", "digits": "12x"}))
            error = await client.until(lambda e: e["type"] == "error")
            sales = await client.key("1")
            answer = await client.reply_text(sales)
            await ws.send(json.dumps({"type": "bye"}))
    assert error["code"] == "bad_message"
    assert sales["text"] == "1"
    assert "fibre plan" in answer


@pytest.mark.anyio
async def test_twilio_dtmf_events_stop_the_greeting_and_fill_the_code(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    def dtmf(digit: str) -> str:
        message = {"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "9"}
        return json.dumps({**message, "dtmf": {"track": "inbound_track", "digit": digit}})

    with anyio.fail_after(90):
        async with websockets.connect(f"{server.running.ws}/v1/telephony/twilio") as ws:
            twilio = FakeTwilio(ws)
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0"}))
            await ws.send(start_message())
            async with anyio.create_task_group() as tg:
                tg.start_soon(twilio.send_media)
                tg.start_soon(twilio.receive)
                await twilio.heard_a_second.wait()  # of the greeting
                await ws.send(dtmf("2"))
                await twilio.cleared.wait()  # the key stopped the greeting
                for digit in "0042132580#":  # the account number, then the PIN
                    await ws.send(dtmf(digit))
                await twilio.closed.wait()  # the agent said goodbye and hung up
                tg.cancel_scope.cancel()
    assert ws.close_code == 1000
    assert twilio.clear_at is not None
    greeting = transcribe_mulaw(whisper_decoder, bytes(twilio.audio[: twilio.clear_at]))
    assert "welcome" in greeting, greeting
    rest = transcribe_mulaw(whisper_decoder, bytes(twilio.audio[twilio.clear_at :]))
    assert "no open faults" in rest or "goodbye" in rest, rest


class KeyingPhone(Phone):
    """The SIP tests' phone, which can also key digits in as RFC 4733 telephone events: each
    digit's packets take the place of its audio frames, on the same sequence numbers."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.keys: deque[str] = deque()
        self.pending: deque[tuple[bool, bytes]] = deque()  # a digit's packets still to send
        self.event_start = 0

    def packet(self, sequence: int, timestamp: int) -> RtpPacket:
        if not self.pending and self.keys:
            self.pending.extend(digit_packets(self.keys.popleft()))
            self.event_start = timestamp
        if self.pending:
            marker, payload = self.pending.popleft()
            return RtpPacket(
                TELEPHONE_EVENT, sequence, self.event_start, 0x1234ABCD, payload, marker
            )
        return super().packet(sequence, timestamp)


@pytest.mark.anyio
@pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
async def test_a_sip_caller_keys_the_menu_by_info_and_the_code_by_rtp_events(
    server: Served, whisper_decoder: WhisperDecoder
) -> None:
    interruptions = sum("interrupted" in line for line in server.running.log)
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = KeyingPhone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    # the greeting, cut by INFO 2, then the account prompt (or part of it)
                    heard = ""
                    while "account" not in heard:
                        heard += await hear(whisper_decoder, await phone.next_reply())
                    phone.keys.extend("0042132580#")

                tg.start_soon(caller)
                status = await sipp(
                    server.sip_port, "caller_keys_by_info.xml", phone.port, pause_ms=1500
                )
                await phone.stopped.wait()  # the agent hung up: its RTP stops
                tg.cancel_scope.cancel()
    assert status == 0  # the INFO answered 200, the agent's BYE came
    assert sum("interrupted" in line for line in server.running.log) > interruptions
    heard = transcribe(whisper_decoder, bytes(phone.audio))
    assert "welcome" in heard, heard
    assert "no open faults" in heard or "goodbye" in heard, heard


@pytest.mark.anyio
async def test_a_webrtc_caller_keys_in_on_the_data_channel(server: Served) -> None:
    with anyio.fail_after(60):
        async with calling(server.running) as caller:
            await caller.wait_for_type("audio.start")  # the greeting
            caller.channel.send(json.dumps({"type": "dtmf", "digit": "1"}))
            sales = await caller.wait_for_type("turn.ended")
            answer = await caller.wait_for(
                lambda e: e["type"] == "agent.text" and "fibre" in e["delta"]
            )
            await caller.hang_up()
        await wait_until_idle(server.running)
    assert (sales["text"], sales["rule"], sales["keypad"]) == ("1", "K3", True)
    assert next(e for e in caller.events if e["type"] == "interrupted")["generation"] == 1
    assert "30 dollars a month" in answer["delta"]
