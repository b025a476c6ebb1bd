"""Keypad digits in the intent dialogue: menus by key, digit slots by key and by voice, and
when a keyed string is complete (agent/dialogue/keypad.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncGenerator

import anyio
import pytest

from agent.config import AgentConfig, ConfigError, parse_config
from agent.dialogue.decision import DialogueDecision, Say, Transfer
from agent.dialogue.engine import IntentEngine
from agent.dialogue.flows import Conversation
from agent.dialogue.intents import IntentMatcher
from agent.dialogue.keypad import key_scores, keypad_rule, read_keys
from agent.dialogue.script import Script
from agent.digits import Keypad, KeypadRule
from agent.reply import ReplyPart
from agent.responders import IntentResponder

TODAY = dt.date(2025, 3, 5)
AGENT = rb"""
name: menu
dialogue:
  digits: {timeout_ms: 2000}
  slots:
    - {name: account, type: digits, length: 6, prompt: Your account number?,
       invalid: "{value} is not an account number."}
    - {name: pin, type: digits, min_length: 4, max_length: 8, terminator: "*",
       prompt: Your PIN?}
    - {name: people, type: number, prompt: How many people?, min: 1, max: 9}
    - {name: who, type: text, prompt: Your name?}
  intents:
    - {name: sales, keys: ["1"], patterns: ['\bsales\b'], reply: Sales here.}
    - {name: support, keys: ["2"], patterns: ['\bsupport\b'], flow: support}
    - {name: operator, keys: ["0", "00"], reply: Operator.,
       actions: [{action: transfer, to: operator}]}
    - {name: book, keys: ["3"], flow: booking}
  flows:
    - name: support
      slots: [account, pin]
      branches: [{reply: "Account {account}, PIN {pin}: done."}]
    - name: booking
      slots: [people, who]
      branches: [{reply: "{people} for {who}."}]
  fallback: {reply: Not an option., reprompt: Pardon?}
"""


def config(raw: bytes = AGENT) -> AgentConfig:
    return parse_config(raw, ".yaml")


def conversation() -> tuple[Conversation, Script]:
    script = Script(config())
    return Conversation(script, today=TODAY), script


def keyed(talk: Conversation, script: Script, digits: str) -> DialogueDecision:
    decision = talk.respond(digits, key_scores(script, digits), keyed=True)
    assert isinstance(decision, DialogueDecision)
    return decision


def said(talk: Conversation, script: Script, text: str) -> DialogueDecision:
    matcher = IntentMatcher(script.dialogue.intents, None, threshold=0.5, keyword_boost=0.2)
    decision = talk.respond(text, matcher.score(text, None))
    assert isinstance(decision, DialogueDecision)
    return decision


def test_a_key_chooses_its_intent_exactly_without_embedding() -> None:
    talk, script = conversation()
    decision = keyed(talk, script, "1")
    assert (decision.intent, decision.text, decision.understood) == ("sales", "Sales here.", True)
    scores = key_scores(script, "1")
    assert scores.top is not None
    assert (scores.top.score, scores.embedded) == (1.0, False)
    assert keyed(talk, script, "0").events == (Transfer("operator"),)


def test_digits_no_intent_has_are_a_misunderstood_turn() -> None:
    talk, script = conversation()
    decision = keyed(talk, script, "7")
    assert (decision.text, decision.understood, decision.intent) == ("Not an option.", False, None)


def test_a_digit_slot_is_filled_by_its_length_of_keys_and_keeps_leading_zeros() -> None:
    talk, script = conversation()
    assert keyed(talk, script, "2").text == "Your account number?"
    decision = keyed(talk, script, "004213")
    assert decision.changes == {"account": "004213"}
    assert decision.text == "Your PIN?"
    assert keyed(talk, script, "9876").text == "Account 004213, PIN 9876: done."


def test_a_wrong_length_gets_the_slots_invalid_reply_and_it_is_asked_again() -> None:
    talk, script = conversation()
    keyed(talk, script, "2")
    decision = keyed(talk, script, "123")
    assert decision.text == "123 is not an account number."
    assert (talk.asking, decision.understood) == ("account", True)
    assert keyed(talk, script, "123456").changes == {"account": "123456"}


def test_a_menu_key_that_is_no_value_of_the_asked_slot_chooses_its_intent() -> None:
    talk, script = conversation()
    keyed(talk, script, "2")
    assert keyed(talk, script, "00").events == (Transfer("operator"),)


def test_keys_fill_a_number_slot_but_never_a_text_slot() -> None:
    talk, script = conversation()
    assert keyed(talk, script, "3").text == "How many people?"
    assert keyed(talk, script, "4").changes == {"people": 4}
    decision = keyed(talk, script, "55")  # the name is asked: keys are no name
    assert (decision.understood, decision.changes, decision.text) == (
        False,
        {},
        "Pardon? Your name?",
    )


def test_spoken_digits_fill_the_asked_digit_slot() -> None:
    talk, script = conversation()
    said(talk, script, "support please")
    decision = said(talk, script, "it's zero zero four two one three")
    assert decision.changes == {"account": "004213"}
    assert said(talk, script, "one two three").text.startswith("Sorry, 123 won't work")


def test_a_digit_slot_not_asked_takes_no_bare_numbers() -> None:
    script = Script(config())
    found = script.filler.extract("123456", ["account", "pin"], today=TODAY, expected="pin")
    assert found.filled == {"pin": "123456"}
    assert read_keys(script, ["account", "pin"], None, "123456", TODAY).filled == {}


def test_star_is_no_digit_of_a_digit_slot() -> None:
    script = Script(config())
    assert read_keys(script, ["account"], "account", "12*456", TODAY).rejected == {
        "account": "12*456"
    }


@pytest.mark.parametrize(
    ("asking", "rule"),
    [
        (None, KeypadRule(timeout_ms=2000, max_length=2)),  # the menu's longest key
        ("account", KeypadRule(timeout_ms=2000, max_length=6)),
        ("pin", KeypadRule(timeout_ms=2000, terminator="*", max_length=8)),
        ("people", KeypadRule(timeout_ms=2000)),
        ("who", KeypadRule(timeout_ms=2000, max_length=2)),
    ],
)
def test_the_rule_for_keyed_digits_follows_what_is_asked(
    asking: str | None, rule: KeypadRule
) -> None:
    script = Script(config())
    assert keypad_rule(script, asking, script.dialogue.digits) == rule


@pytest.mark.parametrize(
    ("old", "new", "path", "reason"),
    [
        (b'keys: ["2"]', b'keys: ["1"]', "$.dialogue.intents[1].keys", "already chooses 'sales'"),
        (b'keys: ["1"]', b'keys: ["1#"]', "$.dialogue.intents[0].keys", "holds the terminator"),
        (b'keys: ["1"]', b'keys: ["x"]', "$.dialogue.intents[0].keys[0]", "regex"),
    ],
)
def test_keys_that_cannot_be_keyed_or_choose_two_intents_are_refused(
    old: bytes, new: bytes, path: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(path)) as refused:
        config(AGENT.replace(old, new))
    assert reason in str(refused.value)


def test_a_digit_slot_gives_a_length_or_a_range_not_both() -> None:
    raw = AGENT.replace(b"length: 6,", b"length: 6, max_length: 7,")
    with pytest.raises(ConfigError, match="not both"):
        config(raw)


@pytest.mark.anyio
async def test_the_intent_responder_answers_keyed_turns_and_shows_the_llm_keypad_text() -> None:
    """A keyed turn reaches the engine as keys; a misunderstood one, with the ``mixed`` engine,
    reaches the LLM as "[keypad] 7"."""
    raw = AGENT.replace(b"dialogue:\n", b"profile: {llm: {model: m}}\ndialogue:\n  engine: mixed\n")
    agent = config(raw)
    matcher = IntentMatcher(agent.dialogue.intents, None, threshold=0.5, keyword_boost=0.2)
    shown: list[str] = []

    class Model:
        """The LLM's responder, as the intent responder uses it."""

        async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
            shown.append(text)
            yield Say("From the model.")

        def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
            pass

    async with IntentEngine(agent, matcher) as engine:
        responder = IntentResponder(engine, agent, Model())  # type: ignore[arg-type]

        async def answer(text: str) -> list[ReplyPart]:
            return [part async for part in responder.respond(text, generation=1)]

        with anyio.fail_after(10):
            assert await answer(Keypad("7")) == [Say("From the model.")]
            assert await answer(Keypad("2")) == [Say("Your account number?")]
            assert responder.keypad() == KeypadRule(timeout_ms=2000, max_length=6)
            assert await answer(Keypad("004213")) == [Say("Your PIN?")]
    assert shown == ["[keypad] 7"]
    assert isinstance(shown[0], Keypad)
