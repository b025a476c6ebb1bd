"""Tools an LLM agent may call: declared in config, run as webhooks or built-ins.

A tool is declared with a name, a description for the model, and a JSON schema of its
arguments (:class:`ToolConfig`). It runs either as a **webhook** (an HTTP ``POST`` of
``{"tool": name, "arguments": {...}, "call_id": id}``; the response body is the result) or as a
**built-in** (an async function the application registers under that name: ``end_call``,
``transfer``, a lookup in process).

:class:`Tools` is the concrete :class:`ToolBox` the LLM engine calls. It checks the arguments
against the declared schema first (:func:`check_arguments`: a subset of JSON schema, below),
so a tool never sees malformed input; any failure (invalid arguments, unknown tool, webhook
down or answering an error, built-in raising) becomes a :class:`ToolResult` with
``error=True`` whose text goes back to the model, which can then tell the caller or retry.

Schema subset checked: ``type`` (``object``, ``array``, ``string``, ``integer``, ``number``,
``boolean``, ``null``, or a list of them), ``properties``, ``required``, ``enum``, ``items``
and ``additionalProperties: false``; other keywords are passed to the model but not checked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx
import msgspec

logger = logging.getLogger(__name__)

#: a built-in tool: the checked arguments in, the result for the model out
BuiltinTool = Callable[[Mapping[str, Any]], Awaitable["str | ToolResult"]]

#: results longer than this are cut before they go back to the model
MAX_RESULT_CHARS = 4000


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str
    headers: dict[str, str] = {}
    timeout_s: float = 5.0


class ToolConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tool; exactly one of ``webhook`` and ``builtin`` says how it runs."""

    name: str
    description: str = ""
    #: JSON schema of the arguments (an object)
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    webhook: WebhookConfig | None = None
    #: the name a built-in was registered under (usually the tool's own name)
    builtin: str | None = None

    def __post_init__(self) -> None:
        if (self.webhook is None) == (self.builtin is None):
            raise ValueError(f"tool {self.name!r} needs exactly one of `webhook` and `builtin`")
        if self.parameters.get("type", "object") != "object":
            raise ValueError(f"tool {self.name!r}: `parameters` must describe an object")

    def schema(self) -> dict[str, Any]:
        """The declaration in the OpenAI chat API's ``tools`` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A call the model asked for; ``arguments`` is its JSON text, exactly as generated."""

    id: str
    name: str
    arguments: str
    #: the model wrote the call as text (its server has no tool-call parser), rather than
    #: through the API's structured ``tool_calls``
    as_text: bool = False


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    content: str
    #: the call failed; ``content`` says why (for the model)
    error: bool = False
    #: end the reply after this tool: no further model round (hang up, transfer)
    final: bool = False


class ClientTools(msgspec.Struct, frozen=True, kw_only=True):
    """Tools a client runs itself (the Realtime API's function tools), for one reply.

    Offered to the model beside the agent's own (a client tool shadows an agent tool of the
    same name); the server never runs them: a call of one ends the reply, unanswered, and the
    client sends its result later. ``choice`` is the chat API's ``tool_choice`` (``"auto"``,
    ``"none"``: no tools at all, ``"required"``, or ``{"type": "function", "function":
    {"name": ...}}``), for the reply's first round.
    """

    #: declarations in the chat API's ``tools`` format
    schemas: tuple[dict[str, Any], ...] = ()
    choice: str | dict[str, Any] = "auto"

    @property
    def names(self) -> frozenset[str]:
        return frozenset(s["function"]["name"] for s in self.schemas)


class ToolBox(Protocol):
    """What the engine needs from tools: their declarations, and a way to call them."""

    def schemas(self) -> list[dict[str, Any]]: ...

    async def __call__(self, call: ToolCall) -> ToolResult: ...


class Tools:
    """The declared tools of one agent, with the built-ins and HTTP client to run them."""

    def __init__(
        self,
        configs: Sequence[ToolConfig],
        *,
        builtins: Mapping[str, BuiltinTool] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        builtins = dict(builtins or {})
        self._configs = {config.name: config for config in configs}
        if len(self._configs) != len(configs):
            raise ValueError("tool names must be unique")
        missing = [c.builtin for c in configs if c.builtin and c.builtin not in builtins]
        if missing:
            raise ValueError(f"built-in tools not registered: {', '.join(sorted(missing))}")
        if http is None and any(c.webhook for c in configs):
            raise ValueError("webhook tools need an httpx.AsyncClient")
        self._builtins = builtins
        self._http = http

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._configs)

    def schemas(self) -> list[dict[str, Any]]:
        return [config.schema() for config in self._configs.values()]

    async def __call__(self, call: ToolCall) -> ToolResult:
        config = self._configs.get(call.name)
        if config is None:
            known = ", ".join(sorted(self._configs)) or "none"
            return ToolResult(content=f"unknown tool {call.name!r} (tools: {known})", error=True)
        try:
            arguments = check_arguments(config.parameters, call.arguments)
        except ValueError as error:
            return ToolResult(content=f"invalid arguments for {call.name}: {error}", error=True)
        if config.webhook is not None:
            return await self._webhook(config.webhook, call, arguments)
        assert config.builtin is not None
        try:
            result = await self._builtins[config.builtin](arguments)
        except Exception as error:  # the model hears that the tool failed; the log has why
            logger.exception("built-in tool %s failed", call.name)
            return ToolResult(content=f"{call.name} failed ({type(error).__name__})", error=True)
        return result if isinstance(result, ToolResult) else ToolResult(content=_cut(result))

    async def _webhook(
        self, webhook: WebhookConfig, call: ToolCall, arguments: dict[str, Any]
    ) -> ToolResult:
        assert self._http is not None
        body = {"tool": call.name, "arguments": arguments, "call_id": call.id}
        try:
            response = await self._http.post(
                webhook.url, json=body, headers=webhook.headers, timeout=webhook.timeout_s
            )
        except httpx.TimeoutException:
            logger.warning("webhook tool %s timed out after %s s", call.name, webhook.timeout_s)
            return ToolResult(content=f"{call.name} did not answer in time", error=True)
        except httpx.HTTPError as error:
            logger.warning("webhook tool %s failed: %s", call.name, error)
            return ToolResult(content=f"{call.name} is unreachable", error=True)
        if response.is_error:
            logger.warning("webhook tool %s answered %d", call.name, response.status_code)
            return ToolResult(
                content=f"{call.name} failed (HTTP {response.status_code}): {_cut(response.text)}",
                error=True,
            )
        return ToolResult(content=_cut(response.text))


def check_arguments(schema: Mapping[str, Any], raw: str) -> dict[str, Any]:
    """Parse a call's JSON arguments and check them against ``schema``; ``ValueError`` if bad."""
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(arguments, dict):
        raise ValueError("arguments must be a JSON object")
    _check(schema, arguments, "arguments")
    return arguments


_TYPES: dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _anything(value: object) -> bool:
    return True


def _check(schema: Mapping[str, Any], value: object, where: str) -> None:
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_TYPES.get(name, _anything)(value) for name in names):
            raise ValueError(f"{where} must be {' or '.join(names)}, not {json.dumps(value)}")
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(choice) for choice in schema["enum"])
        raise ValueError(f"{where} must be one of {choices}, not {json.dumps(value)}")
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise ValueError(f"{where}.{name} is required")
        for name, item in value.items():
            if name in properties:
                _check(properties[name], item, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                raise ValueError(f"{where}.{name} is not a known argument")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{i}]")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + "…"
