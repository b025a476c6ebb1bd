"""An agent's dialogue section compiled once and shared by every conversation.

:class:`Script` holds the slots (as a :class:`~agent.dialogue.slots.SlotFiller`), intents,
flows and webhooks by name, the parsed templates, and renders replies into
:class:`~agent.dialogue.decision.Say`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.config import (
    AgentConfig,
    FlowConfig,
    IntentConfig,
    Reply,
    ReplyConfig,
    Slot,
    WebhookConfig,
    When,
)
from agent.dialogue.decision import Say
from agent.dialogue.slots import SlotFiller
from agent.dialogue.templates import MISSING, Template, is_ssml, json_value, lookup

__all__ = ["Script"]

_DEFAULT_INVALID = "Sorry, {value} won't work."


class Script:
    def __init__(self, config: AgentConfig) -> None:
        dialogue = config.dialogue
        self.config = config
        self.dialogue = dialogue
        self.slots: dict[str, Slot] = {slot.name: slot for slot in dialogue.slots}
        self.filler = SlotFiller(dialogue.slots)
        self.intents: dict[str, IntentConfig] = {i.name: i for i in dialogue.intents}
        self.flows: dict[str, FlowConfig] = {flow.name: flow for flow in dialogue.flows}
        self.webhooks: dict[str, WebhookConfig] = {h.name: h for h in config.tools.webhooks}
        self.variables: dict[str, Any] = dict(dialogue.variables)
        self.mixed = dialogue.engine == "mixed"
        self.max_turns = config.limits.max_turns
        self._templates: dict[str, Template] = {}

    def template(self, text: str) -> Template:
        found = self._templates.get(text)
        if found is None:
            found = self._templates[text] = Template(text)
        return found

    def say(self, reply: Reply, values: Mapping[str, Any]) -> Say:
        """Render a reply: placeholders filled, SSML flagged (and its values escaped)."""
        if isinstance(reply, str):
            text, ssml, emotion = reply, None, None
        else:
            assert isinstance(reply, ReplyConfig)
            text, ssml, emotion = reply.text, reply.ssml, reply.emotion
        if ssml is None:
            ssml = is_ssml(text)
        return Say(text=self.template(text).render(values, ssml=ssml), ssml=ssml, emotion=emotion)

    def invalid(self, slot: str, heard: Any, values: Mapping[str, Any]) -> Say:
        """What to say for a value heard but not allowed (the slot's prompt follows, unless
        the slot has its own ``invalid`` reply)."""
        spec = self.slots[slot]
        return self.say(spec.invalid or _DEFAULT_INVALID, {**values, "value": heard})

    def render_value(self, value: Any, values: Mapping[str, Any]) -> Any:
        """A ``set`` value or webhook argument: a template string, or a literal."""
        return self.template(value).value(values) if isinstance(value, str) else value


def holds(when: When, values: Mapping[str, Any]) -> bool:
    """Does the condition hold for these values? (Compared as JSON values.)"""
    found = lookup(values, when.var)
    if when.exists is not None:
        return (found is not MISSING and found is not None) == when.exists
    if found is MISSING:
        return False
    value = json_value(found)
    if when.one_of is not None:
        return value in when.one_of
    if when.above is not None or when.below is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if when.above is not None and not value > when.above:
            return False
        return when.below is None or value < when.below
    return bool(value == when.equals)
