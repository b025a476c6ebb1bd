"""Short-lived TURN credentials (agent/turn_credentials.py): the TURN REST API's scheme.

Each credential is checked the way a TURN server with the shared secret checks it (coturn is
not needed): ``base64(HMAC-SHA1(secret, username))``, computed here with :mod:`hmac` alone,
and the expiry in the username. On an injected clock first, then from a real server's
``GET /v1/webrtc/config``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from agent.config import parse_config
from agent.config.schema import IceServerConfig, WebRtcConfig
from agent.turn_credentials import TURN_USER, IceServer, IceServers, turn_credential
from pipeline.errors import ConfigError
from tests.server import RunningServer, running_server
from tests.test_auth import agent_file

SECRET = "north-wind-shared-secret"
SECRET_ENV = "VX_TEST_TURN_SECRET"
TURN = "turn:turn.example.com:3478?transport=udp"


def verifies(username: str, credential: str, secret: str = SECRET) -> bool:
    """What a TURN server holding ``secret`` computes for ``username``."""
    expected = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64decode(credential), expected)


def test_the_credential_is_the_base64_hmac_sha1_of_the_username() -> None:
    # RFC 2202's second HMAC-SHA1 test case: key "Jefe"
    digest = bytes.fromhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    assert (
        turn_credential(b"Jefe", "what do ya want for nothing?")
        == base64.b64encode(digest).decode()
    )


def config(*servers: IceServerConfig, ttl: int = 600) -> WebRtcConfig:
    return WebRtcConfig(ice_servers=servers, turn_ttl_s=ttl)


def test_a_server_with_a_secret_gets_fresh_credentials_that_expire_after_the_ttl() -> None:
    now = [1_800_000_000.4]
    servers = IceServers(
        config(
            IceServerConfig(urls=("stun:stun.example.com",)),
            IceServerConfig(urls=(TURN,), secret_env=SECRET_ENV),
            IceServerConfig(urls=("turn:static.example.com",), username="u", credential="c"),
        ),
        {SECRET_ENV: SECRET},
        clock=lambda: now[0],
    )
    stun, turn, static = servers.fresh()
    assert stun == IceServer(("stun:stun.example.com",))
    assert static == IceServer(("turn:static.example.com",), "u", "c")  # static: as configured
    assert turn.urls == (TURN,)
    assert turn.username == f"{1_800_000_600}:{TURN_USER}"
    assert turn.credential is not None
    assert verifies(turn.username, turn.credential)
    assert not verifies(turn.username, turn.credential, secret="another-secret")
    assert turn.to_json() == {
        "urls": [TURN],
        "username": turn.username,
        "credential": turn.credential,
    }

    now[0] += 61
    later = servers.fresh()[1]
    assert later.username == f"{1_800_000_661}:{TURN_USER}"
    assert later.credential != turn.credential
    assert later.credential is not None
    assert verifies(later.username, later.credential)


def test_a_secret_that_is_not_set_stops_the_server() -> None:
    webrtc = config(IceServerConfig(urls=(TURN,), secret_env=SECRET_ENV))
    for environ in ({}, {SECRET_ENV: ""}):
        with pytest.raises(ConfigError) as error:
            IceServers(webrtc, environ)
        assert error.value.path == "$.server.webrtc.ice_servers[0].secret_env"
        assert SECRET_ENV in error.value.reason


ICE = "$.server.webrtc.ice_servers[0]"


@pytest.mark.parametrize(
    ("webrtc", "where"),
    [
        ({"ice_servers": [{"urls": [TURN], "secret_env": SECRET_ENV, "credential": "c"}]}, ICE),
        ({"ice_servers": [{"urls": [TURN], "secret_env": "not a name"}]}, f"{ICE}.secret_env"),
        ({"turn_ttl_s": 10}, "$.server.webrtc.turn_ttl_s"),
    ],
)
def test_a_bad_turn_setting_names_its_key(
    tmp_path: Path, webrtc: dict[str, Any], where: str
) -> None:
    path = agent_file(tmp_path, {"webrtc": webrtc})
    with pytest.raises(ConfigError) as error:
        parse_config(path.read_bytes(), ".yaml")
    assert error.value.path == where


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("turn")
    ice = [{"urls": [TURN], "secret_env": SECRET_ENV}, {"urls": ["stun:stun.example.com"]}]
    path = agent_file(folder, {"webrtc": {"ice_servers": ice, "turn_ttl_s": 900}})
    with running_server(str(path), env={SECRET_ENV: SECRET}) as running:
        yield running


def test_the_client_config_hands_out_credentials_that_verify_and_expire(
    server: RunningServer,
) -> None:
    before = int(time.time())
    options = httpx.get(f"{server.http}/v1/webrtc/config").json()
    after = int(time.time())
    turn, stun = options["ice_servers"]
    assert stun == {"urls": ["stun:stun.example.com"]}
    assert turn["urls"] == [TURN]
    expiry, _, user = turn["username"].partition(":")
    assert user == TURN_USER
    assert before + 900 <= int(expiry) <= after + 900
    assert verifies(turn["username"], turn["credential"])
    assert SECRET not in msgspec.json.encode(options).decode()
    assert SECRET not in "".join(server.log)
