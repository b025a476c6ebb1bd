"""Dialogue engines as the session sees them (:class:`~agent.reply.Responder`).

:class:`IntentResponder` runs one call's :class:`~agent.dialogue.engine.IntentSession`: its
decisions become spoken replies and call actions. A hand-off to the LLM is spoken through the
configured LLM responder when there is one, else the fallback reply. :class:`LLMResponder`
streams an LLM's reply delta by delta, so speech starts on its first clause.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import msgspec

from agent.config import AgentConfig
from agent.config.base import Reply, ReplyConfig
from agent.dialogue.decision import (
    DialogueDecision,
    EndCall,
    HandOff,
    Say,
    SendDigits,
    Transfer,
)
from agent.dialogue.engine import IntentEngine, IntentSession
from agent.dialogue.llm import (
    LLMDone,
    LLMEngine,
    LLMFallback,
    LLMText,
    LLMToolCall,
    LLMToolResult,
)
from agent.dialogue.llm_history import History, separator
from agent.dialogue.llm_tools import BuiltinTool, ClientTools, ToolCall, ToolResult
from agent.dialogue.templates import Template
from agent.digits import Keypad, KeypadRule, check_digits
from agent.reply import ReplyPart, Responder

log = logging.getLogger("voxline.dialogue")

#: told of each call of a client's tool in reply ``generation`` (it ends the reply)
OnCall = Callable[[int, ToolCall], None] | None


@dataclass(frozen=True)
class TokenLimit:
    """A reply's own limit in tokens (a client's): each request's ``max_tokens`` when below the
    agent's; ``reached`` hears of reply ``generation`` the model stopped at the limit."""

    tokens: int
    reached: Callable[[int], None]


class IntentResponder:
    """One call's intent dialogue."""

    def __init__(
        self, engine: IntentEngine, config: AgentConfig, llm: Responder | None = None
    ) -> None:
        self.session: IntentSession = engine.conversation()
        self.config = config
        self.llm = llm
        #: a final decision waits for the preview under way (they share the conversation)
        self._deciding = anyio.Lock()

    async def preview(self, text: str) -> None:
        """A partial transcript of the turn under way: the engine's early match
        (``dialogue.early_match``) previews an unambiguous intent, so the final decision that
        follows it costs no embedding. Nothing is committed or said."""
        async with self._deciding:
            await self.session.handle(text, final=False)

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        async with self._deciding:
            if isinstance(text, Keypad):  # keypad digits: a menu key or a digit slot's value
                decision = await self.session.handle_keys(text.digits)
            else:
                decision = await self.session.handle(text, final=True)
        async for part in self._speak(decision, generation, text):
            yield part

    def keypad(self) -> KeypadRule:
        """When keyed digits are complete: what the conversation asks for now."""
        return self.session.keypad()

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        if kind == "greeting":
            async for part in self._speak(self.session.opening(), 0):
                yield part
        else:
            yield say_reply(self.config.turns.idle_prompt)

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        """The conversation goes back to idle and says ``dialogue.transfer_failed``; an LLM
        it hands turns to hears of it too."""
        async with self._deciding:
            decision = self.session.conversation.transfer_failed(target, reason)
        if isinstance(self.llm, LLMResponder):
            self.llm.note_transfer_failed(target, reason, decision.text)
        for reply in decision.replies:
            yield reply

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        if self.llm is not None:
            self.llm.heard(generation, text, interrupted=interrupted)

    async def _speak(
        self, decision: DialogueDecision, generation: int, turn: str = ""
    ) -> AsyncGenerator[ReplyPart, None]:
        for reply in decision.replies:
            yield reply
        for event in decision.events:
            match event:
                case EndCall() | Transfer() | SendDigits():
                    yield event
                case HandOff(utterance=utterance, pending=pending):
                    if self.llm is not None:
                        if isinstance(turn, Keypad) and utterance == turn.digits:
                            utterance = turn  # the LLM is shown "[keypad] 1234"
                        # closed with this reply (a reply cut at its limit aborts the request)
                        answer = self.llm.respond(utterance, generation=generation)
                        async with aclosing(answer) as parts:
                            async for part in parts:
                                yield part
                    else:
                        yield say_reply(self.config.dialogue.fallback.reply)
                    if pending is not None:
                        yield pending


def say_reply(reply: Reply) -> Say:
    """A configured reply, as written (templates are the engine's business, not used here)."""
    if isinstance(reply, str):
        return Say(reply)
    return Say(reply.text, emotion=reply.emotion, ssml=bool(reply.ssml))


class LLMResponder:
    """One call's LLM dialogue: its history, streamed replies, tools and barge-in truncation.

    The built-in tools ``end_call``, ``transfer`` and ``send_dtmf`` become call actions once
    the reply before them has been spoken; ``current_datetime`` answers the model directly. The
    turn after ``limits.max_turns`` is not sent to the model: the call ends
    (``EndCall("max_turns")``), as the intent engine's flows end it.
    """

    def __init__(self, engine: LLMEngine, config: AgentConfig) -> None:
        self.engine = engine
        self.config = config
        self.history: History = engine.config.new_history()
        #: replies still streaming, and what was heard of those already interrupted: the
        #: engine writes a cancelled reply into the history as it unwinds, so the cut to what
        #: was heard waits until then
        self._streaming: dict[int, anyio.Event] = {}
        self._heard: dict[int, str] = {}
        #: the caller's turns answered so far
        self.turns = 0

    def keypad(self) -> KeypadRule:
        """When keyed digits are complete (``dialogue.digits``); the model is shown them as
        ``[keypad] 1234``."""
        return KeypadRule.of(self.config.dialogue.digits)

    async def respond(
        self,
        text: str,
        *,
        generation: int,
        tools: ClientTools | None = None,
        on_call: OnCall = None,
        limit: TokenLimit | None = None,
    ) -> AsyncGenerator[ReplyPart, None]:
        """The reply to the caller's turn ``text``; ``tools``: a client's, offered too, whose
        calls go to ``on_call`` (they end the reply); ``limit``: its own token limit."""
        # A barge-in cancels the previous reply, which writes itself into the history as it
        # unwinds: let it finish, so this turn comes after it.
        while self._streaming:
            await next(iter(self._streaming.values())).wait()
        self.turns += 1
        if self.turns > self.config.limits.max_turns:
            yield EndCall("max_turns")
            return
        self.history.add_user(str(text))  # plain text: a keyed turn reads "[keypad] 1234"
        async with aclosing(self._tracked(generation, tools, on_call, limit)) as parts:
            async for part in parts:
                yield part

    async def answer(
        self,
        generation: int,
        *,
        tools: ClientTools | None = None,
        on_call: OnCall = None,
        history: History | None = None,
        limit: TokenLimit | None = None,
    ) -> AsyncGenerator[ReplyPart, None]:
        """The reply to the history as it stands (a client added to it); or to ``history``,
        out of band: the call's own history is neither read nor written."""
        if history is not None:
            stream = self._stream(history, generation, tools, on_call, limit)
            async with aclosing(stream) as parts:
                async for part in parts:
                    yield part
            return
        while self._streaming:
            await next(iter(self._streaming.values())).wait()
        async with aclosing(self._tracked(generation, tools, on_call, limit)) as parts:
            async for part in parts:
                yield part

    async def _tracked(
        self, generation: int, tools: ClientTools | None, on_call: OnCall, limit: TokenLimit | None
    ) -> AsyncGenerator[ReplyPart, None]:
        """A reply of the call's history, cut to what was heard once it has unwound."""
        done = self._streaming[generation] = anyio.Event()
        try:
            stream = self._stream(self.history, generation, tools, on_call, limit)
            async with aclosing(stream) as parts:  # closed now, not by the GC
                async for part in parts:
                    yield part
        finally:
            del self._streaming[generation]
            heard = self._heard.pop(generation, None)
            if heard is not None:
                self.history.truncate_last_assistant(heard)
            done.set()

    async def _stream(
        self,
        history: History,
        generation: int,
        tools: ClientTools | None,
        on_call: OnCall,
        limit: TokenLimit | None = None,
    ) -> AsyncGenerator[ReplyPart, None]:
        most = None if limit is None else limit.tokens
        reply = self.engine.respond(history, generation=generation, client=tools, max_tokens=most)
        last = ""  # the latest text said: a fallback after it is set apart from it
        async with aclosing(reply) as events:
            async for event in events:
                match event:
                    case LLMToolCall(call=call, client=True) if on_call is not None:
                        on_call(generation, call)
                    case LLMText(text=delta):
                        last = delta or last
                        yield Say(delta, final=False)
                    case LLMFallback(text=fallback, reason=reason):
                        log.warning("LLM fallback spoken: %s", reason)
                        yield Say(separator(last, fallback) + fallback, fallback=reason)
                    case LLMToolResult(call=call) if call.name == "end_call":
                        yield EndCall("agent")
                    case LLMToolResult(call=call) if call.name == "transfer":
                        target = _argument(call.arguments, "target") or "operator"
                        yield Transfer(target)
                    case LLMToolResult(call=call, result=result) if call.name == "send_dtmf":
                        digits = _argument(call.arguments, "digits")
                        if digits and not result.error:  # checked by the tool
                            yield SendDigits(digits)
                    case LLMDone(finish_reason=finish):
                        if finish == "length" and limit is not None:
                            limit.reached(generation)
                        yield Say("", final=True)

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        reply: Reply | None = None
        if kind == "greeting" and self.config.greeting.text:
            reply = ReplyConfig(
                text=self.config.greeting.text,
                ssml=self.config.greeting.ssml,
                emotion=self.config.greeting.emotion,
            )
        elif kind == "idle":
            reply = self.config.turns.idle_prompt
        if reply is not None:
            said = say_reply(reply)
            self.history.add_assistant(said.text)
            yield said

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        """``dialogue.transfer_failed`` (``{target}``, ``{reason}`` filled in), and a line in
        the history saying the transfer failed and why."""
        reply = self.config.dialogue.transfer_failed
        said = say_reply(reply)
        text = Template(said.text).render({"target": target, "reason": reason}, ssml=said.ssml)
        said = msgspec.structs.replace(said, text=text)
        self.note_transfer_failed(target, reason, said.text)
        yield said

    def note_transfer_failed(self, target: str, reason: str, said: str) -> None:
        """The history hears that the transfer to ``target`` failed (``reason``), as the
        transfer tool's result, and what the agent said about it."""
        call = ToolCall(id=f"transfer-failed-{self.turns}", name="transfer", arguments="{}")
        result = ToolResult(content=f"the transfer to {target} failed ({reason or 'no reason'})")
        self.history.add_tool_result(msgspec.structs.replace(call, as_text=True), result)
        if said:
            self.history.add_assistant(said)

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        if not interrupted:
            return
        if generation in self._streaming:
            self._heard[generation] = text  # applied once the engine has written the reply
        else:
            self.history.truncate_last_assistant(text)


async def _builtin_datetime(arguments: Mapping[str, Any]) -> str:
    return dt.datetime.now().astimezone().strftime("%A %d %B %Y, %H:%M %Z")


async def _builtin_action(arguments: Mapping[str, Any]) -> ToolResult:
    return ToolResult(content="done", final=True)


async def _builtin_send_dtmf(arguments: Mapping[str, Any]) -> ToolResult:
    """Digits the model keys: checked here, so a bad string goes back to it as an error."""
    digits = arguments.get("digits")
    try:
        check_digits(digits if isinstance(digits, str) else "")
    except ValueError as error:
        return ToolResult(content=f"not sent: {error}", error=True)
    return ToolResult(content="keyed once this reply has been spoken", final=True)


BUILTINS: dict[str, BuiltinTool] = {
    "current_datetime": _builtin_datetime,
    "end_call": _builtin_action,
    "transfer": _builtin_action,
    "send_dtmf": _builtin_send_dtmf,
}


def _argument(arguments: str, name: str) -> str | None:
    try:
        value = json.loads(arguments).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
