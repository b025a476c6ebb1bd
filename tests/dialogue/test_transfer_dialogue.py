"""A transfer in the intent conversation: it ends the turn and the flow, never the
conversation; a failed one is said in the agent file's words and the conversation goes on."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import pytest

from agent.config import AgentConfig, parse_config
from agent.config.runtime import llm_config
from agent.dialogue.decision import DialogueDecision, Say, Transfer
from agent.dialogue.engine import IntentEngine
from agent.dialogue.intents import IntentMatcher
from agent.dialogue.llm import LLMEngine, make_backend
from agent.reply import ReplyPart
from agent.responders import IntentResponder, LLMResponder
from pipeline.errors import ConfigError
from tests.dialogue.test_flows import Caller

AGENT = rb"""
name: desk
dialogue:
  variables: {team: sales}
  slots:
    - {name: order, type: number, prompt: Which order number?, cues: [order]}
  intents:
    - {name: status, patterns: ['\border status\b'], flow: status}
    - name: human
      patterns: ['\boperator\b']
      reply: Let me put you through.
      actions: [{action: transfer, to: "{team}-desk"}, {action: end_call}]
    - {name: hello, patterns: ['\bhello\b'], reply: Hello there.}
  flows:
    - {name: status, slots: [order], branches: [{reply: "Order {order} is on its way."}]}
  fallback:
    limit: 2
    final_reply: Let me find someone.
    actions: [{action: transfer, to: front}]
  transfer_failed: "Sorry, {target} did not answer ({reason}). What else can I do?"
"""


@pytest.fixture
def config() -> AgentConfig:
    return parse_config(AGENT, ".yaml")


def decided(result: object) -> DialogueDecision:
    assert isinstance(result, DialogueDecision)
    return result


def test_a_transfer_ends_the_turn_and_the_flow_but_not_the_conversation(
    config: AgentConfig,
) -> None:
    caller = Caller(config)
    assert decided(caller.say("what's my order status")).stage == "collecting"
    transfer = decided(caller.say("get me an operator"))
    assert transfer.replies == (Say("Let me put you through."),)
    assert transfer.events == (Transfer("sales-desk"),)  # the end_call after it is not run
    assert (transfer.flow, transfer.stage) == (None, "idle")
    failed = caller.conversation.transfer_failed("sales-desk", "busy")
    assert failed.text == "Sorry, sales-desk did not answer (busy). What else can I do?"
    assert decided(caller.say("hello")).text == "Hello there."


def test_after_a_failed_fallback_transfer_the_misses_count_from_zero(config: AgentConfig) -> None:
    caller = Caller(config)
    assert decided(caller.say("purple elephants")).events == ()
    second = decided(caller.say("banana umbrella"))
    assert second.text == "Let me find someone."
    assert second.events == (Transfer("front"),)
    caller.conversation.transfer_failed("front", "timeout")
    again = decided(caller.say("more nonsense"))
    assert again.events == ()  # one miss, not the third in a row
    assert not again.understood


def test_the_failure_reply_has_a_default_and_its_template_is_checked() -> None:
    default = parse_config(b"name: x", ".yaml").dialogue
    assert default.transfer_failed == (
        "I'm sorry, I couldn't put you through just now. How else can I help?"
    )
    assert default.transfer_timeout_s == 15.0
    with pytest.raises(ConfigError, match=r"\$\.dialogue\.transfer_failed"):
        parse_config(b"name: x\ndialogue: {transfer_failed: 'Sorry {nobody}'}", ".yaml")
    with pytest.raises(ConfigError, match="transfer_timeout_s"):
        parse_config(b"name: x\ndialogue: {transfer_timeout_s: 0}", ".yaml")


@pytest.mark.anyio
async def test_the_intent_responder_says_the_failure_and_answers_the_next_turn(
    config: AgentConfig,
) -> None:
    matcher = IntentMatcher(config.dialogue.intents, None, threshold=0.5, keyword_boost=0.2)
    async with IntentEngine(config, matcher) as engine:
        responder = IntentResponder(engine, config)

        async def said(parts: AsyncGenerator[ReplyPart, None]) -> list[ReplyPart]:
            return [part async for part in parts]

        with anyio.fail_after(5):
            asked = await said(responder.respond("operator please", generation=1))
            failed = await said(responder.transfer_failed("sales-desk", "unsupported"))
            hello = await said(responder.respond("hello", generation=3))
    assert asked == [Say("Let me put you through."), Transfer("sales-desk")]
    assert failed == [Say("Sorry, sales-desk did not answer (unsupported). What else can I do?")]
    assert hello == [Say("Hello there.")]


@pytest.mark.anyio
async def test_the_llm_hears_that_the_transfer_failed_and_why() -> None:
    config = parse_config(
        b"name: x\nprofile: {llm: {base_url: 'http://127.0.0.1:9/v1', model: m}}\n"
        b"dialogue: {engine: llm, transfer_failed: 'No luck with {target}.'}",
        ".yaml",
    )
    settings = llm_config(config)
    responder = LLMResponder(LLMEngine(settings, make_backend(settings)), config)
    with anyio.fail_after(5):
        said = [part async for part in responder.transfer_failed("sales", "HTTP 503")]
    assert said == [Say("No luck with sales.")]
    rendered = responder.history.render()
    assert "the transfer to sales failed (HTTP 503)" in rendered[-2]["content"]
    assert rendered[-2]["role"] == "system"
    assert rendered[-1] == {"role": "assistant", "content": "No luck with sales."}
