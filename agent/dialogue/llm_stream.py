"""A streamed chat completion, assembled into speakable text and tool calls (sans-I/O).

A backend turns its wire format into :data:`StreamItem` objects: :class:`TextDelta`,
:class:`ToolCallDelta` (OpenAI's structured tool calls arrive as fragments keyed by
``index``: the first names the call, the rest append to its JSON arguments) and one final
:class:`StreamEnd`. :func:`decode_chunk` does that for one ``chat.completion.chunk`` JSON
payload.

:class:`ReplyAssembler` then decides what may be spoken. Models without a tool-call parser on
their server (llama.cpp's default chat format, in-process generation) write their calls as
text: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Qwen, Hermes), or a bare
JSON object, sometimes in a code fence. When tools are offered, text is therefore held back
while it could still be such a call:

- a reply whose first visible characters are ``<tool_call>``, ``{``, ``[{`` or a code fence is held
  to the end, then parsed: tool calls, or (if it is no call after all) text;
- elsewhere in the text, ``<tool_call>`` starts holding; the few characters that could be the
  start of that marker wait for the next delta.

Everything else passes straight through, so a spoken reply is delayed by nothing. A block
that is plainly meant as a call but whose JSON is broken still becomes a :class:`ToolCall`
(with the raw text as its arguments), so the tool box rejects it and the model hears why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agent.dialogue.llm_tools import ToolCall
from pipeline.errors import ModelError


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One completion request, in the terms every backend understands."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    #: the chat API's ``tool_choice`` (``None``: the server's default, ``auto``)
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = ()


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    #: ``stop``, ``length``, ``tool_calls`` ... as the server said (None if it did not)
    finish_reason: str | None = None
    usage: Usage | None = None


StreamItem = TextDelta | ToolCallDelta | StreamEnd


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallFragment(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCallFragment] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: Usage | None = None


_decoder = msgspec.json.Decoder(_Chunk)


def decode_chunk(data: str) -> tuple[list[TextDelta | ToolCallDelta], StreamEnd | None]:
    """One ``chat.completion.chunk`` payload: its deltas, and its end if it carries one.

    Raises :class:`~pipeline.errors.ModelError` for a payload that is not such a chunk.
    """
    try:
        chunk = _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise ModelError(f"malformed chunk in the LLM stream: {error}") from error
    deltas: list[TextDelta | ToolCallDelta] = []
    finish: str | None = None
    for choice in chunk.choices[:1]:
        delta = choice.delta
        if delta is not None:
            if delta.content:
                deltas.append(TextDelta(delta.content))
            for fragment in delta.tool_calls or ():
                function = fragment.function or _Function()
                deltas.append(
                    ToolCallDelta(
                        fragment.index, fragment.id, function.name, function.arguments or ""
                    )
                )
        finish = choice.finish_reason
    end = StreamEnd(finish, chunk.usage) if finish is not None or chunk.usage else None
    return deltas, end


_TAG = "<tool_call>"
_START_MARKERS = (_TAG, "{", "[{", "```")
_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_NAME = re.compile(r'"name"\s*:\s*"([^"]*)"')


class ReplyAssembler:
    """Feed a reply's deltas; get the text that may be spoken now, then its tool calls."""

    def __init__(self, *, text_calls: bool, new_id: Callable[[], str]) -> None:
        #: look for tool calls written as text (only worth it when tools are offered)
        self._text_calls = text_calls
        self._new_id = new_id
        self._structured: dict[int, list[str | None]] = {}  # index -> [id, name, arguments]
        self._deciding = text_calls
        self._pending = ""
        self._held: str | None = None
        self.text = ""
        """Everything released for speech so far."""

    def feed(self, item: TextDelta | ToolCallDelta) -> str:
        """Add one delta; return the text now safe to speak (often all of it, maybe none)."""
        if isinstance(item, ToolCallDelta):
            call = self._structured.setdefault(item.index, [None, None, ""])
            call[0] = call[0] or item.id
            call[1] = call[1] or item.name
            call[2] = (call[2] or "") + item.arguments
            return ""
        if not self._text_calls:
            return self._release(item.text)
        if self._held is not None:
            self._held += item.text
            return ""
        self._pending += item.text
        if self._deciding:
            start = self._pending.lstrip()
            if not start or any(marker.startswith(start) for marker in _START_MARKERS):
                return ""  # could still become a call
            self._deciding = False
            if start.startswith(_START_MARKERS):
                self._held, self._pending = self._pending, ""
                return ""
        at = self._pending.find(_TAG)
        if at >= 0:
            self._held, ready, self._pending = self._pending[at:], self._pending[:at], ""
            return self._release(ready)
        keep = _marker_prefix(self._pending)
        ready = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(ready) :]
        return self._release(ready)

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The reply ended: the rest of its text, and every tool call it made."""
        calls = [
            ToolCall(id=call_id or self._new_id(), name=name or "", arguments=arguments or "")
            for call_id, name, arguments in self._structured.values()
        ]
        rest, self._pending = self._pending, ""
        if self._held is not None:
            held, self._held = self._held, None
            parsed = self._parse(held)
            if parsed is None:
                rest += held
            else:
                calls.extend(parsed)
        return self._release(rest), calls

    def _release(self, text: str) -> str:
        self.text += text
        return text

    def _parse(self, held: str) -> list[ToolCall] | None:
        """Tool calls written as text, or ``None`` if ``held`` is not meant as any."""
        blocks = [m.group(1) for m in _BLOCK.finditer(held)]
        if blocks:
            return [self._from_block(block) for block in blocks]
        objects = _json_values(_FENCE.sub("", held.strip()))
        if objects is None:
            return None
        items = [i for value in objects for i in (value if isinstance(value, list) else [value])]
        if not items or not all(_looks_like_call(item) for item in items):
            return None
        return [self._from_object(item) for item in items]

    def _from_block(self, block: str) -> ToolCall:
        objects = _json_values(_FENCE.sub("", block.strip()))
        if objects and len(objects) == 1 and _looks_like_call(objects[0]):
            return self._from_object(objects[0])
        name = _NAME.search(block)
        return ToolCall(
            id=self._new_id(), name=name.group(1) if name else "", arguments=block, as_text=True
        )

    def _from_object(self, item: dict[str, Any]) -> ToolCall:
        arguments = item.get("arguments", item.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return ToolCall(id=self._new_id(), name=item["name"], arguments=text, as_text=True)


def _looks_like_call(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and ("arguments" in item or "parameters" in item)
    )


def _json_values(text: str) -> list[Any] | None:
    """The JSON values ``text`` holds one after another, or ``None`` if it holds anything else."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    i = 0
    while i < len(text):
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return None
        values.append(value)
        while i < len(text) and text[i].isspace():
            i += 1
    return values


def _marker_prefix(text: str) -> int:
    """Length of the longest end of ``text`` that could start ``<tool_call>``."""
    for n in range(min(len(text), len(_TAG) - 1), 0, -1):
        if _TAG.startswith(text[-n:]):
            return n
    return 0
