"""Keypad digits (DTMF) in the intent dialogue: menus by key, and digit slots filled by keys.

A keyed turn (:class:`~agent.digits.Keypad`) reaches the conversation as its digits, with
``keyed=True``:

- **menus**: an intent's ``keys`` choose it when keyed exactly; :func:`key_scores` gives it
  the score 1.0, so nothing is embedded ("press 1 for sales");
- **slots**: :func:`read_keys` fills only the slot being asked, when it is a ``digits`` slot
  (its length checked: a wrong one gets the slot's ``invalid`` reply) or a ``number`` slot.
  A string that is no value of the asked slot but is a key chooses that key's intent ("press
  0 for the operator" while a code is asked);
- anything else keyed is a misunderstood turn: the fallback (the LLM with the ``mixed``
  engine, which is shown ``[keypad] 1234``).

:func:`keypad_rule` tells the session when a keyed string is complete, as the dialogue stands:
while a ``digits`` slot is asked, at its ``length`` (or ``max_length``) or its terminator; else
at the length of the longest menu key (a menu of one-key choices answers the first key).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import msgspec

from agent.config.dialogue import DigitsConfig, DigitsSlot, NumberSlot
from agent.dialogue.intents import IntentScore, IntentScores
from agent.dialogue.script import Script
from agent.dialogue.slots import Extraction
from agent.digits import KeypadRule

__all__ = ["key_intent", "key_scores", "keypad_rule", "read_keys"]


def key_intent(script: Script, digits: str) -> str | None:
    """The intent whose ``keys`` hold ``digits`` (``None``: none)."""
    return next((i.name for i in script.intents.values() if digits in i.keys), None)


def key_scores(script: Script, digits: str) -> IntentScores:
    """The intents' scores for a keyed turn: 1.0 for the one its key chooses, no other."""
    name = key_intent(script, digits)
    if name is None:
        return IntentScores((), embedded=False)
    return IntentScores((IntentScore(name, 1.0, 1.0, pattern=True),), embedded=False)


def read_keys(
    script: Script, names: Sequence[str], asking: str | None, digits: str, today: dt.date
) -> Extraction:
    """What keyed ``digits`` give the flow's slots ``names`` while ``asking`` is asked."""
    spec = script.slots.get(asking) if asking is not None and asking in names else None
    if not isinstance(spec, DigitsSlot | NumberSlot):
        return Extraction()
    if digits.isdecimal():
        found = script.filler.extract(digits, [spec.name], today=today, expected=spec.name)
    elif isinstance(spec, DigitsSlot):
        found = Extraction(rejected={spec.name: digits})
    else:
        found = Extraction()
    if found.rejected and key_intent(script, digits) is not None:
        return Extraction()  # not a value: the key of a menu choice instead
    return found


def keypad_rule(script: Script, asking: str | None, config: DigitsConfig) -> KeypadRule:
    """When keyed digits are complete while ``asking`` is asked (``None``: nothing is)."""
    rule = KeypadRule.of(config)
    spec = script.slots.get(asking) if asking is not None else None
    if isinstance(spec, DigitsSlot):
        terminator = config.terminator if spec.terminator is None else spec.terminator
        longest = spec.length or spec.max_length
        return msgspec.structs.replace(rule, terminator=terminator, max_length=longest)
    if isinstance(spec, NumberSlot):
        return rule  # a number ends on the terminator or a pause
    keys = [len(key) for i in script.intents.values() for key in i.keys if key != rule.terminator]
    return msgspec.structs.replace(rule, max_length=max(keys)) if keys else rule
