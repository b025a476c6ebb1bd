"""Grants per API key (agent/grants.py), the token bucket (agent/rate_limit.py) and the
Realtime override lock (agent/realtime_overrides.py), without a server: tables, an injected
clock, the sans-I/O protocol. The same rules against a real server: tests/test_grants_server.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.auth import ENV_VAR, AccessPolicy, ApiKeys, load_keys
from agent.client_secrets import ClientSecrets
from agent.config import AuthConfig
from agent.grants import (
    ENDPOINTS,
    FULL,
    UNKEYED,
    UNKEYED_MAX_CALL_MS,
    Caller,
    Grants,
    KeySessions,
    call_settings,
    endpoint_of,
    parse_grants,
)
from agent.rate_limit import RateLimits, TokenBucket
from agent.realtime_overrides import CODE, LockedProtocol, protocol_for, spec_override
from agent.session_control import SessionSettings
from agent.turn_types import TurnConfig
from pipeline.errors import ConfigError
from transports.realtime import RealtimeProtocol
from transports.realtime_events import FunctionTool, RealtimeSessionConfig, SessionSpec

KEY = "vx-test-key-with-every-grant"
LIMITED = "vx-test-key-with-few-grants"

# -- grants ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "grants"),
    [
        ([], FULL),
        (["endpoints=realtime,stream"], Grants(endpoints=frozenset({"realtime", "stream"}))),
        (["overrides=no"], Grants(overrides=False)),
        (["overrides=YES"], Grants(overrides=True)),
        (["max_sessions=2"], Grants(max_sessions=2)),
        (["requests_per_minute=60"], Grants(requests_per_minute=60)),
        (["unlimited_calls=false"], Grants(unlimited_calls=False)),
        (
            ["endpoints=rest", "requests_per_minute=2", "max_sessions=1"],
            Grants(endpoints=frozenset({"rest"}), requests_per_minute=2, max_sessions=1),
        ),
    ],
)
def test_grants_are_read_from_name_value_words(words: list[str], grants: Grants) -> None:
    assert parse_grants(words) == grants


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        (["rpm=2"], "'rpm' is not a grant"),
        (["overrides"], "'overrides' is not a grant"),
        (["endpoints=realtime,sip"], "unknown endpoint 'sip'"),
        (["endpoints="], "no endpoint"),
        (["overrides=maybe"], "overrides: yes or no"),
        (["max_sessions=0"], "max_sessions: a whole number"),
        (["requests_per_minute=-1"], "requests_per_minute: a whole number"),
        (["requests_per_minute=1.5"], "requests_per_minute: a whole number"),
        (["max_sessions=1", "max_sessions=2"], "max_sessions is given twice"),
    ],
)
def test_a_bad_grant_says_which_and_why(words: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_grants(words)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v1/realtime", "realtime"),
        ("/v1/realtime/calls", "realtime"),
        ("/v1/realtime/calls/rtc_1/hangup", "realtime"),
        ("/v1/realtime/client_secrets", None),
        ("/v1/stream", "stream"),
        ("/v1/telephony/twilio", "twilio"),
        ("/v1/webrtc/offer", "webrtc"),
        ("/v1/webrtc/config", "webrtc"),
        ("/v1/audio/speech", "rest"),
        ("/v1/voices", "rest"),
        ("/metrics", "metrics"),
        ("/v1/calls", "calls"),
        ("/v1/calls/abc", "calls"),
        ("/v1/callsign", "rest"),
    ],
)
def test_each_path_belongs_to_one_endpoint(path: str, endpoint: str | None) -> None:
    assert endpoint_of(path) == endpoint
    assert endpoint is None or endpoint in ENDPOINTS


def test_a_keys_file_line_carries_its_grants_and_the_old_format_still_loads(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(
        f"# bare keys, as before\n{KEY}\n  {LIMITED}   endpoints=rest  overrides=no   # a comment\n"
    )
    loaded = load_keys(AuthConfig(keys_file=str(keys)), {ENV_VAR: "vx-test-key-of-the-env"})
    assert len(loaded) == 3
    assert loaded.find("vx-test-key-of-the-env") == 0
    assert loaded.find(KEY) == 1
    assert loaded.find(LIMITED) == 2
    assert loaded.find("vx-test-key-nobody-has") is None
    assert loaded.grants == (FULL, FULL, Grants(endpoints=frozenset({"rest"}), overrides=False))


def test_a_bad_grant_in_the_keys_file_stops_the_server_with_its_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY}\n{LIMITED} requests_per_minute=lots\n")
    with pytest.raises(ConfigError) as error:
        load_keys(AuthConfig(keys_file=str(keys)), {})
    assert error.value.path == "$.server.auth.keys_file"
    assert f"line 2 of {keys}: requests_per_minute" in error.value.reason
    assert LIMITED not in str(error.value)


def test_a_caller_is_its_key_a_secret_is_its_minting_key_and_no_key_is_unkeyed() -> None:
    limited = Grants(overrides=False)
    secrets = ClientSecrets()
    policy = AccessPolicy(
        ApiKeys([KEY, (LIMITED, limited)]), AuthConfig(), metrics_public=False, secrets=secrets
    )
    minted = secrets.mint(60, key=1, grants=limited)
    assert policy.caller(f"Bearer {KEY}", None) == (0, FULL)
    assert policy.caller(f"Bearer {LIMITED}", None) == (1, limited)
    assert policy.caller(f"Bearer {minted.value}", None) == (1, limited)
    assert policy.caller(None, [f"openai-insecure-api-key.{minted.value}"]) == (1, limited)
    assert policy.caller(None, None) == (None, UNKEYED)  # Twilio's signed stream
    off = AccessPolicy(ApiKeys(), AuthConfig(), metrics_public=False)
    assert off.caller(None, None) == (None, FULL)


def test_a_key_holds_at_most_max_sessions_calls_and_each_is_given_back_once() -> None:
    sessions = KeySessions()
    two = Grants(max_sessions=2)
    first, second = sessions.claim(0, two), sessions.claim(0, two)
    assert first is not None
    assert second is not None
    assert sessions.claim(0, two) is None
    assert sessions.claim(1, two) is not None  # another key's own count
    first.release()
    first.release()  # once only
    assert sessions.open(0) == 1
    third = sessions.claim(0, two)
    assert third is not None
    assert sessions.claim(0, two) is None
    second.release()
    third.release()
    assert sessions.open(0) == 0
    assert sessions.claim(None, two) is not None  # no key: no per-key limit
    assert Caller(0, FULL, sessions).claim() is not None  # no max_sessions: no limit


@pytest.mark.parametrize(
    ("max_call_ms", "grants", "expected"),
    [
        (0, FULL, 0),  # unlimited, as the agent asks, for a key that may
        (0, Grants(unlimited_calls=False), UNKEYED_MAX_CALL_MS),
        (0, UNKEYED, UNKEYED_MAX_CALL_MS),  # no key, authentication on
        (60_000, UNKEYED, 60_000),  # a limit of the agent's own holds for everyone
        (60_000, FULL, 60_000),
    ],
)
def test_an_unlimited_call_needs_a_grant_for_it(
    max_call_ms: int, grants: Grants, expected: int
) -> None:
    settings = SessionSettings(turns=TurnConfig(max_call_ms=max_call_ms))
    assert call_settings(settings, Caller(None, grants)).turns.max_call_ms == expected


# -- the token bucket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per_minute", "requests", "waits"),
    [
        # a burst of per_minute at once, then one each 60/per_minute seconds
        (2, [0, 0, 0], [0, 0, 30]),
        (2, [0, 0, 10], [0, 0, 20]),
        (2, [0, 0, 30, 30], [0, 0, 0, 30]),
        (2, [0, 0, 60, 60, 60], [0, 0, 0, 0, 30]),
        (60, [0] * 60 + [0, 0.5, 1], [0] * 60 + [1, 0.5, 0]),
        (1, [0, 59, 60, 600, 600], [0, 1, 0, 0, 60]),
        # no more than a full bucket builds up over a quiet hour
        (2, [0, 3600, 3600, 3600], [0, 0, 0, 30]),
        # a clock that goes back refills nothing
        (2, [100, 100, 50], [0, 0, 30]),
    ],
)
def test_the_token_bucket(per_minute: int, requests: list[float], waits: list[float]) -> None:
    bucket = TokenBucket(per_minute, requests[0])
    assert [bucket.take(at) for at in requests] == pytest.approx(waits)


def test_rate_limits_keep_a_bucket_per_key_and_round_the_wait_up() -> None:
    now = [0.0]
    limits = RateLimits(lambda: now[0])
    assert [limits.take(0, 2) for _ in range(3)] == [0, 0, 30]
    assert limits.take(1, 2) == 0  # another key's own bucket
    now[0] = 29.5
    assert limits.take(0, 2) == 1  # half a second: Retry-After 1, never 0
    now[0] = 30.0
    assert limits.take(0, 2) == 0
    with pytest.raises(ValueError, match="at least 1 request a minute"):
        TokenBucket(0, 0.0)


# -- overrides ------------------------------------------------------------------------------------

TOOL = FunctionTool(name="lookup", description="look it up")


def locked() -> RealtimeProtocol:
    protocol = protocol_for(Grants(overrides=False))(RealtimeSessionConfig(), id_seed="t")
    assert isinstance(protocol, LockedProtocol)
    protocol.data_to_send()  # session.created
    return protocol


def sent(protocol: RealtimeProtocol) -> list[dict[str, Any]]:
    return [json.loads(message) for message in protocol.data_to_send()]


SYSTEM = {"type": "message", "role": "system", "content": []}
TOOLS = [{"type": "function", "name": "x"}]
OBEY = "Obey me."


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "session.update", "session": {"instructions": OBEY}}, "session.instructions"),
        ({"type": "session.update", "session": {"tools": TOOLS}}, "session.tools"),
        ({"type": "response.create", "response": {"instructions": OBEY}}, "response.instructions"),
        ({"type": "response.create", "response": {"tools": TOOLS}}, "response.tools"),
        ({"type": "response.create", "response": {"input": [SYSTEM]}}, "response.input[0].role"),
        ({"type": "conversation.item.create", "item": SYSTEM}, "item.role"),
    ],
)
def test_a_locked_client_is_refused_an_override_naming_the_param_and_goes_on(
    event: dict[str, Any], param: str
) -> None:
    protocol = locked()
    assert protocol.receive_text(json.dumps({**event, "event_id": "e1"}))
    [error] = sent(protocol)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert (error["error"]["code"], error["error"]["param"]) == (CODE, param)
    assert error["error"]["event_id"] == "e1"
    assert protocol.config.instructions == ""
    assert protocol.config.tools == ()
    # the session goes on: what is no override is applied
    protocol.receive_text(json.dumps({"type": "session.update", "session": {"voice": "alloy"}}))
    assert [e["type"] for e in sent(protocol)] == ["session.updated"]
    assert protocol.config.voice == "alloy"


def test_sending_the_sessions_own_values_back_is_no_override() -> None:
    protocol = locked()
    echo = {"type": "session.update", "session": {"instructions": "", "tools": []}}
    protocol.receive_text(json.dumps(echo))
    assert [e["type"] for e in sent(protocol)] == ["session.updated"]
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    protocol.receive_text(json.dumps({"type": "conversation.item.create", "item": user}))
    assert "error" not in [e["type"] for e in sent(protocol)]


def test_an_escaped_event_type_is_still_an_override() -> None:
    protocol = locked()
    text = '{"type": "session\\u002eupdate", "session": {"instructions": "Obey me."}}'
    protocol.receive_text(text)
    [error] = sent(protocol)
    assert error["error"]["param"] == "session.instructions"


def test_a_malformed_event_gets_the_protocols_own_error() -> None:
    protocol = locked()
    protocol.receive_text('{"type": "session.update", "session": {"instructions": 7}}')
    [error] = sent(protocol)
    assert error["error"]["code"] == "invalid_value"


def test_a_client_that_may_override_does() -> None:
    protocol = protocol_for(FULL)(RealtimeSessionConfig())
    assert type(protocol) is RealtimeProtocol
    update = {"type": "session.update", "session": {"instructions": "Be terse."}}
    protocol.receive_text(json.dumps(update))
    assert protocol.config.instructions == "Be terse."


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        (SessionSpec(), None),
        (SessionSpec(instructions=""), None),
        (SessionSpec(instructions="Obey me."), "session.instructions"),
        (SessionSpec(tools=[]), None),
        (SessionSpec(tools=[TOOL]), "session.tools"),
        (SessionSpec(voice="alloy"), None),
    ],
)
def test_a_session_spec_overrides_when_it_changes_instructions_or_tools(
    spec: SessionSpec, param: str | None
) -> None:
    assert spec_override(spec, RealtimeSessionConfig()) == param


def test_the_keys_file_in_the_docs_loads(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    start = text.index("# keys.txt")
    block = text[start : text.index("```", start)]
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(line.strip() for line in block.splitlines()))
    loaded = load_keys(AuthConfig(keys_file=str(keys)), {})
    assert len(loaded) == 3
    assert loaded.grants[0] == FULL
    assert loaded.grants[1] == Grants(
        endpoints=frozenset({"realtime", "webrtc"}),
        overrides=False,
        max_sessions=2,
        requests_per_minute=30,
    )
    assert loaded.grants[2] == Grants(endpoints=frozenset({"metrics"}))
