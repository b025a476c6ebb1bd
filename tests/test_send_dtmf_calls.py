"""The agent keys digits (``send_dtmf``) on a real server process, on every transport that
carries them: a SIP phone (the SIP tests' phone, with sipp's signalling) receives RFC 4733
telephone events and reads them back as the digits the agent file names; without
telephone-event agreed the digits fail (``dtmf_failed``) and the call goes on; the native
WebSocket client and the WebRTC data channel get a ``dtmf`` event after the reply's audio.

The agent: 2 (or "code") keys ``1234#`` then ``*0`` after "Keying the code."; 9 (or "bye")
says goodbye, keys ``*`` and hangs up (on SIP the digit still goes out before the BYE).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import websockets

from tests.server import ROOT, running_server
from tests.test_dtmf_calls import KeyingPhone, NativeClient, Served
from tests.test_sip_call import SIPP, Phone, free_udp_port, sipp
from tests.webrtc_client import calling, wait_until_idle
from transports.rtp.dtmf import DtmfReceiver
from transports.rtp.packet import RtpPacket

TELEPHONE_EVENT = 101  # the payload type the SIP scenarios offer for telephone-event
KEYED = "1234#*0"
DIALOGUE = {
    "engine": "intents",
    "intents": [
        {
            "name": "code",
            "keys": ["2"],
            "patterns": [r"\bcode\b"],
            "reply": "Keying the code.",
            "actions": [
                {"action": "send_dtmf", "digits": "1234#"},
                {"action": "send_dtmf", "digits": "*0"},
            ],
        },
        {
            "name": "bye",
            "keys": ["9"],
            "patterns": [r"\bbye\b"],
            "reply": "Goodbye.",
            "actions": [
                {"action": "send_dtmf", "digits": "*"},
                {"action": "end_call", "reason": "caller said goodbye"},
            ],
        },
    ],
    "fallback": {"reply": "Press 2 for the code.", "limit": 5},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The dialler agent (the ivr agent's voice and server, its own dialogue), with SIP on a
    free port and WebRTC candidates on loopback."""
    config = msgspec.yaml.decode((ROOT / "configs" / "ivr.yaml").read_bytes())
    config["greeting"] = {"text": "Hello."}
    config["turns"] = {"idle_timeout_ms": 0}
    config["dialogue"] = DIALOGUE
    config["server"]["sip"] = {"ring_ms": 300, "allowed_networks": ["127.0.0.1/32"]}
    config["server"]["webrtc"] = {"host_addresses": ["127.0.0.1"], "media_timeout_s": 3}
    path = tmp_path_factory.mktemp("send-dtmf") / "dialler-agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    port = free_udp_port()
    with running_server(str(path), args=["--sip", f"127.0.0.1:{port}"]) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


def keyed(packets: list[RtpPacket]) -> str:
    """The digits in ``packets``' telephone events, as a phone's receiver reads them."""
    receiver = DtmfReceiver()
    events = [p for p in packets if p.payload_type == TELEPHONE_EVENT]
    return "".join(digit.digit for p in events for digit in receiver.receive(p))


@pytest.mark.anyio
async def test_a_native_client_gets_the_digits_after_the_reply_that_keys_them(
    server: Served,
) -> None:
    with anyio.fail_after(60):
        async with websockets.connect(f"{server.running.ws}/v1/stream") as ws:
            client = NativeClient(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            await client.until(lambda e: e["type"] == "audio.end")  # the greeting
            await ws.send(json.dumps({"type": "text", "text": "the code please"}))
            await client.until(lambda e: e["type"] == "dtmf")
            last = await client.until(lambda e: e["type"] == "dtmf")
            await ws.send(json.dumps({"type": "bye"}))
    assert last["digits"] == "*0"
    types = [e["type"] for e in client.events]
    first = types.index("dtmf")
    assert types[first - 1] == "audio.end"  # "keying the code" has played
    assert [e["digits"] for e in client.events if e["type"] == "dtmf"] == ["1234#", "*0"]
    said = "".join(e["delta"] for e in client.events[:first] if e["type"] == "agent.text")
    assert "Keying the code." in said


@pytest.mark.anyio
async def test_a_webrtc_caller_gets_the_digits_on_the_data_channel(server: Served) -> None:
    with anyio.fail_after(60):
        async with calling(server.running) as caller:
            await caller.wait_for_type("audio.end")  # the greeting
            caller.channel.send(json.dumps({"type": "dtmf", "digit": "2"}))
            digits = await caller.wait_for_type("dtmf")
            await caller.hang_up()
        await wait_until_idle(server.running)
    assert digits["digits"] == "1234#"


class DiallerPhone(KeyingPhone):
    """A phone that keys as :class:`KeyingPhone` does and reads the agent's digits as they
    come (``digits``: set once they are :data:`KEYED`)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.receiver = DtmfReceiver()
        self.heard_digits = ""
        self.digits = anyio.Event()

    def _heard(self, payload: bytes) -> None:
        super()._heard(payload)
        packet = self.packets[-1]  # listen() keeps each packet before it is heard
        if packet.payload_type == TELEPHONE_EVENT:
            self.heard_digits += "".join(d.digit for d in self.receiver.receive(packet))
            if self.heard_digits == KEYED:
                self.digits.set()


@pytest.mark.anyio
@pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
async def test_a_sip_phone_receives_the_agents_digits_as_rfc_4733_events(server: Served) -> None:
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = DiallerPhone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def caller() -> None:
                    await phone.digits.wait()  # after INFO 2
                    phone.keys.extend("9")  # goodbye, as an RFC 4733 event

                tg.start_soon(caller)
                status = await sipp(
                    server.sip_port, "caller_keys_by_info.xml", phone.port, pause_ms=1000
                )
                await phone.stopped.wait()  # the agent hung up: its RTP stops
                tg.cancel_scope.cancel()
    assert status == 0  # the INFO answered 200, the agent's BYE came
    assert keyed(phone.packets) == KEYED + "*"  # the goodbye's digit before the BYE
    events = [p for p in phone.packets if p.payload_type == TELEPHONE_EVENT]
    assert len({p.ssrc for p in phone.packets}) == 1  # the events are on the call's stream
    starts = list(dict.fromkeys(p.timestamp for p in events))  # each digit's, in order
    assert len(starts) == len(KEYED) + 1  # one event a digit
    gaps = {(b - a) % (1 << 32) for a, b in itertools.pairwise(starts[: len(KEYED)])}
    assert min(gaps) >= 2 * 800  # a digit (100 ms) and the quiet after it (100 ms) apart


@pytest.mark.anyio
@pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
async def test_without_telephone_event_the_digits_fail_and_the_call_goes_on(
    server: Served,
) -> None:
    failed = sum("digits not sent" in line for line in server.running.log)
    with anyio.fail_after(90):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                status = await sipp(
                    server.sip_port, "caller_keys_without_events.xml", phone.port, pause_ms=4000
                )
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert status == 0  # INFO 2, the digits failed, INFO 9: goodbye and the agent's BYE
    assert keyed(phone.packets) == ""
    # the code's two strings and the goodbye's: each failed, and the call went on
    assert sum("digits not sent" in line for line in server.running.log) == failed + 3
    assert any("telephone-event" in line for line in server.running.log)
