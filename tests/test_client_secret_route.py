"""``POST /v1/realtime/client_secrets`` in process (agent/client_secret_route.py behind the access
guard, agent/auth_asgi.py): the route and the guard are the server's own, served over ASGI to
``httpx``; the store is small enough to fill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from agent.auth import AccessPolicy, ApiKeys
from agent.auth_asgi import AccessGuard
from agent.client_secret_route import PATH, client_secret_routes
from agent.client_secrets import ClientSecrets
from agent.config import AuthConfig
from agent.grants import Grants

KEY = "vx-test-key-that-may-do-everything"
LOCKED = "vx-test-key-that-may-not-override"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    store = ClientSecrets(max_live=2)
    keys = ApiKeys([KEY, (LOCKED, Grants(overrides=False))])
    policy = AccessPolicy(keys, AuthConfig(), metrics_public=False, secrets=store)
    app = AccessGuard(Starlette(routes=client_secret_routes(store)), policy)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


async def mint(client: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    with anyio.fail_after(10):
        return await client.post(PATH, json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.anyio
async def test_a_body_that_is_not_json_is_refused_as_such(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(10):
        response = await client.post(
            PATH, content=b"{expires_after", headers={"Authorization": f"Bearer {KEY}"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.anyio
async def test_a_locked_key_mints_no_session_that_overrides_but_may_mint_the_agents_own(
    client: httpx.AsyncClient,
) -> None:
    refused = await mint(client, LOCKED, session={"type": "realtime", "instructions": "Be rude."})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("override_not_allowed", "session.instructions")
    allowed = await mint(client, LOCKED, session={"type": "realtime", "voice": "alloy"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["session"]["audio"]["output"]["voice"] == "alloy"


@pytest.mark.anyio
async def test_a_full_store_refuses_with_429_and_a_retry_after(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        minted = await mint(client, KEY)
        assert minted.status_code == 200, minted.text
        assert minted.json()["value"].startswith("ek_")
    full = await mint(client, KEY)
    assert full.status_code == 429
    assert full.headers["Retry-After"] == "10"
    assert full.json()["error"]["code"] == "too_many_client_secrets"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"expires_after": {"seconds": 7201}}, "expires_after.seconds"),
        (
            {"session": {"type": "realtime", "output_modalities": ["text", "audio"]}},
            "session.output_modalities",
        ),
    ],
)
@pytest.mark.anyio
async def test_a_lifetime_or_session_it_cannot_have_is_refused_naming_the_param(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    refused = await mint(client, KEY, **body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_value"
    assert error["param"] == param
