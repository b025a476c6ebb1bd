"""``send_dtmf``: the agent keys digits (an IVR's menu, a code). In an agent file it is an
action with its digits (a template); for the LLM, the built-in tool of the same name. Both
become the same call action (:class:`~agent.dialogue.decision.SendDigits`), and a bad string
fails where it was written: the agent file names the key, the tool answers the model."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig, parse_config
from agent.config.runtime import tool_configs
from agent.dialogue.decision import DialogueDecision, Say, SendDigits
from agent.dialogue.llm_tools import ToolCall, Tools
from agent.digits import check_digits
from agent.responders import BUILTINS
from pipeline.errors import ConfigError
from tests.dialogue.test_flows import Caller

AGENT = rb"""
name: dialler
dialogue:
  slots:
    - {name: code, type: digits, length: 4, prompt: What is the code?}
  intents:
    - name: menu
      patterns: ['\bmenu\b']
      reply: Choosing billing.
      actions: [{action: send_dtmf, digits: "2"}, {action: send_dtmf, digits: "*9#"}]
    - {name: enter, patterns: ['\benter\b'], flow: enter}
  flows:
    - name: enter
      slots: [code]
      actions: [{action: send_dtmf, digits: "{code}#"}]
      branches: [{reply: "Sending {code}."}]
tools:
  builtins: [send_dtmf]
"""


@pytest.fixture
def config() -> AgentConfig:
    return parse_config(AGENT, ".yaml")


def decided(result: object) -> DialogueDecision:
    assert isinstance(result, DialogueDecision)
    return result


def test_an_intents_digits_are_call_actions_in_order_after_its_reply(config: AgentConfig) -> None:
    decision = decided(Caller(config).say("the menu please"))
    assert decision.replies == (Say("Choosing billing."),)
    assert decision.events == (SendDigits("2"), SendDigits("*9#"))
    assert not decision.ended  # keying digits does not end the call


def test_a_flows_digits_are_filled_in_from_its_slots(config: AgentConfig) -> None:
    caller = Caller(config)
    assert decided(caller.say("enter")).text == "What is the code?"
    decision = decided(caller.say("0 4 2 1"))
    assert decision.events == (SendDigits("0421#"),)
    assert decision.text == "Sending 0421."


@pytest.mark.parametrize(
    ("digits", "reason"),
    [
        ('"12x"', "matching regex"),
        ('""', "matching regex"),
        ('"' + "1" * 33 + '"', "matching regex"),
        ('"1 2"', "matching regex"),
        ('"{nowhere}#"', "unknown slot or variable {nowhere}"),
    ],
)
def test_bad_digits_in_the_agent_file_name_the_key(digits: str, reason: str) -> None:
    text = AGENT.replace(b'digits: "*9#"', b"digits: " + digits.encode())
    with pytest.raises(ConfigError) as info:
        parse_config(text, ".yaml")
    assert info.value.path == "$.dialogue.intents[0].actions[1].digits"
    assert reason in info.value.reason


def test_the_agent_checks_what_a_template_filled_in() -> None:
    assert check_digits("0421#") == "0421#"
    assert check_digits("a*") == "A*"
    for bad, why in (("", "0 digits"), ("12 3", "not DTMF"), ("1x", "not DTMF"), ("1" * 33, "33")):
        with pytest.raises(ValueError, match=why):
            check_digits(bad)


async def run_tool(config: AgentConfig, arguments: str) -> tuple[bool, bool, str]:
    tools = Tools(tool_configs(config), builtins=BUILTINS)
    result = await tools(ToolCall(id="c1", name="send_dtmf", arguments=arguments))
    return result.error, result.final, result.content


@pytest.mark.anyio
async def test_the_llm_tool_declares_the_digits_and_refuses_bad_ones(config: AgentConfig) -> None:
    (declared,) = Tools(tool_configs(config), builtins=BUILTINS).schemas()
    parameters = declared["function"]["parameters"]
    assert parameters["required"] == ["digits"]
    assert await run_tool(config, '{"digits": "1234#"}') == (
        False,
        True,
        "keyed once this reply has been spoken",
    )
    error, final, content = await run_tool(config, '{"digits": "12 34"}')
    assert (error, final) == (True, False)
    assert "not DTMF digits" in content
    error, _, content = await run_tool(config, "{}")
    assert error  # the schema's required argument
