"""Running conversation test files: each conversation is a fresh call's dialogue of the agent,
built as the server builds it (:class:`~agent.responders.IntentResponder` on an
:class:`~agent.dialogue.engine.IntentEngine` with the real sentence embeddings, or
:class:`~agent.responders.LLMResponder` on ``profile.llm``), fed the turns one by one.

- **Text mode** gives the dialogue the caller's line as written; **audio mode** speaks it with
  the agent's voice (Piper for the embedded agents), resamples it to 16 kHz and gives the
  dialogue what the agent's Whisper hears (:class:`Hearing`).
- **Keys** go through the session's :class:`~agent.digits.DigitCollector` with the rule the
  dialogue gives (a terminator, a length, else the inter-digit timeout): one keyed turn.
- **Webhooks** are real HTTP requests of the agent's own client. Those the file declares go
  to a :class:`~agent.conversation_tests_hooks.WebhookServer` on 127.0.0.1; the others to the
  agent's configured URL. Every request is recorded as the turn's tool calls.
- An agent whose LLM is embedded (``profile.llm.backend: embedded``) has it started for the
  run, as ``voxline serve`` does. One that needs another LLM is **skipped** with the reason
  when ``profile.llm`` cannot be reached; an interpreter (``dialogue.engine: translate``) is
  skipped too (not supported yet).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, ExitStack, aclosing
from typing import Literal, overload

import anyio
import anyio.to_thread
import httpx
import msgspec
import numpy as np

from agent.config import AgentConfig
from agent.config.runtime import llm_config
from agent.conversation_tests import Conversation, TestFile, Turn
from agent.conversation_tests_check import (
    Mismatch,
    Outcome,
    ToolCallSeen,
    check_reply,
    check_turn,
)
from agent.conversation_tests_hooks import WebhookServer
from agent.dialogue.decision import DialogueDecision, EndCall, Say, Transfer
from agent.dialogue.embeddings import SentenceEmbedder
from agent.dialogue.engine import IntentEngine, IntentSession
from agent.dialogue.llm import LLMEngine, make_backend
from agent.dialogue.llm_local import EmbeddedLlm
from agent.dialogue.llm_tools import Tools
from agent.digits import DigitCollector, Keypad, keypad_rule
from agent.models import asr_model_config, asr_options, tts_engine
from agent.reply import ReplyPart, Responder
from agent.responders import BUILTINS, IntentResponder, LLMResponder
from pipeline.asr.decoder import Decoded, DecodeRequest, to_model_audio
from pipeline.asr.stage import asr_executor
from pipeline.errors import VoxlineError
from pipeline.events import PIPELINE_RATE
from pipeline.executor import ModelExecutor
from voices.espeak_engine import EspeakEngine
from voices.piper_engine import PiperEngine
from voices.ssml.plain import strip_markup
from voices.styletts2.engine import StyleTTS2Engine

__all__ = ["ConversationResult", "FileResult", "Hearing", "TurnResult", "run_file"]

#: a space left before punctuation where SSML markup was taken out
_TIDY = re.compile(r"\s+([.,!?;:])")
#: silence around a spoken line, as a caller's pause before and after it
PAD_SECONDS = 0.3


class TurnResult(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    turn: Turn
    outcome: Outcome | None = None
    mismatches: list[Mismatch] = []
    #: why the turn could not run (the conversation stops there)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.mismatches


class ConversationResult(msgspec.Struct, frozen=True, kw_only=True):
    conversation: Conversation
    greeting: str = ""
    greeting_mismatches: list[Mismatch] = []
    turns: list[TurnResult] = []
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.greeting_mismatches and all(turn.passed for turn in self.turns)


class FileResult(msgspec.Struct, frozen=True, kw_only=True):
    test: TestFile
    conversations: list[ConversationResult] = []
    #: why nothing ran (an LLM that cannot be reached ...)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.conversations)


class Hearing:
    """Audio mode: the agent's voice speaks a line, its ASR transcribes it (16 kHz)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.options = asr_options(config)
        self._stack = ExitStack()
        self._tts: PiperEngine | StyleTTS2Engine | EspeakEngine | None = None
        self._asr: ModelExecutor[DecodeRequest, Decoded] | None = None

    async def __aenter__(self) -> Hearing:
        await anyio.to_thread.run_sync(self._start)
        return self

    def _start(self) -> None:
        with ExitStack() as stack:
            tts = tts_engine(self.config)
            stack.enter_context(tts)
            self._tts = tts
            self._asr = stack.enter_context(asr_executor(asr_model_config(self.config)))
            self._stack = stack.pop_all()

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._stack.close)

    async def hear(self, text: str) -> str:
        """What the agent's ASR makes of ``text`` spoken by its voice ("" when it heard
        nothing it would keep)."""
        assert self._tts is not None, "used outside `async with`"
        assert self._asr is not None
        pcm: list[bytes] = []
        rate = PIPELINE_RATE
        async with aclosing(self._tts.synthesize(text)) as chunks:
            async for chunk in chunks:
                pcm.append(chunk.pcm)
                rate = chunk.sample_rate
        audio = to_model_audio(np.frombuffer(b"".join(pcm), dtype=np.int16), rate)
        pad = np.zeros(int(PAD_SECONDS * PIPELINE_RATE), dtype=np.float32)
        audio = np.concatenate([pad, audio, pad])
        decoded = await self._asr.run(DecodeRequest(audio=audio, final=True, options=self.options))
        return "" if decoded.dropped else decoded.text.strip()


class _RecordingSession(IntentSession):
    """The intent session, keeping each final decision (its intent) for the report."""

    last: DialogueDecision | None = None

    @overload
    async def handle(self, text: str, *, final: Literal[True]) -> DialogueDecision: ...

    @overload
    async def handle(self, text: str, *, final: bool) -> DialogueDecision | None: ...

    async def handle(self, text: str, *, final: bool) -> DialogueDecision | None:
        decision = await super().handle(text, final=final)
        if final:
            self.last = decision
        return decision

    async def handle_keys(self, digits: str) -> DialogueDecision:
        self.last = await super().handle_keys(digits)
        return self.last


class _Recorder:
    """Every webhook request the agent's HTTP client sends (``{"tool", "arguments"}``)."""

    def __init__(self) -> None:
        self.calls: list[ToolCallSeen] = []

    async def request(self, request: httpx.Request) -> None:
        if request.method != "POST":
            return
        try:
            body = msgspec.json.decode(request.content)
            call = ToolCallSeen(tool=body["tool"], arguments=body.get("arguments", {}))
        except (msgspec.DecodeError, KeyError, TypeError, httpx.RequestNotRead):
            return  # not a webhook's request
        self.calls.append(call)


async def run_file(test: TestFile) -> FileResult:
    """Run every conversation of ``test`` (models loaded once for the file)."""
    config = test.agent
    engine = config.dialogue.engine
    if engine == "translate":
        return FileResult(
            test=test,
            skipped="interpreters (dialogue.engine translate) are not "
            "supported by voxline test yet",
        )
    recorder = _Recorder()
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        http = await stack.enter_async_context(
            httpx.AsyncClient(event_hooks={"request": [recorder.request]})
        )
        if test.webhooks:
            server = WebhookServer(test.webhooks)
            await tg.start(server.run)
            config = _served(config, server)
        llm: LLMEngine | None = None
        if engine == "llm":
            llm, problem = await _start_llm(config, http)
            if llm is None:
                tg.cancel_scope.cancel()
                return FileResult(test=test, skipped=problem)
            stack.push_async_callback(llm.backend.aclose)
        intents: IntentEngine | None = None
        if engine == "intents":
            embedder = None
            if config.dialogue.intents:
                embedder = SentenceEmbedder(
                    config.profile.embeddings.model, threads=config.profile.embeddings.threads
                )
                await anyio.to_thread.run_sync(embedder.start)
                stack.push_async_callback(anyio.to_thread.run_sync, embedder.close)
            intents = await IntentEngine.load(config, embedder=embedder, http=http)
        hearing = None
        if any(conversation.mode == "audio" for conversation in test.conversations):
            hearing = await stack.enter_async_context(Hearing(config))
        results = []
        for conversation in test.conversations:
            responder: Responder
            session: _RecordingSession | None = None
            if intents is not None:
                session = _RecordingSession(
                    intents, intents.conversation(today=test.today).conversation
                )
                responder = IntentResponder(intents, config)
                responder.session = session
            else:
                assert llm is not None
                responder = LLMResponder(llm, config)
            run = _Call(responder, session, recorder, hearing)
            results.append(await run.conversation(conversation))
        tg.cancel_scope.cancel()
    return FileResult(test=test, conversations=results)


class _Call:
    """One conversation: a fresh dialogue fed its turns."""

    def __init__(
        self,
        responder: Responder,
        session: _RecordingSession | None,
        recorder: _Recorder,
        hearing: Hearing | None,
    ) -> None:
        self.responder = responder
        self.session = session
        self.recorder = recorder
        self.hearing = hearing

    async def conversation(self, conversation: Conversation) -> ConversationResult:
        started = anyio.current_time()
        greeting, _, _ = await _said(self.responder.prompt("greeting"))
        turns: list[TurnResult] = []
        over: int | None = None
        for index, turn in enumerate(conversation.turns, start=1):
            if over is not None:
                error = f"the call ended at turn {over}: this turn is never heard"
                turns.append(TurnResult(index=index, turn=turn, error=error))
                break
            try:
                outcome = await self._turn(conversation, turn, index)
            except (VoxlineError, ValueError) as error:
                turns.append(TurnResult(index=index, turn=turn, error=str(error)))
                break
            mismatches = check_turn(turn.expect, outcome)
            turns.append(TurnResult(index=index, turn=turn, outcome=outcome, mismatches=mismatches))
            if outcome.ended is not None or outcome.transfer is not None:
                over = index
        return ConversationResult(
            conversation=conversation,
            greeting=greeting,
            greeting_mismatches=check_reply(conversation.greeting, greeting, "greeting"),
            turns=turns,
            seconds=anyio.current_time() - started,
        )

    async def _turn(self, conversation: Conversation, turn: Turn, index: int) -> Outcome:
        text: str
        if turn.keys is not None:
            text = self._keyed(turn.keys)
        else:
            assert turn.caller is not None
            text = turn.caller
            if conversation.mode == "audio":
                assert self.hearing is not None
                text = await self.hearing.hear(text)
        before = len(self.recorder.calls)
        if self.session is not None:
            self.session.last = None
        reply, ended, transfer = await _said(self.responder.respond(text, generation=index))
        decision = self.session.last if self.session is not None else None
        values = self.session.conversation.values if self.session is not None else {}
        return Outcome(
            heard=str(text),
            intent=decision.intent if decision is not None else None,
            values=values,
            changes=decision.changes if decision is not None else {},
            reply=reply,
            tool_calls=self.recorder.calls[before:],
            ended=ended,
            transfer=transfer,
        )

    def _keyed(self, keys: str) -> Keypad:
        """``keys`` as the session collects them: one keyed turn."""
        collector = DigitCollector()
        rule = keypad_rule(self.responder)
        now = 0
        step = PIPELINE_RATE // 5  # a key every 200 ms
        for position, key in enumerate(keys, start=1):
            now += step
            done = collector.press(key, now, rule)
            if done is not None:
                if position < len(keys):
                    raise ValueError(
                        f"keys {keys!r}: {keys[:position]!r} already makes a keyed turn "
                        f"({done.rule}); put the rest in the next turn"
                    )
                return Keypad(done.digits)
        deadline = collector.deadline
        expired = collector.expire(deadline if deadline is not None else now)
        if expired is None:  # pragma: no cover - a digit is always pending here
            raise ValueError(f"keys {keys!r} make no keyed turn")
        return Keypad(expired.digits)


async def _said(
    parts: AsyncGenerator[ReplyPart, None],
) -> tuple[str, str | None, str | None]:
    """What a reply says as plain text, and how it ends the call (end_call reason, transfer
    target)."""
    text = ""
    ended = transfer = None
    delta = False
    async with aclosing(parts) as replies:
        async for part in replies:
            match part:
                case Say(text=said, ssml=ssml, final=final):
                    said = strip_markup(said) if ssml else said
                    if text and not delta and said:
                        text += " "
                    text += said
                    delta = not final
                case EndCall(reason=reason):
                    ended = reason
                case Transfer(target=target):
                    transfer = target
    return _TIDY.sub(r"\1", text).strip(), ended, transfer


def _served(config: AgentConfig, server: WebhookServer) -> AgentConfig:
    """``config`` with the webhooks the test file serves pointed at ``server``."""
    hooks = tuple(
        msgspec.structs.replace(hook, url=server.url(hook.name))
        if hook.name in server.hooks
        else hook
        for hook in config.tools.webhooks
    )
    tools = msgspec.structs.replace(config.tools, webhooks=hooks)
    return msgspec.structs.replace(config, tools=tools)


async def _start_llm(config: AgentConfig, http: httpx.AsyncClient) -> tuple[LLMEngine | None, str]:
    """The agent's LLM, or why it cannot be used (no ``profile.llm``, not reachable)."""
    where = config.profile.llm
    if where is None:
        return None, "the agent needs an LLM and has no profile.llm"
    settings = llm_config(config)
    if where.backend == "embedded":  # llama.cpp's server, started here as the server does
        try:
            embedded = await anyio.to_thread.run_sync(EmbeddedLlm.from_config, config)
            await embedded.start()
        except VoxlineError as error:  # a ConfigError too (a missing model_path)
            return None, f"profile.llm (embedded) did not start: {error}"
        tools = Tools(settings.tools, builtins=BUILTINS, http=http)
        return LLMEngine(settings, embedded, tools=tools if settings.tools else None), ""
    if settings.backend != "vllm":
        url = settings.base_url.rstrip("/") + "/models"
        try:
            with anyio.fail_after(settings.connect_timeout_s + 1):
                await http.get(url, timeout=settings.connect_timeout_s)
        except (httpx.HTTPError, TimeoutError) as error:
            reason = type(error).__name__
            return None, f"profile.llm at {settings.base_url} cannot be reached ({reason})"
    backend = make_backend(settings)
    try:
        await backend.start()
    except VoxlineError as error:
        return None, f"profile.llm ({settings.backend}) did not start: {error}"
    tools = Tools(settings.tools, builtins=BUILTINS, http=http)
    return LLMEngine(settings, backend, tools=tools if settings.tools else None), ""
