"""An interpreter's room joined by a dialled number (``server.sip.rooms``): a phone (sipp's
signalling, the SIP tests' RTP phone) dials 1001 and talks with a caller on the native
protocol in the same room; the number of a full room gets 486; when the other caller leaves,
the room closes and the phone gets a BYE. Both speak English here (the offline Whisper engine
translates into English only), so what is checked is the room's plumbing over SIP: the
phone's words reach the other caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import websockets

from agent.config import load_config
from pipeline.errors import ConfigError
from tests.server import ROOT, RunningServer, running_server
from tests.test_server import RATE, Call
from tests.test_sip_call import SIPP, Phone, free_udp_port, sipp, speech

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")

ROOM, NUMBER = "desk-s", "1001"


class Served:
    def __init__(self, running: RunningServer, sip_port: int) -> None:
        self.running = running
        self.sip_port = sip_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = msgspec.yaml.decode((ROOT / "configs" / "interpreter.yaml").read_bytes())
    config.setdefault("server", {})["sip"] = {
        "allowed_networks": ["127.0.0.1/32"],
        "rooms": [{"number": NUMBER, "room": ROOM, "language": "en"}],
    }
    path = tmp_path_factory.mktemp("sip-rooms") / "interpreter-sip.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    port = free_udp_port()
    with running_server(str(path), args=["--sip", f"127.0.0.1:{port}"]) as running:
        yield Served(running, port)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.mark.anyio
async def test_a_phone_dials_into_a_room_is_heard_and_hung_up_when_the_room_closes(
    server: Served,
) -> None:
    with anyio.fail_after(90):
        async with (
            websockets.connect(f"{server.running.ws}/v1/stream?room={ROOM}&language=en") as ws,
            await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
            await anyio.create_udp_socket(local_host="127.0.0.1") as other,
        ):
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "session.started")
            phone, dialled = Phone(sock), []
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)

                async def dial() -> None:  # until Voxline hangs up (BYE, 200)
                    scenario = "caller_dials_a_room.xml"
                    dialled.append(
                        await sipp(server.sip_port, scenario, phone.port, service=NUMBER)
                    )

                tg.start_soon(dial)
                await phone.first.wait()  # answered: its RTP flows
                phone.say(speech("Where is the train station?"))
                said = await call.receive_until(lambda e: e["type"] == "agent.text")
                full = await sipp(
                    server.sip_port, "caller_finds_room_full.xml", Phone(other).port, service=NUMBER
                )
                await ws.send(json.dumps({"type": "bye"}))  # the room closes: the phone's BYE
                await call.receive_until(lambda e: e["type"] == "session.ended")
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert "station" in said["delta"].lower(), said
    assert full == 0  # 486: two callers are in the room
    assert dialled == [0]  # every message as scripted: answered, then Voxline's BYE


@pytest.mark.parametrize(
    ("agent", "rooms", "where", "reason"),
    [
        ("default.yaml", [{"number": "1", "room": "r", "language": "en"}], "", "interpreter"),
        (
            "interpreter.yaml",
            [{"number": "1", "room": "a", "language": "en"}] * 2,
            ".number",
            "given twice",
        ),
        ("interpreter.yaml", [{"number": "1", "room": "r", "language": "xx"}], ".language", "xx"),
    ],
)
def test_numbers_that_cannot_join_rooms_are_refused_naming_the_key(
    tmp_path: Path, agent: str, rooms: list[dict[str, str]], where: str, reason: str
) -> None:
    config = msgspec.yaml.decode((ROOT / "configs" / agent).read_bytes())
    config.setdefault("server", {})["sip"] = {"rooms": rooms}
    path = tmp_path / "agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    index = 1 if reason == "given twice" else 0
    assert caught.value.path == f"$.server.sip.rooms[{index}]{where}"
    assert reason in caught.value.reason
