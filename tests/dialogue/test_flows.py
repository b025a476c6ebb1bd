"""The sans-I/O conversation: webhooks paused and resumed, branches, variables, hand-offs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import anyio
import msgspec
import pytest

from agent.config import AgentConfig, parse_config
from agent.dialogue.decision import (
    DialogueDecision,
    EndCall,
    HandOff,
    Say,
    WebhookCall,
    WebhookResult,
)
from agent.dialogue.engine import IntentEngine
from agent.dialogue.flows import Conversation
from agent.dialogue.intents import IntentMatcher
from agent.dialogue.script import Script
from tests.dialogue.webhook_server import WebhookServer

TODAY = dt.date(2025, 3, 5)
AGENT = rb"""
name: shop
greeting: {text: "<speak>Hi {who}</speak>"}
profile: {llm: {model: tiny}}
limits: {max_turns: 6}
dialogue:
  engine: mixed
  variables: {who: Ann & Bo}
  slots:
    - {name: order, type: number, prompt: Which order number?, cues: [order, number]}
    - {name: email_ok, type: yes_no, prompt: Shall I email you the details?}
  intents:
    - {name: status, patterns: ['\bwhere is my order\b', '\border status\b'], flow: status}
    - name: agent
      patterns: ['\bassistant\b']
      actions: [{action: handoff, note: "for {who}"}]
    - {name: loop, patterns: ['\bloop\b'], flow: ping}
    - name: ping_now
      patterns: ['\bping now\b']
      reply: Pinging.
      actions: [{action: webhook, tool: lookup, arguments: {order: 7}, save_as: ping}]
  flows:
    - name: status
      slots: [order]
      actions:
        - action: webhook
          tool: lookup
          arguments: {source: "phone {who}", order_copy: "{order}"}
          save_as: lookup
      branches:
        - when: {var: lookup.status, equals: shipped}
          reply: "Order {order} has shipped and arrives {lookup.eta}."
          actions: [{action: set, var: told, value: "{lookup.eta}"}]
          goto: email
        - reply: "Order {order} is {lookup.status}."
    - name: email
      slots: [email_ok]
      branches:
        - {when: {var: email_ok, equals: true}, reply: "Done: {told}."}
        - reply: Alright.
    - {name: ping, branches: [{goto: pong}]}
    - {name: pong, branches: [{goto: ping}]}
tools:
  webhooks:
    - name: lookup
      url: http://127.0.0.1:9/lookup
      parameters:
        type: object
        properties: {order: {type: integer}}
        required: [order]
"""


@pytest.fixture
def config() -> AgentConfig:
    return parse_config(AGENT, ".yaml")


class Caller:
    """Drives a conversation turn by turn with rule-only intent scores (no embeddings)."""

    def __init__(self, config: AgentConfig) -> None:
        self.script = Script(config)
        self.matcher = IntentMatcher(
            config.dialogue.intents, None, threshold=0.5, keyword_boost=0.2
        )
        self.conversation = Conversation(self.script, today=TODAY)

    def say(self, text: str) -> DialogueDecision | WebhookCall:
        scores = self.matcher.score(text, None) if self.conversation.wants_scores(text) else None
        return self.conversation.respond(text, scores)


def ok(call: WebhookCall, data: object) -> WebhookResult:
    return WebhookResult(id=call.id, tool=call.tool, ok=True, status=200, data=data)


def test_a_webhook_pauses_the_turn_until_its_result(config: AgentConfig) -> None:
    caller = Caller(config)
    call = caller.say("where is my order 1234")
    assert isinstance(call, WebhookCall)
    assert call.arguments == {"order": 1234, "source": "phone Ann & Bo", "order_copy": 1234}
    with pytest.raises(RuntimeError, match="resume"):
        caller.say("hello")
    with pytest.raises(RuntimeError, match="no webhook call 99"):
        caller.conversation.resume(WebhookResult(id=99, tool="lookup", ok=True))
    decision = caller.conversation.resume(ok(call, {"status": "shipped", "eta": "on Friday"}))
    assert isinstance(decision, DialogueDecision)
    assert decision.replies == (
        Say(text="Order 1234 has shipped and arrives on Friday."),
        Say(text="Shall I email you the details?"),
    )
    assert decision.changes == {
        "order": 1234,
        "lookup": {"status": "shipped", "eta": "on Friday"},
        "told": "on Friday",
    }
    assert (decision.flow, decision.stage) == ("email", "collecting")
    assert decision.webhooks[0].data == {"status": "shipped", "eta": "on Friday"}
    done = caller.say("yes")
    assert isinstance(done, DialogueDecision)
    assert done.text == "Done: on Friday."
    assert caller.conversation.values["told"] == "on Friday"


def test_the_other_branch(config: AgentConfig) -> None:
    caller = Caller(config)
    asked = caller.say("what's my order status")
    assert isinstance(asked, DialogueDecision)
    assert asked.text == "Which order number?"
    call = caller.say("it's 55")
    assert isinstance(call, WebhookCall)
    decision = caller.conversation.resume(ok(call, {"status": "being packed"}))
    assert isinstance(decision, DialogueDecision)
    assert decision.text == "Order 55 is being packed."
    assert (decision.flow, decision.stage) == (None, "idle")


def test_mixed_engine_hands_what_it_does_not_understand_to_the_llm(config: AgentConfig) -> None:
    caller = Caller(config)
    caller.say("what's my order status")
    decision = caller.say("do you sell umbrellas?")
    assert isinstance(decision, DialogueDecision)
    assert decision.replies == ()
    assert decision.understood is False
    (handoff,) = decision.events
    assert handoff == HandOff(
        utterance="do you sell umbrellas?",
        values={"who": "Ann & Bo", "today": "2025-03-05"},
        pending=Say(text="Which order number?"),
    )
    assert decision.flow == "status"


def test_a_handoff_action(config: AgentConfig) -> None:
    decision = Caller(config).say("let me talk to the assistant")
    assert isinstance(decision, DialogueDecision)
    (handoff,) = decision.events
    assert isinstance(handoff, HandOff)
    assert handoff.note == "for Ann & Bo"
    assert decision.understood


def test_flows_that_go_to_each_other_forever_are_stopped(config: AgentConfig) -> None:
    decision = Caller(config).say("loop")
    assert isinstance(decision, DialogueDecision)
    assert (decision.flow, decision.stage) == (None, "idle")


def test_the_turn_limit_ends_the_call(config: AgentConfig) -> None:
    caller = Caller(config)
    decisions = [caller.say("assistant") for _ in range(7)]
    assert isinstance(decisions[5], DialogueDecision)
    assert decisions[5].events[0] == HandOff(
        utterance="assistant",
        note="for Ann & Bo",
        values={"who": "Ann & Bo", "today": "2025-03-05"},
    )
    last = decisions[6]
    assert isinstance(last, DialogueDecision)
    assert last.events == (EndCall(reason="max_turns"),)


def test_slot_answers_need_no_intent_scores(config: AgentConfig) -> None:
    caller = Caller(config)
    conversation = caller.conversation
    assert conversation.wants_scores("anything")
    caller.say("order status")
    assert not conversation.wants_scores("number 12")
    assert conversation.wants_scores("do you sell umbrellas?")


def test_a_snapshot_undoes_turns(config: AgentConfig) -> None:
    caller = Caller(config)
    saved = caller.conversation.snapshot()
    conversation = caller.conversation
    caller.say("order status")
    during = (conversation.flow, conversation.stage)
    conversation.restore(saved)
    assert during == ("status", "collecting")
    assert (conversation.flow, conversation.stage) == (None, "idle")


def test_the_greeting_is_a_template_and_may_be_ssml(config: AgentConfig) -> None:
    opening = Caller(config).conversation.opening()
    assert opening.replies == (Say(text="<speak>Hi Ann &amp; Bo</speak>", ssml=True),)


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    with WebhookServer() as running:
        yield running


@pytest.mark.anyio
async def test_previews_never_call_webhooks(config: AgentConfig, server: WebhookServer) -> None:
    hook = msgspec.structs.replace(config.tools.webhooks[0], url=server.url("/echo"))
    tools = msgspec.structs.replace(config.tools, webhooks=(hook,))
    config = msgspec.structs.replace(config, tools=tools)
    with anyio.fail_after(10):
        async with await IntentEngine.load(config, embedder=None) as engine:
            session = engine.conversation(today=TODAY)
            # Clear and stable (a pattern scores 1.0): a preview would run the webhook.
            assert await session.handle("ping now", final=False) is None
            assert await session.handle("ping now please", final=False) is None
            assert server.requests == []
            final = await session.handle("ping now please", final=True)
    assert final.text == "Pinging."
    (request,) = server.requests
    assert request["arguments"] == {"order": 7}
    assert final.changes["ping"]["received"]["call_id"] == "intent-1"


@pytest.mark.anyio
async def test_a_preview_commits_nothing(config: AgentConfig) -> None:
    with anyio.fail_after(10):
        async with await IntentEngine.load(config, embedder=None) as engine:
            session = engine.conversation(today=TODAY)
            assert await session.handle("where is my order", final=False) is None
            preview = await session.handle("where is my order", final=False)
            assert preview is not None
            assert preview.early
            assert preview.text == "Which order number?"
            assert session.conversation.flow is None
            final = await session.handle("where is my order", final=True)
    assert session.reused_preview
    assert not final.early
    assert (final.text, final.flow) == ("Which order number?", "status")
