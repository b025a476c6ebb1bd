"""The agent file's ``limits`` for an LLM agent, in a real session (VAD, Whisper, Piper) with a
scripted OpenAI-compatible server: ``max_reply_chars`` cuts replies (the greeting and an LLM
stream, whose request is aborted) and ``max_turns`` ends the call without asking the model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from agent.config import parse_config
from agent.config.runtime import llm_config
from agent.dialogue.llm import LLMEngine, make_backend
from agent.models import session_settings
from agent.reply import ReplyVoice
from agent.responders import LLMResponder
from agent.session import Models, Session
from agent.session_events import AgentText, CallEnded, Notice
from tests.llm_server import Connection, chunk, reply, scripted_server
from tests.test_session import Recorder


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})  # the models' time dominates: one loop is enough


def agent_file(base_url: str, limits: str, greeting: str = "Hello.") -> bytes:
    return f"""
name: llm-limits
greeting: {{text: "{greeting}"}}
turns: {{idle_timeout_ms: 0}}
limits: {limits}
profile:
  llm: {{base_url: "{base_url}", model: m, first_token_timeout_s: 60, stall_timeout_s: 60}}
dialogue:
  engine: llm
  llm: {{system_prompt: You answer the phone.}}
""".encode()


async def llm_call(
    source: bytes, sink: Recorder, models: Models, then: Callable[[Session], Awaitable[None]]
) -> Session:
    """A call to the LLM agent of ``source``: its greeting, then ``then(session)``."""
    config = parse_config(source, ".yaml")
    settings = llm_config(config)
    backend = make_backend(settings)
    responder = LLMResponder(LLMEngine(settings, backend), config)
    session = Session(models, responder, sink, session_settings(config, ReplyVoice()))
    try:
        with sink.deadline(120, session):
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.run)
                await sink.wait_for(lambda: ("end", 1) in sink.log)
                await then(session)
    finally:
        await backend.aclose()
    return session


def spoken(sink: Recorder, generation: int) -> str:
    deltas = sink.events(AgentText)
    return "".join(
        e.delta for e in deltas if isinstance(e, AgentText) and e.generation == generation
    )


async def endless(connection: Connection) -> None:
    """Sentences, then nothing more until the client hangs up."""
    await connection.send_head()
    for piece in ("We open at nine.", " We close at ten.", " On Sundays we open", " at noon."):
        await connection.send_event(chunk(piece))
    await connection.wait_closed()


@pytest.mark.anyio
async def test_replies_longer_than_max_reply_chars_are_cut_and_the_llm_request_aborted(
    vad_runner: Any, asr_runner: Any, tts_engine: Any
) -> None:
    sink = Recorder()
    async with scripted_server([endless]) as server:
        greeting = "Hello there. Welcome to the little restaurant by the river."
        source = agent_file(server.base_url, "{max_reply_chars: 40}", greeting)

        async def ask(session: Session) -> None:
            await session.user_text("When are you open?")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            await server.client_left.wait()  # the request was aborted, not read out
            session.end_input()

        session = await llm_call(source, sink, Models(vad_runner, asr_runner, tts_engine), ask)
    assert spoken(sink, 1) == "Hello there."  # the prompt: cut at its last sentence end
    assert spoken(sink, 2) == "We open at nine. We close at ten."
    assert isinstance(session.responder, LLMResponder)
    last = session.responder.history.messages[-1]  # what was said, marked as cut short
    assert (last.role, last.content, last.interrupted) == (
        "assistant",
        "We open at nine. We close at ten.",
        True,
    )
    cuts = [e for e in sink.events(Notice) if isinstance(e, Notice) and e.code == "reply_cut"]
    assert len(cuts) == 2


@pytest.mark.anyio
async def test_the_turn_after_max_turns_ends_the_call_without_asking_the_llm(
    vad_runner: Any, asr_runner: Any, tts_engine: Any
) -> None:
    sink = Recorder()
    async with scripted_server([reply("We open at nine.")]) as server:
        source = agent_file(server.base_url, "{max_turns: 1}")

        async def ask_twice(session: Session) -> None:
            await session.user_text("When are you open?")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            await session.user_text("And when do you close?")
            await sink.wait_for(lambda: bool(sink.events(CallEnded)))

        await llm_call(source, sink, Models(vad_runner, asr_runner, tts_engine), ask_twice)
        assert len(server.requests) == 1
    assert spoken(sink, 2) == "We open at nine."
    assert sink.events(CallEnded) == [CallEnded(reason="max_turns")]
