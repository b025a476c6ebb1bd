"""The dialogue and tools sections: intents, slots, flows, actions, fallback, LLM, webhooks.

Named things (slots, intents, flows, webhooks) are lists of tables with a ``name``, so their
order is kept, a duplicate is an error and an error path says which one
(``$.dialogue.flows[0].slots[2]``). Cross-references are checked by
:mod:`agent.config.references` once the file has decoded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from agent.bounds import Positive, Probability
from agent.config.base import Name, Reply, Section

# -- slots: typed values an utterance fills -------------------------------------------------

Clock = Annotated[str, msgspec.Meta(pattern=r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$")]


class SlotBase(Section, frozen=True, kw_only=True):
    name: Name
    #: asked when the value is missing
    prompt: Reply
    #: said when a value was heard but is not allowed (``{value}`` is what was heard); the
    #: prompt follows unless this is given
    invalid: Reply | None = None
    #: words that name the slot (``time``, ``people``): "change the time to 9" fills it
    mentions: tuple[str, ...] = ()
    #: regular expressions tried first; the group named ``value`` (or group 1) is parsed
    patterns: tuple[str, ...] = ()


class NumberSlot(SlotBase, tag_field="type", tag="number", frozen=True, kw_only=True):
    min: int | None = None
    max: int | None = None
    #: words after a number that make it this slot's (``4 people``)
    units: tuple[str, ...] = ()
    #: words before a number that make it this slot's (``party of 4``, ``table for 4``)
    cues: tuple[str, ...] = ()


class TimeSlot(SlotBase, tag_field="type", tag="time", frozen=True, kw_only=True):
    #: the allowed range (``HH:MM``, 24-hour); "at 8" becomes 20:00 when 08:00 is outside it
    earliest: Clock | None = None
    latest: Clock | None = None


class DateSlot(SlotBase, tag_field="type", tag="date", frozen=True, kw_only=True):
    allow_past: bool = False
    max_days_ahead: Positive | None = None


class YesNoSlot(SlotBase, tag_field="type", tag="yes_no", frozen=True, kw_only=True):
    pass


class ChoiceSlot(SlotBase, tag_field="type", tag="choice", frozen=True, kw_only=True):
    #: each allowed value and the words that mean it (the value's own name always does)
    choices: dict[Name, tuple[str, ...]]


class TextSlot(SlotBase, tag_field="type", tag="text", frozen=True, kw_only=True):
    #: leading words dropped from the answer ("my name is", "it's")
    strip: tuple[str, ...] = (
        "my name is", "the name is", "name is", "it's", "it is", "this is", "i'm", "i am",
        "under the name", "under", "that's", "that is", "um", "uh", "er", "hi", "hello",
        "yes", "yeah", "sure", "ok", "okay", "so", "well", "please",
    )  # fmt: skip
    max_words: Annotated[int, msgspec.Meta(ge=1, le=200)] = 12


#: the most keypad digits one string holds
MAX_DIGITS = 32
#: how many keypad digits a string may have
DigitCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_DIGITS)]
#: keypad keys as a string (``"1"``, ``"*9"``)
KeyString = Annotated[str, msgspec.Meta(pattern=rf"^[0-9*#A-D]{{1,{MAX_DIGITS}}}$")]
#: keys for the agent to send (``send_dtmf``): up to :data:`MAX_DIGITS` keys and
#: ``{placeholders}`` (a slot or variable's value, checked once filled in)
DigitsTemplate = Annotated[
    str, msgspec.Meta(pattern=rf"^(?:[0-9*#A-D]|\{{[A-Za-z_][A-Za-z0-9_.]*\}}){{1,{MAX_DIGITS}}}$")
]
#: what ends a keyed string early (``""``: nothing does)
Terminator = Literal["#", "*", ""]


class DigitsSlot(SlotBase, tag_field="type", tag="digits", frozen=True, kw_only=True):
    """A string of digits (a code, an account number), keyed in (DTMF) or spoken ("one two
    three four"); leading zeros are kept. Give ``length``, or ``min_length``/``max_length``."""

    length: DigitCount | None = None
    min_length: DigitCount = 1
    max_length: DigitCount | None = None
    #: ends the digits early while this slot is asked (null: ``dialogue.digits.terminator``)
    terminator: Terminator | None = None

    def __post_init__(self) -> None:
        if self.length is not None and (self.min_length != 1 or self.max_length is not None):
            raise ValueError("give length, or min_length and max_length, not both")
        if self.max_length is not None and self.max_length < self.min_length:
            raise ValueError("max_length must not be below min_length")

    def fits(self, digits: str) -> bool:
        """Whether ``digits`` (0-9 only) is a value of this slot."""
        if not digits.isdecimal() or not digits.isascii():
            return False
        if self.length is not None:
            return len(digits) == self.length
        return self.min_length <= len(digits) <= (self.max_length or MAX_DIGITS)


Slot = NumberSlot | TimeSlot | DateSlot | YesNoSlot | ChoiceSlot | TextSlot | DigitsSlot

# -- actions and branches -------------------------------------------------------------------


class WebhookAction(Section, tag_field="action", tag="webhook", frozen=True, kw_only=True):
    #: a webhook of ``tools.webhooks``
    tool: Name
    #: extra or overriding arguments; a string is a template, and exactly ``"{x}"`` passes the
    #: value of ``x`` with its JSON type. The flow's slots are always sent.
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    #: keep the JSON result under this variable (``{booking.reference}``); on failure it holds
    #: ``{"error": "..."}``
    save_as: Name | None = None


class EndCallAction(Section, tag_field="action", tag="end_call", frozen=True, kw_only=True):
    reason: str = "completed"


class TransferAction(Section, tag_field="action", tag="transfer", frozen=True, kw_only=True):
    #: where to (a template): a phone number, a SIP URI or a queue name the transport knows
    to: str


class SendDtmfAction(Section, tag_field="action", tag="send_dtmf", frozen=True, kw_only=True):
    """Key digits to the far end (an IVR's menu, a code) once the replies before it are spoken."""

    #: the keys (0-9, ``*``, ``#``, A-D; at most 32), with ``{placeholders}`` if need be
    digits: DigitsTemplate


class SetAction(Section, tag_field="action", tag="set", frozen=True, kw_only=True):
    var: Name
    #: a literal, or a string template
    value: Any


class HandoffAction(Section, tag_field="action", tag="handoff", frozen=True, kw_only=True):
    """Hand this turn (and the ones after it, until a flow starts again) to the LLM."""

    #: a note for the LLM (a template): why it takes over
    note: str = ""


Action = WebhookAction | EndCallAction | TransferAction | SendDtmfAction | SetAction | HandoffAction


class When(Section, frozen=True, kw_only=True):
    """A condition on a slot or variable; give exactly one comparison."""

    #: a slot or variable, dotted into webhook results (``booking.status``)
    var: str
    equals: Any = msgspec.UNSET
    one_of: tuple[Any, ...] | None = None
    above: float | None = None
    below: float | None = None
    exists: bool | None = None


class Branch(Section, frozen=True, kw_only=True):
    #: holds when left out
    when: When | None = None
    reply: Reply | None = None
    actions: tuple[Action, ...] = ()
    #: forget these slots and ask for them again (then confirm again)
    ask: tuple[Name, ...] = ()
    #: then start this flow
    goto: Name | None = None


class FlowConfig(Section, frozen=True, kw_only=True):
    name: Name
    #: asked for in this order when missing; any of them may be given at any time
    slots: tuple[Name, ...] = ()
    #: once every slot is filled, before confirming: the first that holds runs
    checks: tuple[Branch, ...] = ()
    #: read back before acting; "yes" goes on, "no" (or a correction) changes slots
    confirm: Reply | None = None
    #: said after a bare "no" to the confirmation
    deny: Reply = "What would you like to change?"
    #: run after confirmation, in order
    actions: tuple[Action, ...] = ()
    #: after the actions: the first that holds runs, then the flow ends (unless it asks)
    branches: tuple[Branch, ...] = ()


# -- intents --------------------------------------------------------------------------------


class IntentConfig(Section, frozen=True, kw_only=True):
    name: Name
    #: phrases matched by sentence embeddings (cosine similarity)
    examples: tuple[str, ...] = ()
    #: whole words or phrases that add ``dialogue.keyword_boost`` to the score
    keywords: tuple[str, ...] = ()
    #: regular expressions (searched, case-insensitive): a match scores 1.0
    patterns: tuple[str, ...] = ()
    #: keypad strings that choose it (``["1"]``: "press 1 for sales"); keyed in exactly, they
    #: match it without embedding
    keys: tuple[KeyString, ...] = ()
    #: overrides ``dialogue.threshold`` for this intent
    threshold: Probability | None = None
    reply: Reply | None = None
    actions: tuple[Action, ...] = ()
    #: start this flow (slots in the utterance fill it at once)
    flow: Name | None = None
    #: matched during another flow: true, that flow goes on (its question is asked again);
    #: false, it is dropped
    resume: bool = True


class EarlyMatchConfig(Section, frozen=True, kw_only=True):
    """Decide on a partial transcript when it is already unambiguous."""

    enabled: bool = True
    threshold: Probability = 0.7
    #: over the second-best intent
    margin: Probability = 0.15
    #: the same top intent in this many partials in a row
    stable_partials: Positive = 2


class FallbackConfig(Section, frozen=True, kw_only=True):
    """An utterance that matches nothing (engine ``mixed``: it goes to the LLM instead)."""

    reply: Reply = "Sorry, I didn't get that. Could you say it another way?"
    #: said instead of ``reply`` inside a flow, before its question is asked again
    reprompt: Reply = "Sorry, I didn't catch that."
    #: the misunderstood turn in a row that runs ``actions`` (with ``final_reply``)
    limit: Positive = 3
    final_reply: Reply | None = None
    actions: tuple[Action, ...] = ()


class DigitsConfig(Section, frozen=True, kw_only=True):
    """Keypad digits (DTMF): when a keyed string is complete (:mod:`agent.digits`)."""

    #: a pause between two keys this long ends the string
    timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 3000
    #: a key that ends the string early (not part of it)
    terminator: Terminator = "#"
    #: a key stops the reply being spoken (a barge-in by key, as IVRs do)
    interrupts: bool = True


class LlmDialogueConfig(Section, frozen=True, kw_only=True):
    """How the LLM is prompted (where it runs is ``profile.llm``)."""

    system_prompt: str = (
        "You are a helpful voice assistant on a phone call. Answer in one or two short, "
        "natural spoken sentences, without lists or markup."
    )
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.7
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 200
    seed: int | None = None
    #: webhooks (``tools.webhooks``) and built-ins (``tools.builtins``) the LLM may call
    tools: tuple[Name, ...] = ()
    #: model rounds that may call tools in one reply
    max_tool_rounds: Annotated[int, msgspec.Meta(ge=0, le=16)] = 3
    #: messages sent with each request at most (whole turns; the system prompt always goes)
    max_history_messages: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 64
    #: said when the LLM fails or gives no first token in time
    fallback_text: str = "Sorry, I can't answer that right now. Could you say it again?"


#: the default instructions of the ``llm`` translation engine (``{source}`` and ``{target}``
#: are language names). Short on purpose: the embedded 0.5B model repeated, refused or
#: answered a longer prompt ("keep names and numbers, never answer questions") instead of
#: translating (bench/translation.py)
TRANSLATE_PROMPT = (
    "Translate the user's message from {source} to {target}. Output only the {target} translation."
)


class TranslateConfig(Section, frozen=True, kw_only=True):
    """The ``translate`` engine: each caller utterance is translated and spoken instead of
    answered. The source language is ``profile.asr.language`` (null: detected per utterance);
    ``voice.name`` must speak ``target``."""

    #: the language spoken to the caller (ISO 639-1, ``es``)
    target: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")] = "en"
    #: ``whisper``: the ASR's own translate task (any language into English, no other model);
    #: ``llm``: the LLM of ``profile.llm`` (any language into any), clause by clause
    engine: Literal["whisper", "llm"] = "whisper"
    #: ``llm`` engine: its instructions (``{source}`` and ``{target}`` are filled in)
    prompt: str = TRANSLATE_PROMPT
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.2
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 256


class DialogueConfig(Section, frozen=True, kw_only=True):
    #: ``intents``: scripted; ``llm``: every turn to the LLM; ``mixed``: intents first, the LLM
    #: for what they do not match (and for ``handoff`` actions); ``translate``: an interpreter
    #: (each turn translated and spoken, see ``translate``)
    engine: Literal["intents", "llm", "mixed", "translate"] = "intents"
    #: the least score an intent needs
    threshold: Probability = 0.5
    keyword_boost: Probability = 0.2
    early_match: EarlyMatchConfig = EarlyMatchConfig()
    #: variables and their starting values (templates can name them)
    variables: dict[Name, Any] = msgspec.field(default_factory=dict)
    slots: tuple[Slot, ...] = ()
    intents: tuple[IntentConfig, ...] = ()
    flows: tuple[FlowConfig, ...] = ()
    fallback: FallbackConfig = FallbackConfig()
    llm: LlmDialogueConfig = LlmDialogueConfig()
    translate: TranslateConfig = TranslateConfig()
    digits: DigitsConfig = DigitsConfig()
    #: said when a transfer does not happen (no target, the transport cannot transfer, the far
    #: end refused or did not answer in time); the conversation goes on. ``{target}`` and
    #: ``{reason}`` may be used
    transfer_failed: Reply = "I'm sorry, I couldn't put you through just now. How else can I help?"
    #: a transfer not confirmed by the transport this long after it was asked for has failed
    #: (reason ``timeout``)
    transfer_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 15.0


# -- tools ----------------------------------------------------------------------------------

JsonSchema = dict[str, Any]


class WebhookConfig(Section, frozen=True, kw_only=True):
    """An HTTP endpoint, called by flows (``webhook`` actions) and by the LLM (as a tool).

    Both send ``POST {"tool": name, "arguments": {...}, "call_id": "..."}`` as JSON.
    """

    name: Name
    #: what it does, for the LLM
    description: str = ""
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: a JSON schema (``type: object``) of the arguments
    parameters: JsonSchema = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


Builtin = Literal["end_call", "transfer", "send_dtmf", "current_datetime"]


class ToolsConfig(Section, frozen=True, kw_only=True):
    webhooks: tuple[WebhookConfig, ...] = ()
    #: tools Voxline itself provides to the LLM
    builtins: tuple[Builtin, ...] = ()


__all__ = [
    "MAX_DIGITS",
    "TRANSLATE_PROMPT",
    "Action",
    "Branch",
    "Builtin",
    "ChoiceSlot",
    "DateSlot",
    "DialogueConfig",
    "DigitsConfig",
    "DigitsSlot",
    "DigitsTemplate",
    "EarlyMatchConfig",
    "EndCallAction",
    "FallbackConfig",
    "FlowConfig",
    "HandoffAction",
    "IntentConfig",
    "LlmDialogueConfig",
    "NumberSlot",
    "Probability",
    "SendDtmfAction",
    "SetAction",
    "Slot",
    "SlotBase",
    "TextSlot",
    "TimeSlot",
    "ToolsConfig",
    "TransferAction",
    "TranslateConfig",
    "WebhookAction",
    "WebhookConfig",
    "When",
    "YesNoSlot",
]
