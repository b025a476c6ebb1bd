"""``POST /v1/calls`` (agent/calls_route.py): an outbound SIP call placed over HTTP.

Against the real server process (SIP on UDP and TCP, call records on, an API key): sipp plays
the callee (tests/sip/callee_answers.xml), the phone of :mod:`tests.test_sip_call` its media;
the call is heard, and shows up in ``GET /v1/calls`` under the id the POST answered; a callee
whose URI says ``;transport=tcp`` is called over TCP. The request's
checks run against the route alone (no models loaded: 503 ``not_ready`` where a call would
be placed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import anyio
import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed
from starlette.applications import Starlette

from agent.calls_route import calls_routes
from agent.config import parse_config
from agent.server import ServerState
from agent.sip_server import ServerAdmission, SipServer
from pipeline.asr.decoder import WhisperDecoder
from tests.audio import is_greeting
from tests.server import ARTIFACTS, ROOT, free_port, running_server
from tests.test_sip_call import (
    SIPP,
    Phone,
    Served,
    assert_one_clean_stream,
    free_udp_port,
    transcribe,
)
from tests.test_sip_dial import callee_command

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")
KEY = "vx-test-calls-route-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("calls-route")
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    port = free_udp_port()
    config["server"]["records"] = {"url": f"sqlite:///{folder}/calls.db"}
    config["server"]["sip"] = {"listen": [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{free_port()}"]}
    config["server"]["max_sessions"] = 1  # a second call while one is up: 503
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path), env={"VOXLINE_API_KEYS": KEY}) as running:
        yield Served(running, port)


@pytest.mark.anyio
async def test_a_call_posted_is_placed_heard_and_recorded_under_its_id(
    served: Served, whisper_decoder: WhisperDecoder
) -> None:
    callee_port = free_udp_port()
    request = {"to": f"sip:callee@127.0.0.1:{callee_port}", "from": "sip:desk@voxline.test"}
    with anyio.fail_after(120):
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
            httpx.AsyncClient(base_url=served.running.http, headers=AUTH) as http,
        ):
            phone = Phone(sock)
            callee = callee_command("callee_answers.xml", callee_port, phone.port, pause_ms=4000)
            async with (
                await anyio.open_process(callee, stdout=DEVNULL, stderr=DEVNULL) as sipp,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                placed = await http.post("/v1/calls", json=request)
                await phone.first.wait()  # answered: the agent speaks
                busy = await http.post("/v1/calls", json=request)  # max_sessions is 1
                status = await sipp.wait()  # the callee hung up after its pause
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
            assert placed.status_code == 201, placed.text
            call = placed.json()
            call_id = call["id"]
            assert placed.headers["location"] == f"/v1/calls/{call_id}"
            recorded = f"call {call_id} recorded"
            await anyio.to_thread.run_sync(served.running.wait_for_log, recorded, 30)
            listed = (await http.get("/v1/calls", params={"transport": "sip"})).json()
            record = await http.get(placed.headers["location"])
    assert status == 0
    assert call == {
        "id": call_id,
        "object": "call",
        "to": request["to"],
        "from": "sip:desk@voxline.test",
        "status": "calling",
    }
    assert busy.status_code == 503
    assert busy.json()["error"]["code"] == "at_capacity"
    assert_one_clean_stream(phone.packets)
    greeting = transcribe(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting
    assert [c["id"] for c in listed["data"]] == [call_id]
    assert record.status_code == 200
    assert (record.json()["transport"], record.json()["end_reason"]) == ("sip", "hangup")
    invite = (ARTIFACTS / "sipp-callee_answers-messages.log").read_text()
    assert "From: <sip:desk@voxline.test>;tag=" in invite  # the From asked for


@pytest.mark.anyio
async def test_a_call_posted_to_a_tcp_uri_goes_over_tcp(
    served: Served, whisper_decoder: WhisperDecoder
) -> None:
    callee_port = free_port()
    request = {"to": f"sip:callee@127.0.0.1:{callee_port};transport=tcp"}
    with anyio.fail_after(120):
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
            httpx.AsyncClient(base_url=served.running.http, headers=AUTH) as http,
        ):
            phone = Phone(sock)
            callee = callee_command(
                "callee_answers.xml", callee_port, phone.port, pause_ms=3000, tcp=True
            )
            async with (
                await anyio.open_process(callee, stdout=DEVNULL, stderr=DEVNULL) as sipp,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                placed = await http.post("/v1/calls", json=request)
                status = await sipp.wait()  # answered over TCP; its BYE after the pause
                await phone.stopped.wait()
                tg.cancel_scope.cancel()
    assert placed.status_code == 201, placed.text
    assert placed.json()["to"] == request["to"]
    assert status == 0
    assert_one_clean_stream(phone.packets)
    greeting = transcribe(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting
    messages = (ARTIFACTS / "sipp-callee_answers-tt1-messages.log").read_text()
    assert "Via: SIP/2.0/TCP 127.0.0.1:" in messages  # from the server's tcp: address


def test_without_a_key_a_call_cannot_be_placed(served: Served) -> None:
    answer = httpx.post(f"{served.running.http}/v1/calls", json={"to": "sip:a@127.0.0.1"})
    assert answer.status_code == 401


# -- the request's checks: the route alone (no models, no SIP endpoint running) ----------------


@asynccontextmanager
async def route_alone(config: bytes) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``POST /v1/calls`` alone, on a server of ``config`` that never loads."""
    state = ServerState(parse_config(config, ".yaml"))
    admission = ServerAdmission(state)
    sip = state.config.server.sip
    server = SipServer(sip, admission) if sip.listen else None
    app = Starlette(routes=calls_routes(server, admission))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"to": "tel:+15551234"}, 400, "to"),
        ({"to": "sip:bob@host:99999"}, 400, "to"),
        ({"to": "sip:bob@127.0.0.1;transport=tcp>\r\nX: y"}, 400, "to"),
        ({"to": "sip:bob@127.0.0.1;transport=tls"}, 400, "to"),
        ({"to": "sip:bob@127.0.0.1;lr"}, 400, "to"),  # no parameter but transport
        ({"to": "sip:bob@127.0.0.1;transport=tcp"}, 400, "to"),  # no tcp: listen address
        ({}, 400, "to"),
        ({"to": 5}, 400, "to"),
        ({"to": "sip:bob@127.0.0.1", "from": "alice"}, 400, "from"),
        ({"to": "sip:bob@127.0.0.1", "timeout": 0}, 400, "timeout"),
        ({"to": "sip:bob@127.0.0.1", "timeout": 301}, 400, "timeout"),
        ({"to": "sip:bob@127.0.0.1", "agent": "other"}, 400, "agent"),
        ({"to": "sip:bob@127.0.0.1"}, 503, None),  # well formed: the models are not loaded
    ],
)
@pytest.mark.anyio
async def test_a_bad_request_is_a_400_naming_its_field(
    body: dict[str, object], status: int, param: str | None
) -> None:
    async with route_alone(b"name: x\nserver: {sip: {listen: [udp:127.0.0.1:5099]}}") as http:
        answer = await http.post("/v1/calls", json=body)
        garbage = await http.post("/v1/calls", content=b"{not json")
        huge = await http.post("/v1/calls", content=b" " * 5000)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param
    assert error["code"] == ("invalid_value" if status == 400 else "not_ready")
    assert (garbage.status_code, huge.status_code) == (400, 413)


@pytest.mark.anyio
async def test_a_tcp_uri_is_taken_by_a_server_that_listens_on_tcp() -> None:
    config = b"name: x\nserver: {sip: {listen: [udp:127.0.0.1:5099, tcp:127.0.0.1:5099]}}"
    async with route_alone(config) as http:
        answer = await http.post("/v1/calls", json={"to": "sip:bob@127.0.0.1;transport=TCP"})
    assert answer.status_code == 503, answer.text  # well formed: the models are not loaded
    assert answer.json()["error"]["code"] == "not_ready"


@pytest.mark.anyio
async def test_a_server_without_sip_says_so() -> None:
    async with route_alone(b"name: x") as http:
        answer = await http.post("/v1/calls", json={"to": "sip:a@127.0.0.1"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "sip_disabled"
