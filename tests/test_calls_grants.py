"""``POST /v1/calls`` under the grants of the key that placed the call (agent/calls_route.py,
agent/grants.py): its length follows that key's ``unlimited_calls``, and it holds a place
among that key's ``max_sessions`` from its 201 to its end.

In this process, the server's own parts wired as :func:`agent.server.create_app` wires them:
the access guard with a keys file of grants, the calls route, the SIP server on a loopback
port and the agent's models, loaded. sipp plays the callees (tests/sip/callee_*.xml). The
agent's ``turns.max_call_ms`` is 0 (unlimited): what each call's session was made with is
read from the call watchers' hook (:data:`agent.call_loop.WATCHERS`) as its session starts,
so no call has to be waited out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import anyio
import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed
from anyio.abc import Process, SocketAttribute
from starlette.applications import Starlette
from starlette.middleware import Middleware

from agent.auth import TOO_MANY_SESSIONS, AccessPolicy, load_keys
from agent.auth_asgi import AccessGuard
from agent.call_loop import WATCHERS
from agent.calls_route import calls_routes
from agent.config import parse_config
from agent.grants import UNKEYED_MAX_CALL_MS, Caller
from agent.server import ServerState
from agent.session import Session
from agent.sip_server import ServerAdmission, SipServer
from tests.server import ROOT
from tests.test_auth import bearer
from tests.test_sip_call import SIPP, Phone, free_udp_port
from tests.test_sip_dial import callee_command

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")

FREE = "vx-test-calls-grants-every-grant-0123"
CAPPED = "vx-test-calls-grants-no-unlimited-calls"
ONE = "vx-test-calls-grants-one-call-at-a-time"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """sipp and the models set the pace; the loop does not matter: run once."""
    return ("asyncio", {})


@dataclass
class Served:
    http: httpx.AsyncClient
    state: ServerState


@asynccontextmanager
async def served(folder: Path) -> AsyncIterator[Served]:
    """The route behind the guard with three keys (every grant; ``unlimited_calls=no``;
    ``max_sessions=1``), its SIP server running and the models loaded."""
    keys = folder / "keys"
    keys.write_text(f"{FREE}\n{CAPPED} unlimited_calls=no\n{ONE} max_sessions=1\n")
    agent = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    agent["turns"] = {**agent.get("turns", {}), "max_call_ms": 0}  # unlimited, when granted
    agent["server"]["auth"] = {"keys_file": str(keys)}
    agent["server"]["sip"] = {"listen": [f"udp:127.0.0.1:{free_udp_port()}"]}
    config = parse_config(yaml.safe_dump(agent).encode(), ".yaml")
    policy = AccessPolicy(
        load_keys(config.server.auth, {}), config.server.auth, metrics_public=False
    )
    state = ServerState(config)
    admission = ServerAdmission(state, Caller(*policy.caller(None, None)))  # as create_app's
    sip = SipServer(config.server.sip, admission)
    app = Starlette(
        routes=calls_routes(sip, admission), middleware=[Middleware(AccessGuard, policy=policy)]
    )
    try:
        await state.load()
        assert state.failed is None, state.failed
        async with anyio.create_task_group() as tg:
            await tg.start(sip.run)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield Served(http, state)
            tg.cancel_scope.cancel()  # every call's BYE, then the SIP sockets closed
    finally:
        await state.close()


@contextmanager
def call_lengths() -> Iterator[dict[str, int]]:
    """Each call's ``max_call_ms`` by its session's id (the id ``POST /v1/calls`` answers),
    as its session starts."""
    seen: dict[str, int] = {}

    def watch(session: Session) -> Callable[[Exception | None], None]:
        seen[session.id] = session.settings.turns.max_call_ms
        return lambda failure: None

    WATCHERS.append(watch)
    try:
        yield seen
    finally:
        WATCHERS.remove(watch)


async def place(
    served: Served, key: str, scenario: str, phone_port: int, *, pause_ms: int = 0
) -> tuple[httpx.Response, Process]:
    """sipp waits as the callee of ``scenario`` (its media at ``phone_port``); ``key`` posts a
    call to it. The POST's answer, and sipp (the caller awaits its end)."""
    port = free_udp_port()
    command = callee_command(scenario, port, phone_port, pause_ms=pause_ms)
    sipp = await anyio.open_process(command, stdout=DEVNULL, stderr=DEVNULL)
    request = {"to": f"sip:callee@127.0.0.1:{port}"}
    return await served.http.post("/v1/calls", json=request, headers=bearer(key)), sipp


async def over(served: Served, sipp: Process) -> int:
    """Once sipp's scenario is over, and every call the server admitted has ended (its key's
    place given back): sipp's exit status. A call is admitted before its INVITE goes."""
    async with sipp:
        status = await sipp.wait()
    await served.state.wait_for_no_sessions()
    return status


@pytest.mark.anyio
async def test_a_placed_call_is_unlimited_only_when_its_key_grants_it(tmp_path: Path) -> None:
    with anyio.fail_after(180), call_lengths() as lengths:
        async with (
            served(tmp_path) as server,
            await anyio.create_udp_socket(local_host="127.0.0.1") as phone,
        ):
            phone_port = phone.extra(SocketAttribute.local_port)
            free, sipp = await place(server, FREE, "callee_answers.xml", phone_port, pause_ms=500)
            free_status = await over(server, sipp)
            capped, sipp = await place(
                server, CAPPED, "callee_answers.xml", phone_port, pause_ms=500
            )
            capped_status = await over(server, sipp)
    assert (free.status_code, capped.status_code) == (201, 201), (free.text, capped.text)
    assert (free_status, capped_status) == (0, 0)
    assert server.state.config.turns.max_call_ms == 0  # the agent's: unlimited
    assert lengths == {free.json()["id"]: 0, capped.json()["id"]: UNKEYED_MAX_CALL_MS}


@pytest.mark.anyio
async def test_a_key_at_its_max_sessions_is_refused_until_its_call_is_over(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(180), call_lengths() as lengths:
        async with (
            served(tmp_path) as server,
            await anyio.create_udp_socket(local_host="127.0.0.1") as sock,
            anyio.create_task_group() as tg,
        ):
            phone = Phone(sock)
            tg.start_soon(phone.listen)
            busy, sipp = await place(server, ONE, "callee_busy.xml", phone.port)
            busy_status = await over(server, sipp)  # never answered: its place is back
            first, sipp = await place(server, ONE, "callee_answers.xml", phone.port, pause_ms=4000)
            await phone.first.wait()  # answered: the agent's call runs
            refused = await server.http.post(
                "/v1/calls", json={"to": "sip:a@127.0.0.1"}, headers=bearer(ONE)
            )
            other, other_sipp = await place(server, FREE, "callee_busy.xml", phone.port)
            first_status = await over(server, sipp)
            other_status = await over(server, other_sipp)
            again, sipp = await place(server, ONE, "callee_busy.xml", phone.port)
            again_status = await over(server, sipp)
            tg.cancel_scope.cancel()
    assert [busy.status_code, first.status_code, again.status_code] == [201, 201, 201]
    assert (busy_status, first_status, again_status) == (0, 0, 0)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("too_many_sessions", "requests")
    assert refused.headers["retry-after"] == str(TOO_MANY_SESSIONS.retry_after)
    assert (other.status_code, other_status) == (201, 0)  # another key's calls are its own
    assert list(lengths) == [first.json()["id"]]  # the refused call never started
