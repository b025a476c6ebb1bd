"""The LLM dialogue engine: streaming replies, tools, fallbacks, barge-in-aware history.

:meth:`LLMEngine.respond` runs one reply of a session's :class:`~agent.dialogue.llm_history
.History` and yields :data:`LLMEvent` objects as they happen:

- :class:`LLMText`: text to speak, as soon as the model streams it (tool calls written as
  text are held back and never spoken: :mod:`agent.dialogue.llm_stream`);
- :class:`LLMToolCall` when the model calls a tool, then :class:`LLMToolResult` once the tool
  box (:class:`~agent.dialogue.llm_tools.ToolBox`, injected) answered; the result goes into the
  history and the model continues, for at most ``max_tool_rounds`` rounds. A reply may also
  offer a client's tools (:class:`~agent.dialogue.llm_tools.ClientTools`, with a
  ``tool_choice``): a call of one is an :class:`LLMToolCall` with ``client`` set, never run,
  and it ends the reply (the client answers it later, into the history);
- :class:`LLMFallback` when a round failed: the server said nothing within
  ``first_token_timeout_s``, failed (unreachable, HTTP error, stalled for ``stall_timeout_s``,
  malformed stream), or the reply waited on the model for ``reply_timeout_s`` in all; or the
  endpoint's circuit breaker is open; or the reply was empty (or only tool calls when no more
  were allowed). The configured ``fallback_text`` is to be spoken, after what the round already
  said if it failed mid-reply, and the reason is given (silence, or half a sentence, is the
  worst answer on a call). Each is counted in ``/metrics`` (``voxline_errors_total``,
  ``where="llm"``, ``kind`` the reason);
- one :class:`LLMDone` at the end, with the finish reason and token usage.

**Deadline.** ``reply_timeout_s`` bounds the time a reply spends waiting on the model, summed
over its rounds: from each request to its last item. Time the caller spends taking the text
(TTS paces it) and time tools take (they have their own limits) are not counted, so a long
answer spoken at the caller's pace is not cut.

**Breaker.** Each engine has a :class:`~pipeline.breaker.Breaker` for its endpoint: a round
that fails (an error, a stall, no first token, the deadline) counts against it, one that ends
counts for it; after ``breaker_failures`` in a row, replies get the fallback at once with no
request (reason ``unavailable``), until one request probes after ``breaker_cooldown_s``.

Cancelling the task that iterates (a barge-in cancels the generation's scope) or closing the
iterator aborts the request: the backend's stream is closed, which closes the HTTP connection
(or aborts the vLLM request). The history then holds what was generated so far, and the
session cuts it to what the caller heard with :meth:`~agent.dialogue.llm_history.History
.truncate_last_assistant`.

:func:`clauses_from` turns the events into :class:`Clause` objects for TTS: each clause is
handed over the moment :class:`~voices.chunking.ClauseChunker` completes it, and what is
pending is flushed before a tool runs (so "Let me check." is spoken while it runs).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal, Protocol

import anyio
import msgspec

from agent.dialogue.llm_history import TOOL_RESULT_NOTE, History, separator
from agent.dialogue.llm_stream import (
    ChatRequest,
    ReplyAssembler,
    StreamEnd,
    StreamItem,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from agent.dialogue.llm_tools import ClientTools, ToolBox, ToolCall, ToolConfig, ToolResult
from agent.metrics import METRICS
from pipeline.breaker import Breaker, BreakerState
from pipeline.errors import ModelError
from voices.chunking import ClauseChunker

logger = logging.getLogger(__name__)


class LLMConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An LLM agent: where the model runs, how it is prompted, what it may call."""

    #: ``openai``: any OpenAI-compatible server (vLLM's, llama.cpp's) at ``base_url``;
    #: ``vllm``: vLLM in this process, on ``device``
    backend: Literal["openai", "vllm"] = "openai"
    base_url: str = "http://127.0.0.1:8080/v1"
    #: the model name sent to the server; for ``vllm``, a local path or hub name
    model: str = ""
    #: the environment variable holding the server's API key (keys stay out of config files)
    api_key_env: str | None = None
    device: str = "cuda:0"
    gpu_memory_utilization: float = 0.5
    system_prompt: str = (
        "You are a helpful voice assistant on a phone call. Answer in one or two short, "
        "natural spoken sentences, without lists or markup."
    )
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 200
    seed: int | None = None
    #: seconds from sending a request to its first token before ``fallback_text`` is spoken
    first_token_timeout_s: float = 3.0
    #: seconds without any data mid-stream before the stream counts as failed
    stall_timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    #: seconds one reply may wait on the model in all (its rounds' requests, from sending to
    #: the last token; not the time its text takes to be spoken): then it is cut, and the
    #: fallback is spoken. Never less than ``first_token_timeout_s`` (a longer one raises it)
    reply_timeout_s: float = 20.0
    #: failed rounds in a row that open the endpoint's circuit breaker (replies get the
    #: fallback at once, with no request), and the seconds until one request probes it
    breaker_failures: int = 5
    breaker_cooldown_s: float = 10.0
    fallback_text: str = "Sorry, I can't answer that right now. Could you say it again?"
    tools: tuple[ToolConfig, ...] = ()
    #: model rounds that may call tools in one reply; the round after them gets no tools
    max_tool_rounds: int = 3
    #: messages sent to the model at most (whole turns; the system prompt is always sent)
    max_history_messages: int = 64
    #: appended to a reply the caller interrupted, as the model sees it
    interrupted_suffix: str = "…"
    #: how the result of a tool call written as text is shown to the model (``{name}``,
    #: ``{result}``; see :mod:`agent.dialogue.llm_history`)
    tool_result_note: str = TOOL_RESULT_NOTE
    #: how tool calls and results are shown to the model: ``native`` (the chat API's
    #: ``tool_calls`` and ``tool`` messages) or ``text`` (as calls written as text are: the
    #: result in a ``tool_result_note``), for servers whose chat template garbles tool messages
    tool_messages: Literal["native", "text"] = "native"

    def __post_init__(self) -> None:
        for name in (
            "first_token_timeout_s", "stall_timeout_s", "connect_timeout_s", "reply_timeout_s",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive")
        if self.breaker_failures < 1 or self.breaker_cooldown_s < 0:
            raise ValueError("`breaker_failures` must be 1 or more, `breaker_cooldown_s` >= 0")
        if self.max_tokens < 1:
            raise ValueError("`max_tokens` must be at least 1")
        if self.max_tool_rounds < 0:
            raise ValueError("`max_tool_rounds` must not be negative")

    def new_history(self) -> History:
        return History(self.system_prompt, max_messages=self.max_history_messages)


class LLMText(msgspec.Struct, frozen=True, kw_only=True, tag="llm_text"):
    generation: int
    text: str


class LLMToolCall(msgspec.Struct, frozen=True, kw_only=True, tag="llm_tool_call"):
    generation: int
    call: ToolCall
    #: a client's tool: not run here (no :class:`LLMToolResult` follows; the reply ends)
    client: bool = False


class LLMToolResult(msgspec.Struct, frozen=True, kw_only=True, tag="llm_tool_result"):
    generation: int
    call: ToolCall
    result: ToolResult


#: why a fallback is spoken: no first token in time, the request failed, the reply's deadline
#: passed, the endpoint's breaker is open, nothing to say
FallbackReason = Literal[
    "first_token_timeout", "error", "reply_timeout", "unavailable", "empty_reply"
]
#: the reasons that count as the endpoint failing (against its breaker)
FAULTS: frozenset[FallbackReason] = frozenset({"first_token_timeout", "error", "reply_timeout"})


class LLMFallback(msgspec.Struct, frozen=True, kw_only=True, tag="llm_fallback"):
    """Speak ``text``: the model gave nothing in time, failed, or had nothing to say."""

    generation: int
    text: str
    reason: FallbackReason
    #: what failed (for logs and metrics; never for the caller)
    detail: str = ""


class LLMDone(msgspec.Struct, frozen=True, kw_only=True, tag="llm_done"):
    generation: int
    #: the last round's reason (``stop``, ``length``, ...), or a :data:`FallbackReason`,
    #: ``tool_final``, ``client_tool``
    finish_reason: str | None
    usage: Usage
    #: the whole reply text as streamed (LLMText and LLMFallback texts joined)
    text: str
    rounds: int


LLMEvent = LLMText | LLMToolCall | LLMToolResult | LLMFallback | LLMDone


class ChatBackend(Protocol):
    """Where completions come from: an HTTP server or vLLM in process."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamItem, None]: ...


def make_backend(config: LLMConfig) -> ChatBackend:
    """The backend ``config`` names (call its ``start()`` before the first reply)."""
    if config.backend == "vllm":
        from agent.dialogue.llm_vllm import VLLMBackend

        return VLLMBackend(
            config.model, device=config.device, gpu_memory_utilization=config.gpu_memory_utilization
        )
    from agent.dialogue.llm_openai import OpenAIBackend

    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    return OpenAIBackend(
        config.base_url,
        model=config.model,
        api_key=api_key,
        connect_timeout_s=config.connect_timeout_s,
        stall_timeout_s=config.stall_timeout_s,
    )


class _Round:
    """What one model round produced (kept so a cancelled round still lands in history)."""

    def __init__(self, assembler: ReplyAssembler) -> None:
        self.assembler = assembler
        self.end: StreamEnd | None = None
        self.calls: list[ToolCall] = []
        #: why the round failed, and the details
        self.failure: FallbackReason | None = None
        self.detail = ""


class _Budget:
    """The seconds a reply may still wait on the model (``reply_timeout_s`` to start)."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds


class LLMEngine:
    """Replies from one model, shared by every session (each brings its own history)."""

    def __init__(
        self,
        config: LLMConfig,
        backend: ChatBackend,
        *,
        tools: ToolBox | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        """``breaker``: the endpoint's, when engines share one (default: a new one)."""
        if config.tools and tools is None:
            raise ValueError("the config declares tools: pass a ToolBox to run them")
        self.config = config
        self.backend = backend
        self.tools = tools
        self._schemas = tools.schemas() if tools is not None else []
        self.breaker = breaker or Breaker(
            "llm", failures=config.breaker_failures, cooldown_s=config.breaker_cooldown_s
        )
        METRICS.watch_breaker(self.breaker)  # /metrics shows the latest engine's

    async def respond(
        self,
        history: History,
        *,
        generation: int,
        client: ClientTools | None = None,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[LLMEvent, None]:
        """Stream the reply to ``history`` (whose last message is usually the caller's), with
        ``client``'s tools offered too; ``max_tokens``: each request's, when below the config's
        (a client's limit on the reply)."""
        config = self.config
        usage = Usage()
        finish: str | None = None
        rounds = 0
        schemas = self._offered(client)
        client_names = client.names if client is not None else frozenset()
        budget = _Budget(max(config.reply_timeout_s, config.first_token_timeout_s))
        while True:
            offer_tools = bool(schemas) and rounds < config.max_tool_rounds
            tools = schemas if offer_tools else []
            choice = client.choice if client is not None and rounds == 0 and tools else None
            rounds += 1
            round_ = _Round(ReplyAssembler(text_calls=bool(schemas), new_id=_call_id))
            before = history.reply_text()
            try:
                round_texts = self._judged(history, round_, tools, choice, max_tokens, budget)
                async with aclosing(round_texts) as texts:
                    async for text in texts:
                        if len(text) == len(round_.assembler.text):  # the round's first text
                            text = separator(before, text) + text
                        yield LLMText(generation=generation, text=text)
            finally:
                # Also on cancellation: the history keeps what was generated until then.
                if round_.assembler.text or round_.calls:
                    history.add_assistant(round_.assembler.text, round_.calls)
            if round_.end is not None:
                finish = round_.end.finish_reason
                usage = _add(usage, round_.end.usage)
            if round_.failure is not None:
                finish = round_.failure
                METRICS.error("llm", round_.failure)
                history.add_assistant(config.fallback_text)
                yield LLMFallback(
                    generation=generation,
                    text=config.fallback_text,
                    reason=round_.failure,
                    detail=round_.detail,
                )
                break
            if not round_.calls:
                break
            final = False
            for call in round_.calls:
                if call.name in client_names:
                    continue
                yield LLMToolCall(generation=generation, call=call)
                result = await self._call(history, call)
                yield LLMToolResult(generation=generation, call=call, result=result)
                final = final or result.final
            theirs = [call for call in round_.calls if call.name in client_names]
            for call in theirs:
                yield LLMToolCall(generation=generation, call=call, client=True)
            if theirs:
                finish = "client_tool"
                break
            if final:
                finish = "tool_final"
                break
        yield LLMDone(
            generation=generation,
            finish_reason=finish,
            usage=usage,
            text=history.reply_text(),
            rounds=rounds,
        )

    def _offered(self, client: ClientTools | None) -> list[dict[str, Any]]:
        """The tools a reply offers: the agent's (less those a client tool shadows) and the
        client's; none for ``tool_choice: none``."""
        if client is None:
            return self._schemas
        if client.choice == "none":
            return []
        names = client.names
        own = [s for s in self._schemas if s["function"]["name"] not in names]
        return own + list(client.schemas)

    async def _judged(
        self,
        history: History,
        round_: _Round,
        tools: list[dict[str, Any]],
        choice: str | dict[str, Any] | None,
        max_tokens: int | None,
        budget: _Budget,
    ) -> AsyncGenerator[str, None]:
        """:meth:`_round` if the breaker lets it through, its outcome told to the breaker."""
        breaker = self.breaker
        if budget.left <= 0:  # spent by earlier rounds (and their tools): no request
            round_.failure = "reply_timeout"
            return
        if not breaker.admit(time.monotonic()):
            logger.warning("LLM breaker open: the fallback is spoken with no request")
            round_.failure = "unavailable"
            round_.detail = f"circuit breaker open after {breaker.failures} failures in a row"
            return
        probe = breaker.state is BreakerState.HALF_OPEN
        judged = False
        try:
            texts = self._round(history, round_, tools, choice, max_tokens, budget)
            async with aclosing(texts):
                async for text in texts:
                    yield text
            judged = True
            if round_.failure is not None and round_.failure in FAULTS:
                breaker.failed(time.monotonic())
            else:
                breaker.succeeded(time.monotonic())
        finally:
            if probe and not judged:  # cancelled (a barge-in): the next reply probes
                breaker.released(time.monotonic())

    async def _round(
        self,
        history: History,
        round_: _Round,
        tools: list[dict[str, Any]],
        choice: str | dict[str, Any] | None,
        max_tokens: int | None,
        budget: _Budget,
    ) -> AsyncGenerator[str, None]:
        """Run one request; yield speakable text; leave calls, end or failure in ``round_``."""
        config = self.config
        offer_tools = bool(tools)
        request = ChatRequest(
            messages=history.render(
                interrupted_suffix=config.interrupted_suffix,
                tool_result_note=config.tool_result_note,
                calls_as_text=config.tool_messages == "text",
            ),
            tools=tools,
            tool_choice=choice,
            max_tokens=min(config.max_tokens, max_tokens or config.max_tokens),
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
        )
        assembler = round_.assembler
        first_token_left = config.first_token_timeout_s  # until the first content arrives
        try:
            async with aclosing(self.backend.stream(request)) as stream:
                while round_.end is None:
                    # The wait for the next item, under the first-token deadline until the
                    # first content, and under what is left of the reply's own.
                    first_token_first = first_token_left <= budget.left
                    started = anyio.current_time()
                    item: StreamItem | None = None
                    with anyio.move_on_after(min(budget.left, first_token_left)) as deadline:
                        item = await anext(stream, None)
                    spent = anyio.current_time() - started
                    budget.left -= spent
                    first_token_left -= spent
                    if deadline.cancelled_caught:
                        if first_token_first:
                            logger.warning(
                                "LLM gave no first token in %s s", config.first_token_timeout_s
                            )
                            round_.failure = "first_token_timeout"
                        else:
                            logger.warning("LLM reply cut at %s s", config.reply_timeout_s)
                            round_.failure = "reply_timeout"
                        break
                    if item is None:
                        break  # backends end with a StreamEnd; one that did not has ended
                    if _has_content(item):
                        first_token_left = float("inf")
                    if isinstance(item, StreamEnd):
                        round_.end = item
                    elif text := assembler.feed(item):
                        yield text
        except ModelError as error:
            logger.warning("LLM request failed: %s", error)
            round_.failure, round_.detail = "error", str(error)
        rest, calls = assembler.finish()
        if rest:
            yield rest
        if calls and round_.failure is None and not offer_tools:
            logger.warning("LLM called tools in a round without tools; calls ignored")
        if round_.failure is not None or not offer_tools:
            calls = []  # not run: cut off by a failure (the arguments may be too), or too many
        if not calls and not assembler.text and round_.failure is None:
            logger.warning("LLM reply was empty")
            round_.failure = "empty_reply"
        round_.calls = calls

    async def _call(self, history: History, call: ToolCall) -> ToolResult:
        """Run one tool; its result lands in the history even if the reply is cancelled."""
        result = ToolResult(content="cancelled: the caller interrupted", error=True)
        try:
            if self.tools is None:
                result = ToolResult(content=f"unknown tool {call.name!r}", error=True)
            else:
                result = await self.tools(call)
        finally:
            history.add_tool_result(call, result)
        return result


def _add(usage: Usage, more: Usage | None) -> Usage:
    if more is None:
        return usage
    return Usage(
        prompt_tokens=usage.prompt_tokens + more.prompt_tokens,
        completion_tokens=usage.completion_tokens + more.completion_tokens,
    )


def _has_content(item: StreamItem) -> bool:
    if isinstance(item, TextDelta):
        return bool(item.text)
    return isinstance(item, ToolCallDelta)


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:16]}"


class Clause(msgspec.Struct, frozen=True, kw_only=True, tag="clause"):
    """Text ready for TTS; ``start``/``end`` are offsets in the reply's whole text."""

    generation: int
    text: str
    start: int
    end: int


async def clauses_from(
    events: AsyncGenerator[LLMEvent, None],
    *,
    min_clause_chars: int = 12,
    max_chars: int = 250,
) -> AsyncGenerator[Clause | LLMEvent, None]:
    """Hand each clause to TTS as soon as it is complete; other events pass through.

    Text events are consumed (their text comes out as clauses); a fallback's text is one
    clause of its own; before a tool call and at the end, pending text is flushed. Closing
    this generator closes ``events`` (which aborts the request).
    """
    reply = ""  # the reply's text so far, as the engine joins it
    base = 0  # where the current chunker's text starts in ``reply``
    chunker = ClauseChunker(min_clause_chars=min_clause_chars, max_chars=max_chars)
    async with aclosing(events):
        async for event in events:
            chunks = []
            if isinstance(event, LLMText):
                reply += event.text
                chunks = chunker.feed(event.text)
            elif isinstance(event, LLMToolCall | LLMFallback | LLMDone):
                chunks = chunker.flush()
            for chunk in chunks:
                yield Clause(
                    generation=event.generation,
                    text=chunk.text,
                    start=base + chunk.start,
                    end=base + chunk.end,
                )
            if isinstance(event, LLMToolCall | LLMFallback | LLMDone):
                base = len(reply)
                chunker = ClauseChunker(min_clause_chars=min_clause_chars, max_chars=max_chars)
            if isinstance(event, LLMFallback):
                reply += separator(reply, event.text) + event.text
                base = len(reply)
                yield Clause(
                    generation=event.generation,
                    text=event.text,
                    start=base - len(event.text),
                    end=base,
                )
            if not isinstance(event, LLMText):
                yield event
