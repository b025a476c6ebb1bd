"""Cross-references in a decoded agent file: every name must refer to something.

Checked here (each failure is a :class:`~pipeline.errors.ConfigError` with the path of the
offending key): names are unique among slots, intents, flows and webhooks; slot names and
variables do not collide; a flow's slots, ``ask`` and ``goto`` exist; an intent's flow exists;
a webhook action names a webhook and covers its required arguments; a template's placeholders
name a slot, a variable, a webhook result (``save_as``) or ``today``; regular expressions
compile; ranges are ordered; the ``llm`` and ``mixed`` engines have an LLM; the LLM's tools
exist; the embedded LLM's own keys (``model_path``, ``chat_format``) go with its backend only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import msgspec

from agent.config.base import Reply, reply_text
from agent.config.dialogue import (
    Action,
    Branch,
    ChoiceSlot,
    FlowConfig,
    HandoffAction,
    NumberSlot,
    SendDtmfAction,
    SetAction,
    Slot,
    TimeSlot,
    TransferAction,
    WebhookAction,
    When,
)
from agent.dialogue.templates import TemplateError, placeholders
from pipeline.asr.decoder import whisper_languages
from pipeline.errors import ConfigError
from voices.catalog import load_catalog

if TYPE_CHECKING:
    from agent.config.schema import AgentConfig

#: names every template may use
BUILTIN_VALUES = frozenset({"today"})


def check_references(config: AgentConfig) -> None:
    _Checker(config).run()
    # configs name voices of the catalog (voices/catalog/*.yaml), spoken by profile.tts.engine
    voice = load_catalog().get(config.voice.name, where="$.voice.name")
    engine = config.profile.tts.engine
    if voice.engine != engine:
        raise ConfigError(
            "$.voice.name",
            f"{voice.name!r} is a {voice.engine} voice, but profile.tts.engine is {engine!r}",
        )
    catalog = load_catalog()
    known = whisper_languages()
    for language, name in config.voice.languages.items():
        where = f"$.voice.languages.{language}"
        if language not in known:
            raise ConfigError(where, f"unknown language {language!r}")
        spoken = catalog.get(name, where=where).language
        if spoken.split("-")[0].lower() != language:
            raise ConfigError(where, f"{name!r} speaks {spoken}, not {language!r}")
    if config.dialogue.engine == "translate":
        _translation(config, voice.language)
    _sip_rooms(config, known)


def _sip_rooms(config: AgentConfig, known: frozenset[str]) -> None:
    """``server.sip.rooms``: an interpreter's, each number once, languages Whisper knows."""
    numbers: set[str] = set()
    for i, entry in enumerate(config.server.sip.rooms):
        where = f"$.server.sip.rooms[{i}]"
        if config.dialogue.engine != "translate":
            raise ConfigError(where, "rooms need an interpreter (dialogue.engine: translate)")
        if entry.number in numbers:
            raise ConfigError(f"{where}.number", f"{entry.number!r} is given twice")
        numbers.add(entry.number)
        if entry.language not in known:
            raise ConfigError(f"{where}.language", f"unknown language {entry.language!r}")


def _translation(config: AgentConfig, voice_language: str) -> None:
    """The ``translate`` engine: languages Whisper knows, a target the engine can reach and a
    voice that speaks it."""
    translate = config.dialogue.translate
    known = whisper_languages()
    if translate.target not in known:
        raise ConfigError("$.dialogue.translate.target", f"unknown language {translate.target!r}")
    if translate.engine == "whisper" and translate.target != "en":
        raise ConfigError(
            "$.dialogue.translate.target",
            f"the whisper engine translates into English only, not {translate.target!r} "
            "(use engine: llm)",
        )
    if translate.engine == "llm" and config.profile.llm is None:
        raise ConfigError("$.profile.llm", "the llm translation engine needs an LLM")
    if voice_language.split("-")[0].lower() != translate.target:
        raise ConfigError(
            "$.voice.name",
            f"{config.voice.name!r} speaks {voice_language}, not the target language "
            f"{translate.target!r}",
        )


class _Checker:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        dialogue = config.dialogue
        self.slots = {slot.name: slot for slot in dialogue.slots}
        self.flows = {flow.name: flow for flow in dialogue.flows}
        self.webhooks = {hook.name: hook for hook in config.tools.webhooks}
        self.keys: dict[str, str] = {}  # keypad string -> the intent it chooses
        # Every name a template or condition may use: slots, variables, results, set targets.
        self.values = set(self.slots) | set(dialogue.variables) | BUILTIN_VALUES
        for action in self._all_actions():
            if isinstance(action, WebhookAction) and action.save_as:
                self.values.add(action.save_as)
            elif isinstance(action, SetAction):
                self.values.add(action.var)

    def run(self) -> None:
        config, dialogue = self.config, self.config.dialogue
        self._unique("$.dialogue.slots", [slot.name for slot in dialogue.slots])
        self._unique("$.dialogue.intents", [intent.name for intent in dialogue.intents])
        self._unique("$.dialogue.flows", [flow.name for flow in dialogue.flows])
        self._unique("$.tools.webhooks", [hook.name for hook in config.tools.webhooks])
        for name in dialogue.variables:
            if name in self.slots:
                raise ConfigError(f"$.dialogue.variables.{name}", "a slot has the same name")
        for i, slot in enumerate(dialogue.slots):
            self._slot(f"$.dialogue.slots[{i}]", slot)
        for i, intent in enumerate(dialogue.intents):
            where = f"$.dialogue.intents[{i}]"
            if not (intent.examples or intent.keywords or intent.patterns or intent.keys):
                raise ConfigError(where, "an intent needs examples, keywords or patterns (or keys)")
            self._keys(f"{where}.keys", intent.name, intent.keys)
            self._patterns(f"{where}.patterns", intent.patterns)
            if intent.flow is not None and intent.flow not in self.flows:
                raise ConfigError(f"{where}.flow", f"unknown flow {intent.flow!r}")
            flow = self.flows.get(intent.flow) if intent.flow else None
            self._reply(f"{where}.reply", intent.reply)
            self._actions(f"{where}.actions", intent.actions, flow.slots if flow else None)
        for i, flow in enumerate(dialogue.flows):
            self._flow(f"$.dialogue.flows[{i}]", flow)
        fallback = dialogue.fallback
        self._reply("$.dialogue.fallback.reply", fallback.reply)
        self._reply("$.dialogue.fallback.reprompt", fallback.reprompt)
        self._reply("$.dialogue.fallback.final_reply", fallback.final_reply)
        self._actions("$.dialogue.fallback.actions", fallback.actions, None)
        self._reply(
            "$.dialogue.transfer_failed", dialogue.transfer_failed, extra={"target", "reason"}
        )
        self._template("$.greeting.text", config.greeting.text)
        self._unique("$.tools.builtins", list(config.tools.builtins), key="slots")
        overlap = set(self.webhooks) & set(config.tools.builtins)
        if overlap:
            raise ConfigError("$.tools.builtins", f"{sorted(overlap)[0]!r} is also a webhook")
        self._reply("$.turns.idle_prompt", config.turns.idle_prompt)
        self._llm()
        for i, hook in enumerate(config.tools.webhooks):
            schema = hook.parameters
            if schema.get("type", "object") != "object" or not isinstance(
                schema.get("properties", {}), dict
            ):
                raise ConfigError(
                    f"$.tools.webhooks[{i}].parameters",
                    "must be a JSON schema of `type: object` with `properties`",
                )

    # -- pieces ------------------------------------------------------------------------------

    def _keys(self, where: str, intent: str, keys: Sequence[str]) -> None:
        """Each keypad string chooses one intent, and can be keyed (the terminator ends one)."""
        terminator = self.config.dialogue.digits.terminator
        for key in keys:
            if key in self.keys:
                raise ConfigError(where, f"key {key!r} already chooses {self.keys[key]!r}")
            if terminator and terminator in key and key != terminator:
                raise ConfigError(where, f"key {key!r} holds the terminator {terminator!r}")
            self.keys[key] = intent

    def _slot(self, where: str, slot: Slot) -> None:
        self._patterns(f"{where}.patterns", slot.patterns)
        self._reply(f"{where}.prompt", slot.prompt)
        self._reply(f"{where}.invalid", slot.invalid, extra={"value"})
        if (
            isinstance(slot, NumberSlot)
            and slot.min is not None
            and slot.max is not None
            and slot.min > slot.max
        ):
            raise ConfigError(f"{where}.max", f"smaller than min ({slot.min})")
        if (
            isinstance(slot, TimeSlot)
            and slot.earliest
            and slot.latest
            and _minutes(slot.earliest) >= _minutes(slot.latest)
        ):
            raise ConfigError(f"{where}.latest", f"not after earliest ({slot.earliest})")
        if isinstance(slot, ChoiceSlot) and not slot.choices:
            raise ConfigError(f"{where}.choices", "give at least one choice")

    def _flow(self, where: str, flow: FlowConfig) -> None:
        slots = flow.slots
        self._unique(f"{where}.slots", list(slots), key="slots")
        for j, name in enumerate(slots):
            if name not in self.slots:
                raise ConfigError(f"{where}.slots[{j}]", f"unknown slot {name!r}")
        for j, check in enumerate(flow.checks):
            if check.when is None:
                raise ConfigError(f"{where}.checks[{j}]", "a check needs `when`")
            self._branch(f"{where}.checks[{j}]", check, slots)
        self._reply(f"{where}.confirm", flow.confirm)
        self._reply(f"{where}.deny", flow.deny)
        self._actions(f"{where}.actions", flow.actions, slots)
        for j, branch in enumerate(flow.branches):
            self._branch(f"{where}.branches[{j}]", branch, slots)

    def _branch(self, where: str, branch: Branch, slots: Sequence[str]) -> None:
        if branch.when is not None:
            self._when(f"{where}.when", branch.when)
        self._reply(f"{where}.reply", branch.reply)
        self._actions(f"{where}.actions", branch.actions, slots)
        for k, name in enumerate(branch.ask):
            if name not in slots:
                raise ConfigError(f"{where}.ask[{k}]", f"{name!r} is not a slot of this flow")
        if branch.goto is not None and branch.goto not in self.flows:
            raise ConfigError(f"{where}.goto", f"unknown flow {branch.goto!r}")
        if branch.ask and branch.goto:
            raise ConfigError(f"{where}.goto", "a branch either asks again or goes to a flow")

    def _when(self, where: str, when: When) -> None:
        root = when.var.split(".")[0]
        if root not in self.values:
            raise ConfigError(f"{where}.var", f"unknown slot or variable {root!r}")
        given = [
            name
            for name in ("equals", "one_of", "above", "below", "exists")
            if getattr(when, name) not in (None, msgspec.UNSET)
        ]
        if len(given) != 1:
            raise ConfigError(where, "give exactly one of equals, one_of, above, below, exists")

    def _actions(self, where: str, actions: Sequence[Action], slots: Sequence[str] | None) -> None:
        for j, action in enumerate(actions):
            here = f"{where}[{j}]"
            if isinstance(action, WebhookAction):
                hook = self.webhooks.get(action.tool)
                if hook is None:
                    raise ConfigError(f"{here}.tool", f"unknown webhook {action.tool!r}")
                for key, value in action.arguments.items():
                    if isinstance(value, str):
                        self._template(f"{here}.arguments.{key}", value)
                given = set(action.arguments) | set(slots if slots is not None else self.slots)
                required = hook.parameters.get("required", [])
                missing = [name for name in required if name not in given]
                if missing:
                    raise ConfigError(
                        f"{here}.arguments",
                        f"webhook {action.tool!r} requires {', '.join(map(repr, missing))}",
                    )
            elif isinstance(action, TransferAction):
                self._template(f"{here}.to", action.to)
            elif isinstance(action, SendDtmfAction):
                self._template(f"{here}.digits", action.digits)
            elif isinstance(action, SetAction):
                if action.var in self.slots and slots is not None and action.var not in slots:
                    raise ConfigError(f"{here}.var", f"{action.var!r} is a slot of another flow")
                if isinstance(action.value, str):
                    self._template(f"{here}.value", action.value)
            elif isinstance(action, HandoffAction):
                if self.config.dialogue.engine == "intents":
                    raise ConfigError(here, "a handoff needs `dialogue.engine: mixed` and an LLM")
                self._template(f"{here}.note", action.note)

    def _llm(self) -> None:
        config = self.config
        engine = config.dialogue.engine
        if engine in ("llm", "mixed") and config.profile.llm is None:
            raise ConfigError(
                "$.profile.llm", f"the {config.dialogue.engine!r} engine needs an LLM"
            )
        where = config.profile.llm
        if where is not None and where.backend != "embedded":
            for key in ("model_path", "chat_format"):
                if getattr(where, key) is not None:
                    raise ConfigError(
                        f"$.profile.llm.{key}",
                        f"only the embedded backend runs a model file, not {where.backend!r}",
                    )
        available = set(self.webhooks) | set(config.tools.builtins)
        for i, name in enumerate(config.dialogue.llm.tools):
            if name not in available:
                raise ConfigError(f"$.dialogue.llm.tools[{i}]", f"unknown tool {name!r}")

    def _reply(self, where: str, reply: Reply | None, extra: Iterable[str] = ()) -> None:
        if reply is not None:
            field = where if isinstance(reply, str) else f"{where}.text"
            self._template(field, reply_text(reply), extra)

    def _template(self, where: str, text: str, extra: Iterable[str] = ()) -> None:
        try:
            names = placeholders(text)
        except TemplateError as error:
            raise ConfigError(where, str(error)) from error
        known = self.values | set(extra)
        for name in names:
            if name.split(".")[0] not in known:
                raise ConfigError(where, f"unknown slot or variable {{{name}}}")

    def _patterns(self, where: str, patterns: Sequence[str]) -> None:
        for j, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"{where}[{j}]", f"not a regular expression: {error}") from error

    @staticmethod
    def _unique(where: str, names: list[str], key: str = "name") -> None:
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                path = f"{where}[{i}]" if key == "slots" else f"{where}[{i}].name"
                raise ConfigError(path, f"{name!r} appears twice")
            seen.add(name)

    def _all_actions(self) -> Iterable[Action]:
        dialogue = self.config.dialogue
        for intent in dialogue.intents:
            yield from intent.actions
        for flow in dialogue.flows:
            yield from flow.actions
            for branch in (*flow.checks, *flow.branches):
                yield from branch.actions
        yield from dialogue.fallback.actions


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)
