"""SIP calls under the call-length rule (agent/grants.py ``call_settings``): a SIP call carries
no key, so with authentication on it is an unkeyed caller's and never unlimited; the server
gives its SIP admission that caller (agent/server.py). Unit level: the settings a SIP call's
session is made with (agent/sip_server.py ``ServerAdmission``), without waiting out a call.
"""

from __future__ import annotations

import pytest

from agent.auth import AccessPolicy, ApiKeys
from agent.config import AuthConfig, parse_config
from agent.grants import FULL, UNKEYED, UNKEYED_MAX_CALL_MS, Caller, Grants
from agent.reply import ReplyVoice
from agent.server import ServerState
from agent.sip_server import ServerAdmission

KEY = "vx-test-sip-call-length-0123456789"


def admission(max_call_ms: int, caller: Caller | None) -> ServerAdmission:
    config = parse_config(f"name: x\nturns: {{max_call_ms: {max_call_ms}}}\n".encode(), ".yaml")
    return ServerAdmission(ServerState(config), caller)


@pytest.mark.parametrize(
    ("max_call_ms", "grants", "expected"),
    [
        (0, UNKEYED, UNKEYED_MAX_CALL_MS),  # authentication on: never unlimited
        (0, FULL, 0),  # authentication off: as the agent asks
        (60_000, UNKEYED, 60_000),  # the agent's own limit holds for everyone
    ],
)
def test_a_sip_call_runs_under_the_call_length_rule_of_its_caller(
    max_call_ms: int, grants: Grants, expected: int
) -> None:
    settings = admission(max_call_ms, Caller(None, grants)).settings(ReplyVoice())
    assert settings.turns.max_call_ms == expected


def test_a_sip_call_is_the_caller_without_a_key_of_the_servers_access_policy() -> None:
    """What the server gives its SIP admission: ``policy.caller(None, None)``."""
    keyed = AccessPolicy(ApiKeys([KEY]), AuthConfig(), metrics_public=False)
    caller = Caller(*keyed.caller(None, None))
    assert admission(0, caller).settings(ReplyVoice()).turns.max_call_ms == UNKEYED_MAX_CALL_MS
    open_server = AccessPolicy(ApiKeys(), AuthConfig(), metrics_public=False)
    caller = Caller(*open_server.caller(None, None))
    assert admission(0, caller).settings(ReplyVoice()).turns.max_call_ms == 0
