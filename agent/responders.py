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
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, Literal

import anyio

from agent.config import AgentConfig
from agent.config.base import Reply, ReplyConfig
from agent.dialogue.decision import DialogueDecision, EndCall, HandOff, Say, Transfer
from agent.dialogue.engine import IntentEngine, IntentSession
from agent.dialogue.llm import LLMDone, LLMEngine, LLMFallback, LLMText, LLMToolResult
from agent.dialogue.llm_history import History
from agent.dialogue.llm_tools import BuiltinTool, ToolResult
from agent.reply import ReplyPart, Responder

log = logging.getLogger("voxline.dialogue")


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
            decision = await self.session.handle(text, final=True)
        async for part in self._speak(decision, generation):
            yield part

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        if kind == "greeting":
            async for part in self._speak(self.session.opening(), 0):
                yield part
        else:
            yield _say(self.config.turns.idle_prompt)

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        if self.llm is not None:
            self.llm.heard(generation, text, interrupted=interrupted)

    async def _speak(
        self, decision: DialogueDecision, generation: int
    ) -> AsyncGenerator[ReplyPart, None]:
        for reply in decision.replies:
            yield reply
        for event in decision.events:
            match event:
                case EndCall() | Transfer():
                    yield event
                case HandOff(utterance=utterance, pending=pending):
                    if self.llm is not None:
                        # closed with this reply (a reply cut at its limit aborts the request)
                        answer = self.llm.respond(utterance, generation=generation)
                        async with aclosing(answer) as parts:
                            async for part in parts:
                                yield part
                    else:
                        yield _say(self.config.dialogue.fallback.reply)
                    if pending is not None:
                        yield pending


def _say(reply: Reply) -> Say:
    """A configured reply, as written (templates are the engine's business, not used here)."""
    if isinstance(reply, str):
        return Say(reply)
    return Say(reply.text, emotion=reply.emotion, ssml=bool(reply.ssml))


class LLMResponder:
    """One call's LLM dialogue: its history, streamed replies, tools and barge-in truncation.

    The built-in tools ``end_call`` and ``transfer`` become call actions once the reply before
    them has been spoken; ``current_datetime`` answers the model directly. The turn after
    ``limits.max_turns`` is not sent to the model: the call ends (``EndCall("max_turns")``), as
    the intent engine's flows end it.
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

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        # A barge-in cancels the previous reply, which writes itself into the history as it
        # unwinds: let it finish, so this turn comes after it.
        while self._streaming:
            await next(iter(self._streaming.values())).wait()
        self.turns += 1
        if self.turns > self.config.limits.max_turns:
            yield EndCall("max_turns")
            return
        self.history.add_user(text)
        done = self._streaming[generation] = anyio.Event()
        try:
            async with aclosing(self._stream(generation)) as parts:  # closed now, not by the GC
                async for part in parts:
                    yield part
        finally:
            del self._streaming[generation]
            heard = self._heard.pop(generation, None)
            if heard is not None:
                self.history.truncate_last_assistant(heard)
            done.set()

    async def _stream(self, generation: int) -> AsyncGenerator[ReplyPart, None]:
        async with aclosing(self.engine.respond(self.history, generation=generation)) as events:
            async for event in events:
                match event:
                    case LLMText(text=delta):
                        yield Say(delta, final=False)
                    case LLMFallback(text=fallback, reason=reason):
                        log.warning("LLM fallback spoken: %s", reason)
                        yield Say(fallback)
                    case LLMToolResult(call=call) if call.name == "end_call":
                        yield EndCall("agent")
                    case LLMToolResult(call=call) if call.name == "transfer":
                        target = _argument(call.arguments, "target") or "operator"
                        yield Transfer(target)
                    case LLMDone():
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
            said = _say(reply)
            self.history.add_assistant(said.text)
            yield said

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


BUILTINS: dict[str, BuiltinTool] = {
    "current_datetime": _builtin_datetime,
    "end_call": _builtin_action,
    "transfer": _builtin_action,
}


def _argument(arguments: str, name: str) -> str | None:
    try:
        value = json.loads(arguments).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
