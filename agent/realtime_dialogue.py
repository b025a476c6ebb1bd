"""An LLM dialogue as a ``/v1/realtime`` session drives it: the conversation's items are the
LLM's history, and the client's function tools are offered to the model.

:class:`RealtimeDialogue` wraps the call's :class:`~agent.responders.LLMResponder` (the session
sees it as the call's :class:`~agent.reply.Responder`):

- **Items and history.** Each history message belongs to the conversation item it is
  (:attr:`~agent.dialogue.llm_history.Message.item`): items the client creates are inserted
  where ``previous_item_id`` puts them, and deleted with their item; the messages of a reply
  (the user turn it answers, what the assistant said, the agent's own tool rounds) are tagged
  with the reply's keys (:func:`turn_key`, :func:`reply_key`) when it ends, and
  :meth:`RealtimeDialogue.key` is the one place that says which key an item's messages carry
  (a function call's are found by its ``call_id``).
- **Replies.** A reply to a caller's turn adds the turn to the history; a reply the client
  asks for after adding items answers the history as it stands (:class:`ReplyRequest`
  ``continues``); an out-of-band one (``conversation: "none"``) answers a copy of the history,
  or the response's ``input`` items, and leaves the call's history alone.
- **Token limits.** ``max_output_tokens`` (the response's, else :attr:`RealtimeDialogue.max_tokens`,
  the session's) is each request's ``max_tokens`` when below the agent's; a reply the model
  stopped there goes to :attr:`RealtimeDialogue.on_limit` (its response is ``incomplete``).
- **Client tools** (:func:`client_tools`: the session's, or a response's own) are offered with
  the agent's; the model's call of one goes to :attr:`RealtimeDialogue.on_call` and ends the
  reply. A reply that said nothing (only a call) tells :attr:`RealtimeDialogue.on_silent_end`,
  as no audio will end it.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

from agent.dialogue.decision import Say
from agent.dialogue.llm_history import History, Message, tool_message
from agent.dialogue.llm_tools import ClientTools, ToolCall
from agent.digits import KeypadRule
from agent.reply import ReplyPart
from agent.responders import LLMResponder, OnCall, TokenLimit
from transports.realtime_conversation import Conversation
from transports.realtime_events import (
    FunctionTool,
    Item,
    RealtimeSessionConfig,
    ResponseParams,
    ToolChoice,
    ToolChoiceFunction,
)

__all__ = [
    "RealtimeDialogue",
    "ReplyRequest",
    "client_tools",
    "history_of",
    "message_of",
    "reply_key",
    "turn_key",
]


#: replies whose requests are kept: older ones were cancelled before they ran
_KEPT = 16


def reply_key(generation: int) -> str:
    """The key of reply ``generation``'s own messages (its assistant messages and tool rounds)."""
    return f"reply:{generation}"


def turn_key(generation: int) -> str:
    """The key of the caller's turn that reply ``generation`` answered."""
    return f"turn:{generation}"


def client_tools(tools: Sequence[FunctionTool], choice: ToolChoice) -> ClientTools:
    """Realtime function tools and ``tool_choice`` in the chat API's terms."""
    schemas = tuple(
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    )
    if isinstance(choice, ToolChoiceFunction):
        return ClientTools(
            schemas=schemas, choice={"type": "function", "function": {"name": choice.name}}
        )
    return ClientTools(schemas=schemas, choice=choice)


def message_of(item: Item, history: History) -> Message | None:
    """The history message of a client's item (its id set); ``None``: it says nothing yet
    (user audio without a transcript)."""
    match item.type:
        case "message" if item.role in ("user", "assistant", "system"):
            role: Literal["user", "assistant", "system"] = item.role  # type: ignore[assignment]
            text = item.text
            return Message(role=role, content=text, item=item.id) if text else None
        case "function_call":
            call = ToolCall(
                id=item.call_id or item.id or "",
                name=item.name or "",
                arguments=item.arguments or "",
            )
            return Message(role="assistant", tool_calls=(call,), item=item.id)
        case "function_call_output":
            call_id = item.call_id or ""
            call = history.find_call(call_id) or ToolCall(id=call_id, name="function", arguments="")
            return tool_message(call, item.output or "", item=item.id)
    return None


def history_of(items: Sequence[Item], system: str) -> History:
    """A history of ``items`` alone (an out-of-band response's ``input``)."""
    history = History(system)
    for item in items:
        message = message_of(item, history)
        if message is not None:
            history.add(message)
    return history


@dataclass(frozen=True)
class ReplyRequest:
    """What the client asked of one reply (``response.create``)."""

    #: its tools (``None``: the session's)
    tools: ClientTools | None = None
    #: answers the history as it stands, not a new turn
    continues: bool = False
    #: out of band: answers this history, and the call's is left alone
    history: History | None = None
    #: its own ``max_output_tokens`` (``None``: the session's)
    max_tokens: int | None = None


class RealtimeDialogue:
    """The call's LLM dialogue, with the Realtime conversation as its history."""

    def __init__(self, llm: LLMResponder) -> None:
        self.llm = llm
        self.history = llm.history
        #: the session's client tools (``session.tools``, ``session.tool_choice``)
        self.tools: ClientTools | None = None
        #: told of each call of a client tool; and of a reply that ended without a word
        self.on_call: OnCall = None
        self.on_silent_end: Callable[[int], Awaitable[None]] | None = None
        #: the session's ``max_output_tokens`` (``None``: ``inf``); told of a reply cut there
        self.max_tokens: int | None = None
        self.on_limit: Callable[[int], None] = lambda generation: None
        self._requests: dict[int, ReplyRequest] = {}
        self._outside: set[int] = set()  # out-of-band replies not yet over
        self._answers: dict[str, int] = {}  # user audio item -> the reply that answered it
        self._prompts = itertools.count(1)

    # -- the session's side (the Responder protocol) ---------------------------------------------

    def request(self, generation: int, request: ReplyRequest) -> None:
        """Reply ``generation`` (just started: it has not run yet) is as ``request`` says."""
        self._requests[generation] = request
        if request.history is not None:
            self._outside.add(generation)
        for stale in [g for g in self._requests if g < generation - _KEPT]:
            del self._requests[stale]  # replies cancelled before they ran
        self._outside = {g for g in self._outside if g >= generation - _KEPT}

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        request = self._requests.pop(generation, ReplyRequest())
        tools = request.tools if request.tools is not None else self.tools
        most = self.max_tokens if request.max_tokens is None else request.max_tokens
        limit = None if most is None else TokenLimit(most, self.on_limit)
        if request.continues or request.history is not None:
            parts = self.llm.answer(
                generation, tools=tools, on_call=self.on_call, history=request.history, limit=limit
            )
        else:
            parts = self.llm.respond(
                text, generation=generation, tools=tools, on_call=self.on_call, limit=limit
            )
        spoke = False
        try:
            async with aclosing(parts) as stream:
                async for part in stream:
                    spoke = spoke or not isinstance(part, Say) or bool(part.text.strip())
                    yield part
        finally:
            if request.history is None:
                self.history.tag(reply_key(generation), user=turn_key(generation))
        if not spoke and self.on_silent_end is not None:
            await self.on_silent_end(generation)

    def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        return self._untied(self.llm.prompt(kind, count))

    def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        return self._untied(self.llm.transfer_failed(target, reason))

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        if generation in self._outside:
            self._outside.discard(generation)  # what was heard of it is in no history
            return
        key = reply_key(generation)
        if interrupted and self.history.holds(key):  # it has ended: that reply, not the last
            self.history.truncate_last_assistant(text, item=key)
            return
        self.llm.heard(generation, text, interrupted=interrupted)

    def keypad(self) -> KeypadRule:
        return self.llm.keypad()

    async def _untied(
        self, parts: AsyncGenerator[ReplyPart, None]
    ) -> AsyncGenerator[ReplyPart, None]:
        """A prompt's messages belong to no item the client can name."""
        try:
            async with aclosing(parts) as stream:
                async for part in stream:
                    yield part
        finally:
            self.history.tag(f"prompt:{next(self._prompts)}")

    # -- the client's side -------------------------------------------------------------------

    def plan(
        self, params: ResponseParams, config: RealtimeSessionConfig, *, fresh: bool
    ) -> ReplyRequest:
        """What a reply ``response.create`` asked for does (``fresh``: the client changed the
        conversation since the last response, and no turn waits for an answer)."""
        tools = None
        most = params.max_output_tokens
        if most is None:
            most = config.max_output_tokens
        limit = None if most == "inf" else most
        if params.tools is not None or params.tool_choice is not None:
            given = config.tools if params.tools is None else params.tools
            tools = client_tools(given, params.tool_choice or config.tool_choice)
        if params.conversation == "none":
            system = params.instructions or self.history.system
            if params.input is not None:
                history = history_of(params.input, system)
                return ReplyRequest(tools, history=history, max_tokens=limit)
            outside = self.history.copy()
            outside.system = system
            return ReplyRequest(tools, history=outside, max_tokens=limit)
        return ReplyRequest(tools, continues=fresh, max_tokens=limit)

    def answered(self, item_id: str, generation: int) -> None:
        """Reply ``generation`` answers the caller's turn, user item ``item_id``."""
        self._answers[item_id] = generation
        while len(self._answers) > 1000:
            del self._answers[next(iter(self._answers))]

    def key(self, item_id: str, made_by: int | None) -> str:
        """The key the messages of item ``item_id`` carry (``made_by``: the reply whose
        response made it)."""
        if made_by is not None:
            return reply_key(made_by)
        answered = self._answers.get(item_id)
        return turn_key(answered) if answered is not None else item_id

    def add_item(self, item: Item, conversation: Conversation) -> None:
        """The client created ``item`` (in ``conversation`` now): its message goes after those
        of the nearest item before it that has any; the newest item's goes last (after a reply
        still being written too)."""
        message = message_of(item, self.history)
        if message is None:
            return
        order = list(conversation.items)
        at = order.index(item.id or "")
        if at == len(order) - 1:
            self.history.add(message)
            return
        anchor = None
        for item_id in reversed(order[:at]):
            key = self.key(item_id, conversation.made.get(item_id))
            if self.history.holds(key):
                anchor = key
                break
        self.history.insert(message, anchor)

    def remove_item(self, item_id: str, made_by: int | None, call_id: str | None) -> None:
        """The client deleted the item: its messages go (a function call: that call)."""
        if call_id is not None:
            self.history.remove_call(call_id)
        self.history.remove(self.key(item_id, made_by))
