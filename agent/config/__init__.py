"""Agent config files: YAML or TOML, decoded strictly, every key documented in docs/config.md.

- :mod:`agent.config.schema`: the file (profile, voice, greeting, turns, limits, server);
- :mod:`agent.config.dialogue`: intents, slots, flows, actions, fallback, LLM, tools;
- :mod:`agent.config.references`: cross-references (a flow naming an unknown slot ...);
- :mod:`agent.config.loading`: :func:`load_config` and :func:`parse_config`.
"""

from __future__ import annotations

from agent.config.base import Emotion, Reply, ReplyConfig, Section, reply_text
from agent.config.dialogue import (
    Action,
    Branch,
    ChoiceSlot,
    DateSlot,
    DialogueConfig,
    EarlyMatchConfig,
    EndCallAction,
    FallbackConfig,
    FlowConfig,
    HandoffAction,
    IntentConfig,
    LlmDialogueConfig,
    NumberSlot,
    SendDtmfAction,
    SetAction,
    Slot,
    TextSlot,
    TimeSlot,
    ToolsConfig,
    TransferAction,
    WebhookAction,
    WebhookConfig,
    When,
    YesNoSlot,
)
from agent.config.loading import load_config, parse_config
from agent.config.schema import (
    AgentConfig,
    AsrConfig,
    AuthConfig,
    EmbeddingsConfig,
    GreetingConfig,
    LimitsConfig,
    LlmConfig,
    ProfileConfig,
    ServerConfig,
    SipConfig,
    TtsConfig,
    TurnsConfig,
    VadConfig,
    VoiceConfig,
)
from pipeline.errors import ConfigError

__all__ = [
    "Action",
    "AgentConfig",
    "AsrConfig",
    "AuthConfig",
    "Branch",
    "ChoiceSlot",
    "ConfigError",
    "DateSlot",
    "DialogueConfig",
    "EarlyMatchConfig",
    "EmbeddingsConfig",
    "Emotion",
    "EndCallAction",
    "FallbackConfig",
    "FlowConfig",
    "GreetingConfig",
    "HandoffAction",
    "IntentConfig",
    "LimitsConfig",
    "LlmConfig",
    "LlmDialogueConfig",
    "NumberSlot",
    "ProfileConfig",
    "Reply",
    "ReplyConfig",
    "Section",
    "SendDtmfAction",
    "ServerConfig",
    "SetAction",
    "SipConfig",
    "Slot",
    "TextSlot",
    "TimeSlot",
    "ToolsConfig",
    "TransferAction",
    "TtsConfig",
    "TurnsConfig",
    "VadConfig",
    "VoiceConfig",
    "WebhookAction",
    "WebhookConfig",
    "When",
    "YesNoSlot",
    "load_config",
    "parse_config",
    "reply_text",
]
