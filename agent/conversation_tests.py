"""Conversation test files (``voxline test``): scripted calls against an agent file, and what
each turn must produce.

A test file is YAML, decoded strictly like an agent file (an unknown or mistyped key is a
:class:`~pipeline.errors.ConfigError` naming its path, ``$.conversations[0].turns[2].expect``)::

    agent: ../receptionist.yaml        # relative to the test file
    today: 2026-12-07                  # anchors "tomorrow", "on Friday" (default: today)
    webhooks:                          # served by the runner on 127.0.0.1, real HTTP
      book_table: {response: {available: true, reference: B-1042}}
    conversations:
      - name: books a table
        mode: text                     # or audio: Piper speaks the line, Whisper hears it
        greeting: {contains: Chez Voxline}
        turns:
          - caller: I'd like to book a table for four
            expect:
              intent: book_table
              slots: {party_size: 4}
              reply: {contains: For which day?}
          - keys: "123456#"            # keypad digits (DTMF) instead of words
            expect: {reply: {regex: "^Now key in"}, tool_calls: [], ends: false}

The runner is :mod:`agent.conversation_tests_run`; checks are in
:mod:`agent.conversation_tests_check`, reports in :mod:`agent.conversation_tests_report`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml  # type: ignore[import-untyped]  # no stubs installed: used as Any

# the agent files' YAML reader and error paths (one definition of each)
from agent.config.loading import convert_strictly, load_config, load_yaml
from agent.config.schema import AgentConfig
from agent.digits import KEYS
from pipeline.errors import ConfigError

__all__ = [
    "Conversation",
    "Expect",
    "HookResponse",
    "ReplyCheck",
    "TestFile",
    "ToolCallCheck",
    "Turn",
    "load_agent",
    "load_test_file",
]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Unknown keys are errors, every field is named (as in agent files)."""


class ReplyCheck(_Section, frozen=True, kw_only=True):
    """One of: the whole reply (``exact``), a part of it (``contains``), or a regular
    expression searched in it (``regex``). SSML replies are compared as their plain text."""

    exact: str | None = None
    contains: str | None = None
    regex: str | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("exact", "contains", "regex") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of exact, contains or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as error:
                raise ValueError(f"bad regex {self.regex!r}: {error}") from None

    def describe(self) -> str:
        for name in ("exact", "contains", "regex"):
            value = getattr(self, name)
            if value is not None:
                return f"{name} {value!r}"
        return ""  # pragma: no cover - __post_init__ requires one

    def matches(self, text: str) -> bool:
        if self.exact is not None:
            return text == self.exact
        if self.contains is not None:
            return self.contains.lower() in text.lower()
        assert self.regex is not None
        return re.search(self.regex, text) is not None


class ToolCallCheck(_Section, frozen=True, kw_only=True):
    """A webhook the turn calls: its tool name and (some of) its arguments."""

    tool: str
    #: only the arguments named are compared
    arguments: dict[str, Any] = {}


class Expect(_Section, frozen=True, kw_only=True):
    """What a turn must produce; a key left out is not checked."""

    #: the intent matched this turn (``null``: none, a fallback)
    intent: str | msgspec.UnsetType | None = msgspec.UNSET
    #: slots and variables after the turn (``null``: not set)
    slots: dict[str, Any] = {}
    reply: ReplyCheck | None = None
    #: the webhooks called this turn, in order (``[]``: none)
    tool_calls: list[ToolCallCheck] | None = None
    #: the call ends after this turn: ``true``/``false``, or the end_call reason
    ends: bool | str | None = None
    #: the call is transferred to this target after this turn
    transfer: str | None = None


class Turn(_Section, frozen=True, kw_only=True):
    """One caller turn: words (``caller``) or keypad digits (``keys``)."""

    caller: str | None = None
    keys: str | None = None
    expect: Expect = Expect()

    def __post_init__(self) -> None:
        if (self.caller is None) == (self.keys is None):
            raise ValueError("give exactly one of caller or keys")
        if self.keys is not None:
            bad = [key for key in self.keys if key not in KEYS]
            if bad or not self.keys:
                raise ValueError(f"keys takes 0-9, *, # and A-D, not {self.keys!r}")


class Conversation(_Section, frozen=True, kw_only=True):
    name: str
    #: text: the caller's lines go to the dialogue as written; audio: spoken by the agent's
    #: voice and transcribed by its ASR first
    mode: Literal["text", "audio"] = "text"
    greeting: ReplyCheck | None = None
    turns: list[Turn]


class HookResponse(_Section, frozen=True, kw_only=True):
    """What the runner's local server answers a webhook with."""

    response: Any = {}
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] = 200


class _RawFile(_Section, frozen=True, kw_only=True):
    agent: str
    today: dt.date | None = None
    webhooks: dict[str, HookResponse] = {}
    conversations: list[Conversation]


class TestFile(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded test file, its agent file loaded."""

    __test__ = False  # not a pytest class

    path: Path
    agent_path: Path
    agent: AgentConfig
    today: dt.date | None
    webhooks: dict[str, HookResponse]
    conversations: list[Conversation]


def load_test_file(path: str | Path) -> TestFile:
    """Read a test file and the agent file it names (:class:`ConfigError` when either is
    broken: ``$.agent`` for the agent file's problems, with its own key path)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError("$", f"cannot read {path}: {error.strerror}") from error
    data = _decode(raw, path)
    agent_path = (path.parent / data.agent).resolve()
    agent = load_agent(agent_path)
    known = {hook.name for hook in agent.tools.webhooks}
    for name in data.webhooks:
        if name not in known:
            raise ConfigError(f"$.webhooks.{name}", f"the agent has no webhook named {name!r}")
    if not data.conversations:
        raise ConfigError("$.conversations", "no conversations")
    for index, conversation in enumerate(data.conversations):
        if not conversation.turns:
            raise ConfigError(f"$.conversations[{index}].turns", "no turns")
    return TestFile(
        path=path,
        agent_path=agent_path,
        agent=agent,
        today=data.today,
        webhooks=data.webhooks,
        conversations=data.conversations,
    )


def load_agent(path: Path) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        raise ConfigError("$.agent", f"{path}: {error}") from error


def _decode(raw: bytes, path: Path) -> _RawFile:
    """The agent files' strict YAML reading and key paths, on the test file's struct."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError("$", f"a test file is YAML (.yaml), not {path.suffix or 'no suffix'!r}")
    try:
        data = load_yaml(raw)
    except yaml.YAMLError as error:
        raise ConfigError("$", f"not valid YAML: {error}") from error
    return convert_strictly(data, _RawFile)
