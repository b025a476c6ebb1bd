"""Authentication, the Origin allowlist and the opening deadline (agent/auth.py, agent/ws_io.py).

The rules as a table against :class:`AccessPolicy` and the key loading come first; then a real
server with API keys (one from ``VOXLINE_API_KEYS``, one from ``server.auth.keys_file``) and a
1 s opening deadline, called with ``httpx``, the official ``openai`` SDK and ``websockets``;
then ``voxline serve`` on 0.0.0.0: refused without keys, served with ``--insecure``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import openai
import pytest
import websockets
from openai import AsyncOpenAI, OpenAI

from agent.auth import (
    ENV_VAR,
    FORBIDDEN,
    UNAUTHORIZED,
    AccessPolicy,
    ApiKeys,
    exposure_problem,
    is_loopback,
    load_keys,
)
from agent.config import AuthConfig, parse_config
from agent.ws_io import OPEN_TIMEOUT
from pipeline.errors import ConfigError
from tests.server import ROOT, RunningServer, running_server

KEY_ENV = "vx-test-key-from-the-environment"
KEY_FILE = "vx-test-key-from-the-keys-file"
WRONG = "vx-test-key-that-nobody-issued"
FOREIGN = "https://evil.example"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- the rules ------------------------------------------------------------------------------------


def policy(*keys: str, metrics_public: bool = False, **auth: Any) -> AccessPolicy:
    return AccessPolicy(ApiKeys(keys), AuthConfig(**auth), metrics_public=metrics_public)


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/health/live", {}, None),
        ("/health/ready", {}, None),
        ("/", {}, None),
        ("/static/app.js", {}, None),
        ("/metrics", {}, "missing_api_key"),
        ("/metrics", {"authorization": f"Bearer {KEY_ENV}"}, None),
        ("/v1/voices", {}, "missing_api_key"),
        ("/v1/voices", {"authorization": f"Bearer {WRONG}"}, "invalid_api_key"),
        ("/v1/voices", {"authorization": f"bearer {KEY_ENV}"}, None),
        ("/v1/voices", {"authorization": f"Basic {KEY_ENV}"}, "missing_api_key"),
        ("/v1/voices", {"authorization": "Bearer "}, "missing_api_key"),
        ("/v1/voices", {"authorization": f"Bearer {KEY_ENV[:-1]}"}, "invalid_api_key"),
        ("/v1/nothing-here", {}, "missing_api_key"),
    ],
)
def test_every_path_but_health_and_the_page_needs_a_key(
    path: str, headers: dict[str, Any], expected: str | None
) -> None:
    refusal = policy(KEY_ENV).judge(path, websocket=False, **headers)
    assert (refusal.code if refusal else None) == expected


def test_metrics_can_be_made_public() -> None:
    assert policy(KEY_ENV, metrics_public=True).judge("/metrics", websocket=False) is None


def test_without_keys_auth_is_off_but_origins_are_still_checked() -> None:
    open_ = policy()
    assert not open_.enabled
    assert open_.judge("/v1/stream", websocket=True) is None
    refusal = open_.judge("/v1/stream", websocket=True, origin=FOREIGN, host="127.0.0.1:8000")
    assert refusal is not None
    assert (refusal.status, refusal.close_code) == (403, FORBIDDEN)


ORIGINS = [
    # (origin, host, keys configured, allowed)
    ("http://127.0.0.1:8000", "127.0.0.1:8000", False, True),  # the demo page itself
    ("http://localhost:5173", "127.0.0.1:8000", False, True),  # a dev server on this machine
    ("http://[::1]:3000", "127.0.0.1:8000", False, True),
    ("http://192.168.1.5:8000", "192.168.1.5:8000", False, True),  # same origin, an address
    ("http://voice.example.com", "voice.example.com", True, True),  # same origin, with keys
    ("https://voice.example.com", "voice.example.com", True, True),  # behind a TLS proxy
    ("https://voice.example.com:8443", "voice.example.com:8443", True, True),
    ("http://rebound.example:8000", "rebound.example:8000", False, False),  # DNS rebinding
    ("https://evil.example", "127.0.0.1:8000", False, False),
    ("https://evil.example", "127.0.0.1:8000", True, False),
    ("null", "127.0.0.1:8000", False, False),  # a file, a sandboxed frame
    ("http://localhost:*", "127.0.0.1:8000", False, False),  # a pattern is no origin
    ("http://127.0.0.1:8000/path", "127.0.0.1:8000", False, False),  # not an origin
    ("http://voice.example.com:8443", "voice.example.com", True, False),  # another port
]


@pytest.mark.parametrize(("origin", "host", "keyed", "allowed"), ORIGINS)
def test_browsers_may_call_from_the_servers_origin_and_loopback_pages(
    origin: str, host: str, keyed: bool, allowed: bool
) -> None:
    keys = (KEY_ENV,) if keyed else ()
    headers: dict[str, Any] = {"authorization": f"Bearer {KEY_ENV}"} if keyed else {}
    refusal = policy(*keys).judge("/v1/stream", websocket=True, origin=origin, host=host, **headers)
    assert (refusal is None) == allowed
    if refusal is not None:
        assert refusal.code == "forbidden_origin"


def test_the_origin_allowlist_replaces_the_loopback_default() -> None:
    listed = policy(allowed_origins=("https://app.example.com", "http://dev.example:*"))
    for origin, allowed in [
        ("https://app.example.com", True),
        ("https://app.example.com:443", True),
        ("http://app.example.com", False),
        ("http://dev.example:1234", True),
        ("http://localhost:5173", False),
    ]:
        refusal = listed.judge("/v1/stream", websocket=True, origin=origin, host="x:1")
        assert (refusal is None) == allowed, origin
    anyone = policy(allowed_origins=("*",))
    assert anyone.judge("/v1/stream", websocket=True, origin=FOREIGN, host="x:1") is None


def test_only_browser_calls_are_judged_by_their_origin() -> None:
    """A page's GET cannot read the answer (no CORS); its POSTs and sockets are refused."""
    rules = policy(KEY_ENV)
    key = f"Bearer {KEY_ENV}"
    get = rules.judge("/v1/voices", websocket=False, authorization=key, origin=FOREIGN)
    post = rules.judge(
        "/v1/webrtc/offer", websocket=False, method="POST", authorization=key, origin=FOREIGN
    )
    assert get is None
    assert post is not None
    assert post.status == 403


# -- keys -----------------------------------------------------------------------------------------


def test_keys_come_from_the_environment_and_the_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# the team's keys\n\n{KEY_FILE}   # added in December\n")
    keys = load_keys(AuthConfig(keys_file=str(path)), {ENV_VAR: f" {KEY_ENV}, ,"})
    assert len(keys) == 2
    assert keys.check(KEY_ENV)
    assert keys.check(KEY_FILE)
    assert not keys.check(WRONG)
    assert not keys.check("")
    assert not keys.check(KEY_ENV + "x")
    assert KEY_ENV not in repr(keys)
    assert KEY_FILE not in repr(keys)
    assert len(load_keys(AuthConfig(), {ENV_VAR: ""})) == 0


@pytest.mark.parametrize(
    ("contents", "reason"),
    [
        ("# nothing but a comment\n", "holds no key"),
        ("short-key\n", "line 1 of"),
        (f"{KEY_FILE}\n{KEY_FILE} with spaces\n", "line 2 of"),
    ],
)
def test_a_broken_keys_file_is_refused_without_echoing_a_key(
    tmp_path: Path, contents: str, reason: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(contents)
    with pytest.raises(ConfigError) as error:
        load_keys(AuthConfig(keys_file=str(path)), {})
    assert error.value.path == "$.server.auth.keys_file"
    assert reason in error.value.reason
    assert "short-key" not in str(error.value)
    assert KEY_FILE not in str(error.value)


def test_a_missing_keys_file_or_a_bad_environment_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"keys_file: cannot read .*missing"):
        load_keys(AuthConfig(keys_file=str(tmp_path / "missing")), {})
    with pytest.raises(ConfigError) as error:
        load_keys(AuthConfig(), {ENV_VAR: f"{KEY_ENV},tiny"})
    assert error.value.path == ENV_VAR
    assert "key 2" in error.value.reason
    assert "tiny" not in str(error.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.5", False),
        ("voice.example.com", False),
    ],
)
def test_only_loopback_may_serve_without_keys(host: str, loopback: bool) -> None:
    assert is_loopback(host) == loopback
    assert (exposure_problem(host, ApiKeys(), insecure=False) is None) == loopback
    assert exposure_problem(host, ApiKeys([KEY_ENV]), insecure=False) is None
    assert exposure_problem(host, ApiKeys(), insecure=True) is None


def agent_file(folder: Path, server: dict[str, Any]) -> Path:
    """The default agent with ``server`` settings."""
    config = msgspec.yaml.decode((ROOT / "configs" / "default.yaml").read_bytes())
    config.setdefault("server", {}).update(server)
    path = folder / "auth-agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    return path


@pytest.mark.parametrize(
    ("server", "where"),
    [
        ({"open_timeout_s": 0}, "$.server.open_timeout_s"),
        ({"metrics_public": "yes"}, "$.server.metrics_public"),
        ({"auth": {"allowed_origins": ["evil.example"]}}, "$.server.auth.allowed_origins[0]"),
        ({"auth": {"keys": ["x"]}}, "$.server.auth.keys"),
    ],
)
def test_a_broken_auth_setting_names_its_key(
    tmp_path: Path, server: dict[str, Any], where: str
) -> None:
    path = agent_file(tmp_path, server)
    with pytest.raises(ConfigError) as error:
        parse_config(path.read_bytes(), ".yaml")
    assert error.value.path == where


# -- a real server with keys ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("auth")
    keys = folder / "keys"
    keys.write_text(f"# test keys\n{KEY_FILE}\n")
    settings = {"open_timeout_s": 1, "auth": {"keys_file": str(keys)}}
    config = str(agent_file(folder, settings))
    with running_server(config, env={ENV_VAR: KEY_ENV}) as running:
        yield running


def test_rest_needs_a_key_and_says_so_in_openais_shape(server: RunningServer) -> None:
    missing = httpx.get(f"{server.http}/v1/voices")
    wrong = httpx.get(f"{server.http}/v1/voices", headers=bearer(WRONG))
    for response, code in [(missing, "missing_api_key"), (wrong, "invalid_api_key")]:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        error = response.json()["error"]
        assert (error["code"], error["type"], error["param"]) == (
            code,
            "invalid_request_error",
            None,
        )
        assert WRONG not in response.text
    for key in (KEY_ENV, KEY_FILE):
        assert httpx.get(f"{server.http}/v1/voices", headers=bearer(key)).status_code == 200
    assert WRONG not in "".join(server.log)
    assert KEY_ENV not in "".join(server.log)


def test_health_and_the_demo_page_stay_open_and_metrics_need_a_key(server: RunningServer) -> None:
    assert httpx.get(f"{server.http}/health/live").status_code == 200
    assert httpx.get(f"{server.http}/health/ready").status_code == 200
    assert httpx.get(f"{server.http}/").status_code == 200
    assert httpx.get(f"{server.http}/v1/webrtc/config").status_code == 401  # what it calls
    assert httpx.get(f"{server.http}/metrics").status_code == 401
    metrics = httpx.get(f"{server.http}/metrics", headers=bearer(KEY_ENV))
    assert metrics.status_code == 200
    assert 'voxline_errors_total{kind="missing_api_key",where="auth"}' in metrics.text


def test_a_webrtc_offer_from_a_foreign_page_is_refused(server: RunningServer) -> None:
    offer = {"type": "offer", "sdp": "v=0\r\n"}
    url = f"{server.http}/v1/webrtc/offer"
    foreign = httpx.post(url, json=offer, headers={**bearer(KEY_ENV), "Origin": FOREIGN})
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "forbidden_origin"
    assert httpx.post(url, json=offer).status_code == 401
    # with a key, from the server's own page, the offer is judged on what it holds
    own = httpx.post(url, json=offer, headers={**bearer(KEY_ENV), "Origin": server.http})
    assert own.status_code == 400


def test_the_openai_sdk_speaks_with_its_api_key(server: RunningServer) -> None:
    client = OpenAI(api_key=KEY_FILE, base_url=f"{server.http}/v1")
    speech = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello.", response_format="wav"
    )
    assert speech.content[:4] == b"RIFF"
    refused = OpenAI(api_key=WRONG, base_url=f"{server.http}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as error:
        refused.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    assert error.value.code == "invalid_api_key"


@pytest.mark.anyio
async def test_the_openai_realtime_sdk_connects_with_its_api_key(server: RunningServer) -> None:
    with anyio.fail_after(30):
        client = AsyncOpenAI(api_key=KEY_ENV, websocket_base_url=f"{server.ws}/v1")
        async with client.realtime.connect(model="voxline") as connection:
            created = await connection.recv()
            assert created.type == "session.created"
        refused = AsyncOpenAI(api_key=WRONG, websocket_base_url=f"{server.ws}/v1")
        async with refused.realtime.connect(model="voxline") as connection:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await connection.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        UNAUTHORIZED,
        "the API key is not valid",
    )


async def close_of(ws: websockets.ClientConnection) -> tuple[list[Any], int | None]:
    """What the server sends until it closes the socket, and its close code."""
    received: list[Any] = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            received.append(await ws.recv())
    return received, ws.close_code


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/stream", "/v1/realtime", "/v1/telephony/twilio"])
async def test_a_websocket_without_a_key_is_closed_with_4401(
    server: RunningServer, path: str
) -> None:
    with anyio.fail_after(30):
        async with websockets.connect(f"{server.ws}{path}") as ws:
            assert await close_of(ws) == ([], UNAUTHORIZED)
        async with websockets.connect(f"{server.ws}{path}", additional_headers=bearer(WRONG)) as ws:
            assert await close_of(ws) == ([], UNAUTHORIZED)


@pytest.mark.anyio
async def test_a_websocket_from_a_foreign_page_is_closed_with_4403(server: RunningServer) -> None:
    with anyio.fail_after(30):
        async with websockets.connect(
            f"{server.ws}/v1/stream",
            additional_headers=bearer(KEY_ENV),
            origin=websockets.Origin(FOREIGN),
        ) as ws:
            assert await close_of(ws) == ([], FORBIDDEN)
            assert ws.close_reason == "this origin may not call the server"


HELLO = json.dumps({"type": "hello", "sample_rate": 16000, "encoding": "pcm16"})


async def event(ws: websockets.ClientConnection, kind: str, text: str = "") -> dict[str, Any]:
    """The next event of ``kind`` holding ``text`` (audio and other events skipped)."""
    while True:
        message = await ws.recv()
        if isinstance(message, str) and text in message and json.loads(message)["type"] == kind:
            return dict(json.loads(message))


@pytest.mark.anyio
async def test_sockets_that_never_start_their_call_are_closed_while_a_call_is_answered(
    server: RunningServer,
) -> None:
    key = bearer(KEY_ENV)
    with anyio.fail_after(60):
        async with (
            websockets.connect(f"{server.ws}/v1/stream", additional_headers=key) as idle,
            websockets.connect(f"{server.ws}/v1/telephony/twilio", additional_headers=key) as mute,
            websockets.connect(f"{server.ws}/v1/stream", additional_headers=key) as caller,
        ):
            await caller.send(HELLO)
            assert (await event(caller, "session.started"))["sample_rate"] == 16000

            said, code = await close_of(idle)
            assert code == OPEN_TIMEOUT
            assert idle.close_reason == "the call did not start in time"
            assert [json.loads(message) for message in said] == [
                {"type": "error", "code": "hello_timeout", "message": "no hello within 1 s"}
            ]
            assert await close_of(mute) == ([], OPEN_TIMEOUT)

            await caller.send(json.dumps({"type": "text", "text": "What can you do?"}))
            await event(caller, "agent.text", "put you through")  # the answer to the question
            await caller.send(json.dumps({"type": "bye"}))
            assert (await event(caller, "session.ended"))["reason"] == "bye"


# -- serving beyond loopback ----------------------------------------------------------------------


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", "serve", "--host", "0.0.0.0", *args]


def test_serving_beyond_loopback_without_keys_is_refused() -> None:
    env = {name: value for name, value in os.environ.items() if name != ENV_VAR}
    result = subprocess.run(
        serve_command("--port", "1"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    for setting in (ENV_VAR, "server.auth.keys_file", "--insecure", "0.0.0.0"):
        assert setting in result.stderr


@pytest.fixture(scope="module")
def insecure() -> Iterator[RunningServer]:
    with running_server(args=["--host", "0.0.0.0", "--insecure"], env={ENV_VAR: ""}) as running:
        yield running


@pytest.mark.anyio
async def test_insecure_serves_beyond_loopback_without_keys_but_checks_origins(
    insecure: RunningServer,
) -> None:
    assert any("auth: OFF on 0.0.0.0" in line for line in insecure.log)
    with anyio.fail_after(30):
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{insecure.http}/v1/voices")).status_code == 200
        foreign = websockets.Origin(FOREIGN)
        async with websockets.connect(f"{insecure.ws}/v1/stream", origin=foreign) as ws:
            assert await close_of(ws) == ([], FORBIDDEN)
        own = websockets.Origin(insecure.http)
        async with websockets.connect(f"{insecure.ws}/v1/stream", origin=own) as ws:
            await ws.send(HELLO)
            assert (await event(ws, "session.started"))["encoding"] == "pcm16"
