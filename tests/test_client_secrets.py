"""Client secrets (agent/client_secrets.py, rule A5 of agent/auth.py).

The store and the rule first, on an injected clock (expiry included); then a real server with
an API key: a secret minted with the official ``openai`` SDK opens ``/v1/realtime`` (with the
session it was minted with) and ``/v1/stream`` from a browser's subprotocol, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
import websockets
from openai import OpenAI

from agent.auth import ENV_VAR, AccessPolicy, ApiKeys, load_keys
from agent.client_secrets import (
    MAX_TTL_S,
    MIN_TTL_S,
    SUBPROTOCOL_PREFIX,
    ClientSecrets,
    StoreFull,
    opens_calls,
)
from agent.config import AuthConfig
from pipeline.errors import ConfigError
from tests.server import RunningServer, running_server
from tests.test_auth import agent_file, bearer
from transports.realtime_events import SessionSpec

KEY = "vx-test-key-for-client-secrets"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


# -- the store and the rule -----------------------------------------------------------------------


def test_a_secret_lives_as_long_as_it_was_minted_for() -> None:
    clock = Clock()
    store = ClientSecrets(clock)
    minted = store.mint(60, SessionSpec(instructions="Be brief."))
    assert minted.value.startswith("ek_")
    assert minted.expires_at == 1_000_060
    secret = store.find(minted.value)
    assert secret is not None
    assert secret.session == SessionSpec(instructions="Be brief.")
    assert not store.expired(secret)
    clock.now += 60
    assert store.expired(secret)
    assert store.find("ek_" + "x" * 43) is None
    assert store.find(minted.value[3:]) is None  # only what starts with ek_ is looked up


@pytest.mark.parametrize("ttl", [MIN_TTL_S - 1, MAX_TTL_S + 1, 0, -5])
def test_a_lifetime_outside_10_s_to_2_h_is_refused(ttl: int) -> None:
    with pytest.raises(ValueError, match="10-7200"):
        ClientSecrets().mint(ttl)


def test_a_full_store_makes_room_from_expired_secrets_only() -> None:
    clock = Clock()
    store = ClientSecrets(clock, max_live=3)
    first = store.mint(10)
    store.mint(20)
    store.mint(20)
    with pytest.raises(StoreFull):
        store.mint(20)
    clock.now += 10  # the first has expired: its room is taken back
    store.mint(20)
    assert len(store) == 3
    assert store.find(first.value) is None


def test_secrets_open_calls_only() -> None:
    assert opens_calls("/v1/realtime")
    assert opens_calls("/v1/stream")
    assert opens_calls("/v1/webrtc/offer")
    assert opens_calls("/v1/webrtc/config")
    for path in ["/v1/voices", "/v1/audio/speech", "/v1/realtime/client_secrets", "/metrics"]:
        assert not opens_calls(path), path


def test_rule_a5_lets_a_live_secret_call_and_refuses_the_rest() -> None:
    clock = Clock()
    secrets = ClientSecrets(clock)
    rules = AccessPolicy(ApiKeys([KEY]), AuthConfig(), metrics_public=False, secrets=secrets)
    value = secrets.mint(30).value
    offered = ["realtime", SUBPROTOCOL_PREFIX + value]
    assert rules.judge("/v1/realtime", websocket=True, subprotocols=offered) is None
    assert rules.judge("/v1/webrtc/offer", websocket=False, method="POST", **_auth(value)) is None
    for path in ["/v1/voices", "/v1/realtime/client_secrets"]:
        refusal = rules.judge(path, websocket=False, method="POST", **_auth(value))
        assert refusal is not None
        assert (refusal.status, refusal.code) == (403, "secret_not_allowed")
    # the key itself may come as a subprotocol too (OpenAI's browser clients send it so)
    assert (
        rules.judge("/v1/voices", websocket=True, subprotocols=[SUBPROTOCOL_PREFIX + KEY]) is None
    )
    forged = rules.judge("/v1/realtime", websocket=True, subprotocols=[SUBPROTOCOL_PREFIX + "ek_x"])
    assert forged is not None
    assert forged.code == "invalid_api_key"
    clock.now += 30
    expired = rules.judge("/v1/realtime", websocket=True, subprotocols=offered)
    assert expired is not None
    assert (expired.status, expired.close_code, expired.code) == (
        401,
        4401,
        "expired_client_secret",
    )
    assert rules.live_secret(None, offered) is None


def test_a_key_may_not_look_like_a_client_secret() -> None:
    with pytest.raises(ConfigError, match="client secrets, not keys") as raised:
        load_keys(AuthConfig(), {ENV_VAR: "ek_abcdefghijklmnopqrstuvwxyz"})
    assert raised.value.path == ENV_VAR


def _auth(token: str) -> dict[str, Any]:
    return {"authorization": f"Bearer {token}"}


# -- a real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("secrets")
    with running_server(str(agent_file(folder, {})), env={ENV_VAR: KEY}) as running:
        yield running


def test_the_openai_sdk_mints_a_secret_with_its_key_and_a_secret_mints_none(
    server: RunningServer,
) -> None:
    # each client closed here: an open connection left to the garbage collector is a
    # ResourceWarning (an error) in whichever test runs when it collects
    with OpenAI(api_key=KEY, base_url=f"{server.http}/v1", max_retries=0) as client:
        minted = client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 60},
            session={"type": "realtime", "instructions": "Answer in one word."},
        )
    assert minted.value.startswith("ek_")
    assert minted.session.type == "realtime"
    assert minted.session.instructions == "Answer in one word."
    with (
        OpenAI(api_key=minted.value, base_url=f"{server.http}/v1", max_retries=0) as secret,
        pytest.raises(openai.PermissionDeniedError) as refused,
    ):
        secret.realtime.client_secrets.create()
    assert refused.value.code == "secret_not_allowed"
    with (
        OpenAI(
            api_key="vx-not-a-key-at-all", base_url=f"{server.http}/v1", max_retries=0
        ) as stranger,
        pytest.raises(openai.AuthenticationError),
    ):
        stranger.realtime.client_secrets.create()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"expires_after": {"anchor": "created_at", "seconds": 5}}, "expires_after.seconds"),
        ({"expires_after": {"anchor": "now"}}, "expires_after.anchor"),
        ({"session": {"type": "transcription"}}, "session.type"),
        ({"session": {"output_modalities": ["text", "audio"]}}, "session.output_modalities"),
        ({"sessions": {}}, None),
    ],
)
def test_a_bad_request_is_refused_with_the_parameter_named(
    server: RunningServer, body: dict[str, Any], param: str | None
) -> None:
    response = httpx.post(
        f"{server.http}/v1/realtime/client_secrets", json=body, headers=bearer(KEY)
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", param), error


@pytest.mark.anyio
async def test_a_browser_opens_calls_with_a_secret_as_its_subprotocol(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{server.http}/v1/realtime/client_secrets",
            json={"session": {"type": "realtime", "instructions": "Be brief."}},
            headers=bearer(KEY),
        )
        value = response.json()["value"]
        rest = await client.get(f"{server.http}/v1/voices", headers=bearer(value))
    assert rest.status_code == 403
    assert rest.json()["error"]["code"] == "secret_not_allowed"
    offered = SUBPROTOCOL_PREFIX + value
    with anyio.fail_after(30):
        async with websockets.connect(
            f"{server.ws}/v1/realtime",
            subprotocols=[websockets.Subprotocol("realtime"), websockets.Subprotocol(offered)],
        ) as ws:
            assert ws.subprotocol == "realtime"
            created = json.loads(await ws.recv())
            assert created["type"] == "session.created"
            assert created["session"]["instructions"] == "Be brief."  # minted with it
        async with websockets.connect(
            f"{server.ws}/v1/stream",
            subprotocols=[websockets.Subprotocol("voxline"), websockets.Subprotocol(offered)],
        ) as ws:
            assert ws.subprotocol == "voxline"
            await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
            assert json.loads(await ws.recv())["type"] == "session.started"
        forged = SUBPROTOCOL_PREFIX + "ek_" + value[3:][::-1]
        async with websockets.connect(
            f"{server.ws}/v1/realtime",
            subprotocols=[websockets.Subprotocol("realtime"), websockets.Subprotocol(forged)],
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
