"""Twilio's request signature on media streams (agent/twilio_signature.py, rule T1).

Signatures are made with Twilio's own ``RequestValidator`` (the ``twilio`` package), never
with the code under test: first the computation and the rule, then a real server with API keys
and ``TWILIO_AUTH_TOKEN``, called as Twilio calls it (no API key, a signed upgrade).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets
from twilio.request_validator import RequestValidator

from agent.auth import ENV_VAR, AccessPolicy, ApiKeys
from agent.config import AuthConfig
from agent.twilio_signature import TOKEN_ENV, signature, signed_url, valid_signature
from tests.server import RunningServer, running_server
from tests.test_auth import agent_file
from tests.test_twilio_endpoint import start_message

TOKEN = "twilio-test-auth-token-5f1e2d3c"
KEY = "vx-test-key-beside-twilio"
PATH = "/v1/telephony/twilio"
TWILIO = RequestValidator(TOKEN)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("wss://voice.example.com/v1/telephony/twilio", {}),
        ("wss://voice.example.com/v1/telephony/twilio?agent=default&x=%C3%A9", {}),
        ("https://voice.example.com/hook", {"CallSid": "CA1", "From": "+15550100", "A": "é"}),
    ],
)
def test_the_signature_is_twilios(url: str, params: dict[str, str]) -> None:
    assert signature(TOKEN, url, params) == TWILIO.compute_signature(url, params)


def test_the_signed_url_is_the_one_twilio_requested() -> None:
    assert signed_url(None, "127.0.0.1:8000", PATH, "") == f"wss://127.0.0.1:8000{PATH}"
    assert signed_url(None, "h", PATH, "a=1") == f"wss://h{PATH}?a=1"
    behind = signed_url("wss://voice.example.com/voxline/", "10.0.0.5:8000", PATH, "")
    assert behind == f"wss://voice.example.com/voxline{PATH}"


def test_rule_t1_wants_twilios_signature_and_no_key() -> None:
    public = "wss://voice.example.com"
    rules = AccessPolicy(
        ApiKeys([KEY]), AuthConfig(), metrics_public=False, twilio_token=TOKEN, twilio_url=public
    )
    good = TWILIO.compute_signature(f"{public}{PATH}", {})
    assert rules.judge(PATH, websocket=True, host="10.0.0.5:8000", twilio_signature=good) is None
    for bad in [None, "", "x" + good[1:], TWILIO.compute_signature(f"{public}/other", {})]:
        refusal = rules.judge(PATH, websocket=True, host="h", twilio_signature=bad)
        assert refusal is not None
        assert (refusal.close_code, refusal.code) == (4403, "invalid_twilio_signature")
    # other paths still want a key; without Twilio's token the stream wants a key too
    assert rules.judge("/v1/stream", websocket=True, twilio_signature=good) is not None
    keyed = AccessPolicy(ApiKeys([KEY]), AuthConfig(), metrics_public=False)
    refusal = keyed.judge(PATH, websocket=True, twilio_signature=good)
    assert refusal is not None
    assert refusal.code == "missing_api_key"
    assert not valid_signature(TOKEN, f"{public}{PATH}", None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("twilio-signature")
    env = {ENV_VAR: KEY, TOKEN_ENV: TOKEN}
    with running_server(str(agent_file(folder, {})), env=env) as running:
        yield running


@pytest.mark.anyio
async def test_a_signed_stream_is_served_and_an_unsigned_one_is_closed(
    server: RunningServer,
) -> None:
    url = f"{server.ws}{PATH}?agent=default"
    signed_as = url.replace("ws://", "wss://", 1)  # Twilio signs the URL it used: TLS
    good = {"X-Twilio-Signature": TWILIO.compute_signature(signed_as, {})}
    with anyio.fail_after(30):
        async with websockets.connect(url, additional_headers=good) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
            await ws.send(start_message())
            while json.loads(await ws.recv())["event"] != "media":
                pass  # the greeting comes: the call runs
        other = {"X-Twilio-Signature": TWILIO.compute_signature(signed_as + "&x=1", {})}
        for headers in [{}, other, {"Authorization": f"Bearer {KEY}"}]:
            async with websockets.connect(url, additional_headers=headers) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4403, headers
            assert closed.value.rcvd.reason == "the request is not signed by Twilio"
    assert TOKEN not in "".join(server.log)
