"""The LLM agent's config decodes strictly, with every default usable as is."""

from __future__ import annotations

import msgspec
import pytest

from agent.dialogue.llm import LLMConfig
from agent.dialogue.llm_tools import ToolConfig, WebhookConfig

YAML = b"""
backend: openai
base_url: http://127.0.0.1:8080/v1
api_key_env: LLM_KEY
system_prompt: You are Luigi's receptionist.
temperature: 0.2
first_token_timeout_s: 2.5
fallback_text: One moment, please.
tools:
  - name: book_table
    description: Book a table
    parameters:
      type: object
      properties: {party_size: {type: integer}}
      required: [party_size]
    webhook: {url: "https://example.test/book", timeout_s: 3}
  - name: hang_up
    builtin: hang_up
"""


def test_decodes_from_yaml_with_tools() -> None:
    config = msgspec.yaml.decode(YAML, type=LLMConfig, strict=True)
    assert config.first_token_timeout_s == 2.5
    assert config.tools == (
        ToolConfig(
            name="book_table",
            description="Book a table",
            parameters={
                "type": "object",
                "properties": {"party_size": {"type": "integer"}},
                "required": ["party_size"],
            },
            webhook=WebhookConfig(url="https://example.test/book", timeout_s=3.0),
        ),
        ToolConfig(name="hang_up", builtin="hang_up"),
    )
    history = config.new_history()
    assert history.render() == [{"role": "system", "content": "You are Luigi's receptionist."}]


@pytest.mark.parametrize(
    ("yaml", "error"),
    [
        (b"backend: llamafile", r"Invalid enum value .llamafile. - at `\$.backend`"),
        (b"first_token_timeout: 3", "unknown field `first_token_timeout`"),
        (b"first_token_timeout_s: 0", "`first_token_timeout_s` must be positive"),
        (b"max_tool_rounds: -1", "must not be negative"),
        (b"tools: [{name: x}]", r"exactly one of `webhook` and `builtin` - at `\$.tools\[0\]`"),
        (b"tools: [{name: x, builtin: x, parameters: {type: array}}]", "must describe an object"),
    ],
)
def test_mistakes_are_errors_with_their_path(yaml: bytes, error: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        msgspec.yaml.decode(yaml, type=LLMConfig, strict=True)
