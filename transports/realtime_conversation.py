"""The conversation behind a Realtime connection: its items and the responses being written.

:class:`Conversation` is the bookkeeping half of :class:`~transports.realtime.RealtimeProtocol`
(which owns it and forwards its response methods): the ordered items (user audio turns, client
items, assistant messages, tool calls), the responses in progress by generation, and the server
events each of them produces, queued through the ``emit`` callable it is given. Sans-I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

from transports.audio import OutboundAudio
from transports.realtime_caps import MAX_CONVERSATION_BYTES, TOO_LARGE, item_cap_problem, wire_size
from transports.realtime_events import (
    Ids,
    Item,
    Modality,
    RealtimeSessionConfig,
    ResponseParams,
    format_to_wire,
)
from transports.realtime_inbound import ItemDeleted

__all__ = ["Conversation", "RateLimits", "ResponseStatus", "item_problem", "item_to_wire"]

#: items kept; the oldest are forgotten beyond this (and beyond MAX_CONVERSATION_BYTES)
MAX_ITEMS = 1000

#: how a response ended (``response.done``'s ``status``)
ResponseStatus = Literal["completed", "cancelled", "incomplete", "failed"]


class Emit(Protocol):
    def __call__(self, kind: str, /, **fields: Any) -> None: ...


class RateLimits(Protocol):
    """``rate_limits.updated``'s list after a response that said ``text`` under
    ``max_output_tokens`` (what the numbers mean is the session's to say)."""

    def __call__(
        self, text: str, max_output_tokens: int | Literal["inf"], /
    ) -> list[dict[str, Any]]: ...


@dataclass
class _Message:
    item_id: str
    output_index: int
    audio: OutboundAudio | None
    text: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Call:
    item_id: str
    call_id: str
    name: str
    arguments: str


@dataclass
class _Response:
    id: str
    generation: int
    modalities: tuple[Modality, ...]
    in_conversation: bool
    metadata: dict[str, str] | None
    max_output_tokens: int | Literal["inf"]
    output: list[dict[str, Any]] = field(default_factory=list)
    message: _Message | None = None
    #: function calls, sent when the response ends (after the message)
    calls: list[_Call] = field(default_factory=list)


class Conversation:
    """Items in order, and the responses being written, for one connection."""

    def __init__(
        self,
        ids: Ids,
        emit: Emit,
        config: Callable[[], RealtimeSessionConfig],
        rate_limits: RateLimits | None = None,
    ) -> None:
        self._ids = ids
        #: ``rate_limits.updated`` follows each ``response.done`` (``None``: it does not)
        self.rate_limits = rate_limits
        self._emit = emit
        self._config = config
        #: the items by id, in conversation order (wire form)
        self.items: dict[str, dict[str, Any]] = {}
        self.last_item: str | None = None
        #: assistant items with audio: their generation and audio stream (for truncation)
        self.audio_items: dict[str, tuple[int, OutboundAudio]] = {}
        #: the transcripts of truncated assistant items: the text heard up to the cut
        self.heard: dict[str, str] = {}
        #: true once any assistant audio went out (the voice may not change after that)
        self.voice_locked = False
        #: the generation whose response made each item (assistant messages, function calls)
        self.made: dict[str, int] = {}
        self._responses: dict[int, _Response] = {}
        self._ended: set[int] = set()
        #: each item's JSON bytes, and their total (:data:`MAX_CONVERSATION_BYTES`)
        self._sizes: dict[str, int] = {}
        self.size = 0
        self._pruned: list[ItemDeleted] = []

    @property
    def config(self) -> RealtimeSessionConfig:
        return self._config()

    def active(self) -> tuple[int, str] | None:
        """``(generation, response id)`` of the response in the default conversation."""
        response = next((r for r in self._responses.values() if r.in_conversation), None)
        return None if response is None else (response.generation, response.id)

    def find(self, response_id: str) -> int | None:
        """The generation of the response in progress with this id."""
        return next((r.generation for r in self._responses.values() if r.id == response_id), None)

    # -- responses ----------------------------------------------------------------------------

    def start_response(self, generation: int, params: ResponseParams | None = None) -> str:
        """Reply ``generation`` begins (``response.created``); returns the response id."""
        if generation in self._responses or generation in self._ended:
            raise ValueError(f"generation {generation} already had a response")
        params = params or ResponseParams()
        modalities = tuple(params.output_modalities or self.config.output_modalities)
        response = _Response(
            id=self._ids.next("resp"),
            generation=generation,
            modalities=modalities,
            in_conversation=params.conversation != "none",
            metadata=params.metadata,
            max_output_tokens=(
                self.config.max_output_tokens
                if params.max_output_tokens is None
                else params.max_output_tokens
            ),
        )
        self._responses[generation] = response
        self._emit("response.created", response=self._response_wire(response, "in_progress"))
        return response.id

    def send_text(self, generation: int, delta: str) -> None:
        """What the assistant says (an audio transcript delta, or text in a text response)."""
        response = self._response(generation)
        if response is None or not delta:
            return
        message = self._message(response)
        message.text.append(delta)
        kind = "output_audio_transcript" if message.audio is not None else "output_text"
        self._emit(f"response.{kind}.delta", **self._where(response, message), delta=delta)

    def send_audio(self, generation: int, pcm: bytes, sample_rate: int) -> None:
        """The assistant's audio (PCM16 LE mono at ``sample_rate``), in the output format."""
        response = self._response(generation)
        if response is None or "audio" not in response.modalities:
            return
        message = self._message(response)
        assert message.audio is not None
        self.voice_locked = True
        self._audio_delta(response, message, message.audio.convert(pcm, sample_rate))

    def send_function_call(
        self, generation: int, *, call_id: str, name: str, arguments: str
    ) -> str:
        """A tool call by the assistant (a ``function_call`` item); returns its id. Its events
        go out when the response ends, after those of the message said before it (the text
        may still be being spoken)."""
        response = self._response(generation)
        if response is None:
            return ""
        item_id = self._ids.next("item")
        response.calls.append(_Call(item_id, call_id, name, arguments))
        return item_id

    def _function_call(self, response: _Response, call: _Call) -> None:
        wire: dict[str, Any] = {
            "id": call.item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": "",
        }
        index = len(response.output)
        self._open_item(response, wire, index)
        where = {"response_id": response.id, "item_id": call.item_id, "output_index": index}
        arguments = call.arguments
        self._emit(
            "response.function_call_arguments.delta", **where, call_id=call.call_id, delta=arguments
        )
        self._emit(
            "response.function_call_arguments.done",
            **where,
            call_id=call.call_id,
            name=call.name,
            arguments=arguments,
        )
        wire.update(status="completed", arguments=arguments)
        self._close_item(response, wire, index)

    def end_response(
        self,
        generation: int,
        *,
        status: ResponseStatus = "completed",
        reason: str | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        """Reply ``generation`` is over: close its item and send ``response.done``.

        ``status="cancelled"`` with ``reason="turn_detected"`` is a barge-in; ``"failed"``
        carries ``error`` (``type``, ``code``, ``message``) in ``status_details``. Audio or text
        sent for it afterwards is dropped. Ending a response twice does nothing.
        """
        response = self._responses.pop(generation, None)
        if response is None:
            return
        self._ended.add(generation)
        message = response.message
        if message is not None:
            item_status = "completed" if status == "completed" else "incomplete"
            text = self.heard.get(message.item_id, "".join(message.text))
            where = self._where(response, message)
            if message.audio is not None:
                if status == "completed":
                    self._audio_delta(response, message, message.audio.flush())
                self._emit("response.output_audio.done", **where)
                self._emit("response.output_audio_transcript.done", **where, transcript=text)
                part = {"type": "audio", "transcript": text}
            else:
                self._emit("response.output_text.done", **where, text=text)
                part = {"type": "text", "text": text}
            self._emit("response.content_part.done", **where, part=part)
            wire = self._message_wire(message, item_status, text)
            self._close_item(response, wire, message.output_index)
        for call in response.calls:
            self._function_call(response, call)
        details: dict[str, Any] | None = None
        if status != "completed":
            details = {"type": status, "reason": reason}
            if error is not None:
                details["error"] = error
        self._emit("response.done", response=self._response_wire(response, status, details))
        if self.rate_limits is not None:
            said = "".join(message.text) if message is not None else ""  # all of it, heard or not
            limits = self.rate_limits(said, response.max_output_tokens)
            self._emit("rate_limits.updated", rate_limits=limits)

    # -- helpers ------------------------------------------------------------------------------

    def _response(self, generation: int) -> _Response | None:
        response = self._responses.get(generation)
        if response is None and generation not in self._ended:
            raise ValueError(f"no response was started for generation {generation}")
        return response

    def _message(self, response: _Response) -> _Message:
        if response.message is None:
            audio = (
                OutboundAudio(self.config.output_audio) if "audio" in response.modalities else None
            )
            message = _Message(self._ids.next("item"), len(response.output), audio)
            response.message = message
            if audio is not None and response.in_conversation:
                self.audio_items[message.item_id] = (response.generation, audio)
            self._open_item(
                response, self._message_wire(message, "in_progress", ""), message.output_index
            )
            part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
            self._emit("response.content_part.added", **self._where(response, message), part=part)
        return response.message

    def _audio_delta(self, response: _Response, message: _Message, data: bytes) -> None:
        if data:
            delta = base64.b64encode(data).decode()
            self._emit("response.output_audio.delta", **self._where(response, message), delta=delta)

    def _open_item(self, response: _Response, wire: dict[str, Any], index: int) -> None:
        self._emit(
            "response.output_item.added", response_id=response.id, output_index=index, item=wire
        )
        if response.in_conversation:
            self.made[wire["id"]] = response.generation
            previous = self.add_item(dict(wire), self.last_item)
            self._emit("conversation.item.added", item=wire, previous_item_id=previous)

    def _close_item(self, response: _Response, wire: dict[str, Any], index: int) -> None:
        response.output.append(wire)
        self._emit(
            "response.output_item.done", response_id=response.id, output_index=index, item=wire
        )
        if response.in_conversation and wire["id"] in self.items:
            self.items[wire["id"]] = wire
            self.resize(wire["id"])
            self._emit(
                "conversation.item.done", item=wire, previous_item_id=self.before(wire["id"])
            )

    def _message_wire(self, message: _Message, status: str, text: str) -> dict[str, Any]:
        if message.audio is not None:
            part: dict[str, Any] = {"type": "output_audio", "transcript": text}
        else:
            part = {"type": "output_text", "text": text}
        return {
            "id": message.item_id,
            "type": "message",
            "object": "realtime.item",
            "role": "assistant",
            "status": status,
            "content": [part] if text or status != "in_progress" else [],
        }

    def _where(self, response: _Response, message: _Message) -> dict[str, Any]:
        return {
            "response_id": response.id,
            "item_id": message.item_id,
            "output_index": message.output_index,
            "content_index": 0,
        }

    def _response_wire(
        self, response: _Response, status: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        audio_format = self.config.output_format
        return {
            "id": response.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": list(response.output),
            "conversation_id": "conv_" + self._ids.seed if response.in_conversation else None,
            "output_modalities": list(response.modalities),
            "audio": {
                "output": {"format": format_to_wire(audio_format), "voice": self.config.voice}
            },
            "max_output_tokens": response.max_output_tokens,
            "metadata": response.metadata,
        }

    def add_item(self, wire: dict[str, Any], after: str | None) -> str | None:
        """Insert ``wire`` after item ``after`` (first when ``None``); returns the item before."""
        if after == self.last_item and after is not None:
            self.items[wire["id"]] = wire  # the usual case: append
        else:
            items = list(self.items.items())
            position = 0 if after is None else [k for k, _ in items].index(after) + 1
            items.insert(position, (wire["id"], wire))
            self.items = dict(items)
        self.last_item = next(reversed(self.items))
        self.resize(wire["id"])
        return after

    def resize(self, item_id: str) -> None:
        """Item ``item_id`` was added or changed: count its bytes, and prune the oldest items
        (never the newest, nor those of a response still being written) past the caps."""
        if item_id in self.items:
            size = wire_size(self.items[item_id])
            self.size += size - self._sizes.get(item_id, 0)
            self._sizes[item_id] = size
        writing = {r.generation for r in self._responses.values()}
        for old in list(self.items)[:-1]:
            if len(self.items) <= MAX_ITEMS and self.size <= MAX_CONVERSATION_BYTES:
                break
            if old != item_id and self.made.get(old) not in writing:
                wire = self.items[old]
                call_id = wire.get("call_id") if wire["type"] == "function_call" else None
                self._pruned.append(ItemDeleted(old, call_id, self.made.get(old)))
                self.forget(old)
                self._emit("conversation.item.deleted", item_id=old)

    def take_pruned(self) -> list[ItemDeleted]:
        """The items pruned since the last call (the session forgets them too)."""
        pruned, self._pruned = self._pruned, []
        return pruned

    def truncate_transcript(self, generation: int, heard: str) -> None:
        """The assistant item of ``generation`` was truncated where ``heard`` ends: its
        transcript is that from now on (in items retrieved, and when its response ends)."""
        item_id = next((i for i, (g, _) in self.audio_items.items() if g == generation), None)
        if item_id is None:
            return
        self.heard[item_id] = heard
        if item_id not in self.items:
            return  # pruned meanwhile
        content = self.items[item_id].get("content") or []
        if content and content[0].get("type") == "output_audio":
            content[0]["transcript"] = heard
            self.resize(item_id)

    def forget(self, item_id: str) -> None:
        del self.items[item_id]
        self.size -= self._sizes.pop(item_id, 0)
        self.made.pop(item_id, None)
        self.audio_items.pop(item_id, None)
        self.heard.pop(item_id, None)
        self.last_item = next(reversed(self.items), None)

    def before(self, item_id: str) -> str | None:
        keys = list(self.items)
        index = keys.index(item_id)
        return keys[index - 1] if index > 0 else None


def item_problem(item: Item) -> tuple[str, str, str] | None:
    """``(param, message, code)`` when a client item cannot be added: it makes no sense
    (``invalid_value``), or it is over a cap (``value_too_large``)."""
    problem = _shape_problem(item)
    if problem is not None:
        return (*problem, "invalid_value")
    problem = item_cap_problem(item)
    return None if problem is None else (*problem, TOO_LARGE)


def _shape_problem(item: Item) -> tuple[str, str] | None:
    if item.type == "message":
        if item.role not in ("user", "assistant", "system"):
            return "item.role", "role must be 'user', 'assistant' or 'system'"
        allowed = {
            "user": ("input_text", "input_audio"),
            "system": ("input_text",),
            "assistant": ("output_text", "output_audio", "text", "audio"),
        }[item.role]
        for n, part in enumerate(item.content):
            if part.type not in allowed:
                return (
                    f"item.content[{n}].type",
                    f"content type must be one of {', '.join(allowed)}",
                )
        return None
    if item.type == "function_call_output":
        if item.call_id is None or item.output is None:
            return "item", "a function_call_output needs call_id and output"
        return None
    if item.type == "function_call":
        if item.name is None or item.arguments is None:
            return "item", "a function_call needs name and arguments"
        return None
    return "item.type", "type must be 'message', 'function_call' or 'function_call_output'"


def item_to_wire(item: Item) -> dict[str, Any]:
    """The item as the API shows it; input audio is not echoed back (only its transcript)."""
    wire: dict[str, Any] = msgspec.to_builtins(item)
    wire["object"] = "realtime.item"
    if item.type == "message":
        wire.setdefault("content", [])
    for part in wire.get("content", []):
        part.pop("audio", None)
    return wire
