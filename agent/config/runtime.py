"""From the agent file to the structs the running parts take.

The file's sections are the user's vocabulary (documented in docs/config.md); the LLM engine
(:class:`agent.dialogue.llm.LLMConfig`) has its own struct, and these functions build it, so
the mapping lives in one place. (The ``turns`` section needs no mapping: it is the turn-taking
machine's :class:`~agent.turns.TurnConfig`.) Not imported by :mod:`agent.config` (``voxline
check`` does not load the runtime).
"""

from __future__ import annotations

from typing import Any

from agent.config.schema import AgentConfig
from agent.dialogue.llm import LLMConfig
from agent.dialogue.llm_tools import ToolConfig
from agent.dialogue.llm_tools import WebhookConfig as ToolWebhook

__all__ = ["BUILTIN_TOOLS", "llm_config", "tool_configs"]

#: what the LLM is told about each built-in tool (the session registers the functions)
BUILTIN_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "end_call": (
        "End the call once the caller has said goodbye or asked to hang up.",
        {"type": "object", "properties": {}},
    ),
    "transfer": (
        "Transfer the call to a person or another department.",
        {
            "type": "object",
            "properties": {"target": {"type": "string", "description": "who to transfer to"}},
            "required": ["target"],
        },
    ),
    "send_dtmf": (
        "Press keys on the phone keypad (DTMF), e.g. to choose in an automated menu or enter "
        "a code; they are sent once what you say before this call has been spoken.",
        {
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "pattern": "^[0-9*#A-D]{1,32}$",
                    "description": "the keys to press, in order: 0-9, *, #, A-D (at most 32)",
                }
            },
            "required": ["digits"],
        },
    ),
    "current_datetime": (
        "The current local date and time.",
        {"type": "object", "properties": {}},
    ),
}


def tool_configs(config: AgentConfig, names: tuple[str, ...] | None = None) -> list[ToolConfig]:
    """The tools of ``names`` (default: every webhook and built-in) for the LLM engine."""
    webhooks = {hook.name: hook for hook in config.tools.webhooks}
    wanted = names if names is not None else (*webhooks, *config.tools.builtins)
    tools: list[ToolConfig] = []
    for name in wanted:
        hook = webhooks.get(name)
        if hook is not None:
            webhook = ToolWebhook(
                url=hook.url, headers=dict(hook.headers), timeout_s=hook.timeout_s
            )
            tools.append(
                ToolConfig(
                    name=name,
                    description=hook.description,
                    parameters=hook.parameters,
                    webhook=webhook,
                )
            )
        else:
            description, parameters = BUILTIN_TOOLS[name]
            tools.append(
                ToolConfig(name=name, description=description, parameters=parameters, builtin=name)
            )
    return tools


def llm_config(config: AgentConfig) -> LLMConfig:
    """``profile.llm`` and ``dialogue.llm`` as one :class:`~agent.dialogue.llm.LLMConfig`."""
    where = config.profile.llm
    if where is None:
        raise ValueError("the agent has no `profile.llm`")
    how = config.dialogue.llm
    return LLMConfig(
        # the embedded model is served by llama.cpp's OpenAI-compatible server, whose address
        # only its supervisor knows (agent.dialogue.llm_local.EmbeddedLlm is the backend)
        backend="openai" if where.backend == "embedded" else where.backend,
        base_url=where.base_url,
        model=where.model,
        api_key_env=where.api_key_env,
        device=where.device,
        gpu_memory_utilization=where.gpu_memory_utilization,
        connect_timeout_s=where.connect_timeout_s,
        first_token_timeout_s=where.first_token_timeout_s,
        stall_timeout_s=where.stall_timeout_s,
        reply_timeout_s=where.reply_timeout_s,
        breaker_failures=where.breaker_failures,
        breaker_cooldown_s=where.breaker_cooldown_s,
        system_prompt=how.system_prompt,
        temperature=how.temperature,
        top_p=how.top_p,
        max_tokens=how.max_tokens,
        seed=how.seed,
        fallback_text=how.fallback_text,
        tools=tuple(tool_configs(config, how.tools)),
        max_tool_rounds=how.max_tool_rounds,
        max_history_messages=how.max_history_messages,
    )
